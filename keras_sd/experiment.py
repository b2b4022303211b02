"""The runner's one object: `Experiment(recipe, out_dir)` turns a recipe into its data, model,
optimizer and callbacks, and runs it.

``keras-sd train`` (`keras_sd.train.train`), ``keras-sd evaluate`` (`keras_sd.train.evaluate`),
``keras-sd thresholds`` / ``export`` (`keras_sd.inference.run`, through `Experiment.from_run`),
``keras-sd tune`` (`keras_sd.tuning.RecipeHyperModel`, one experiment per trial's recipe) and the
benchmarks build everything through it, so a recipe's data is loaded by one call
(`Experiment.bundle`) and its model, optimizer and method callbacks by one function each.

A run directory (``out_dir``) holds:
    recipe.json      the recipe as it ran (after overrides)
    backup/          AtomicBackupAndRestore state: rerunning the same command resumes from it
                     (from the last finished epoch, or the last ``save_freq`` step commit)
    logs/            TensorBoard event files (train/ and validation/)
    model.keras      the trained model
    history.json     every epoch's logs as the progress bar shows them (train metrics, scheduled
                     weights and, on evaluated epochs, test-split ``val_`` metrics with every
                     output's ``val_*ece`` / ``val_*nll``), rewritten atomically each epoch, so it
                     survives a kill and resume
    metrics.json     top-1/top-5 of every output on the test split at the last epoch, and at the
                     best evaluated epoch (see `keras_sd.reporting.best_epoch`), calibration,
                     training seconds per epoch and images/s (validation excluded), seconds per
                     evaluation

Under MultiWorkerMirroredStrategy only the chief worker writes the run directory (the other
workers write to private temporary folders); see docs/distributed.md.

The library never imports this module (tests/test_layering.py).
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import shutil
import tempfile

import keras

from keras_sd import atomic, reporting
from keras_sd import recipes as recipes_lib
from keras_sd.recipes import DataConfig, OptimizerConfig, Recipe


def recipe_from_dict(d: dict) -> Recipe:
    """Inverse of `Recipe.to_dict` (used to reload a run's recipe.json)."""
    d = dict(d)
    d["data"] = DataConfig(**d["data"])
    opt = dict(d["optimizer"])
    opt["milestones"] = tuple(opt["milestones"])
    d["optimizer"] = OptimizerConfig(**opt)
    return Recipe(**d)


@keras.saving.register_keras_serializable(package="keras_sd")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 over ``warmup_steps``, then ``schedule`` (offset by the warm-up)."""

    def __init__(self, schedule, warmup_steps: int, peak: float):
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)
        self.peak = float(peak)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.peak * (step + 1.0) / float(self.warmup_steps)
        after = self.schedule(step - self.warmup_steps)
        return keras.ops.where(step < self.warmup_steps, warm, after)

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "warmup_steps": self.warmup_steps,
            "peak": self.peak,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)


def learning_rate(cfg: OptimizerConfig, epochs: int, steps_per_epoch: int):
    """The recipe's learning-rate schedule, per optimizer step."""
    lr = cfg.learning_rate
    warmup = cfg.warmup_epochs * steps_per_epoch
    if cfg.schedule == "constant":
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay([1], [lr, lr])
    elif cfg.schedule == "multistep":
        if not cfg.milestones:
            schedule = keras.optimizers.schedules.PiecewiseConstantDecay([1], [lr, lr])
        else:
            # PiecewiseConstantDecay keeps values[i] while step <= boundary: the drop lands on
            # the first step of epoch m (0-based), like PyTorch's MultiStepLR.
            boundaries = [m * steps_per_epoch - warmup - 1 for m in cfg.milestones]
            values = [lr * cfg.gamma**i for i in range(len(boundaries) + 1)]
            schedule = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    else:  # cosine
        schedule = keras.optimizers.schedules.CosineDecay(
            lr, decay_steps=max(1, epochs * steps_per_epoch - warmup)
        )
    return WarmupSchedule(schedule, warmup, lr) if warmup > 0 else schedule


# AdamW leaves these variables undecayed, as DeiT/timm do (every 1-D parameter: biases and norm
# scales/offsets, plus the ViT's class token and position embedding): a regular expression for
# `keras.optimizers.AdamW.exclude_from_weight_decay`, which the TensorFlow backend matches against
# the tf.Variable's name: the variable's path, e.g. "block_1/ln_1/gamma:0" (on a mirrored replica
# "block_1/ln_1/gamma/replica_1:0").
NO_WEIGHT_DECAY = r"(^|/)(bias|gamma|beta|class_token|embeddings)([:/]|$)"


def build_optimizer(cfg: OptimizerConfig, epochs: int, steps_per_epoch: int):
    """The recipe's optimizer. ``"adamw"`` takes ``cfg.weight_decay`` as decoupled decay (PyTorch's
    ``AdamW(weight_decay=...)``, epsilon 1e-8 as there) and `build_model` then adds no coupled L2;
    ``"sgd"`` and ``"adam"`` leave weight decay to the model (coupled L2)."""
    lr = learning_rate(cfg, epochs, steps_per_epoch)
    if cfg.name == "sgd":
        return keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return keras.optimizers.Adam(lr)
    optimizer = keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay, epsilon=1e-8)
    optimizer.exclude_from_weight_decay(var_names=[NO_WEIGHT_DECAY])
    return optimizer


