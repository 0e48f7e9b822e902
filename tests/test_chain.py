"""streamer.audio.chain: every capture chain does what its docstring says, on audio made here, and is
reproducible from its seed; `moodstream evaluate --chain` refuses bad names and missing libraries
in one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from streamer import cli as moodstream
from streamer.audio import chain
from streamer.audio.chain import CHAINS, apply_chain, draw
from streamer.audio.synth import SR, chords, drums

pytest.importorskip("pedalboard")
pytest.importorskip("pyroomacoustics")


def _music(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    x = chords(seconds, seed=seed) + 0.5 * drums(seconds, seed=seed + 1)
    return (0.7 * x / np.max(np.abs(x))).astype(np.float32)


def _db(x: float) -> float:
    return 10 * np.log10(max(x, 1e-30))


def _round_trip(x: np.ndarray, native: int) -> np.ndarray:
    """x played at the native rate and brought back by the daemon's resampler, nothing else."""
    return chain._to_daemon_rate(soxr.resample(x, SR, native, quality="HQ").astype(np.float32), native)


def _band_power(x: np.ndarray, lo: float, hi: float, rate: int = SR) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / rate)
    return float(spec[(f >= lo) & (f < hi)].mean())


def test_every_chain_is_16k_float32_mono_of_the_same_length() -> None:
    x = _music(2.0)
    for name in CHAINS:
        y = apply_chain(name, x, SR, seed=1)
        assert y.dtype == np.float32 and y.ndim == 1
        assert abs(y.size - x.size) <= 2, name
        assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0


def test_native_rate_input_comes_out_at_16k() -> None:
    x48 = np.sin(2 * np.pi * 440 * np.arange(48000) / 48000).astype(np.float32) * 0.5
    assert abs(apply_chain("clean", x48, 48000, 0).size - 16000) <= 1
    assert abs(apply_chain("level", x48, 48000, 0).size - 16000) <= 1


def test_clean_is_the_input() -> None:
    x = _music(1.0)
    assert np.array_equal(apply_chain("clean", x, SR, 5), x)


@pytest.mark.parametrize("name", [c for c in CHAINS if c != "clean"])
def test_reproducible_from_the_seed(name: str) -> None:
    x = _music(2.0)
    a, b = apply_chain(name, x, SR, 3), apply_chain(name, x, SR, 3)
    assert np.array_equal(a, b)
    assert not np.allclose(apply_chain(name, x, SR, 4), a, atol=1e-4)
    assert not np.allclose(a, x[: a.size], atol=1e-3)  # and it changed the audio


def test_level_sets_the_peak_and_nothing_else() -> None:
    x = _music()
    for seed in range(4):
        y = apply_chain("level", x, SR, seed)
        peak = 20 * np.log10(np.max(np.abs(y)))
        assert -30.5 <= peak <= -9.5
        assert abs(peak - draw("level", seed)["links"]["level"]["peak_dbfs"]) < 0.5
        # the native-rate capture and the daemon's resampling keep the waveform
        back = y * (np.max(np.abs(x)) / np.max(np.abs(y)))
        assert np.corrcoef(back, x[: back.size])[0, 1] > 0.999


def test_mic_narrows_the_band() -> None:
    rng = np.random.default_rng(0)
    white = (0.1 * rng.standard_normal(3 * SR)).astype(np.float32)
    for seed in range(4):
        p = draw("mic", seed)["links"]["mic"]
        y = apply_chain("mic", white, SR, seed)
        mid = _band_power(y, 800, 1500) / _band_power(white, 800, 1500)
        low = _band_power(y, 10, 40) / _band_power(white, 10, 40)
        assert _db(low) - _db(mid) < -6, p  # below the high-pass (80-250 Hz)
        if p["lowpass_hz"] < 6500:
            high = _band_power(y, 7200, 7900) / _band_power(white, 7200, 7900)
            assert _db(high) - _db(mid) < -3, p  # above the low-pass


