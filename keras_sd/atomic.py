"""Atomic file writes: a reader or a crash sees the old file or the new one, never a torn one.

`write_json_atomic` (recipe.json, history.json, metrics.json, thresholds.json, ...),
`save_model_atomic` (model.keras) and `replace_atomic` (the rename every one of them and the
backup callback, `keras_sd.callbacks.AtomicBackupAndRestore`, commits with). Imports no
TensorFlow. See docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """Writes JSON to a temporary file in the same folder, then renames it over ``path``, so a
    crash never leaves a torn file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # e.g. a payload JSON cannot encode: leave no temporary file behind
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_dir(path: pathlib.Path) -> None:
    # The rename itself is only durable once the directory entry is on disk (POSIX).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: pathlib.Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def replace_atomic(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Flushes ``tmp`` to disk and renames it over ``path`` (same folder): readers and a crash
    see either the old file or the new one, never a torn one."""
    tmp, path = pathlib.Path(tmp), pathlib.Path(path)
    _fsync_file(tmp)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def save_model_atomic(model, path: str | os.PathLike) -> None:
    """``model.save(path)`` through a temporary ``.keras`` file in the same folder + rename.

    Args:
        model: the model to save.
        path: destination ending in ``.keras``.

    Raises:
        ValueError: if ``path`` does not end in ``.keras``.
    """
    path = pathlib.Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"`path` must end in .keras, got {str(path)!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp.keras")
    os.close(fd)
    try:
        model.save(tmp)
        replace_atomic(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["replace_atomic", "save_model_atomic", "write_json_atomic"]
