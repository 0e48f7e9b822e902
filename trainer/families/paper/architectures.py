"""Keras builders for the three architectures: CNN, CNN-LSTM and CNN-GRU over feature frames.

Input is (window_frames, n_features): 1-D convolutions run over time with the features as
channels. Pooling brings time down to a few tens of steps before the recurrent layer, because
int8 conversion needs ``unroll=True`` and an unrolled layer grows with its number of steps
(toolchain.md: GRU(64) on 75 steps is about 945 KB).
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

ARCHITECTURES = ("cnn", "cnn_lstm", "cnn_gru", "linear")
DEEP = ARCHITECTURES[:3]
TARGET_STEPS = 32  # time steps left after pooling
FILTERS = (32, 64, 64)
RECURRENT_UNITS = 48


def pool_sizes(window_frames: int, target_steps: int = TARGET_STEPS) -> tuple[int, ...]:
    """Pool factors for the conv blocks (at most 4, 4 then 8) leaving about ``target_steps``."""
    remaining = max(1.0, window_frames / target_steps)
    sizes = []
    for limit in (4, 4, 8):
        size = max(1, min(limit, math.ceil(remaining - 1e-9)))
        sizes.append(size)
        remaining /= size
    return tuple(sizes)


def build(
    architecture: str,
    window_frames: int,
    n_features: int,
    n_labels: int,
    batch_size: int | None = None,
    dropout: float = 0.3,
    seed: int = 0,
    weight_decay: float = 0.0,
) -> keras.Model:
    """A fresh, uncompiled model; ``batch_size=1`` gives the copy that converts to int8.
    ``weight_decay``: L2 penalty on the output layer's weights."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(window_frames, n_features), batch_size=batch_size, name="features")
    regulariser = keras.regularizers.L2(weight_decay) if weight_decay else None
    if architecture == "linear":
        return _linear(inputs, n_labels, dropout, regulariser)
    x = inputs
    for filters, pool in zip(FILTERS, pool_sizes(window_frames), strict=True):
        x = layers.Conv1D(filters, 5, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        if pool > 1:
            x = layers.MaxPooling1D(pool, padding="same")(x)
        x = layers.Dropout(dropout / 3)(x)
    if architecture == "cnn":
        x = layers.GlobalAveragePooling1D()(x)
    elif architecture == "cnn_lstm":
        x = layers.LSTM(RECURRENT_UNITS, unroll=True)(x)
    else:
        x = layers.GRU(RECURRENT_UNITS, unroll=True)(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_labels, activation="softmax", name="probabilities", kernel_regularizer=regulariser)(x)
    return keras.Model(inputs, outputs, name=architecture)


def _linear(inputs: keras.KerasTensor, n_labels: int, dropout: float, regulariser=None) -> keras.Model:
    """The baseline's model (softmax regression on each feature's mean and mean absolute deviation
    over the window) as a Keras graph, so that it trains, quantises and ships like the deep ones."""
    mean = layers.GlobalAveragePooling1D()(inputs)
    centred = layers.Subtract()([inputs, layers.Reshape((1, -1))(mean)])
    # mean absolute deviation: unlike E[x^2] - E[x]^2 it survives int8 arithmetic
    deviation = layers.GlobalAveragePooling1D(name="deviation")(layers.Lambda(ops.abs, name="abs")(centred))
    return keras.Model(inputs, statistics_head(layers.Concatenate()([mean, deviation]), n_labels, dropout, regulariser))


def statistics_head(x: keras.KerasTensor, n_labels: int, dropout: float = 0.3, regulariser=None) -> keras.KerasTensor:
    """The linear model's trainable part on its (mean, deviation) statistics (trainer.families.paper.crossval fits
    the same function on precomputed statistics)."""
    x = layers.BatchNormalization()(x)
    x = layers.Dropout(dropout)(x)
    return layers.Dense(n_labels, activation="softmax", name="probabilities", kernel_regularizer=regulariser)(x)


def batch_one_copy(model: keras.Model, architecture: str) -> keras.Model:
    """The same weights in a fixed batch-1 graph (what int8 conversion of unrolled RNNs needs)."""
    _, frames, features = model.input_shape
    n_labels = model.output_shape[-1]
    copy = build(architecture, frames, features, n_labels, batch_size=1)
    copy.set_weights(model.get_weights())
    return copy
