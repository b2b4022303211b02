"""`RunStats`: wall-clock seconds per epoch and training images per second."""

from __future__ import annotations

import time

import keras


class RunStats(keras.callbacks.Callback):
    """Seconds per epoch and training images per second (wall clock)."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.epoch_seconds: list[float] = []
        self.images_per_second: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._steps = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1

    def on_epoch_end(self, epoch, logs=None):
        # Measured before validation runs, which Keras does after on_epoch_end's train part;
        # the elapsed time here covers the training steps of the epoch.
        seconds = time.perf_counter() - self._start
        self.epoch_seconds.append(seconds)
        self.images_per_second.append(self._steps * self.batch_size / max(seconds, 1e-9))


__all__ = ["RunStats"]
