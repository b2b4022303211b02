"""`RecipeHyperModel`: a keras-tuner HyperModel whose trials are `Experiment` s of a recipe."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import keras_tuner

from keras_sd.recipes import Recipe
from keras_sd.tuning.spaces import Space, _order_key, apply_hyperparameters, resolve_search


class RecipeHyperModel(keras_tuner.HyperModel):
    """Builds and fits a recipe whose searchable fields come from the trial's hyperparameters.

    ``build(hp)`` applies the hyperparameters to the recipe (`apply_hyperparameters`, via
    `keras_sd.recipes.apply_override`), seeds Keras with the recipe's seed (every trial starts
    from the same initial weights and data order), builds the model and compiles it with the
    recipe's optimizer and schedule. ``fit(hp, model, ...)`` loads the recipe's data (cached per
    data configuration) and fits with the recipe's method callbacks, this package's TensorBoard
    callbacks (`keras_sd.callbacks.inspection_callbacks`, in the trial's log directory when a
    ``keras.callbacks.TensorBoard`` is among the search callbacks) and the tuner's callbacks. The
    epochs default to the recipe's; Hyperband passes its budget.

    Args:
        recipe: the recipe to tune.
        search: fields to search (see `resolve_search`); None: the method's paper sweep.
        spaces: spaces overriding `DEFAULT_SPACES` by name.
        inspect: add the TensorBoard image/calibration callbacks to every trial.
        verbose: Keras ``fit`` verbosity of each trial.
    """

    def __init__(
        self,
        recipe: Recipe,
        search: Sequence[str] | Mapping[str, Space | None] | None = None,
        spaces: Mapping[str, Space] | None = None,
        *,
        inspect: bool = True,
        verbose: int | str = 0,
    ):
        if not isinstance(recipe, Recipe):
            raise ValueError(
                f"`recipe` must be a keras_sd.recipes.Recipe, got {type(recipe).__name__}."
            )
        super().__init__(name=recipe.name.replace("/", "_").replace(":", "_"), tunable=True)
        self.recipe = recipe
        self.search = resolve_search(recipe, search, spaces)
        self.inspect = bool(inspect)
        self.verbose = verbose
        self._bundles: dict[str, Any] = {}

    # -- hyperparameters
    def declare_hyperparameters(self, hp: keras_tuner.HyperParameters) -> None:
        for name, (_, space) in self.search.items():
            space.define(hp, name)

    def recipe_for(self, hp: keras_tuner.HyperParameters) -> Recipe:
        """The recipe of a trial (every searched field defined in ``hp``, then applied)."""
        self.declare_hyperparameters(hp)
        return apply_hyperparameters(self.recipe, self.search, hp.values)

    def check_space(self) -> None:
        """Builds the model with every searched field at its lowest, then at its highest value,
        so a space the method rejects (``alpha`` > 1, a negative weight) fails before any trial
        with the method's own `ValueError`, instead of as failed trials inside keras-tuner."""
        for end in (0, -1):
            values = {}
            for name, (_, space) in self.search.items():
                options = space.values or (space.low, space.high)
                values[name] = sorted(options, key=_order_key)[end]
            recipe = apply_hyperparameters(self.recipe, self.search, values)
            try:
                self.experiment(recipe).build_model()
            except ValueError as err:
                raise ValueError(f"`search`: the method rejects {values}: {err}") from None

    # -- data
    def experiment(self, recipe: Recipe):
        """The `keras_sd.experiment.Experiment` of a trial's recipe; its data (`bundle`) is
        loaded once per data configuration and shared by the trials that have it."""
        from keras_sd.experiment import Experiment

        experiment = Experiment(recipe)
        key = json.dumps(
            [dataclasses.asdict(recipe.data), recipe.seed, experiment.data_args()["augment"]],
            sort_keys=True,
        )
        if key not in self._bundles:
            self._bundles[key] = experiment.bundle
        experiment.bundle = self._bundles[key]
        return experiment

    def data(self, recipe: Recipe):
        """`keras_sd.data.load` of the recipe's data, cached per data configuration."""
        return self.experiment(recipe).bundle

    # -- keras_tuner.HyperModel
    def build(self, hp: keras_tuner.HyperParameters):
        experiment = self.experiment(self.recipe_for(hp))  # loads the data, then seeds
        keras.utils.set_random_seed(experiment.recipe.seed)
        return experiment.compile(experiment.build_model())

    def fit(self, hp, model, *args, callbacks=None, epochs=None, **kwargs):
        from keras_sd import callbacks as cb_lib

        if args:
            raise ValueError(
                "RecipeHyperModel.fit takes no data arguments: the recipe's data is used "
                f"(got {len(args)} positional argument(s))."
            )
        experiment = self.experiment(self.recipe_for(hp))
        recipe, bundle = experiment.recipe, experiment.bundle
        callbacks = list(callbacks or [])
        extra = []
        if self.inspect:
            board = next((c for c in callbacks if isinstance(c, keras.callbacks.TensorBoard)), None)
            if board is not None:  # keras-tuner has pointed it at the trial's directory
                extra = cb_lib.inspection_callbacks(
                    model,
                    board.log_dir,
                    bundle.test,
                    fit_validation=True,  # every epoch
                )
        kwargs.setdefault("verbose", self.verbose)
        epochs = epochs or recipe.epochs
        steps = experiment.steps_per_epoch
        # Epoch e of every trial is the same seeded batches (Hyperband's continued trials pass
        # initial_epoch), whatever came before in this process.
        start = int(kwargs.get("initial_epoch", 0)) * steps
        return model.fit(
            bundle.batches(start, max(start, epochs * steps)),
            epochs=epochs,
            steps_per_epoch=steps,
            validation_data=bundle.test,
            # Method callbacks and ours first: they add alpha / val_ece ... to the epoch logs that
            # TensorBoard, the tuner and its best-epoch checkpoint then read.
            callbacks=[*experiment.method_callbacks(), *extra, *callbacks],
            shuffle=False,
            **kwargs,
        )


__all__ = ["RecipeHyperModel"]
