"""musicnn's pretrained MSD network (Pons & Serra, ISC licence), rebuilt in Keras 3.

The weights ship inside the ``musicnn==0.1.0`` wheel as TF1 checkpoints, but the wheel pins
``numpy<1.17`` and TensorFlow 1, so it is never installed: :func:`fetch_wheel` downloads the pinned
wheel by version and sha256 into a cache folder (``pip download --no-deps``), :func:`checkpoint_dir`
unpacks the MSD_musicnn checkpoint from it, and :func:`build` rebuilds the graph of the wheel's
``models.py`` (front-end of vertical and horizontal convolutions, residual 1-D mid-end, mean+max
pooling, dense) with the checkpoint's values. ``tf.train.load_checkpoint`` reads a TF1 checkpoint
without its graph. tests/test_musicnn.py holds the rebuild to the original graph's outputs.

``python -m trainer fetch-musicnn`` caches the wheel (`make test` runs it first).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from trainer.common.paths import DOWNLOADS

CACHE = DOWNLOADS / "musicnn"
VERSION = "0.1.0"
WHEEL = f"musicnn-{VERSION}-py3-none-any.whl"
SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
MODEL = "MSD_musicnn"
N_FRAMES = 187  # 3 s patches, as the network was trained
N_MELS = 96
EMBEDDING = 200  # the penultimate layer
# MSD_musicnn = build_musicnn(num_filt_frontend=1.6, num_filt_midend=64, num_units_backend=200)
TIMBRAL = ((7, int(0.4 * N_MELS)), (7, int(0.7 * N_MELS)))  # f74, f77: 204 filters each
TEMPORAL = (128, 64, 32)  # s1, s2, s3: 51 filters each
FRONT_TIMBRAL, FRONT_TEMPORAL, MIDEND, N_TAGS = int(1.6 * 128), int(1.6 * 32), 64, 50


class MusicnnError(RuntimeError):
    """The weights cannot be had (no network, wrong hash), with the reason."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cached_wheel(cache: Path = CACHE) -> Path | None:
    """The verified wheel when it is in the cache, else None (nothing is downloaded)."""
    path = cache / WHEEL
    return path if path.is_file() and _sha256(path) == SHA256 else None


def fetch_wheel(cache: Path = CACHE) -> Path:
    """The pinned wheel, downloaded once (its dependencies are not: they cannot install here)."""
    if found := cached_wheel(cache):
        return found
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", f"musicnn=={VERSION}", "--no-deps", "--only-binary", ":all:"]
    done = subprocess.run([*cmd, "--dest", str(cache), "--quiet"], capture_output=True, text=True)
    path = cache / WHEEL
    if done.returncode != 0 or not path.is_file():
        raise MusicnnError(f"cannot download musicnn=={VERSION}: {done.stderr.strip()[-300:] or 'no wheel'}")
    if (digest := _sha256(path)) != SHA256:
        path.unlink()
        raise MusicnnError(f"{WHEEL}: sha256 {digest}, expected {SHA256}; removed")
    return path


def checkpoint_dir(cache: Path = CACHE) -> Path:
    """The MSD_musicnn checkpoint files, unpacked from the wheel (a folder whose prefix is "")."""
    folder = cache / MODEL
    if not (folder / ".index").is_file():
        with zipfile.ZipFile(fetch_wheel(cache)) as z:
            for name in z.namelist():
                if name.startswith(f"musicnn/{MODEL}/"):
                    target = cache / name.removeprefix("musicnn/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(z.read(name))
    return folder


def checkpoint_values(cache: Path = CACHE) -> dict[str, np.ndarray]:
    """Every variable of the checkpoint by name (without the optimiser's slots)."""
    import tensorflow as tf

    # the prefix is the folder itself ("/.index"); the "checkpoint" file inside names the author's disk
    reader = tf.compat.v1.train.NewCheckpointReader(str(checkpoint_dir(cache)) + "/")
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if "Adam" not in name and "power" not in name
    }


# tf.compat.v1.layers names variables by creation order in build_musicnn; these are that order.
_BN = [f"batch_normalization{'' if i == 0 else f'_{i}'}" for i in range(11)]
_CONV = [f"conv2d{'' if i == 0 else f'_{i}'}" for i in range(8)]


