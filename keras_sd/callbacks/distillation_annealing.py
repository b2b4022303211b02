"""`DistillationAnnealing`: distillation weights to 0 for the last epochs (TPAMI, section 4.1)."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_sd import validation
from keras_sd.callbacks.variable_schedule import VariableSchedule, _check_terms

# What `DistillationAnnealing` anneals when no terms are named: TPAMI's alpha (the exits' KL and,
# with a teacher, the teacher's KL) and lambda (the feature hint), those of them the model has.
DISTILLATION_TERMS = ("kl_loss", "teacher_kl_loss", "feature_loss")


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


__all__ = ["DISTILLATION_TERMS", "DistillationAnnealing"]
