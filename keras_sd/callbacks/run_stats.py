"""`RunStats`: wall-clock seconds per epoch and training images per second."""

from __future__ import annotations

import time

import keras


class RunStats(keras.callbacks.Callback):
    """Training seconds per epoch, training images per second, and validation seconds (wall
    clock).

    Keras' ``fit`` validates an epoch *before* calling ``on_epoch_end``, so the epoch's training
    part ends where its validation begins (``on_test_begin``, which ``fit`` calls on its own
    callbacks; the training metrics have been read back by then, so the steps are done).
    ``epoch_seconds`` and ``images_per_second`` cover the training steps only, on evaluated
    epochs too; ``validation_seconds`` holds one entry per validated epoch.
    """

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.epoch_seconds: list[float] = []
        self.images_per_second: list[float] = []
        self.validation_seconds: list[float] = []
        self._start = self._train_end = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._steps, self._train_end = time.perf_counter(), 0, None

    def on_train_batch_end(self, batch, logs=None):
        # ``batch`` is the 0-based index of the last step run (one call per steps_per_execution
        # group), counted from this Keras epoch's start.
        self._steps = int(batch) + 1

    def on_test_begin(self, logs=None):
        # Only fit's validation (between on_epoch_begin and on_epoch_end) is a training epoch's.
        if self._start is not None:
            self._train_end = time.perf_counter()

    def on_test_end(self, logs=None):
        if self._train_end is not None:
            self.validation_seconds.append(time.perf_counter() - self._train_end)

    def on_epoch_end(self, epoch, logs=None):
        end = self._train_end if self._train_end is not None else time.perf_counter()
        seconds = end - self._start
        self._start = self._train_end = None
        self.epoch_seconds.append(seconds)
        self.images_per_second.append(self._steps * self.batch_size / max(seconds, 1e-9))


__all__ = ["RunStats"]
