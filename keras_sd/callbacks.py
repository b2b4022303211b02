"""Callbacks that schedule the methods' loss weights during training.

Every loss term of every keras_sd model has its weight in a non-trainable `keras.Variable` named
after the term (``model.term_weights["kl_loss"]``, variable ``kl_loss_weight``; the configured
values are ``model.loss_weights``). A callback assigns it, so the compiled train step reads the
new value without retracing and checkpoints keep it; the callback also writes the current values
into the epoch ``logs`` as ``<term>_weight``, so `History` and a `keras.callbacks.TensorBoard`
placed *after* it in the callback list record them. PS-KD's ``alpha_t`` has its own scheduler,
`keras_sd.pskd.PSKDAlphaScheduler`.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_sd import validation

# What `DistillationAnnealing` anneals when no terms are named: TPAMI's alpha (the exits' KL and,
# with a teacher, the teacher's KL) and lambda (the feature hint), those of them the model has.
DISTILLATION_TERMS = ("kl_loss", "teacher_kl_loss", "feature_loss")


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


class DistillationAnnealing(VariableSchedule):
    """Sets distillation weights to 0 for the last ``last_epochs`` epochs of training.

    TPAMI: "in the last 5 epochs of the training period, both alpha and lambda are set to 0 to
    facilitate model convergence". Before that the weights keep their configured values. Works on
    any term of any keras_sd model, e.g. ``terms=("kl_loss",)`` on a `TwoViewDistiller` or a
    `SelfGuidanceDistiller`. By default it anneals those of ``kl_loss``, ``teacher_kl_loss`` and
    ``feature_loss`` the model has (`MultiExitDistiller`'s alpha and lambda; its exits'
    cross-entropy factors ``1 - alpha`` follow the ``kl_loss`` weight).

    Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural
    Networks", TPAMI, section 4.1.

    Example:
        >>> DistillationAnnealing(last_epochs=5, terms=("kl_loss", "feature_loss")).terms
        ('kl_loss', 'feature_loss')

    Args:
        last_epochs: number of final epochs with the weights at 0 (>= 0).
        terms: the loss terms to anneal; None: the model's terms among ``DISTILLATION_TERMS``.
    """

    def __init__(self, last_epochs: int = 5, terms: Sequence[str] | None = None):
        keras.callbacks.Callback.__init__(self)
        self.terms = _check_terms(terms)
        self.initial = {}
        last_epochs = validation.integer(last_epochs, "last_epochs", minimum=0)
        self.last_epochs = last_epochs

    def scheduled_terms(self) -> tuple[str, ...]:
        if self.terms is not None:
            return self.terms
        have = getattr(self.model, "term_weights", None) or {}
        found = tuple(t for t in DISTILLATION_TERMS if t in have)
        if not found:
            raise ValueError(
                f"`terms`: the model {type(self.model).__name__} has none of the default "
                f"distillation terms {DISTILLATION_TERMS} (its terms: {sorted(have)}); name the "
                "terms to anneal."
            )
        return found

    def value(self, term: str, initial: float, epoch: int, epochs: int) -> float:
        return 0.0 if epoch >= epochs - self.last_epochs else initial