def test_noise_is_added_at_the_drawn_snr() -> None:
    x = _music()
    kinds = set()
    for seed in range(12):
        p = draw("noise", seed)["links"]["noise"]
        kinds.add(p["kind"])
        y = apply_chain("noise", x, SR, seed)
        ref = _round_trip(x, draw("noise", seed)["native_rate"])  # the music alone, as captured
        snr = _db(float(np.mean(ref**2))) - _db(float(np.mean((y - ref) ** 2)))
        assert 15 - 1 <= snr <= 30 + 1 and abs(snr - p["snr_db"]) < 1.0, (p["kind"], snr, p["snr_db"])
    assert kinds == set(chain.NOISE_KINDS)


def _rt60(y: np.ndarray, rate: int) -> float:
    """Schroeder backward integration, -5 to -25 dB, extrapolated to 60 dB (T20)."""
    energy = np.cumsum(y[::-1].astype(np.float64) ** 2)[::-1]
    edc = 10 * np.log10(energy / energy[0] + 1e-30)
    t5, t25 = np.argmax(edc <= -5), np.argmax(edc <= -25)
    return 3.0 * (t25 - t5) / rate


def test_reverb_adds_a_tail_of_the_drawn_rt60() -> None:
    click = np.zeros(3 * SR, dtype=np.float32)
    click[100] = 0.9
    for seed in range(4):
        rt60 = draw("reverb", seed)["links"]["reverb"]["rt60"]
        y = apply_chain("reverb", click, SR, seed)
        assert 0.2 <= rt60 <= 1.2
        tail = float(np.sum(y[100 + SR // 10 :] ** 2)) / float(np.sum(y**2))
        assert tail > 0.01  # energy well after the click: a dry click has none
        assert 0.5 * rt60 < _rt60(y, SR) < 1.6 * rt60, (seed, rt60, _rt60(y, SR))


def test_codec_changes_the_waveform_a_little() -> None:
    x = _music()
    for seed in range(2):
        y = apply_chain("codec", x, SR, seed)
        ref = _round_trip(x, draw("codec", seed)["native_rate"])
        err = _db(float(np.mean((y - ref) ** 2))) - _db(float(np.mean(ref**2)))
        assert -45 < err < -8, err  # lossy, yet the same music (aligned: no encoder delay left)
        assert np.corrcoef(y, ref)[0, 1] > 0.95


def test_room_has_every_link_at_moderate_settings() -> None:
    for seed in range(5):
        links = draw("room", seed)["links"]
        assert set(links) == {"reverb", "mic", "noise", "level", "codec"}
        assert 0.3 <= links["reverb"]["rt60"] <= 0.7 and 20 <= links["noise"]["snr_db"] <= 30
    x = _music()
    y = apply_chain("room", x, SR, 0)
    assert np.max(np.abs(y)) < 10 ** (-11 / 20)


def test_training_draws_vary_the_links() -> None:
    draws = [chain.draw_random(s) for s in range(40)]
    assert {len(d["links"]) for d in draws} >= {1, 2, 3, 4}
    assert chain.fingerprint(draws[0]) == chain.fingerprint(chain.draw_random(0)) != chain.fingerprint(draws[1])
    x = _music(1.0)
    assert np.array_equal(chain.random_chain(x, SR, 7), chain.random_chain(x, SR, 7))


def test_bad_chain_name_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "d" / "happy").mkdir(parents=True)
    code = moodstream.main(["evaluate", str(tmp_path / "d"), "--chain", "bathroom"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "unknown chain 'bathroom'" in err and "room" in err
    with pytest.raises(chain.ChainError):
        apply_chain("bathroom", _music(1.0), SR, 0)


def test_missing_libraries_name_the_extra(tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "d" / "happy").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "pedalboard", None)  # import now fails as if not installed
    code = moodstream.main(["evaluate", str(tmp_path / "d"), "--chain", "room"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "pedalboard" in err and "train" in err


@pytest.mark.slow  # uses the session's tiny model
def test_evaluate_through_a_chain(tiny_model: Path, tiny_model_audio, tmp_path: Path) -> None:
    data = tmp_path / "d"
    for label in ("angry", "happy", "sad"):
        (data / label).mkdir(parents=True)
        sf.write(data / label / "0.wav", tiny_model_audio(label, 4.0, seed=40), SR)
    out, plain = tmp_path / "c.json", tmp_path / "p.json"
    args = ["evaluate", str(data), "--model", str(tiny_model)]
    assert moodstream.main([*args, "--chain", "room", "--chain-seed", "2", "--json", str(out)]) in (0, 1)
    assert moodstream.main([*args, "--json", str(plain)]) == 0
    chained, clean = json.loads(out.read_text()), json.loads(plain.read_text())
    assert chained["chain"] == {"name": "room", "seed": 2} and clean["chain"] == {"name": "none", "seed": None}
    assert set(clean) == set(chained)  # every current key kept
    assert chained["n_clips"] + len(chained["skipped_files"]) == 3


@pytest.mark.slow  # uses the session's tiny model
def test_chain_evaluations_are_cached_per_model_and_hop(
    tiny_model: Path, tiny_model_audio, tmp_path: Path, monkeypatch
) -> None:
    from trainer.common import chains as robustness

    data = tmp_path / "d"
    for label in ("angry", "happy", "sad"):
        (data / label).mkdir(parents=True)
        sf.write(data / label / "0.wav", tiny_model_audio(label, 4.0, seed=41), SR)
    out = tmp_path / "links"
    first = robustness.chain_evaluations(data, tiny_model, out, ("level",), 0, hop_seconds=2.0)
    assert first["level"]["hop_seconds"] == 2.0 and first["level"]["chain"] == {"name": "level", "seed": 0}
    assert first["level"]["stamp"]["hop_seconds"] == 2.0
    assert json.loads((out / "level.json").read_text()) == first["level"]
    import streamer.evaluation.evaluate

    calls = []
    real = streamer.evaluation.evaluate.evaluate
    monkeypatch.setattr(
        streamer.evaluation.evaluate, "evaluate", lambda *a: calls.append(a[2].model.hop_seconds) or real(*a)
    )
    assert robustness.chain_evaluations(data, tiny_model, out, ("level",), 0, hop_seconds=2.0) == first
    assert calls == []  # same file, same hop: reused
    other = robustness.chain_evaluations(data, tiny_model, out, ("level",), 0, hop_seconds=1.0)
    assert calls == [1.0] and other["level"]["hop_seconds"] == 1.0  # another hop: measured again


def test_evaluate_without_a_chain_imports_no_chain_library() -> None:
    import subprocess

    code = (
        "import sys, streamer.evaluation.evaluate; "
        "bad = [m for m in ('tensorflow', 'pedalboard', 'pyroomacoustics', 'scipy') if m in sys.modules]; "
        "sys.exit(str(bad) if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow  # uses the session's tiny model
def test_bench_reports_the_chain_table_of_the_shipped_files_only(tiny_model: Path, tmp_path: Path, monkeypatch) -> None:
    import hashlib
    import shutil

    from bench import chains as bench_chains

    (tmp_path / "models").mkdir()
    shutil.copy(tiny_model, tmp_path / "models" / "a.tflite")
    shutil.copy(tiny_model, tmp_path / "models" / "b.tflite")
    ev = {
        "macro_f1": 0.5,
        "accuracy": 0.5,
        "n_clips": 3,
        "intervals": {"macro_f1": [0.1, 0.9]},
        "group_intervals": None,
    }
    figures = {
        "a.tflite": {
            "sha256": hashlib.sha256(tiny_model.read_bytes()).hexdigest(),
            "candidate": "chain-mix",
            "chains": {c: {**ev, "macro_f1": 0.5 - 0.01 * i} for i, c in enumerate(CHAINS)},
        },
        "b.tflite": {"sha256": "0" * 64, "candidate": "clean", "chains": {"clean": ev}},
    }
    (tmp_path / "models" / "chains.json").write_text(json.dumps(figures))
    monkeypatch.setattr(bench_chains, "ROOT", tmp_path)
    monkeypatch.setattr(bench_chains, "CHAINS_JSON", tmp_path / "models" / "chains.json")
    section = bench_chains.run(quick=True)
    assert list(section.data["models"]) == ["a.tflite"] and "stale rows left out: b.tflite" in section.markdown
    assert "0.450 (0.10-0.90)" in section.markdown  # the codec column (sixth chain)
    hop = section.data["models"]["a.tflite"]["per_hop_ms"]["median"]
    assert 0 < hop < 1000
    by_name = {t["target"]: t for t in section.targets}
    assert by_name["worst single-link chain minus clean, a.tflite"]["value"] == pytest.approx(-0.05)
