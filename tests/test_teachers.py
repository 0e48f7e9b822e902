"""The AudioSet teachers (trainer/families/musicnn): their weights' provenance (local folder or
download, sha256 pinned, nothing from the network: downloads come from file:// URLs), the patch
windows every teacher shares with musicnn's log-mel patches, the embedding cache, and, where
../shared/weights holds the real files, that the rebuilt networks hear music as music."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from streamer.audio.synth import music
from streamer.features.logmel import LogMelConfig
from trainer.families.musicnn import weights
from trainer.families.musicnn.embeddings import patches
from trainer.families.musicnn.teachers import WINDOW, Teacher, embed, levelled, window_starts

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "weights"


def _spec(tmp_path: Path, data: bytes) -> weights.WeightsSpec:
    src = tmp_path / "official" / "net.bin"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    return weights.WeightsSpec("yamnet", "net/net.bin", src.as_uri(), hashlib.sha256(data).hexdigest(), "MIT", "test")


def test_weights_come_from_the_official_source_once_and_are_checked(tmp_path: Path, monkeypatch) -> None:
    spec = _spec(tmp_path, b"weights")
    monkeypatch.setitem(weights.TEACHERS, "yamnet", spec)
    monkeypatch.delenv(weights.ENV, raising=False)
    got = weights.resolve("yamnet", cache=tmp_path / "cache")
    assert got.path == tmp_path / "cache" / "net" / "net.bin" and got.path.read_bytes() == b"weights"
    assert got.source == spec.url and got.sha256 == spec.sha256
    (tmp_path / "official" / "net.bin").unlink()  # a second load does not download again
    assert weights.resolve("yamnet", cache=tmp_path / "cache").sha256 == spec.sha256


def test_downloaded_weights_with_another_digest_are_refused_and_set_aside(tmp_path: Path, monkeypatch) -> None:
    spec = replace(_spec(tmp_path, b"other bytes"), sha256="0" * 64)
    monkeypatch.setitem(weights.TEACHERS, "yamnet", spec)
    monkeypatch.delenv(weights.ENV, raising=False)
    with pytest.raises(weights.WeightsError, match="not the pinned"):
        weights.resolve("yamnet", cache=tmp_path / "cache")
    assert (tmp_path / "cache" / "net" / "net.bin.rejected").is_file()
    digest = hashlib.sha256(b"other bytes").hexdigest()
    accepted = weights.resolve("yamnet", cache=tmp_path / "cache", accept={"yamnet": digest})
    assert accepted.sha256 == digest  # downloaded again, and taken because the caller accepted it


def test_a_local_weights_folder_is_used_instead_and_checked(tmp_path: Path, monkeypatch) -> None:
    spec = replace(_spec(tmp_path, b"w"), url="file:///nonexistent/never/read")
    monkeypatch.setitem(weights.TEACHERS, "yamnet", spec)
    local = tmp_path / "local"
    (local / "net").mkdir(parents=True)
    (local / "net" / "net.bin").write_bytes(b"w")
    monkeypatch.setenv(weights.ENV, str(local))
    got = weights.resolve("yamnet", cache=tmp_path / "cache")
    assert got.path == local / "net" / "net.bin" and got.source.startswith("a local copy")
    (local / "net" / "net.bin").write_bytes(b"tampered")
    with pytest.raises(weights.WeightsError, match="not the pinned"):
        weights.resolve("yamnet", cache=tmp_path / "cache")
    with pytest.raises(weights.WeightsError, match=r"no net/net\.bin"):
        weights.resolve("yamnet", tmp_path / "empty")


def test_no_network_no_local_copy_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    spec = replace(_spec(tmp_path, b"w"), url=(tmp_path / "missing.bin").as_uri())
    monkeypatch.setitem(weights.TEACHERS, "yamnet", spec)
    monkeypatch.delenv(weights.ENV, raising=False)
    with pytest.raises(weights.WeightsError, match=f"cannot download.*{weights.ENV}"):
        weights.resolve("yamnet", cache=tmp_path / "cache")


def test_accept_pairs_are_checked() -> None:
    assert weights.parse_accept([f"mn04={'A' * 64}"]) == {"mn04": "a" * 64}
    for bad in ("mn04", "vggish=" + "a" * 64, "mn04=abc"):
        with pytest.raises(weights.WeightsError):
            weights.parse_accept([bad])


def test_teacher_windows_are_the_students_log_mel_patches() -> None:
    """Every teacher embeds the samples that musicnn's patch k covers: same count, same place."""
    config = LogMelConfig(normalisation="none")
    for seconds in (3.0, 3.008, 9.5, 30.06):
        audio = music(seconds, seed=1).astype(np.float32)
        x = patches(audio, config, 3.0)
        starts = window_starts(len(audio))
        assert len(starts) == (0 if x is None else len(x)), seconds
        for k, s in enumerate(starts):  # the patch is the log-mel of exactly that window
            assert np.allclose(patches(audio[s : s + WINDOW], config, 3.0)[0], x[k], atol=1e-5)


