from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.audio.decode import AudioError, load_audio, to_mono
from streamer.audio.synth import music


def test_44k_stereo_becomes_16k_mono(tmp_path: Path) -> None:
    sig16 = music(2.0)
    import soxr

    sig44 = soxr.resample(sig16, 16000, 44100)
    path = tmp_path / "a.flac"
    sf.write(path, np.stack([sig44, sig44], axis=1), 44100)
    out = load_audio(path)
    assert out.dtype == np.float32
    assert abs(out.size - sig16.size) <= 2
    n = min(out.size, sig16.size)
    assert np.corrcoef(out[1000 : n - 1000], sig16[1000 : n - 1000])[0, 1] > 0.99


def test_ogg_is_read(tmp_path: Path) -> None:
    path = tmp_path / "a.ogg"
    sf.write(path, music(1.0), 16000, format="OGG", subtype="VORBIS")
    assert abs(load_audio(path).size - 16000) < 200


def test_missing_corrupt_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "nope.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00junk" * 10)
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_audio(junk)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), 16000)
    with pytest.raises(AudioError, match="no samples"):
        load_audio(empty)


def test_channel_choice() -> None:
    x = np.stack([np.ones(4), np.zeros(4)], axis=1)
    assert np.all(to_mono(x) == 0.5)
    assert np.all(to_mono(x, 1) == 0.0)
    with pytest.raises(AudioError, match="channel 2"):
        to_mono(x, 2)
