"""What happens between a loudspeaker and the daemon, simulated: named, seeded capture chains.

A chain takes clean music, plays it at a native capture rate (44.1 or 48 kHz, drawn), passes it
through its links and hands back what the daemon would compute features on: float32 mono at
16 kHz, brought down by the daemon's own streaming resampler (soxr, as a sound-card source does).

Chains (each link's parameters drawn from a generator seeded by ``seed``):

- ``clean``: nothing; only brought to 16 kHz if it is not there already.
- ``level``: native-rate capture, peak set to -30 to -10 dBFS (a quiet USB microphone).
- ``mic``: loudspeaker and microphone responses (pedalboard): high-pass 80-250 Hz, low-pass
  5-12 kHz, a presence bump of +3 to +8 dB at 2-5 kHz, a tilt of -4 to +4 dB (shelves), an AGC
  (compressor) and soft clipping of the top 1-4 dB of the peaks.
- ``noise``: one of coloured noise (white to brown), mains hum with harmonics, fan-like band
  noise or chatter-like modulated noise (numpy), at 15-30 dB SNR.
- ``reverb``: a shoebox room (pyroomacoustics, image sources): random size, RT60 0.2-1.2 s,
  random source and microphone positions.
- ``codec``: MP3 re-encoding at a low bit rate (pedalboard's LAME, VBR quality 7-9: about
  64-100 kbit/s).
- ``room``: all of them together at moderate settings (RT60 0.3-0.7 s, SNR 20-30 dB, peak -25
  to -12 dBFS, milder microphone).

The training augmentation (:func:`random_chain`) draws the same links more widely: each link
present or not, RT60 up to 1.2 s, SNR 0-40 dB, peak -45 to 0 dBFS.

pyroomacoustics and pedalboard (and scipy) are in the ``train`` extra and imported only when a
chain needs them; the noise is numpy. The daemon never imports this module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import soxr

CHAINS: tuple[str, ...] = ("clean", "level", "mic", "noise", "reverb", "codec", "room")
RATE = 16000
NATIVE_RATES = (44100, 48000)
NOISE_KINDS = ("coloured", "hum", "fan", "chatter")
EXTRA = "train"
VERSION = 1  # bump when a chain's behaviour changes: cached augmented features key on it


class ChainError(ValueError):
    """An unknown chain name, or the chain's libraries missing."""


