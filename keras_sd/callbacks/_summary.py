"""Shared parts of the TensorBoard callbacks: a lazily created summary writer and the
validation-data helpers (first images, NumPy batches, sparse labels)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from keras_sd import validation

VALIDATION = "validation"


# ---------------------------------------------------------------------------- NumPy helpers
def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------- data helpers
def _split(x):
    if isinstance(x, Mapping):
        return x["image"]
    return x


def take_images(data, num_images: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The first ``num_images`` images (and labels) of a dataset or an ``(x, y)`` tuple."""
    num_images = validation.positive_int(num_images, "num_images")
    if isinstance(data, tf.data.Dataset):
        xs, ys, n = [], [], 0
        for batch in data:
            x, y = (batch[0], batch[1]) if isinstance(batch, tuple) else (batch, None)
            xs.append(np.asarray(_split(x)))
            if y is not None:
                ys.append(np.asarray(y))
            n += len(xs[-1])
            if n >= num_images:
                break
        if not xs:
            raise ValueError("`validation_data` is empty; need at least one image.")
        return np.concatenate(xs)[:num_images], (np.concatenate(ys)[:num_images] if ys else None)
    if isinstance(data, tuple) and len(data) >= 1:
        x = np.asarray(_split(data[0]))[:num_images]
        y = np.asarray(data[1])[:num_images] if len(data) > 1 else None
        if len(x) == 0:
            raise ValueError("`validation_data` is empty; need at least one image.")
        return x, y
    raise ValueError(
        f"`validation_data` must be a tf.data.Dataset or an (x, y) tuple, got {type(data).__name__}."
    )


def _iterate(data, max_samples: int | None):
    """Yields ``(images, labels)`` NumPy batches, at most ``max_samples`` samples in all."""
    seen = 0
    if isinstance(data, tuple):
        x, y = np.asarray(_split(data[0])), np.asarray(data[1])
        stop = len(x) if max_samples is None else min(len(x), max_samples)
        for s in range(0, stop, 256):
            yield x[s : min(s + 256, stop)], y[s : min(s + 256, stop)]
        return
    for x, y in data:
        x, y = np.asarray(_split(x)), np.asarray(y)
        if max_samples is not None:
            room = max_samples - seen
            if room <= 0:
                return
            x, y = x[:room], y[:room]
        seen += len(x)
        yield x, y


def _sparse(labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == num_classes and num_classes > 1:
        return labels.argmax(axis=1)
    return labels.reshape(-1).astype(np.int64)


# ---------------------------------------------------------------------------- callbacks
class _SummaryCallback(keras.callbacks.Callback):
    """Base: a lazily created file writer under ``<log_dir>/<subdir>``, flushed after writing."""

    def __init__(self, log_dir: str | os.PathLike, subdir: str = VALIDATION):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ValueError(f"`log_dir` must be a non-empty path, got {log_dir!r}.")
        self.log_dir = str(log_dir)
        self.subdir = subdir
        self._writer = None

    @property
    def writer(self):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, self.subdir))
        return self._writer

    def writes_epoch(self, epoch: int) -> bool:
        """Whether a subclass with ``every_n_epochs`` writes at the end of 0-based ``epoch``:
        every ``every_n_epochs``-th epoch, and always the last one of ``fit``."""
        last = bool(self.params) and epoch + 1 == int(self.params.get("epochs") or 0)
        return last or (epoch + 1) % self.every_n_epochs == 0

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __deepcopy__(self, memo):
        # keras-tuner deep-copies search callbacks; writers and datasets are not copyable, and a
        # fresh writer per copy is what a new trial needs anyway.
        clone = object.__new__(type(self))
        for key, value in self.__dict__.items():
            if key in ("_writer", "_predict"):
                clone.__dict__[key] = None
            elif key in ("_model", "model") or isinstance(value, tf.data.Dataset):
                clone.__dict__[key] = value
            else:
                import copy

                clone.__dict__[key] = copy.deepcopy(value, memo)
        return clone
