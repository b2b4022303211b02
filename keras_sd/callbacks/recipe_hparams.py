"""`RecipeHParams`: the HParams dashboard entry of a ``keras-sd train`` run (its recipe)."""

from __future__ import annotations

import json
import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf


def _hparam_value(value):
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return json.dumps(value, sort_keys=True, default=str)


def recipe_hparams(recipe) -> dict[str, bool | int | float | str]:
    """The recipe's fields as HParams values (``method_args.alpha``, ``optimizer.learning_rate``, ...).

    Scalars stay scalars; tuples, dicts and None become their JSON text.
    """
    d = recipe.to_dict()
    out: dict[str, Any] = {}
    for key in ("method", "backbone", "epochs", "seed", "precision", "strategy"):
        out[key] = _hparam_value(d[key])
    for group in ("method_args", "backbone_args"):
        for k, v in d[group].items():
            out[f"{group}.{k}"] = _hparam_value(v)
    for k in ("name", "learning_rate", "weight_decay", "schedule", "momentum"):
        out[f"optimizer.{k}"] = _hparam_value(d["optimizer"][k])
    for k in ("name", "batch_size", "augment"):
        out[f"data.{k}"] = _hparam_value(d["data"][k])
    return out


class RecipeHParams(keras.callbacks.Callback):
    """HParams plugin entry of a training run: the recipe's fields (`recipe_hparams`).

    Writes the session start at ``on_train_begin`` and its end at ``on_train_end`` to
    ``log_dir`` (the parent of Keras' ``train/`` and ``validation/``), as keras-tuner does for
    its trials, so the HParams dashboard lists the run with its validation metrics.

    Args:
        log_dir: TensorBoard log directory of the run.
        recipe: the `keras_sd.recipes.Recipe` that runs.
        trial_id: session name (default: the recipe's name).
    """

    def __init__(self, log_dir: str | os.PathLike, recipe, trial_id: str | None = None):
        super().__init__()
        if not hasattr(recipe, "to_dict"):
            raise ValueError(f"`recipe` must be a keras_sd Recipe, got {type(recipe).__name__}.")
        self.log_dir = str(log_dir)
        self.hparams = recipe_hparams(recipe)
        self.trial_id = trial_id or recipe.name
        self._writer = None

    def _write(self, fn):
        writer = tf.summary.create_file_writer(self.log_dir)
        with writer.as_default():
            fn()
        writer.close()

    def on_train_begin(self, logs=None):
        from tensorboard.plugins.hparams import api as hp_api

        self._write(lambda: hp_api.hparams(self.hparams, trial_id=self.trial_id))

    def on_train_end(self, logs=None):
        from tensorboard.plugins.hparams import api_pb2, summary

        raw = summary.session_end_pb(api_pb2.STATUS_SUCCESS).SerializeToString()
        self._write(lambda: tf.summary.experimental.write_raw_pb(raw, step=0))


__all__ = ["RecipeHParams", "recipe_hparams"]
