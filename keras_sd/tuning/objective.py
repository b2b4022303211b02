"""The tuner's objective: which logged metric, maximised or minimised."""

from __future__ import annotations

import keras_tuner

_MAX_SUFFIXES = ("accuracy", "top5", "auc")
_MIN_SUFFIXES = ("loss", "ece", "nll", "aurc", "error")


def objective_direction(name: str) -> str:
    """``"max"`` for accuracies, ``"min"`` for losses / ECE / NLL / AURC / errors."""
    if name.endswith(_MAX_SUFFIXES):
        return "max"
    if name.endswith(_MIN_SUFFIXES):
        return "min"
    raise ValueError(
        f"`objective` {name!r}: cannot tell whether to maximise or minimise it; write "
        f"{name}:max or {name}:min."
    )


def make_objective(spec: str | keras_tuner.Objective) -> keras_tuner.Objective:
    """``"val_ece"`` or ``"val_exit3_accuracy:max"`` -> `keras_tuner.Objective`."""
    if isinstance(spec, keras_tuner.Objective):
        return spec
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"`objective` must be a metric name such as 'val_accuracy', got {spec!r}.")
    name, _, direction = spec.partition(":")
    direction = direction or objective_direction(name)
    if direction not in ("min", "max"):
        raise ValueError(f"`objective` direction must be 'min' or 'max', got {direction!r}.")
    return keras_tuner.Objective(name, direction)


def default_objective(model) -> str:
    """The final (deployed) output's validation accuracy: ``val_accuracy`` for single-output
    models, ``val_exit{K}_accuracy`` for multi-exit models."""
    primary = getattr(model, "tracked_outputs", ("output",))[0]
    return "val_accuracy" if primary == "output" else f"val_{primary}_accuracy"


__all__ = ["default_objective", "make_objective", "objective_direction"]
