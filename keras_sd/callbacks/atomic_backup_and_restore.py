"""`AtomicBackupAndRestore`: Keras' BackupAndRestore, committed by one atomic rename per state.

See the class docstring and docs/reliability.md. `read_backup_metadata` reads a backup folder's
committed state.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
import warnings

import keras
import numpy as np

from keras_sd import _keras_compat
from keras_sd.atomic import replace_atomic


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose checkpoint survives a kill at any instant.

    Keras 3.15 writes ``latest.weights.h5`` in place and then ``training_metadata.json``. A kill
    during the first leaves a torn HDF5 file (the ``.bkp`` copy of ``double_checkpoint`` helps
    only when loading raises ``OSError``); a kill between the two leaves new weights with the old
    epoch, so the resumed run trains that epoch twice; a kill during the second leaves torn JSON
    that makes every later resume fail. Here every state gets its own weights file
    (``ckpt-e<epoch>-s<step>.weights.h5``, fsynced), and ``training_metadata.json`` -- written
    through a temporary file and a rename -- is the single commit point: it names the weights file
    of the current and of the previous state. Files no longer named are deleted after the commit.
    On restore the current state is loaded, or the previous one if its file cannot be read.
    A directory written by the Keras callback (metadata without ``"weights"``) is restored the
    Keras way, so runs started before this class keep resuming.

    Under `tf.distribute.MultiWorkerMirroredStrategy` every worker runs this callback. Only the
    chief (`keras_sd.distribute.is_chief`: worker 0, or the ``chief`` task) writes into
    ``backup_dir``; every other worker still performs each save, into a private temporary folder
    that is deleted when training ends, so no two processes write one file and, should a save
    ever involve a collective, every worker takes part. On restore ALL workers read the chief's
    ``backup_dir``, which must therefore be on storage every worker can read: a shared or network
    file system (a ``gs://`` URL does not work, the commit needs a POSIX rename).

    Mid-epoch resume. With ``save_freq`` in steps a state records the epoch and the steps done in
    it (``"step"`` in the metadata; a save due on an epoch's last step is made at that epoch's end
    instead, after the epoch-end callbacks before this one). A run restored from ``(epoch k,
    step s)`` starts at epoch ``k`` and ends that epoch after the remaining ``S - s`` steps
    (``S``: fit's steps per epoch), by setting ``model.stop_training`` after its last step and
    clearing it again in ``on_epoch_end`` (a callback placed before this one that sets
    ``stop_training`` in that one epoch's ``on_epoch_end`` is therefore overridden). The training
    input must then continue from step ``s`` of epoch ``k``: call `restore` before ``fit`` to
    learn ``(k, s)`` and hand ``fit`` data that starts there, e.g. ``keras_sd.data``'s
    ``bundle.batches(k * S + s, epochs * S)`` with ``steps_per_epoch=S``. Epoch states
    (``save_freq="epoch"``) resume at the start of the next epoch, as in Keras.

    Args are those of `keras.callbacks.BackupAndRestore`; ``double_checkpoint`` keeps the
    previous state's weights file as the fallback; ``save_freq`` is ``"epoch"`` or a positive
    number of steps.

    Raises:
        ValueError: for a ``save_freq`` other than "epoch" or a positive int.

    Reference: tf.keras 2's ``BackupAndRestore`` with ``distributed_file_utils`` (chief writes,
    other workers write to temporary paths).
    """

    _private_dir: str | None = None

    def __init__(self, backup_dir, save_freq="epoch", **kwargs):
        if save_freq != "epoch" and (
            not isinstance(save_freq, (int, np.integer))
            or isinstance(save_freq, bool)
            or save_freq < 1
        ):
            raise ValueError(
                "save_freq must be 'epoch' or a positive int (steps between saves), "
                f"got save_freq={save_freq!r}"
            )
        super().__init__(
            backup_dir, save_freq=save_freq if save_freq == "epoch" else int(save_freq), **kwargs
        )
        # Our own position, kept through the public callback hooks (Keras' callback keeps its
        # own in private attributes): the epoch in progress (= epochs finished), the steps done
        # in it, and the last Keras batch index seen in it.
        self._epochs_done = 0
        self._steps_in_epoch = 0
        self._last_batch = -1
        self._steps_since_save = 0
        # Steps of the current epoch done before a restore (a mid-epoch resume), else 0.
        self._offset = 0
        self._cut = False
        self._save_at_epoch_end = False
        # (epoch, step) restored by `restore` and not yet used by a fit, else None.
        self._pending = None

    def _strategy(self):
        # None (read TF_CONFIG) only for a model without a strategy (not the TF backend).
        return getattr(self.model, "distribute_strategy", None)

    def _writes_backup_dir(self) -> bool:
        from keras_sd import distribute

        return distribute.is_chief(self._strategy())

    def _write_dir(self) -> pathlib.Path:
        """``backup_dir`` on the chief; a private temporary folder on every other worker."""
        if self._writes_backup_dir():
            return pathlib.Path(self.backup_dir)
        if self._private_dir is None or not os.path.isdir(self._private_dir):
            from keras_sd import distribute

            self._private_dir = tempfile.mkdtemp(
                prefix=f"keras_sd_backup_{distribute.worker_id(self._strategy())}_"
            )
        return pathlib.Path(self._private_dir)

    def _save(self):
        backup = self._write_dir()
        backup.mkdir(parents=True, exist_ok=True)
        meta_path = backup / "training_metadata.json"
        previous = read_backup_metadata(backup)
        step = self._steps_in_epoch
        stem = f"ckpt-e{self._epochs_done}-s{step}"
        name, extra = f"{stem}.weights.h5", f"{stem}.extra.npz"
        tmp = backup / f".{name}.tmp.weights.h5"
        self.model.save_weights(str(tmp), overwrite=True)
        replace_atomic(tmp, backup / name)
        # save_weights leaves out SeedGenerator states (layer.variables minus layer.weights):
        # without them a resumed run's distortions / stochastic-depth draws would restart.
        fd, extra_tmp = tempfile.mkstemp(dir=backup, prefix=f".{stem}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f, **{f"v{i}": np.asarray(v) for i, v in enumerate(_unsaved_variables(self.model))}
            )
        replace_atomic(extra_tmp, backup / extra)
        state = {
            "epoch": self._epochs_done,
            # "batch": Keras' field (the last batch index, 0 for an epoch state); "step": the
            # steps done in epoch "epoch", where a restored run resumes.
            "batch": max(step - 1, 0),
            "step": step,
            "weights": name,
            "extra": extra,
        }
        if self.double_checkpoint and previous and previous.get("weights") not in (None, name):
            state["previous"] = {
                k: previous[k]
                for k in ("epoch", "batch", "step", "weights", "extra")
                if k in previous
            }
        fd, meta_tmp = tempfile.mkstemp(dir=backup, prefix=".training_metadata.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)
        replace_atomic(meta_tmp, meta_path)
        prev = state.get("previous", {})
        keep = {name, extra, prev.get("weights"), prev.get("extra")}
        for old in backup.glob("ckpt-*"):
            if old.name not in keep:
                old.unlink(missing_ok=True)
        for old in backup.glob(".*.tmp*"):  # leftovers of an earlier kill mid-write
            old.unlink(missing_ok=True)

    def _restore(self, meta: dict) -> tuple[int, int]:
        if not self.model.built:
            raise ValueError(
                "AtomicBackupAndRestore needs a built model: call it on a batch before fit()."
            )
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        candidates = [meta] + ([meta["previous"]] if "previous" in meta else [])
        errors = []
        for state in candidates:
            path = pathlib.Path(self.backup_dir) / state["weights"]
            try:
                self.model.load_weights(str(path))
                if "extra" in state:
                    _load_unsaved_variables(
                        self.model, pathlib.Path(self.backup_dir) / state["extra"]
                    )
            except (OSError, ValueError, KeyError) as e:
                errors.append(f"{path.name}: {e}")
                continue
            if "step" not in state:
                warnings.warn(
                    f"`backup_dir` {str(self.backup_dir)!r} was written by an older keras_sd "
                    "(no 'step' in training_metadata.json): resuming at the start of epoch "
                    f"{int(state['epoch'])}. keras_sd.data's training order has changed since "
                    "(epochs are now seeded by their number), so the resumed epochs do not "
                    "repeat the original run's data order.",
                    stacklevel=3,
                )
            return int(state["epoch"]), int(state.get("step", 0))
        raise ValueError(
            f"`backup_dir` {str(self.backup_dir)!r}: no readable checkpoint ({'; '.join(errors)}); "
            "delete the folder to start the run again."
        )

    def restore(self, model: keras.Model | None = None) -> tuple[int, int]:
        """Loads the backup into ``model`` (default: the callback's model) now, before ``fit``,
        and returns where training resumes: ``(epoch, step)``, the epochs finished and the steps
        done in the next one; ``(0, 0)`` without a backup.

        The next ``fit`` with this callback starts there without loading again; its training
        input must start at that step (see the class docstring). The model must be built and
        compiled; under a distribution strategy call this inside ``strategy.scope()`` (it
        builds the optimizer when ``fit`` has not yet).

        Raises:
            ValueError: if no state of the backup can be loaded, or the model is not built.
        """
        if model is not None:
            self.set_model(model)
        meta = read_backup_metadata(self.backup_dir)
        if meta is not None and "weights" in meta:
            position = self._restore(meta)  # falls back to the previous state itself
        elif meta is not None:  # written by keras.callbacks.BackupAndRestore
            super().on_train_begin()
            position = (int(meta["epoch"]), 0)
        else:
            position = (0, 0)
        self._pending = position
        return position

    def on_train_begin(self, logs=None):
        position = self._pending if self._pending is not None else self.restore()
        self._pending = None
        epoch, step = position
        if (epoch, step) != (0, 0):
            _keras_compat.set_initial_epoch(self.model, epoch)
        self._resume = (epoch, step)
        self._steps_since_save = 0
        if step:
            steps = self.params.get("steps")
            if not steps or step >= steps:
                raise ValueError(
                    f"`backup_dir` {str(self.backup_dir)!r} holds a state {step} steps into "
                    f"epoch {epoch}, but fit runs {steps} steps per epoch; expected a known "
                    f"steps_per_epoch greater than {step} (the one of the interrupted run)."
                )

    def on_epoch_begin(self, epoch, logs=None):
        # `epoch` is also right after a resume, so a mid-epoch save records the epoch it is in.
        self._epochs_done = int(epoch)
        resume_epoch, resume_step = getattr(self, "_resume", (0, 0))
        self._offset = resume_step if int(epoch) == resume_epoch else 0
        self._resume = (0, 0)  # only the first epoch of a fit is a resumed one
        self._steps_in_epoch = self._offset
        self._last_batch = -1
        self._cut = self._save_at_epoch_end = False

    def on_epoch_end(self, epoch, logs=None):
        if self._cut:  # this callback ended the resumed epoch early: training goes on
            self.model.stop_training = False
            self._cut = False
        self._epochs_done = int(epoch) + 1
        self._steps_in_epoch = 0
        if self.save_freq == "epoch" or self._save_at_epoch_end:
            self._save_at_epoch_end = False
            self._save()

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the last step of a `steps_per_execution` group, counted from this Keras
        # epoch's start; a resumed epoch started `self._offset` steps in.
        steps = int(batch) - self._last_batch
        self._last_batch = int(batch)
        self._steps_in_epoch += steps
        per_epoch = self.params.get("steps")
        last = bool(per_epoch) and self._steps_in_epoch >= per_epoch
        if self._offset and last:
            # The resumed epoch has had its remaining steps: end it here (see the docstring).
            self.model.stop_training = True
            self._cut = True
        if self.save_freq == "epoch":
            return
        self._steps_since_save += steps
        if self._steps_since_save >= self.save_freq:
            self._steps_since_save = 0
            if last:  # a state "all steps done, epoch end not run" would resume to no step
                self._save_at_epoch_end = True
            else:
                self._save()

    def on_train_end(self, logs=None):
        if self._writes_backup_dir():
            super().on_train_end(logs)  # deletes backup_dir when delete_checkpoint
            return
        # A non-chief worker never deletes the chief's folder; its own saves were only for
        # symmetry, so they go whatever delete_checkpoint says.
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None


def _unsaved_variables(model) -> list:
    """Variables of ``model`` that ``save_weights`` leaves out (SeedGenerator states), in
    creation order."""
    saved = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in saved]


def _load_unsaved_variables(model, path: pathlib.Path) -> None:
    variables = _unsaved_variables(model)
    with np.load(path) as values:
        if len(values.files) != len(variables):
            raise ValueError(
                f"{path.name} holds {len(values.files)} extra variables, the model has "
                f"{len(variables)}."
            )
        for i, v in enumerate(variables):
            v.assign(values[f"v{i}"])


def read_backup_metadata(backup_dir: str | os.PathLike) -> dict | None:
    """The committed state of a backup folder (``{"epoch", "batch", ...}``), or None if none.

    Raises:
        ValueError: if the metadata file exists but is not a JSON object (a folder written by
            the non-atomic Keras callback and killed mid-write).
    """
    path = pathlib.Path(backup_dir) / "training_metadata.json"
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"`backup_dir` {str(backup_dir)!r}: torn {path.name} ({e}).") from None
    if not isinstance(meta, dict) or "epoch" not in meta:
        raise ValueError(f"`backup_dir` {str(backup_dir)!r}: {path.name} holds no epoch.")
    return meta


__all__ = ["AtomicBackupAndRestore", "read_backup_metadata"]
