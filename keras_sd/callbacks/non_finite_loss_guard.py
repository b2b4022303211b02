"""`NonFiniteLossGuard`: stop on a non-finite loss before anything is saved.

`NonFiniteLossGuard` checks the loss terms in the batch logs after every training step. The
per-term values there are running means (`keras.metrics.Mean`, one per term, reset each epoch), so
the first step whose term is NaN or infinite makes that mean non-finite at once. The guard then
*raises* `NonFiniteLossError` rather than only setting ``model.stop_training``: with
``stop_training`` Keras still finishes the epoch and calls every ``on_epoch_end``, and
`keras.callbacks.BackupAndRestore` would then overwrite the last good checkpoint with the broken
weights (Keras' own ``TerminateOnNaN`` has that problem). Raising leaves ``fit`` before any
epoch-end callback, `model.save` or metrics file, so the backup still holds the last finished
epoch and rerunning the command resumes from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import keras


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss term.

    Attributes:
        term: the name of the first non-finite term (in the model's term order).
        terms: every term that was non-finite at that step.
        epoch: 1-based epoch of the bad step.
        batch: 1-based step within that epoch.
        step: 1-based global optimizer step (``model.optimizer.iterations`` after the step).
    """

    def __init__(self, term: str, terms: Sequence[str], epoch: int, batch: int, step: int | None):
        self.term, self.terms = term, tuple(terms)
        self.epoch, self.batch, self.step = epoch, batch, step
        others = [t for t in self.terms if t != term]
        also = f" (also non-finite: {', '.join(others)})" if others else ""
        where = (
            f"step {step} (epoch {epoch}, batch {batch})"
            if step is not None
            else (f"epoch {epoch}, batch {batch}")
        )
        super().__init__(
            f"non-finite loss: `{term}` became NaN/inf at {where}{also}; training stopped before "
            "anything was saved, so the last finished epoch's backup is intact. The run is "
            "deterministic, so rerunning unchanged diverges again: lower the learning rate or "
            f"the weight of `{term}`."
        )


def _term_order(model, logs: Mapping) -> list[str]:
    # The model's own term order (keras_sd models declare it), then "loss" (the weighted total,
    # non-finite on its own only through add_loss regularisers or an overflow of the sum),
    # then any other `*loss` log of a plain Keras model.
    names = list(getattr(model, "term_names", ()) or ())
    if "weight_decay_loss" in logs and "weight_decay_loss" not in names:
        names.append("weight_decay_loss")
    names.append("loss")
    names += sorted(k for k in logs if k.endswith("loss") and k not in names)
    return [n for n in names if n in logs]


def _is_finite(value) -> bool:
    try:
        return math.isfinite(float(keras.ops.convert_to_numpy(value).reshape(-1)[0]))
    except (TypeError, ValueError, IndexError):
        return True  # not a number (nothing to check)


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Raises `NonFiniteLossError` at the first training step with a NaN or infinite loss term.

    It acts in ``on_train_batch_end`` and raises before the epoch ends, so an epoch-level
    `keras.callbacks.BackupAndRestore` never writes the broken weights wherever the guard is in
    the callback list; with a backup that saves every N steps, put the guard before it.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_end(self, batch, logs=None):
        if not logs:
            return
        bad = [name for name in _term_order(self.model, logs) if not _is_finite(logs[name])]
        if not bad:
            return
        self.model.stop_training = True
        step = None
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            step = int(keras.ops.convert_to_numpy(optimizer.iterations))
        raise NonFiniteLossError(bad[0], bad, getattr(self, "_epoch", 0) + 1, int(batch) + 1, step)


__all__ = ["NonFiniteLossError", "NonFiniteLossGuard"]
