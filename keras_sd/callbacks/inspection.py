"""`inspection_callbacks`: the TensorBoard callbacks that apply to a model, in order."""

from __future__ import annotations

import os
import pathlib

import keras

from keras_sd.callbacks.attention_maps import AttentionMaps, has_attention_exits
from keras_sd.callbacks.early_exit_plot import EarlyExitPlot
from keras_sd.callbacks.recipe_hparams import RecipeHParams
from keras_sd.callbacks.reliability_diagram import ReliabilityDiagram
from keras_sd.models.multi_exit import MultiExitDistiller


def inspection_callbacks(
    model,
    log_dir: str | os.PathLike,
    validation_data,
    *,
    run_dir: str | os.PathLike | None = None,
    recipe=None,
    num_images: int = 4,
    max_samples: int | None = None,
    every_n_epochs: int = 1,
    fit_validation: bool = False,
) -> list[keras.callbacks.Callback]:
    """The callbacks of this module that apply to ``model``, in the order to use them.

    `ReliabilityDiagram` always; `AttentionMaps` for multi-exit models with attention exits;
    `EarlyExitPlot` (``<run_dir>/thresholds.json``) for multi-exit models when ``run_dir`` is
    given; `RecipeHParams` when ``recipe`` is given. Put them before
    ``keras.callbacks.TensorBoard(log_dir)``. ``every_n_epochs`` thins the two per-epoch
    image callbacks to match an evaluation frequency.

    ``fit_validation=True`` says ``validation_data`` is also ``fit``'s, validated on the epochs
    ``every_n_epochs`` selects: the reliability diagram of a keras_sd model then draws the
    calibration the model tracked during that pass (`ReliabilityDiagram` with
    ``validation_data=None``) instead of predicting the data a second time.
    """
    reuse = (
        fit_validation
        and max_samples is None
        and callable(getattr(model, "calibration_state", None))
    )
    callbacks: list[keras.callbacks.Callback] = [
        ReliabilityDiagram(
            log_dir,
            None if reuse else validation_data,
            max_samples=max_samples,
            every_n_epochs=every_n_epochs,
        )
    ]
    if has_attention_exits(model):
        callbacks.append(
            AttentionMaps(
                log_dir, validation_data, num_images=num_images, every_n_epochs=every_n_epochs
            )
        )
    if run_dir is not None and isinstance(model, MultiExitDistiller):
        callbacks.append(EarlyExitPlot(log_dir, pathlib.Path(run_dir) / "thresholds.json"))
    if recipe is not None:
        callbacks.append(RecipeHParams(log_dir, recipe))
    return callbacks


__all__ = ["inspection_callbacks"]
