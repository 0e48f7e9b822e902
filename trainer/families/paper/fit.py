"""Fitting one Keras model: Adam, categorical cross-entropy, inverse-frequency class weights,
early stopping on validation loss with the best weights kept, and an optional time budget."""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np


def class_weights(y: np.ndarray, n_labels: int) -> dict[int, float]:
    """Inverse frequency, scaled so that a balanced set gets weight 1 (the paper's rule)."""
    counts = np.bincount(y, minlength=n_labels).astype(float)
    return {k: (len(y) / (n_labels * c) if c else 0.0) for k, c in enumerate(counts)}


class TimeBudget(keras.callbacks.Callback):
    """Stops after the epoch that exhausts ``seconds`` (EarlyStopping still restores the best)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.start = time.monotonic()
        self.exhausted = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.start = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if time.monotonic() - self.start > self.seconds:
            self.exhausted = True
            self.model.stop_training = True


def fit(
    model: keras.Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    epochs: int,
    patience: int,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    time_budget_s: float | None = None,
    verbose: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Train in place on standardised windows and integer labels (or rows of soft labels);
    returns the history summary."""
    n_labels = model.output_shape[-1]
    keras.utils.set_random_seed(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    callbacks: list[keras.callbacks.Callback] = [stopper]
    budget = TimeBudget(time_budget_s) if time_budget_s else None
    if budget:
        callbacks.append(budget)
    started = time.monotonic()
    soft = y_train.ndim == 2  # mixed-up rows carry soft labels already
    hard = y_train.argmax(axis=1) if soft else y_train
    history = model.fit(
        x_train,
        y_train if soft else keras.utils.to_categorical(y_train, n_labels),
        validation_data=(x_val, keras.utils.to_categorical(y_val, n_labels)),
        epochs=epochs,
        batch_size=batch_size,
        class_weight=class_weights(hard, n_labels),
        callbacks=callbacks,
        shuffle=True,
        verbose=verbose,
    ).history
    seconds = time.monotonic() - started
    n_epochs = len(history["loss"])
    return {
        "history": {k: [float(v) for v in vals] for k, vals in history.items()},
        "epochs_run": n_epochs,
        "best_epoch": int(np.argmin(history["val_loss"])) + 1,
        "seconds": round(seconds, 1),
        "seconds_per_epoch": round(seconds / max(1, n_epochs), 2),
        "stopped_by_time_budget": bool(budget and budget.exhausted),
    }