def build(values: dict[str, np.ndarray] | None = None, n_frames: int = N_FRAMES, logits: bool = False):
    """The network as a Keras model: (batch, n_frames, 96) log-mel -> the 200-value penultimate
    layer (``logits=True`` adds the 50 MSD tag logits as a second output). Inference only: batch
    norm in its moving statistics, no dropout. Weights from ``values`` (checkpoint_values())."""
    import keras
    from keras import layers

    values = checkpoint_values() if values is None else values
    prefix = "model/" if any(k.startswith("model/") for k in values) else ""

    def bn(x, name: str):
        layer = layers.BatchNormalization(epsilon=1e-3, name=name)
        y = layer(x)
        layer.set_weights([values[f"{prefix}{name}/{p}"] for p in ("gamma", "beta", "moving_mean", "moving_variance")])
        return y

    def conv2d(x, filters: int, kernel: tuple[int, int], padding: str, name: str):
        layer = layers.Conv2D(filters, kernel, padding=padding, activation="relu", name=name)
        y = layer(x)
        layer.set_weights([values[f"{prefix}{name}/kernel"], values[f"{prefix}{name}/bias"]])
        return y

    def conv1d(x, filters: int, name: str):
        """A [7, channels] 2-D convolution of the original over (time, channel, 1) is a 1-D one."""
        layer = layers.Conv1D(filters, 7, padding="valid", activation="relu", name=name)
        y = layer(layers.ZeroPadding1D(3)(x))
        kernel = values[f"{prefix}{name}/kernel"]  # (7, channels, 1, filters)
        layer.set_weights([kernel[:, :, 0, :], values[f"{prefix}{name}/bias"]])
        return y

    def freq_max(x):
        """Max over the frequency axis as a pooling layer (an op XNNPACK runs), then (T, C)."""
        _, t, f, c = x.shape
        return layers.Reshape((t, c))(layers.MaxPooling2D((1, f))(x))

    inp = keras.Input((n_frames, N_MELS), name="logmel")
    x = bn(layers.Reshape((n_frames, N_MELS, 1))(inp), _BN[0])
    padded = layers.ZeroPadding2D(((3, 3), (0, 0)))(x)
    front = []
    for k, kernel in enumerate(TIMBRAL):
        front.append(freq_max(bn(conv2d(padded, FRONT_TIMBRAL, kernel, "valid", _CONV[k]), _BN[1 + k])))
    for k, length in enumerate(TEMPORAL):
        front.append(freq_max(bn(conv2d(x, FRONT_TEMPORAL, (length, 1), "same", _CONV[2 + k]), _BN[3 + k])))
    front_out = layers.Concatenate(axis=-1)(front)  # (T, 561)
    c1 = bn(conv1d(front_out, MIDEND, _CONV[5]), _BN[6])
    c2 = layers.Add()([bn(conv1d(c1, MIDEND, _CONV[6]), _BN[7]), c1])
    c3 = layers.Add()([bn(conv1d(c2, MIDEND, _CONV[7]), _BN[8]), c2])
    mid = layers.Concatenate(axis=-1)([front_out, c1, c2, c3])  # (T, 753)
    # the original concatenates max and mean on a trailing axis and flattens: interleaved per channel
    width = mid.shape[-1]
    stacked = [
        layers.Reshape((width, 1))(pool()(mid)) for pool in (layers.GlobalMaxPooling1D, layers.GlobalAveragePooling1D)
    ]
    pooled = layers.Flatten()(layers.Concatenate(axis=-1)(stacked))
    pooled = bn(pooled, _BN[9])
    dense = layers.Dense(EMBEDDING, activation="relu", name="dense")
    hidden = dense(pooled)
    dense.set_weights([values[f"{prefix}dense/kernel"], values[f"{prefix}dense/bias"]])
    penultimate = bn(hidden, _BN[10])
    outputs = [penultimate]
    if logits:
        tags = layers.Dense(N_TAGS, name="dense_1")
        outputs.append(tags(penultimate))
        tags.set_weights([values[f"{prefix}dense_1/kernel"], values[f"{prefix}dense_1/bias"]])
    return keras.Model(inp, outputs if logits else penultimate, name="musicnn_msd")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m trainer fetch-musicnn", description="download and verify musicnn's pinned wheel into the cache"
    )
    p.add_argument("--cache", type=Path, default=CACHE)
    args = p.parse_args(argv)
    try:
        print(checkpoint_dir(args.cache))
    except (MusicnnError, OSError, zipfile.BadZipFile) as exc:
        print(f"musicnn: {exc}", file=sys.stderr)
        return 1
    return 0
