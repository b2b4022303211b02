"""``keras-sd train`` and ``keras-sd evaluate``: `train` and `evaluate`, thin users of
`keras_sd.experiment.Experiment` (which documents the run directory they write).

The builders and helpers that used to live here are importable from here as before: the
recipe's parts from `keras_sd.experiment` (`build_model`, `build_optimizer`, `learning_rate`,
`build_callbacks`, `recipe_from_dict`, ...), the reports from `keras_sd.reporting`
(`best_epoch`, `output_accuracies`, ...), `EpochHistory` / `read_history` / `RunStats` from
`keras_sd.callbacks`, `write_json_atomic` from `keras_sd.atomic`.
"""

from __future__ import annotations

import os

from keras_sd.atomic import write_json_atomic
from keras_sd.callbacks import HISTORY_FILE, EpochHistory, RunStats, read_history
from keras_sd.experiment import (
    NO_WEIGHT_DECAY,
    Experiment,
    WarmupSchedule,
    build_callbacks,
    build_model,
    build_optimizer,
    learning_rate,
    model_weight_decay,
    pipeline_augment,
    recipe_from_dict,
)
from keras_sd.recipes import Recipe
from keras_sd.reporting import (
    best_epoch,
    calibration,
    evaluated_epochs,
    output_accuracies,
    primary_output,
    print_accuracies,
    print_best,
)


def train(recipe: Recipe, out_dir: str | os.PathLike, *, verbose: int | str = "auto") -> dict:
    """Trains ``recipe``, writing the run directory ``out_dir`` (`Experiment.train`). Rerunning
    with the same ``out_dir`` resumes from the last backup. Returns the metrics dict also written
    to metrics.json.

    Under MultiWorkerMirroredStrategy only the chief (`keras_sd.distribute.is_chief`) writes
    ``out_dir``; every worker reads its backup/ to resume, so it must be on shared storage."""
    return Experiment(recipe, out_dir).train(verbose=verbose)


def evaluate(run_dir: str | os.PathLike, *, verbose: int = 0) -> dict:
    """Re-evaluates a finished run's model (the last epoch's) on its test split and rewrites
    metrics.json's last-epoch part (`Experiment.evaluate`). The best-epoch part cannot be
    re-evaluated (only the last epoch's weights are kept): it is kept as recorded, or rebuilt
    from history.json."""
    return Experiment.from_run(run_dir).evaluate(verbose=verbose)


__all__ = [
    "HISTORY_FILE",
    "NO_WEIGHT_DECAY",
    "EpochHistory",
    "RunStats",
    "WarmupSchedule",
    "best_epoch",
    "build_callbacks",
    "build_model",
    "build_optimizer",
    "calibration",
    "evaluate",
    "evaluated_epochs",
    "learning_rate",
    "model_weight_decay",
    "output_accuracies",
    "pipeline_augment",
    "primary_output",
    "print_accuracies",
    "print_best",
    "read_history",
    "recipe_from_dict",
    "train",
    "write_json_atomic",
]