def model_weight_decay(cfg: OptimizerConfig) -> float:
    """The coupled L2 the model adds: ``cfg.weight_decay``, or 0 for AdamW, whose optimizer
    applies it decoupled (`build_optimizer`)."""
    return 0.0 if cfg.name == "adamw" else cfg.weight_decay


def build_model(
    recipe: Recipe, num_classes: int, input_shape, num_train_examples=None, *, mean=None, std=None
):
    """Backbone from the registry, wrapped in the recipe's method class.

    ``mean`` / ``std``: the data's normalisation (`DataInfo.mean` / ``.std``). A two-view model
    whose ``method_args.distortion`` is one of the pipeline's 8-bit kinds ("autoaugment",
    "randaugment") needs them: its distortion layer (`keras_sd.data.distortion`) maps the
    normalised batches back to pixel values, distorts them and normalises again.
    """
    from keras_sd import backbones

    backbone = backbones.get(
        recipe.backbone,
        num_classes=num_classes,
        input_shape=tuple(input_shape),
        **dict(recipe.backbone_args),
    )
    cls = recipes_lib.method_class(recipe.method)
    method_args = dict(recipe.method_args)
    method_args.update(_pixel_distortion(recipe, input_shape, mean, std))
    if method_args.get("pskd_alpha") is not None and num_train_examples is not None:
        # The prediction bank needs one row per training example: the data set decides.
        given = method_args.get("num_train_examples")
        if given is not None and given < num_train_examples:
            raise ValueError(
                f"`method_args.num_train_examples`={given} is smaller than the training set "
                f"({num_train_examples}); leave it unset to size the PS-KD bank from the data."
            )
        method_args["num_train_examples"] = given or num_train_examples
    return cls(backbone, weight_decay=model_weight_decay(recipe.optimizer), **method_args)


def _pixel_distortion(recipe: Recipe, input_shape, mean, std) -> dict:
    """``{"distortion": layer}`` for a two-view recipe whose distortion acts on pixel values (the
    layer takes the recipe's distortion ``seed``), else ``{}``."""
    from keras_sd.data import pipeline

    kind = recipe.method_args.get("distortion")
    if recipe.method != "two_view" or kind not in pipeline.PIXEL_KINDS:
        return {}
    if mean is None or std is None:
        raise ValueError(
            f"`method_args.distortion`={kind!r} distorts 8-bit pixel values, so build_model needs "
            f"the data's normalisation (mean=DataInfo.mean, std=DataInfo.std); got mean={mean!r}, "
            f"std={std!r}."
        )
    layer = pipeline.distortion(
        kind, tuple(input_shape), seed=recipe.method_args.get("seed"), mean=mean, std=std
    )
    return {"distortion": layer, "seed": None}