def test_levelled_windows_do_not_depend_on_the_capture_level() -> None:
    x = music(3.5, seed=2).astype(np.float32)
    assert np.allclose(levelled(x), levelled(0.01 * x), atol=1e-5)
    assert not np.any(levelled(np.zeros(100, np.float32)))


def test_embeddings_are_cached_by_content_and_teacher(tmp_path: Path) -> None:
    import soundfile as sf

    from trainer.common.dataset import Clip

    calls: list[str] = []

    def teacher(name: str, version: str) -> Teacher:
        def fn(audio: np.ndarray) -> np.ndarray:
            calls.append(name)
            return np.full((len(window_starts(len(audio))), 4), float(len(audio)), np.float32)

        return Teacher(name, fn, {"weights_sha256": version})

    for name in ("a.wav", "b.wav"):
        sf.write(tmp_path / name, music(7.0, seed=3), 16000)  # same bytes: one cache entry
    clips = [Clip(tmp_path / n, "happy", n) for n in ("a.wav", "b.wav")]
    first = embed(clips, "clean", [teacher("t1", "v1")], tmp_path / "cache")
    assert calls == ["t1"] and first["t1"][clips[1].path].shape == (2, 4)
    embed(clips, "clean", [teacher("t1", "v1"), teacher("t2", "v1")], tmp_path / "cache")
    assert calls == ["t1", "t2"]  # only the new teacher ran
    embed(clips, "clean", [teacher("t1", "v2")], tmp_path / "cache")
    assert calls == ["t1", "t2", "t1"]  # other weights, other entry
    cached = embed(clips, "room", [teacher("t1", "v1")], tmp_path / "cache", only_cached=True)
    assert cached == {"t1": {}} and len(calls) == 3


def _music_tag(scores: np.ndarray, music_index: int) -> None:
    assert np.argmax(scores) == music_index, np.argsort(-scores)[:5]


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "efficientat-mn04").is_dir(), reason="no ../shared/weights/efficientat-mn04")
def test_mn04_rebuild_loads_the_checkpoint_strictly_and_hears_music() -> None:
    pytest.importorskip("torch")
    from trainer.families.musicnn.efficientat import EMBEDDING, MN04

    prov = weights.resolve("mn04", SHARED)
    net = MN04(prov.path)  # load_state_dict(strict=True): every tensor by name and shape
    x = np.stack([levelled(music(3.008, seed=s).astype(np.float32)) for s in (4, 5)])
    assert net(x).shape == (2, EMBEDDING)
    for scores in net.tags(x):
        _music_tag(scores, 137)  # AudioSet's "Music"


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "yamnet").is_dir(), reason="no ../shared/weights/yamnet")
def test_yamnet_embedding_is_what_its_scores_are_computed_from() -> None:
    from trainer.families.musicnn.yamnet import EMBEDDING, YAMNet

    net = YAMNet(weights.resolve("yamnet", SHARED).path)
    x = levelled(music(3.008, seed=4).astype(np.float32))
    frames = net.frames(x)
    assert frames.shape == (5, EMBEDDING + 521)
    # the scores are sigmoid(dense(embedding)): the op that reads the embedding holds that layer
    interp = net._interp
    op = next(o for o in interp._get_ops_details() if net._emb in o["inputs"])
    details = {t["index"]: t for t in interp.get_tensor_details()}
    kernel = next(int(i) for i in op["inputs"] if tuple(details[int(i)]["shape"]) == (521, EMBEDDING))
    bias = next(int(i) for i in op["inputs"] if tuple(details[int(i)]["shape"]) == (521,))
    q = details[kernel]["quantization_parameters"]["scales"]
    w = interp.get_tensor(kernel).astype(np.float32) * (q[:, None] if len(q) else 1.0)
    logits = frames[:, :EMBEDDING] @ w.T + interp.get_tensor(bias)
    # within the hybrid int8 layer's own rounding (its input is quantised on the fly)
    assert np.allclose(1 / (1 + np.exp(-logits)), frames[:, EMBEDDING:], atol=5e-3)
    _music_tag(net.tags(x[None])[0], 132)  # YAMNet's "Music"