def check_available() -> None:
    """Raise ChainError (one line, naming the extra) unless the chain libraries import."""
    missing = []
    for module in ("pyroomacoustics", "pedalboard", "scipy"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ChainError(
            f"capture chains need {', '.join(missing)}: install the '{EXTRA}' extra (pip install 'moodstream[{EXTRA}]')"
        )


def check_name(name: str) -> None:
    if name not in CHAINS:
        raise ChainError(f"unknown chain {name!r} (choose from: {', '.join(CHAINS)})")


# ---------------------------------------------------------------------------------------- drawing


def draw(name: str, seed: int) -> dict[str, Any]:
    """The parameters of chain ``name`` for ``seed`` (plain JSON values: they key caches)."""
    check_name(name)
    rng = np.random.default_rng([VERSION, CHAINS.index(name), seed])
    links: dict[str, Any] = {}
    if name == "clean":
        return {"chain": name, "seed": seed, "native_rate": None, "links": links}
    native = int(rng.choice(NATIVE_RATES))
    if name in ("reverb", "room"):
        links["reverb"] = _draw_reverb(rng, (0.2, 1.2) if name == "reverb" else (0.3, 0.7))
    if name in ("mic", "room"):
        links["mic"] = _draw_mic(rng, mild=name == "room")
    if name in ("noise", "room"):
        links["noise"] = _draw_noise(rng, (15.0, 30.0) if name == "noise" else (20.0, 30.0))
    if name in ("level", "room"):
        links["level"] = {"peak_dbfs": float(rng.uniform(*((-30.0, -10.0) if name == "level" else (-25.0, -12.0))))}
    if name in ("codec", "room"):
        links["codec"] = {"vbr_quality": float(rng.uniform(7.0, 9.0))}
    return {"chain": name, "seed": seed, "native_rate": native, "links": links}


def draw_random(seed: int) -> dict[str, Any]:
    """A training draw: each link present with a fixed chance, at wide settings."""
    rng = np.random.default_rng([VERSION, 99, seed])
    links: dict[str, Any] = {}
    if rng.random() < 0.6:
        links["reverb"] = _draw_reverb(rng, (0.2, 1.2))
    if rng.random() < 0.7:
        links["mic"] = _draw_mic(rng, mild=False)
    if rng.random() < 0.6:
        links["noise"] = _draw_noise(rng, (0.0, 40.0))
    if rng.random() < 0.8:
        links["level"] = {"peak_dbfs": float(rng.uniform(-45.0, 0.0))}
    if rng.random() < 0.3:
        links["codec"] = {"vbr_quality": float(rng.uniform(6.0, 9.5))}
    return {"chain": "random", "seed": seed, "native_rate": int(rng.choice(NATIVE_RATES)), "links": links}


def _draw_reverb(rng: np.random.Generator, rt60: tuple[float, float]) -> dict[str, Any]:
    size = [float(rng.uniform(3.0, 9.0)), float(rng.uniform(2.5, 7.0)), float(rng.uniform(2.4, 3.5))]

    def spot() -> list[float]:  # at least 0.5 m from every wall
        return [float(rng.uniform(0.5, s - 0.5)) for s in size]

    return {"rt60": float(rng.uniform(*rt60)), "room": size, "source": spot(), "mic": spot()}


def _draw_mic(rng: np.random.Generator, mild: bool) -> dict[str, Any]:
    return {
        "highpass_hz": float(rng.uniform(80.0, 180.0 if mild else 250.0)),
        "lowpass_hz": float(rng.uniform(7000.0 if mild else 5000.0, 12000.0)),
        "presence_hz": float(rng.uniform(2000.0, 5000.0)),
        "presence_db": float(rng.uniform(3.0, 6.0 if mild else 8.0)),
        "tilt_db": float(rng.uniform(-4.0, 4.0)),
        "agc_threshold_db": float(rng.uniform(-30.0, -15.0)),
        "agc_ratio": float(rng.uniform(2.0, 6.0)),
        "clip_db": float(rng.uniform(1.0, 4.0)),  # how far below the peak the clipping starts
    }


def _draw_noise(rng: np.random.Generator, snr: tuple[float, float]) -> dict[str, Any]:
    kind = str(rng.choice(NOISE_KINDS))
    return {
        "kind": kind,
        "snr_db": float(rng.uniform(*snr)),
        "exponent": float(rng.uniform(0.0, 2.0)),  # coloured: 1/f**exponent power (0 white, 2 brown)
        "mains_hz": float(rng.choice((50.0, 60.0))),
        "band_hz": [float(rng.uniform(80.0, 300.0)), float(rng.uniform(600.0, 2500.0))],
        "rate_hz": float(rng.uniform(3.0, 6.0)),  # chatter: syllable-like modulation
        "seed": int(rng.integers(2**31)),
    }


def fingerprint(params: dict[str, Any]) -> str:
    """A short stable hash of a draw (cache keys)."""
    return hashlib.sha1(json.dumps([VERSION, params], sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------- applying


def clip_seed(seed: int, name: str) -> int:
    """Each clip its own draw of a chain, the same whatever folder or order it is found in (evaluate
    and the trainer's room embeddings draw the same rooms)."""
    return int.from_bytes(hashlib.sha1(f"{seed}:{name}".encode()).digest()[:4], "little")


def apply_chain(name: str, audio: np.ndarray, sample_rate: int, seed: int) -> np.ndarray:
    """Chain ``name`` drawn with ``seed`` applied to mono ``audio`` at ``sample_rate``: float32
    mono at 16 kHz, ready for the daemon's pipeline."""
    params = draw(name, seed)
    if name != "clean":
        check_available()
    return render(params, audio, sample_rate)


def random_chain(audio: np.ndarray, sample_rate: int, seed: int) -> np.ndarray:
    """A random training draw (:func:`draw_random`) applied, 16 kHz float32 out."""
    check_available()
    return render(draw_random(seed), audio, sample_rate)


def render(params: dict[str, Any], audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Apply drawn parameters: play at the native rate, room, microphone, noise, level, codec,
    then the daemon's resampling to 16 kHz."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"a chain needs mono audio (1-D), got shape {x.shape}")
    native = params["native_rate"]
    if native is None:
        return _to_daemon_rate(x, sample_rate)
    links = params["links"]
    y = soxr.resample(x, sample_rate, native, quality="HQ").astype(np.float32)
    peak_in = max(float(np.max(np.abs(y))), 1e-9) if y.size else 1e-9
    steps: list[tuple[str, Callable[[np.ndarray, dict[str, Any], int], np.ndarray]]] = [
        ("reverb", _reverb),
        ("noise", _noise),
        ("mic", _mic),
        ("level", _level),
        ("codec", _codec),
    ]
    for link, fn in steps:
        if link in links and y.size:
            y = fn(y, links[link], native)
            if link == "reverb":  # the room is heard at the level the music was played at
                y *= peak_in / max(float(np.max(np.abs(y))), 1e-9)
    y = np.clip(y, -1.0, 1.0)
    return _to_daemon_rate(y, native)


def _to_daemon_rate(x: np.ndarray, rate: int) -> np.ndarray:
    """The daemon's sound-card path: soxr.ResampleStream to 16 kHz (streamer.audio.sources._Mixer)."""
    if rate == RATE:
        return np.array(x, dtype=np.float32)
    stream = soxr.ResampleStream(rate, RATE, 1, "float32")
    return stream.resample_chunk(np.ascontiguousarray(x, dtype=np.float32), last=True).astype(np.float32)


def _reverb(x: np.ndarray, p: dict[str, Any], rate: int) -> np.ndarray:
    rir = room_impulse_response(p, rate)
    from scipy.signal import fftconvolve

    return fftconvolve(x, rir)[: x.size].astype(np.float32)


def room_impulse_response(p: dict[str, Any], rate: int) -> np.ndarray:
    """The shoebox's impulse response from source to microphone (image sources, absorption from
    Sabine's formula for the drawn RT60)."""
    import pyroomacoustics as pra

    absorption, max_order = pra.inverse_sabine(p["rt60"], p["room"])
    room = pra.ShoeBox(
        p["room"], fs=rate, materials=pra.Material(absorption), max_order=min(max_order, 40), use_rand_ism=False
    )
    room.add_source(p["source"])
    room.add_microphone(p["mic"])
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    return rir / max(float(np.max(np.abs(rir))), 1e-12)


def _mic(x: np.ndarray, p: dict[str, Any], rate: int) -> np.ndarray:
    import pedalboard as pb

    board = pb.Pedalboard(
        [
            pb.HighpassFilter(cutoff_frequency_hz=p["highpass_hz"]),
            pb.LowpassFilter(cutoff_frequency_hz=p["lowpass_hz"]),
            pb.PeakFilter(cutoff_frequency_hz=p["presence_hz"], gain_db=p["presence_db"], q=1.0),
            pb.LowShelfFilter(cutoff_frequency_hz=300.0, gain_db=-p["tilt_db"] / 2),
            pb.HighShelfFilter(cutoff_frequency_hz=3000.0, gain_db=p["tilt_db"] / 2),
        ]
    )
    y = board(x.astype(np.float32), rate)
    y *= 1.0 / max(float(np.max(np.abs(y))), 1e-9)  # the preamp brings the peak to full scale
    agc = pb.Pedalboard(
        [pb.Compressor(threshold_db=p["agc_threshold_db"], ratio=p["agc_ratio"], attack_ms=10.0, release_ms=300.0)]
    )
    y = agc(y, rate)
    peak = max(float(np.max(np.abs(y))), 1e-9)
    ceiling = peak * 10 ** (-p["clip_db"] / 20)
    return (np.tanh(y / ceiling) * ceiling).astype(np.float32)


def _level(x: np.ndarray, p: dict[str, Any], rate: int) -> np.ndarray:
    peak = max(float(np.max(np.abs(x))), 1e-9)
    return (x * (10 ** (p["peak_dbfs"] / 20) / peak)).astype(np.float32)


def _codec(x: np.ndarray, p: dict[str, Any], rate: int) -> np.ndarray:
    import pedalboard as pb

    peak = float(np.max(np.abs(x)))
    scale = 0.9 / peak if peak > 0.9 else 1.0  # the encoder clips at full scale
    y = pb.MP3Compressor(vbr_quality=p["vbr_quality"])((x * scale).astype(np.float32), rate)
    return (np.asarray(y, dtype=np.float32).reshape(-1)[: x.size] / scale).astype(np.float32)


def _noise(x: np.ndarray, p: dict[str, Any], rate: int) -> np.ndarray:
    n = noise(p, x.size, rate)
    # the SNR as the daemon hears it: powers below its 8 kHz Nyquist (white noise at 48 kHz has
    # two thirds of its power above that)
    signal_power = float(np.mean(np.square(soxr.resample(x, rate, RATE), dtype=np.float64)))
    noise_power = max(float(np.mean(np.square(soxr.resample(n, rate, RATE), dtype=np.float64))), 1e-20)
    gain = np.sqrt(signal_power / noise_power / 10 ** (p["snr_db"] / 10))
    return (x + gain * n).astype(np.float32)


def noise(p: dict[str, Any], n: int, rate: int) -> np.ndarray:
    """Unscaled noise of the drawn kind (its level is set by the SNR)."""
    rng = np.random.default_rng(p["seed"])
    t = np.arange(n) / rate
    kind = p["kind"]
    if kind == "hum":
        f0 = p["mains_hz"]
        phases = rng.uniform(0, 2 * np.pi, 8)
        return sum(
            (0.6**k) * np.sin(2 * np.pi * f0 * (k + 1) * t + phases[k]) for k in range(8) if f0 * (k + 1) < rate / 2
        )
    if kind == "coloured":
        return _shaped(rng.standard_normal(n), rate, lambda f: np.maximum(f, 20.0) ** (-p["exponent"] / 2))
    if kind == "fan":
        lo, hi = p["band_hz"]
        band = _shaped(rng.standard_normal(n), rate, lambda f: ((f >= lo) & (f <= hi)).astype(float))
        wobble = 1.0 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t)  # blade and airflow beat
        return band * wobble
    # chatter: speech-shaped noise (300-3400 Hz, falling) switched by syllable-rate envelopes
    speechy = _shaped(rng.standard_normal(n), rate, lambda f: ((f >= 300) & (f <= 3400)) / np.maximum(f, 300) ** 0.5)
    envelope = np.zeros(n)
    for _ in range(3):  # a few voices
        rate_hz = p["rate_hz"] * rng.uniform(0.8, 1.2)
        envelope += np.clip(np.sin(2 * np.pi * rate_hz * t + rng.uniform(0, 2 * np.pi)), 0, None) ** 2
    return speechy * envelope


def _shaped(white: np.ndarray, rate: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(white.size, 1.0 / rate)
    return np.fft.irfft(spectrum * gain(freqs), n=white.size)
