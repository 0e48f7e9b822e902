"""A distilled student of musicnn's MSD network (issue 18): a small int8-friendly CNN that learns
the frozen teacher's 200-value penultimate embedding of a 3 s log-mel patch, and invariance to the
capture chain, so that the musicnn family fits the daemon's 10 ms per hop budget.

Data (:func:`distillation_clips`): the clips of the training parts of the 3- and 4-class splits
(trainer.families.musicnn.embeddings.load_split, artist-disjoint, seed 0) minus every clip that is in a validation or
test part of either split; early stopping on the validation parts' clips (minus any test clip).
That first student chooses the epochs and the head's C; the student that ships is distilled again
on both (:func:`refitted_student`: every clip but the test parts) for those epochs.
Per clip, a patch (187 frames, streamer.features.logmel.model_input) every ``STUDENT_STRIDE_S`` seconds of the
clean audio and of ``AUGMENT_K`` streamer.audio.chain.random_chain draws (trainer.families.musicnn.embeddings's
``augment-k`` conditions). Target of every patch, clean or augmented: the teacher's (float TFLite,
trainer.families.musicnn.embeddings.Embedder) embedding of the *clean* patch at the same position. Inputs (float16)
and targets are cached per clip under ``runs/cache/student/`` (keyed by the file's content, the
condition and the log-mel settings), the trained student too, so a rerun resumes.

Then a logistic-regression head per label set over the student's embeddings (train + val parts,
clean + augmented; C chosen on the val part with the first student) and one int8 TFLite file
(student + head) with the ``musicnn_logmel`` metadata, as trainer.families.musicnn.head exports the teacher;
beside it, its held-out twin (:func:`export_tuning`), on which the live study and the calibration
choose what follows the model.

``python -m trainer student --labels angry,happy,sad --out runs/models/student-3class``
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamer.audio.decode import AudioError, load_audio
from streamer.features.logmel import LogMelConfig
from streamer.util.atomic import write_atomic
from trainer.common.cache import content_digest, save_array
from trainer.common.dataset import Clip
from trainer.common.heads import CS, clip_f1, fit_head, head_weights
from trainer.common.paths import RUN_CACHE, TUNING
from trainer.common.split import Split, load_split
from trainer.families.musicnn.embeddings import EVALUATE_HOP_S, PATCH_FRAMES, WINDOW_S, condition_audio, patches

log = logging.getLogger(__name__)

CACHE = RUN_CACHE / "student"
CACHE_VERSION = 1
STUDENT_STRIDE_S = 3.0  # between a clip's patches (10 per 30 s clip)
AUGMENT_K = 2  # random_chain draws per clip (augment-0 .. augment-{K-1})
EMBEDDING = 200
LABEL_SETS = (("angry", "happy", "sad"), ("angry", "happy", "sad", "calm"))
WIDTH = 32  # channels of the first blocks (doubling twice, then 8x): ~27 M multiply-adds per patch
BUDGET_S = 1800.0  # distillation's wall-clock limit
# Keras's default 0.99 lags a few hundred steps per epoch behind weights that move fast: the
# validation loss (moving statistics) rose while the training loss fell
BN_MOMENTUM = 0.9
LOSSES = {"mse": "mse", "cosine": "cosine_similarity"}  # keras's cosine_similarity loss is -cos
ARCHITECTURE = "musicnn_student+logreg"
MAC_BOUND = 80_000_000  # multiply-adds per patch the student must stay under (the teacher: ~1.4 G)


# ---------------------------------------------------------------- data


def distillation_clips(splits: list[Split]) -> tuple[list[Clip], list[Clip]]:
    """(train, val) clips for distillation: the union of the splits' training parts minus every
    clip in any validation or test part; the union of the validation parts minus any test clip
    (a clip in one split's validation part and the other's training part is in neither the
    distillation's training clips nor a test part)."""
    parts: dict[str, dict[Path, Clip]] = {"train": {}, "val": {}, "test": {}}
    for split in splits:
        for part, ix in split.parts.items():
            for i in ix:
                parts[part][split.clips[i].path] = split.clips[i]
    held = set(parts["val"]) | set(parts["test"])
    train = [c for p, c in sorted(parts["train"].items()) if p not in held]
    val = [c for p, c in sorted(parts["val"].items()) if p not in parts["test"]]
    return train, val


def _key(content: str, what: str, config: LogMelConfig) -> str:
    ident = json.dumps([CACHE_VERSION, content, what, config.to_dict(), STUDENT_STRIDE_S, PATCH_FRAMES], sort_keys=True)
    return hashlib.sha1(ident.encode()).hexdigest()


def conditions(k: int = AUGMENT_K) -> tuple[str, ...]:
    return ("clean", *(f"augment-{j}" for j in range(k)))


class ClipData:
    """One clip's cached patches: ``inputs[condition]`` (n, 187, 96) float16 and ``target`` (n, 200)
    float32, the teacher's embedding of the clean patches (n equal across conditions)."""

    def __init__(self, inputs: dict[str, np.ndarray], target: np.ndarray) -> None:
        n = min([len(target), *(len(x) for x in inputs.values())])
        self.inputs = {c: x[:n] for c, x in inputs.items()}
        self.target = target[:n]


def build(
    clips: list[Clip],
    conds: tuple[str, ...],
    config: LogMelConfig,
    cache: Path = CACHE,
    teacher=None,
    only_cached: bool = False,
) -> dict[Path, ClipData]:
    """path -> ClipData for ``clips`` under ``conds`` (``clean`` always included): computed where
    missing (the capture chain is the slow part: seconds per clip), or with ``only_cached`` just what
    the cache holds already (a clip whose augmented copies are missing keeps its clean patches)."""
    out: dict[Path, ClipData] = {}
    t0, done = time.perf_counter(), 0
    for clip in clips:
        content = content_digest(clip.path)
        tfile = cache / "teacher" / f"{_key(content, 'clean', config)}.npy"
        files = {c: cache / "inputs" / f"{_key(content, c, config)}.npy" for c in ("clean", *conds)}
        missing = [c for c, f in files.items() if not f.is_file()]
        if only_cached and (not tfile.is_file() or "clean" in missing):
            continue
        inputs = {c: np.load(f) for c, f in files.items() if c not in missing}
        if missing and not only_cached:
            try:
                audio = load_audio(clip.path, config.sample_rate)
                for c in missing:
                    x = patches(condition_audio(audio, c, clip.path.name), config, STUDENT_STRIDE_S)
                    if x is None:
                        raise ValueError("shorter than one patch")
                    inputs[c] = x.astype(np.float16)
                    save_array(files[c], inputs[c])
            except (AudioError, ValueError) as exc:
                log.warning("%s: skipped (%s)", clip.path, exc)
                continue
            done += 1
        if tfile.is_file():
            target = np.load(tfile)
        else:
            if teacher is None:
                from trainer.families.musicnn.embeddings import Embedder

                teacher = Embedder()
            clean = patches(load_audio(clip.path, config.sample_rate), config, STUDENT_STRIDE_S)
            target = teacher(clean).astype(np.float32)
            save_array(tfile, target)
        out[clip.path] = ClipData({c: x for c, x in inputs.items() if c in ("clean", *conds)}, target)
        if done and done % 25 == 0:
            log.info("%d clips built, %.1f s per clip", done, (time.perf_counter() - t0) / done)
    return out


def stack(data: dict[Path, ClipData], conds: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of every patch of ``data`` under ``conds`` (a clip without a condition's
    copy contributes its other conditions)."""
    xs, ys = [], []
    for d in data.values():
        for c in conds:
            if c in d.inputs:
                xs.append(d.inputs[c])
                ys.append(d.target)
    return np.concatenate(xs), np.concatenate(ys)


# ---------------------------------------------------------------- the student network


def build_student(width: int = 32, dense: int = 256, embedding: int = EMBEDDING):
    """A small CNN on (187, 96) log-mel: a strided 3x3 convolution, separable 3x3 blocks with
    pooling between them, mean + max pooling over time and frequency, two dense layers to the
    200-value embedding. Only ops that quantise to int8 in TFLite (conv, depthwise, pooling,
    dense, ReLU; BatchNorm folds into the convolutions)."""
    import keras
    from keras import layers

    inp = keras.Input((PATCH_FRAMES, 96), name="logmel")
    x = layers.Reshape((PATCH_FRAMES, 96, 1))(inp)
    bn = functools.partial(layers.BatchNormalization, momentum=BN_MOMENTUM)

    def conv(x, filters, kernel, strides=1, name=""):
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
        x = bn(name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)

    def sep(x, filters, name):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(x)
        x = bn(name=f"{name}_dw_bn")(x)
        x = layers.ReLU(name=f"{name}_dw_relu")(x)
        return conv(x, filters, 1, name=f"{name}_pw")

    x = conv(x, width, (5, 5), strides=2, name="stem")  # (94, 48)
    x = sep(x, width, "b1")
    x = layers.MaxPooling2D(2, name="pool1")(x)  # (47, 24)
    x = sep(x, 2 * width, "b2")
    x = sep(x, 2 * width, "b3")
    x = layers.MaxPooling2D(2, name="pool2")(x)  # (23, 12)
    x = sep(x, 4 * width, "b4")
    x = sep(x, 4 * width, "b5")
    x = layers.MaxPooling2D(2, name="pool3")(x)  # (11, 6)
    x = sep(x, 8 * width, "b6")
    pooled = layers.Concatenate(name="pool")(
        [layers.GlobalAveragePooling2D(name="mean")(x), layers.GlobalMaxPooling2D(name="max")(x)]
    )
    x = layers.Dense(dense, name="fc")(pooled)
    x = bn(name="fc_bn")(x)
    x = layers.ReLU(name="fc_relu")(x)
    out = layers.Dense(embedding, name="embedding")(x)
    return keras.Model(inp, out, name="musicnn_student")


def count_macs(model) -> int:
    """Multiply-adds of one forward pass (convolutions, depthwise, dense; batch 1). BatchNorm folds
    into the convolutions when converted; any other layer with weights is refused, not skipped."""
    from keras import layers

    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * c * kh * kw
        elif isinstance(layer, layers.Conv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * c * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, layers.Dense):
            total += layer.input.shape[-1] * layer.units
        elif layer.weights and not isinstance(layer, layers.BatchNormalization):
            raise ValueError(f"count_macs: no rule for {layer.__class__.__name__} ({layer.name})")
    return int(total)


def lr_cuts(val_loss: list[float]) -> list[int]:
    """The epochs (1-based) after which :func:`distil` divides the learning rate by 3: every
    second epoch without a new best validation loss. A refit without validation replays them."""
    cuts = []
    for n in range(1, len(val_loss) + 1):
        stale = n - 1 - int(np.argmin(val_loss[:n]))  # epochs since the best (a tie is no progress)
        if stale and stale % 2 == 0:
            cuts.append(n)
    return cuts


def distil(
    model,
    train: list[np.ndarray],
    y: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    epochs: int = 40,
    patience: int = 4,
    batch: int = 64,
    lr: float = 2e-3,
    loss: str = "mse",
    budget_s: float = 1800.0,
    seed: int = 0,
    cuts: list[int] | None = None,
) -> dict[str, Any]:
    """Adam on ``loss`` (MSE, or cosine distance) against the (already standardised) teacher
    embeddings ``y``. ``train`` holds the
    patches under each condition, clean first, every one aligned with ``y``: an epoch is the clean
    patches plus one augmented draw of each (draw ``epoch % K``), so K draws cost no more per epoch
    than one. Early stopping on the validation loss (best weights kept), the learning rate cut by
    3 after 2 epochs without progress (:func:`lr_cuts`), and a wall-clock budget (the 2 shared
    cores). Without validation (``x_val`` None: the refit on every clip) it runs ``epochs`` with
    the learning rate cut after the epochs in ``cuts`` and keeps the last weights."""
    import keras

    keras.utils.set_random_seed(seed)
    optimizer = keras.optimizers.Adam(lr)
    model.compile(optimizer=optimizer, loss=LOSSES[loss])
    t0 = time.perf_counter()
    history: dict[str, list[float]] = {"loss": [], "val_loss": []}
    best_weights, stopped = model.get_weights(), "epochs"
    for epoch in range(epochs):
        augmented = train[1 + epoch % (len(train) - 1)] if len(train) > 1 else train[0][:0]
        x = np.concatenate([train[0], augmented]).astype(np.float32)
        fit = model.fit(x, np.concatenate([y, y[: len(augmented)]]), epochs=1, batch_size=batch, verbose=0)
        del x
        history["loss"].append(float(fit.history["loss"][-1]))
        if x_val is None:
            log.info("epoch %d: loss %.4f (%.0f s)", epoch + 1, history["loss"][-1], time.perf_counter() - t0)
            if epoch + 1 in (cuts or []):
                optimizer.learning_rate.assign(float(optimizer.learning_rate) / 3)
        else:
            val = float(model.evaluate(x_val, y_val, batch_size=256, verbose=0))
            history["val_loss"].append(val)
            log.info(
                "epoch %d: loss %.4f val %.4f (%.0f s)", epoch + 1, history["loss"][-1], val, time.perf_counter() - t0
            )
            stale = epoch - int(np.argmin(history["val_loss"]))
            if not stale:
                best_weights = model.get_weights()
            elif lr_cuts(history["val_loss"])[-1:] == [epoch + 1]:
                optimizer.learning_rate.assign(float(optimizer.learning_rate) / 3)
            if stale >= patience:
                stopped = "early stopping"
                break
        if time.perf_counter() - t0 > budget_s:
            stopped = "time budget"
            break
    if x_val is not None:
        model.set_weights(best_weights)
    return {
        "epochs": len(history["loss"]),
        "best_epoch": int(np.argmin(history["val_loss"])) + 1 if history["val_loss"] else len(history["loss"]),
        "stopped_by": stopped,
        "seconds": time.perf_counter() - t0,
        **history,
    }


# ---------------------------------------------------------------- the student, trained once for every label set


def _student_key(
    config: LogMelConfig,
    train: list[Clip],
    k: int,
    width: int,
    loss: str = "mse",
    refit_epochs: int = 0,
    targets: dict[str, Any] | None = None,
) -> str:
    parts = [CACHE_VERSION, config.to_dict(), sorted(c.path.name for c in train), k, width, STUDENT_STRIDE_S, loss]
    parts += [["refit", refit_epochs]] if refit_epochs else []
    parts += [["targets", targets]] if targets else []  # musicnn's own targets are keyed without it
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:16]


class Targets:
    """What the student learns to output for a clean patch. Default: musicnn's embedding, as
    :func:`build` caches it. With AudioSet teachers (trainer.families.musicnn.teachers): their
    embeddings of the patch side by side, each teacher's block scaled after standardisation so that
    every teacher weighs the same in the loss whatever its width (YAMNet's 1024 values would
    otherwise drown musicnn's 200)."""

    def __init__(self, names: tuple[str, ...] = ("musicnn",), local: Path | None = None) -> None:
        from trainer.families.musicnn.teachers import CACHE as TEACHER_CACHE

        self.names, self.local, self.cache = names, local, TEACHER_CACHE
        self.provenance: dict[str, dict[str, str]] = {}
        self._teachers: list[Any] | None = None

    @property
    def default(self) -> bool:
        return self.names == ("musicnn",)

    def key(self) -> dict[str, Any] | None:
        """What distinguishes these targets in the student's cache key (None: musicnn's own)."""
        if self.default:
            return None
        return {"teachers": list(self.names), "weights": {n: p["sha256"] for n, p in self.provenance.items()}}

    def load(self, config: LogMelConfig) -> Targets:
        if not self.default and self._teachers is None:
            from trainer.families.musicnn.teachers import load_teachers

            self._teachers, self.provenance = load_teachers(self.names, config, self.local)
        return self

    def apply(self, data: dict[Path, ClipData]) -> dict[Path, ClipData]:
        """``data`` with the teachers' embeddings of each clip's clean patches as its targets."""
        if self.default:
            return data
        from trainer.common.dataset import Clip as _Clip
        from trainer.families.musicnn.teachers import embed

        assert self._teachers is not None, "Targets.load first"
        clips = [_Clip(path, "", "") for path in data]
        found = embed(clips, "clean", self._teachers, cache=self.cache)
        out = {}
        for path, d in data.items():
            if all(path in found[n] for n in self.names):
                n = min(len(d.target), *(len(found[t][path]) for t in self.names))
                out[path] = ClipData(d.inputs, np.concatenate([found[t][path][:n] for t in self.names], axis=1))
        return out

    def scale(self, dims: int) -> np.ndarray:
        """Per output value, the factor on the standardised target: sqrt(total / (teachers * width))."""
        if self.default:
            return np.ones(dims, np.float32)
        from trainer.families.musicnn.teachers import DIMS

        widths = [DIMS[n] for n in self.names]
        return np.concatenate([np.full(w, np.sqrt(sum(widths) / (len(widths) * w))) for w in widths]).astype(np.float32)

    def describe(self) -> str:
        if self.default:
            return "musicnn 0.1.0 MSD_musicnn (float TFLite), penultimate layer (200)"
        from trainer.families.musicnn.teachers import DIMS

        return " + ".join(f"{n} ({DIMS[n]})" for n in self.names) + ", each teacher weighted equally"


def _aligned(data: dict[Path, ClipData], conds: tuple[str, ...]) -> tuple[list[np.ndarray], np.ndarray]:
    """Each condition's patches of the clips that have every draw (so aligned with the targets)."""
    full = [d for d in data.values() if all(c in d.inputs for c in conds)]
    return [np.concatenate([d.inputs[c] for d in full]) for c in conds], np.concatenate([d.target for d in full])


def _save(folder: Path, model, report: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "student.keras")
    write_atomic(folder / "report.json", json.dumps(report, indent=2) + "\n")


def _cached(folder: Path):
    import keras

    if (folder / "student.keras").is_file():
        return keras.models.load_model(folder / "student.keras"), json.loads((folder / "report.json").read_text())
    return None


def trained_student(
    data_dir: Path,
    config: LogMelConfig,
    cache: Path = CACHE,
    k: int = AUGMENT_K,
    width: int = WIDTH,
    budget_s: float = BUDGET_S,
    loss: str = "mse",
    targets: Targets | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The student distilled on the training clips of :func:`distillation_clips` with early
    stopping on its validation clips (cached: trained once). It chooses the epochs and the head's
    C; :func:`refitted_student` is the one that ships."""
    targets = (targets or Targets()).load(config)
    splits = [load_split(data_dir, list(labels)) for labels in LABEL_SETS]
    train, val = distillation_clips(splits)
    folder = cache / "students" / _student_key(config, train, k, width, loss, targets=targets.key())
    if found := _cached(folder):
        return found
    conds = conditions(k)
    x, y = _aligned(targets.apply(build(train, conds, config, cache)), conds)
    va = targets.apply(build(val, conds[:2], config, cache))
    x_val, y_val = stack(va, conds[:2])
    x_val = x_val.astype(np.float32)
    mean, std = y.mean(axis=0), (y.std(axis=0) + 1e-6) / targets.scale(y.shape[1])
    log.info("distilling on %d patches each draw, validating on %d patches", len(y), len(x_val))
    model = build_student(width, embedding=y.shape[1])
    history = distil(model, x, (y - mean) / std, x_val, (y_val - mean) / std, budget_s=budget_s, loss=loss)
    pred = model.predict(x_val, batch_size=256, verbose=0) * std + mean
    cos = np.sum(pred * y_val, axis=1) / (np.linalg.norm(pred, axis=1) * np.linalg.norm(y_val, axis=1) + 1e-9)
    report = {
        "train_clips": len(train),
        "train_patches_per_condition": len(y),
        "val_clips": len(va),
        "val_patches": len(x_val),
        "conditions": list(conds),
        "macs": count_macs(model),
        "params": int(model.count_params()),
        "width": width,
        "history": history,
        "val_cosine_to_teacher": float(np.mean(cos)),
        "loss": loss,
        "targets": targets.describe(),
    }
    _save(folder, model, report)
    return model, report


def refitted_student(
    data_dir: Path,
    config: LogMelConfig,
    first: dict[str, Any],
    cache: Path = CACHE,
    k: int = AUGMENT_K,
    budget_s: float = BUDGET_S,
    targets: Targets | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The student distilled afresh on the training AND validation clips of
    :func:`distillation_clips` (every clip but the test parts: the teacher's targets need no
    label) for the epochs early stopping chose in ``first`` (:func:`trained_student`'s report),
    with its learning-rate cuts replayed (cached). The first run's validation loss fell while its
    training loss was less than half of it: more clips is the lever."""
    splits = [load_split(data_dir, list(labels)) for labels in LABEL_SETS]
    train, val = distillation_clips(splits)
    clips = sorted(train + val, key=lambda c: c.path)
    epochs, width, loss = first["history"]["best_epoch"], first["width"], first.get("loss", "mse")
    targets = (targets or Targets()).load(config)
    folder = cache / "students" / _student_key(config, clips, k, width, loss, epochs, targets.key())
    if found := _cached(folder):
        return found
    conds = conditions(k)
    x, y = _aligned(targets.apply(build(clips, conds, config, cache)), conds)
    mean, std = y.mean(axis=0), (y.std(axis=0) + 1e-6) / targets.scale(y.shape[1])
    cuts = lr_cuts(first["history"]["val_loss"][:epochs])
    log.info("refitting on %d patches each draw for %d epochs (learning rate cut after %s)", len(y), epochs, cuts)
    model = build_student(width, embedding=y.shape[1])
    history = distil(model, x, (y - mean) / std, None, None, epochs=epochs, budget_s=budget_s, loss=loss, cuts=cuts)
    report = {
        "train_clips": len(clips),
        "train_patches_per_condition": len(y),
        "conditions": list(conds),
        "macs": count_macs(model),
        "params": int(model.count_params()),
        "width": width,
        "history": history,
        "loss": loss,
        "lr_cuts": cuts,
        "targets": targets.describe(),
    }
    _save(folder, model, report)
    return model, report


# ---------------------------------------------------------------- head, export


def with_head(student, head, n_labels: int):
    """The student + the fitted scaler/logistic regression as one softmax dense layer: one model."""
    import keras

    dense = keras.layers.Dense(n_labels, activation="softmax", name="head")
    model = keras.Model(student.input, dense(student.output), name="musicnn_student_head")
    dense.set_weights(list(head_weights(head, n_labels)))
    return model


def export_student(
    model,
    labels: list[str],
    config: LogMelConfig,
    representative: np.ndarray,
    out: Path,
    training: dict[str, Any],
    name: str = "moodstream",
) -> dict[str, Path]:
    """``out``/model-int8.tflite and model-float.tflite with the ``musicnn_logmel`` metadata, as
    trainer.families.musicnn.head exports the teacher (the runner applies the level normalisation and
    the log; the file sees model_input's values unstandardised)."""
    from streamer.model.metadata import FORMAT_VERSION, ModelMetadata
    from trainer.common.export import export

    meta = ModelMetadata(
        format_version=FORMAT_VERSION,
        name=f"{name}-{len(labels)}class-musicnn-student",
        architecture=ARCHITECTURE,
        labels=tuple(labels),
        feature_config=config,
        window_seconds=WINDOW_S,
        window_frames=PATCH_FRAMES,
        mean=(0.0,) * config.n_mels,
        std=(1.0,) * config.n_mels,
        input_quantization=(0.0, 0),
        output_quantization=(0.0, 0),
        train_step_seconds=STUDENT_STRIDE_S,
        training=training,
    )
    out.mkdir(parents=True, exist_ok=True)
    files = {"int8": out / "model-int8.tflite", "float": out / "model-float.tflite"}
    export(model, meta, representative, files["int8"], files["float"])
    return files


def train(
    labels: list[str],
    data_dir: Path,
    out: Path,
    config: LogMelConfig,
    cache: Path = CACHE,
    k: int = AUGMENT_K,
    name: str = "moodstream",
    budget_s: float = BUDGET_S,
    loss: str = "mse",
    targets: Targets | None = None,
) -> dict[str, Any]:
    """C of the head chosen on the validation part over the first student's embeddings (its
    distillation never saw a validation clip); then the refitted student (every non-test clip) and
    its head on the training + validation parts with that C, exported into ``out``."""
    targets = (targets or Targets()).load(config)
    first, first_report = trained_student(data_dir, config, cache, k, budget_s=budget_s, loss=loss, targets=targets)
    student, report = refitted_student(data_dir, config, first_report, cache, k, budget_s=budget_s, targets=targets)
    split = load_split(data_dir, labels)
    conds = conditions(k)
    data = {p: build([split.clips[i] for i in split.parts[p]], conds, config, cache) for p in ("train", "val")}
    label_of = {c.path: labels.index(c.label) for c in split.clips}

    def embed(model, part: str) -> dict[str, dict[Path, np.ndarray]]:
        return _embed(model, data[part], conds)

    def rows_of(*embs: dict[str, dict[Path, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        return _rows(embs, label_of)

    val = embed(first, "val")
    x, y = rows_of(embed(first, "train"))
    rows: list[dict[str, Any]] = []
    for c in CS:
        head = fit_head(x, y, c)
        scores = {cond: clip_f1(head, split, split.parts["val"], val[cond]) for cond in conds}
        mean = float(np.mean([f for f, _ in scores.values()]))
        rows.append({"C": c, "val": {k: {"macro_f1": f, "clips": n} for k, (f, n) in scores.items()}, "mean": mean})
        log.info("C=%g val macro-F1 %s", c, {k: round(f, 3) for k, (f, _) in scores.items()})
    best = max(rows, key=lambda r: r["mean"])
    head = fit_head(*rows_of(embed(student, "train"), embed(student, "val")), best["C"])
    rep = _representative(data["train"])
    training = {
        "data": data_dir.name,
        "protocol": "honest",
        "split": {p: len(ix) for p, ix in split.parts.items()},
        "seed": 0,
        "teacher": targets.describe(),
        **({"teacher_weights": targets.provenance} if targets.provenance else {}),
        "distillation": {
            "loss": f"{report['loss']} on the standardised teacher embedding(s) of the clean patch",
            "inputs": list(conds),
            "clips": report["train_clips"],
            "patches_per_condition": report["train_patches_per_condition"],
            "epochs": report["history"]["epochs"],
            "epochs_chosen_by": f"early stopping on {first_report['val_clips']} held-out clips in a first run",
            "macs": report["macs"],
        },
        "head": {
            "kind": "logistic regression",
            "C": best["C"],
            "training_audio": "+".join(conds),
            "parts": "train+val (C chosen on val with the first run's student)",
        },
    }
    files = export_student(with_head(student, head, len(labels)), labels, config, rep, out, training, name)
    rel = {p: sorted(split.clips[i].path.relative_to(data_dir).as_posix() for i in ix) for p, ix in split.parts.items()}
    write_atomic(out / "split.json", json.dumps(rel, indent=2) + "\n")  # as trainer.families.paper.run writes it
    result = {
        "labels": labels,
        "split": {p: len(ix) for p, ix in split.parts.items()},
        "student": report,
        "first_student": first_report,
        "head_selection": rows,
        "chosen_C": best["C"],
        "val_float_head": best["val"],
        "size_bytes": {kind: p.stat().st_size for kind, p in files.items()},
        "log_mel": config.to_dict(),
    }
    write_atomic(out / "result.json", json.dumps(result, indent=2) + "\n")
    return result


def _embed(model, data: dict[Path, ClipData], conds: tuple[str, ...]) -> dict[str, dict[Path, np.ndarray]]:
    """{condition: {clip: the student's embedding of each of its patches}}."""
    return {
        cond: {
            path: model.predict(d.inputs[cond].astype(np.float32), batch_size=256, verbose=0)
            for path, d in data.items()
            if cond in d.inputs
        }
        for cond in conds
    }


def _rows(embs, label_of: dict[Path, int]) -> tuple[np.ndarray, np.ndarray]:
    """The head's training rows: every patch of every condition of every clip, with its clip's label."""
    pairs = [(e, label_of[path]) for emb in embs for by_clip in emb.values() for path, e in by_clip.items()]
    return np.concatenate([e for e, _ in pairs]), np.concatenate([np.full(len(e), label) for e, label in pairs])


def _representative(train: dict[Path, ClipData]) -> np.ndarray:
    """Clean training patches of 60 clips (seeded) for the int8 calibration."""
    clips = list(train.values())
    rng = np.random.default_rng(0)
    return np.concatenate([clips[i].inputs["clean"] for i in rng.permutation(len(clips))[:60]]).astype(np.float32)


def export_tuning(
    data_dir: Path,
    out: Path,
    config: LogMelConfig,
    cache: Path = CACHE,
    k: int = AUGMENT_K,
    targets: Targets | None = None,
) -> Path:
    """``out``/tuning/model-int8.tflite: the held-out twin of the run's file, for choosing and
    calibrating what follows the model (the daemon's temporal settings, the file's temperature).
    The shipped file's student and head both saw the validation part; the twin's did not: the first
    student (distilled without a validation clip) with a head on the training part only, at the
    run's C. Its validation probabilities are as confident as the shipped file's are on unseen music."""
    result = json.loads((out / "result.json").read_text())
    labels = result["labels"]
    targets = (targets or Targets()).load(config)
    first, _ = trained_student(data_dir, config, cache, k, targets=targets)
    split = load_split(data_dir, labels)
    conds = conditions(k)
    train = build([split.clips[i] for i in split.parts["train"]], conds, config, cache)
    label_of = {c.path: labels.index(c.label) for c in split.clips}
    head = fit_head(*_rows([_embed(first, train, conds)], label_of), result["chosen_C"])
    training = {
        "data": data_dir.name,
        "protocol": "honest",
        "seed": 0,
        "teacher": targets.describe(),
        "tuning": "held-out twin: the first student (no validation clip) and a head on the training part only",
        "head": {"kind": "logistic regression", "C": result["chosen_C"], "parts": "train"},
    }
    model = with_head(first, head, len(labels))
    files = export_student(model, labels, config, _representative(train), out / TUNING, training)
    return files["int8"]


def evaluate_test(data_dir: Path, out: Path) -> dict[str, Any]:
    """The exported files through the daemon's path (streamer.evaluation.evaluate, as `moodstream evaluate
    DIR --hop 3 [--chain room --chain-seed 0]`) on the split's test part: int8 and float clean, int8
    room. Kept in ``out``/result.json under ``evaluate``."""
    from trainer.common.evaluation import evaluate_file, summary, test_folder

    folder = test_folder(data_dir, out / "split.json", out / "test-data")
    result = json.loads((out / "result.json").read_text())
    done = result.setdefault("evaluate", {})
    for job, (kind, chain) in {
        "clean/int8": ("int8", None),
        "clean/float": ("float", None),
        "room/int8": ("int8", "room"),
    }.items():
        if job in done:
            continue
        ev = evaluate_file(
            folder, out / f"model-{kind}.tflite", out / f"evaluate-{job.replace('/', '-')}.json", chain, EVALUATE_HOP_S
        )
        done[job] = summary(ev)
        log.info("test %s: %s", job, done[job])
        write_atomic(out / "result.json", json.dumps(result, indent=2) + "\n")
    return done


def fill(data_dir: Path, config: LogMelConfig, cache: Path = CACHE, k: int = AUGMENT_K, shard: str = "0/1") -> None:
    """Fill the data cache for both label sets, cheapest first: clean patches and teacher targets of
    every non-test clip, then the capture-chain copies of the distillation's validation clips, its
    training clips (seeded random order, so a part of them is a fair sample) and the other clips
    the heads train on. ``shard`` I/N: every N-th clip from the I-th (parallel jobs)."""
    splits = [load_split(data_dir, list(labels)) for labels in LABEL_SETS]
    train_clips, val_clips = distillation_clips(splits)
    index, count = (int(v) for v in shard.split("/"))
    rng = np.random.default_rng(0)
    train_clips = [train_clips[i] for i in rng.permutation(len(train_clips))]
    known = {c.path for c in train_clips + val_clips}
    heads = sorted({s.clips[i].path: s.clips[i] for s in splits for p in ("train", "val") for i in s.parts[p]}.items())
    rest = [c for p, c in heads if p not in known]
    everything = val_clips + train_clips + rest
    build(everything[index::count], (), config, cache)
    for clips in (val_clips, train_clips, rest):
        build(clips[index::count], conditions(k), config, cache)


def main(argv: list[str] | None = None) -> int:
    from trainer.common.paths import DEFAULT_DATA
    from trainer.families.musicnn.head import config_for

    p = argparse.ArgumentParser(prog="python -m trainer student", description=__doc__.splitlines()[0])
    p.add_argument("--labels", default="angry,happy,sad")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cache", type=Path, default=CACHE)
    p.add_argument("--normalisation", default="rms", choices=("none", "rms"))
    p.add_argument("--augment", type=int, default=AUGMENT_K, help="random capture-chain draws per clip")
    p.add_argument("--loss", default="mse", choices=sorted(LOSSES), help="distillation loss")
    p.add_argument("--budget", type=float, default=BUDGET_S, help="distillation's wall-clock limit, seconds")
    p.add_argument("--no-evaluate", action="store_true", help="skip the test part's evaluation")
    p.add_argument("--build-only", action="store_true", help="fill the data cache (both label sets) and stop")
    p.add_argument("--shard", default="0/1", help="I/N with --build-only: every N-th clip from the I-th")
    p.add_argument("--teachers", default="musicnn", help="the targets: teachers side by side (musicnn, yamnet, mn04)")
    p.add_argument("--teacher-weights", type=Path, help="local folder of the AudioSet teachers' weights")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = config_for(args.normalisation)
    targets = Targets(tuple(args.teachers.split(",")), args.teacher_weights)
    if args.build_only:
        fill(args.data, config, args.cache, args.augment, args.shard)
        return 0
    if not (args.out / "result.json").is_file():
        train(
            args.labels.split(","),
            args.data,
            args.out,
            config,
            args.cache,
            args.augment,
            budget_s=args.budget,
            loss=args.loss,
            targets=targets,
        )
    if not (args.out / TUNING / "model-int8.tflite").is_file():
        export_tuning(args.data, args.out, config, args.cache, args.augment, targets)
    if not args.no_evaluate:
        evaluate_test(args.data, args.out)
    return 0
