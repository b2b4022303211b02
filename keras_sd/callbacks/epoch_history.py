"""`EpochHistory`: every epoch's logs in ``<run>/history.json``, kept across resumes;
`read_history` reads them back."""

from __future__ import annotations

import json
import os
import pathlib
import time

import keras

from keras_sd.atomic import write_json_atomic

HISTORY_FILE = "history.json"


def _plain_logs(logs: dict) -> dict:
    out = {}
    for key, value in (logs or {}).items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """The per-epoch log entries of a run (``[]`` when it has no history.json). Each entry is
    ``{"epoch": n, ...logs, "epoch_seconds": s}`` with ``n`` 1-based (as Keras prints it);
    ``val_*`` keys are there only on epochs that evaluated on the test split; ``epoch_seconds``
    is the wall clock from the epoch's start to the end of its evaluation."""
    path = pathlib.Path(run_dir) / HISTORY_FILE
    if not path.exists():
        return []
    return list(json.loads(path.read_text())["epochs"])


class EpochHistory(keras.callbacks.Callback):
    """Appends every epoch's logs to ``<dir>/history.json`` (atomic rewrite each epoch).

    ``previous`` holds the entries of the epochs finished before a resume; entries from the
    resumed epoch on are dropped (they belonged to an epoch the kill cut short of its backup).
    Put it before the backup callback, so an epoch committed to the backup is always in the
    history too."""

    def __init__(self, directory: str | os.PathLike, previous: list[dict] = ()):
        super().__init__()
        self.path = pathlib.Path(directory) / HISTORY_FILE
        self.entries = list(previous)

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        number = int(epoch) + 1
        self.entries = [e for e in self.entries if e["epoch"] < number]
        # epoch_seconds: wall clock from the epoch's start to the end of its evaluation.
        seconds = time.perf_counter() - getattr(self, "_start", time.perf_counter())
        self.entries.append({"epoch": number, **_plain_logs(logs), "epoch_seconds": seconds})
        write_json_atomic(self.path, {"epochs": self.entries})


__all__ = ["HISTORY_FILE", "EpochHistory", "read_history"]
