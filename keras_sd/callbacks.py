"""Callbacks that schedule the methods' loss weights during training.

Loss weights that change during training (``alpha``, ``feature_weight``, PS-KD's ``alpha_t``) are
non-trainable `keras.Variable` attributes of the model. A callback assigns them, so the compiled
train step reads the new value without retracing and checkpoints keep it; the callback also writes
the current values into the epoch ``logs``, so `History` and a `keras.callbacks.TensorBoard`
placed *after* it in the callback list record them.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras


def _model_variable(model, name: str):
    value = getattr(model, name, None)
    if not isinstance(value, keras.Variable):
        raise ValueError(
            f"`names`: the model {type(model).__name__} has no keras.Variable attribute {name!r} "
            f"to schedule (got {type(value).__name__})."
        )
    return value


class VariableSchedule(keras.callbacks.Callback):
    """Base class: sets model variables at the start of every epoch and logs them at its end.

    Subclasses implement `value(name, initial, epoch, epochs)`. ``initial`` is the model's
    configured value, read from its ``<name>_value`` attribute when it has one (as
    `MultiExitDistiller` does, so a run resumed from a checkpoint taken while a weight was
    scheduled to 0 still gets the configured value back), else the variable's value when
    training began; ``epoch`` is 0-based and absolute (resuming with ``initial_epoch`` keeps
    the schedule); ``epochs`` is the ``epochs`` argument of ``fit``.

    Args:
        names: names of the model's non-trainable `keras.Variable` attributes to schedule.
    """

    def __init__(self, names: Sequence[str]):
        super().__init__()
        if isinstance(names, str) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError(f"`names` must be a non-empty list of attribute names, got {names!r}.")
        self.names = tuple(names)
        self.initial: dict[str, float] = {}

    def value(self, name: str, initial: float, epoch: int, epochs: int) -> float:
        raise NotImplementedError

    def on_train_begin(self, logs=None):
        for name in self.names:
            var = _model_variable(self.model, name)
            configured = getattr(self.model, f"{name}_value", None)
            if configured is None:
                configured = keras.ops.convert_to_numpy(var)
            self.initial[name] = float(configured)

    def on_epoch_begin(self, epoch, logs=None):
        epochs = int(self.params.get("epochs") or 0)
        for name in self.names:
            value = self.value(name, self.initial[name], epoch, epochs)
            _model_variable(self.model, name).assign(value)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            for name in self.names:
                logs[name] = float(keras.ops.convert_to_numpy(getattr(self.model, name)))


class DistillationAnnealing(VariableSchedule):
    """Sets the distillation weights to 0 for the last ``last_epochs`` epochs of training.

    TPAMI: "in the last 5 epochs of the training period, both alpha and lambda are set to 0 to
    facilitate model convergence". Before that the weights keep the values they had when training
    began. Works with any model whose weights are `keras.Variable` attributes (by default
    `keras_sd.models.multi_exit.MultiExitDistiller`'s ``alpha`` and ``feature_weight``).

    Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural
    Networks", TPAMI, section 4.1.

    Args:
        last_epochs: number of final epochs with the weights at 0 (>= 0).
        names: the model attributes to anneal.
    """

    def __init__(self, last_epochs: int = 5, names: Sequence[str] = ("alpha", "feature_weight")):
        super().__init__(names)
        if isinstance(last_epochs, bool) or not isinstance(last_epochs, int) or last_epochs < 0:
            raise ValueError(f"`last_epochs` must be an int >= 0, got {last_epochs!r}.")
        self.last_epochs = last_epochs

    def value(self, name: str, initial: float, epoch: int, epochs: int) -> float:
        return 0.0 if epoch >= epochs - self.last_epochs else initial
