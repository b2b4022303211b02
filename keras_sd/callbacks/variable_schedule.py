"""`VariableSchedule`: the base of callbacks that schedule loss-term weights.

Every loss term of every keras_sd model has its weight in a non-trainable `keras.Variable` named
after the term (``model.term_weights["kl_loss"]``, variable ``kl_loss_weight``; the configured
values are ``model.loss_weights``). A callback assigns it, so the compiled train step reads the
new value without retracing and checkpoints keep it; the callback also writes the current values
into the epoch ``logs`` as ``<term>_weight``, so `History` and a `keras.callbacks.TensorBoard`
placed *after* it in the callback list record them. PS-KD's ``alpha_t`` has its own scheduler,
`keras_sd.pskd.PSKDAlphaScheduler` (also `keras_sd.callbacks.PSKDAlphaScheduler`).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras


def _term_variable(model, term: str):
    weights = getattr(model, "term_weights", None)
    if not isinstance(weights, dict) or term not in weights:
        known = sorted(weights) if isinstance(weights, dict) else []
        raise ValueError(
            f"`terms`: the model {type(model).__name__} has no loss term {term!r} with a weight "
            f"variable to schedule (its terms: {known})."
        )
    return weights[term]


def _check_terms(terms) -> tuple[str, ...] | None:
    if terms is None:
        return None
    if isinstance(terms, str) or not terms or not all(isinstance(t, str) for t in terms):
        raise ValueError(f"`terms` must be a non-empty list of loss term names, got {terms!r}.")
    return tuple(terms)


class VariableSchedule(keras.callbacks.Callback):
    """Base class: sets loss-term weights at the start of every epoch and logs them at its end.

    Subclasses implement `value(term, initial, epoch, epochs)`. ``initial`` is the model's
    configured weight of the term (``model.loss_weights[term]``, so a run resumed from a
    checkpoint taken while a weight was scheduled to 0 still gets the configured value back);
    ``epoch`` is 0-based and absolute (resuming with ``initial_epoch`` keeps the schedule);
    ``epochs`` is the ``epochs`` argument of ``fit``. The value is logged as ``<term>_weight``.

    Args:
        terms: names of the model's loss terms whose weights are scheduled.
    """

    def __init__(self, terms: Sequence[str]):
        super().__init__()
        self.terms = _check_terms(terms)
        if self.terms is None:
            raise ValueError("`terms` must be a non-empty list of loss term names, got None.")
        self.initial: dict[str, float] = {}

    def value(self, term: str, initial: float, epoch: int, epochs: int) -> float:
        raise NotImplementedError

    def scheduled_terms(self) -> tuple[str, ...]:
        """The terms scheduled on ``self.model``."""
        return self.terms

    def on_train_begin(self, logs=None):
        self.initial = {}
        for term in self.scheduled_terms():
            var = _term_variable(self.model, term)
            configured = getattr(self.model, "loss_weights", {}).get(term)
            if configured is None:
                configured = keras.ops.convert_to_numpy(var)
            self.initial[term] = float(configured)

    def on_epoch_begin(self, epoch, logs=None):
        epochs = int(self.params.get("epochs") or 0)
        for term, initial in self.initial.items():
            _term_variable(self.model, term).assign(self.value(term, initial, epoch, epochs))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            for term in self.initial:
                var = _term_variable(self.model, term)
                logs[f"{term}_weight"] = float(keras.ops.convert_to_numpy(var))


__all__ = ["VariableSchedule"]
