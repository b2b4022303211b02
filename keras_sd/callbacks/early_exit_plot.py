"""`EarlyExitPlot`: the early-exit trade-off plot of ``thresholds.json``, when it exists."""

from __future__ import annotations

import json
import os
import pathlib
import warnings

import tensorflow as tf

from keras_sd.callbacks._summary import _SummaryCallback
from keras_sd.plotting import early_exit_image


class EarlyExitPlot(_SummaryCallback):
    """Logs ``early_exit/trade_off`` when ``thresholds_path`` exists (and again when it changes).

    Checked at the start of training and at the end of every epoch; a file it cannot read is
    reported with a warning and skipped, never stopping training.

    Args:
        log_dir: TensorBoard log directory (image goes to ``<log_dir>/validation``).
        thresholds_path: the run's ``thresholds.json`` (written by ``keras-sd thresholds``).
    """

    def __init__(self, log_dir: str | os.PathLike, thresholds_path: str | os.PathLike):
        super().__init__(log_dir)
        if not isinstance(thresholds_path, (str, os.PathLike)) or not str(thresholds_path):
            raise ValueError(f"`thresholds_path` must be a path, got {thresholds_path!r}.")
        self.thresholds_path = str(thresholds_path)
        self._seen = None

    def write(self, step: int) -> bool:
        """Writes the plot if the file exists and changed since the last write; True if written."""
        path = pathlib.Path(self.thresholds_path)
        if not path.is_file():
            return False
        stamp = (path.stat().st_mtime_ns, path.stat().st_size)
        if stamp == self._seen:
            return False
        try:
            image = early_exit_image(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError) as err:
            warnings.warn(f"EarlyExitPlot: skipping {path}: {err}", stacklevel=2)
            self._seen = stamp
            return False
        with self.writer.as_default():
            tf.summary.image("early_exit/trade_off", image[None], step=step)
        self.writer.flush()
        self._seen = stamp
        return True

    def on_train_begin(self, logs=None):
        self.write(step=0)

    def on_epoch_end(self, epoch, logs=None):
        self.write(step=epoch)


__all__ = ["EarlyExitPlot"]