def build_callbacks(recipe: Recipe) -> list:
    """The recipe's method callbacks (`keras_sd.callbacks.<Name>(**kwargs)`)."""
    if not recipe.callbacks:
        return []
    from keras_sd import callbacks as cb_lib

    out = []
    for name, kwargs in recipe.callbacks.items():
        cls = getattr(cb_lib, name, None)
        if not (isinstance(cls, type) and issubclass(cls, keras.callbacks.Callback)):
            raise ValueError(
                f"unknown callback {name!r} in recipe {recipe.name!r}; expected the name of a "
                "callback class of keras_sd.callbacks (e.g. 'DistillationAnnealing')."
            )
        out.append(cls(**dict(kwargs)))
    return out


def pipeline_augment(recipe: Recipe) -> str:
    """The pipeline's ``augment`` for a recipe's training data."""
    # Methods that distort inside their training step (two views) take undistorted batches:
    # "none", or for "resize256_crop224" the 256x256 images that the in-step 224 crop cuts.
    if recipe.method == "two_view":
        from keras_sd.data import pipeline

        return pipeline.UNDISTORTED.get(recipe.data.augment, "none")
    return recipe.data.augment


def _mean(values):
    return float(sum(values) / len(values)) if values else None


class Experiment:
    """A recipe and the run directory it writes: its data, model, optimizer and callbacks.

    Every part is built from the recipe alone, the same way for every caller: `bundle` (the
    recipe's `keras_sd.data.load`, loaded once), `build_model`, `optimizer`, `compile`,
    `method_callbacks` and, for a run directory, `run_callbacks`. `train` runs the recipe into
    ``out_dir`` (what ``keras-sd train`` does); `from_run` reopens a finished run and `evaluate`
    re-evaluates it (``keras-sd evaluate``).

    Example:
        >>> from keras_sd.recipes import DataConfig, Recipe
        >>> exp = Experiment(Recipe(name="demo", data=DataConfig(name="digits", batch_size=64)))
        >>> exp.data_args()["augment"], exp.out_dir is None
        ('auto', True)

    Args:
        recipe: the `keras_sd.recipes.Recipe` to run.
        out_dir: the run directory (needed by `train`, `evaluate`, `load_model`).
        evaluation: load the data for evaluation only (no sample index), as `from_run` does.
            The data kind stays the recipe's, since it decides the test split's transform too
            (ImageNet kinds resize and centre-crop to 224x224); the training split is built,
            lazily, but not read.

    Raises:
        ValueError: if ``recipe`` is not a `Recipe`.
    """

    def __init__(
        self, recipe: Recipe, out_dir: str | os.PathLike | None = None, *, evaluation=False
    ):
        if not isinstance(recipe, Recipe):
            raise ValueError(
                f"`recipe` must be a keras_sd.recipes.Recipe, got {type(recipe).__name__}."
            )
        self.recipe = recipe
        self.out_dir = None if out_dir is None else pathlib.Path(out_dir)
        self.evaluation = bool(evaluation)

    def __repr__(self):
        return f"Experiment({self.recipe.name!r}, out_dir={self.out_dir!r})"

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike) -> Experiment:
        """The experiment of a finished run: its recipe.json, for its model.keras
        (`load_model`) and its data with the test split un-augmented (`bundle`).

        Raises:
            ValueError: if ``run_dir`` has no recipe.json or no model.keras.
        """
        run = pathlib.Path(run_dir)
        for needed in ("recipe.json", "model.keras"):
            if not (run / needed).exists():
                raise ValueError(
                    f"`run_dir` {str(run)!r} has no {needed}; is it a finished keras-sd run?"
                )
        recipe = recipe_from_dict(json.loads((run / "recipe.json").read_text()))
        return cls(recipe, run, evaluation=True)

    def _run_dir(self) -> pathlib.Path:
        if self.out_dir is None:
            raise ValueError(
                f"`out_dir` is None for {self!r}; expected a run directory: "
                "Experiment(recipe, out_dir)."
            )
        return self.out_dir

    # -- data
    def data_args(self) -> dict:
        """The keyword arguments of the recipe's `keras_sd.data.load` (after the data name)."""
        d = self.recipe.data
        args = dict(
            batch_size=d.batch_size,
            eval_batch_size=d.eval_batch_size,
            # Evaluation too: "none" would give the test split another transform than the
            # training run's (the raw images instead of ImageNet's 224x224 centre crops).
            augment=pipeline_augment(self.recipe),
            seed=self.recipe.seed,
            data_dir=d.data_dir,
            train_per_class=d.train_per_class,
            subset_seed=d.subset_seed,
            image_size=d.image_size,
        )
        if not self.evaluation:
            args["with_index"] = d.with_index
        return args

    @functools.cached_property
    def bundle(self):
        """The recipe's `keras_sd.data.DataBundle`, loaded on first use."""
        from keras_sd import data as data_lib

        return data_lib.load(self.recipe.data.name, **self.data_args())

    @property
    def steps_per_epoch(self) -> int:
        """The recipe's ``steps_per_epoch``, or the data's batches per epoch."""
        return self.recipe.steps_per_epoch or self.bundle.batches_per_epoch

    # -- model, optimizer, callbacks
    def build_model(self):
        """The recipe's model (`build_model`) for its data (classes, shape, size, normalisation)."""
        info = self.bundle.info
        return build_model(
            self.recipe,
            info.num_classes,
            info.image_shape,
            info.num_train,
            mean=info.mean,
            std=info.std,
        )

    def optimizer(self):
        """The recipe's optimizer and schedule over its epochs (`build_optimizer`)."""
        return build_optimizer(self.recipe.optimizer, self.recipe.epochs, self.steps_per_epoch)

    def compile(self, model):
        """``model`` compiled with a new `optimizer` and the recipe's ``jit_compile``."""
        model.compile(optimizer=self.optimizer(), jit_compile=self.recipe.jit_compile)
        return model

    def method_callbacks(self) -> list:
        """The recipe's method callbacks (`build_callbacks`)."""
        return build_callbacks(self.recipe)

    def run_callbacks(self, model, write_dir, *, backup, previous=(), stats=None) -> list:
        """The callbacks of a `train` run writing ``write_dir``, in their order.

        ``backup`` is the run's `keras_sd.callbacks.AtomicBackupAndRestore`, ``previous`` the
        history entries kept from before a resume, ``stats`` a `keras_sd.callbacks.RunStats`.
        """
        from keras_sd import callbacks as cb_lib

        write_dir = pathlib.Path(write_dir)
        return [
            # Raises at the first NaN/inf loss term, before any epoch-end backup could save the
            # broken weights over the last good ones.
            cb_lib.NonFiniteLossGuard(),
            # Everything that adds to the epoch logs comes before EpochHistory, so history.json
            # holds what the progress bar and TensorBoard show: the method callbacks' scheduled
            # weights (kl_loss_weight, pskd_alpha_t), then the inspection callbacks' val_ece /
            # val_nll of every output. None of them changes state the backup saves.
            *self.method_callbacks(),
            *([stats] if stats is not None else []),
            # Reliability diagrams (+ val_ece / val_nll in the logs), exit attention maps, the
            # early-exit plot and the HParams entry.
            *cb_lib.inspection_callbacks(
                model,
                write_dir / "logs",
                self.bundle.test,
                run_dir=self._run_dir(),
                recipe=self.recipe,
                every_n_epochs=self.recipe.eval_every,
                # `train` validates on self.bundle.test at exactly these epochs.
                fit_validation=True,
            ),
            # Before the backup: an epoch the backup has committed is always in history.json.
            cb_lib.EpochHistory(write_dir, previous),
            backup,
            keras.callbacks.TensorBoard(str(write_dir / "logs")),
        ]

    def load_model(self):
        """The run's model.keras."""
        return keras.models.load_model(self._run_dir() / "model.keras")

    # -- running
    def train(self, *, verbose: int | str = "auto") -> dict:
        """Trains the recipe, writing ``out_dir``. Rerunning with the same ``out_dir`` resumes
        from the last backup. Returns the metrics dict also written to metrics.json.

        Under MultiWorkerMirroredStrategy only the chief (`keras_sd.distribute.is_chief`) writes
        ``out_dir``; every worker reads its backup/ to resume, so it must be on shared storage.

        Raises:
            ValueError: if ``out_dir`` holds a run of another recipe.
        """
        from keras_sd import distribute

        recipe, out = self.recipe, self._run_dir()
        recipe_file = out / "recipe.json"
        if recipe_file.exists():
            previous = json.loads(recipe_file.read_text())
            try:  # fields added since the run started take their defaults
                previous = recipe_from_dict(previous).to_dict()
            except (TypeError, KeyError, ValueError):
                pass
            if previous != recipe.to_dict():
                raise ValueError(
                    f"`--out` {str(out)!r} holds a run of a different recipe "
                    f"({previous.get('name')!r}); use another --out directory to start a new run."
                )

        keras.utils.set_random_seed(recipe.seed)
        if recipe.precision != "float32":
            keras.mixed_precision.set_global_policy(recipe.precision)
        strategy = distribute.get_strategy(recipe.strategy)
        # Under MultiWorkerMirroredStrategy every worker runs all of this. Only the chief writes
        # the run folder; the others write model, metrics and logs to a private scratch folder
        # (deleted at the end) and read the chief's backup/ to resume, so out_dir must be shared
        # storage.
        chief = distribute.is_chief(strategy)
        scratch = (
            None
            if chief
            else pathlib.Path(
                tempfile.mkdtemp(prefix=f"keras_sd_run_{distribute.worker_id(strategy)}_")
            )
        )
        write_dir = out if chief else scratch
        if chief:
            out.mkdir(parents=True, exist_ok=True)
            atomic.write_json_atomic(recipe_file, recipe.to_dict())
        try:
            return self._fit_and_report(write_dir, strategy, verbose)
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    def _fit_and_report(self, write_dir: pathlib.Path, strategy, verbose) -> dict:
        """`train` after the strategy exists: ``out_dir`` is the run folder (its backup/ is read
        by every worker), ``write_dir`` is where this process writes (``out_dir`` on the chief)."""
        from keras_sd import callbacks as cb_lib

        recipe, out = self.recipe, self._run_dir()
        bundle = self.bundle
        info = bundle.info
        steps = self.steps_per_epoch
        # Keras' BackupAndRestore, but each state is committed by one atomic rename, so a kill
        # at any instant leaves a loadable, self-consistent backup; with save_freq in steps a
        # killed run resumes mid-epoch.
        backup = cb_lib.AtomicBackupAndRestore(
            str(out / "backup"),
            save_freq=recipe.save_freq,
            delete_checkpoint=False,
            double_checkpoint=True,
        )
        with strategy.scope():
            model = self.compile(self.build_model())
            # BackupAndRestore needs a built model; zeros avoid touching the cached pipelines.
            model(keras.ops.zeros((2, *info.image_shape)), training=False)
            # Restored now, not in fit: the training input must start where the backup is.
            resume, resume_step = backup.restore(model)
        # Batch g of the run is batch g of the endless seeded sequence epoch 0, epoch 1, ... (a
        # pure function of the seed and g), so a resumed run continues with the batches the
        # uninterrupted run saw, nothing replayed.
        train_data = bundle.batches(resume * steps + resume_step, recipe.epochs * steps)
        # The epochs finished before a kill keep their logs (history.json), so the best epoch
        # is over the whole run; entries of the epoch the kill interrupted are dropped.
        previous = [e for e in cb_lib.read_history(write_dir) if e["epoch"] <= resume]
        stats = cb_lib.RunStats(recipe.data.batch_size)
        model.fit(
            train_data,
            epochs=recipe.epochs,
            steps_per_epoch=steps,
            validation_data=bundle.test,
            validation_freq=reporting.evaluated_epochs(recipe),
            callbacks=self.run_callbacks(
                model, write_dir, backup=backup, previous=previous, stats=stats
            ),
            verbose=verbose,
            shuffle=False,  # the pipeline shuffles, seeded
        )
        atomic.save_model_atomic(model, write_dir / "model.keras")  # temp file + rename
        logs = model.evaluate(bundle.test, return_dict=True, verbose=0)
        accuracy = reporting.output_accuracies(logs)
        metrics = {
            "recipe": recipe.name,
            "epochs": recipe.epochs,
            "calibration": reporting.calibration(model, bundle.test),
            "test": {k: float(v) for k, v in logs.items()},
            "accuracy": accuracy,
            "last_epoch": reporting.last_epoch(recipe.epochs, accuracy),
            "best_epoch": reporting.best_epoch(
                cb_lib.read_history(write_dir), reporting.primary_output(model), recipe.eval_every
            ),
            "seconds_per_epoch": _mean(stats.epoch_seconds),
            "images_per_second": _mean(stats.images_per_second),
            "validation_seconds": _mean(stats.validation_seconds),
        }
        atomic.write_json_atomic(write_dir / "metrics.json", metrics)
        reporting.print_accuracies(
            metrics["accuracy"], f"{recipe.name}: test accuracy of every output, last epoch"
        )
        reporting.print_best(metrics["best_epoch"])
        print(f"TensorBoard logs: {out / 'logs'}   (tensorboard --logdir {out / 'logs'})")
        return metrics

    def evaluate(self, *, verbose: int = 0) -> dict:
        """Re-evaluates the run's model (the last epoch's) on its test split and rewrites
        metrics.json's last-epoch part. The best-epoch part cannot be re-evaluated (only the
        last epoch's weights are kept): it is kept as recorded, or rebuilt from history.json."""
        from keras_sd import callbacks as cb_lib

        recipe, run = self.recipe, self._run_dir()
        model = self.load_model()
        bundle = self.bundle
        logs = model.evaluate(bundle.test, return_dict=True, verbose=verbose)
        previous = (
            json.loads((run / "metrics.json").read_text())
            if (run / "metrics.json").exists()
            else {}
        )
        accuracy = reporting.output_accuracies(logs)
        history = cb_lib.read_history(run)
        best = previous.get("best_epoch") or reporting.best_epoch(
            history, reporting.primary_output(model), recipe.eval_every
        )
        metrics = {
            **previous,
            "recipe": recipe.name,
            "test": {k: float(v) for k, v in logs.items()},
            "accuracy": accuracy,
            "last_epoch": reporting.last_epoch(
                history[-1]["epoch"] if history else recipe.epochs, accuracy
            ),
            "best_epoch": best,
            "calibration": reporting.calibration(model, bundle.test),
        }
        atomic.write_json_atomic(run / "metrics.json", metrics)
        reporting.print_accuracies(
            metrics["accuracy"],
            f"{recipe.name}: test accuracy of every output, last epoch (re-evaluated)",
        )
        reporting.print_best(best)
        if best is not None:
            print("  (best epoch: as recorded during training, not re-evaluated)")
        return metrics


__all__ = [
    "NO_WEIGHT_DECAY",
    "Experiment",
    "WarmupSchedule",
    "build_callbacks",
    "build_model",
    "build_optimizer",
    "learning_rate",
    "model_weight_decay",
    "pipeline_augment",
    "recipe_from_dict",
]
