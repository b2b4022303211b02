"""Running a recipe: data, model, optimizer, callbacks, `fit`, and the files a run leaves.

A run directory holds:
    recipe.json      the recipe as it ran (after overrides)
    backup/          BackupAndRestore state: rerunning the same command resumes from it (from
                     the last finished epoch, or the last ``save_freq`` step commit)
    logs/            TensorBoard event files (train/ and validation/)
    model.keras      the trained model
    history.json     every epoch's logs (train and, on evaluated epochs, test-split ``val_``
                     metrics), rewritten atomically each epoch, so it survives a kill and resume
    metrics.json     top-1/top-5 of every output on the test split at the last epoch, and at the
                     best evaluated epoch (see `best_epoch`), seconds per epoch, images/s

Under MultiWorkerMirroredStrategy only the chief worker writes the run directory (the other
workers write to private temporary folders); see docs/distributed.md.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import tempfile
import time
from typing import Any

import keras
import numpy as np

from keras_sd import recipes as recipes_lib
from keras_sd import reliability
from keras_sd.recipes import DataConfig, OptimizerConfig, Recipe


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """Writes JSON to a temporary file in the same folder, then renames it over ``path``, so a
    crash never leaves a torn file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # e.g. a payload JSON cannot encode: leave no temporary file behind
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


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
        if cls is None:
            raise ValueError(f"unknown callback {name!r} in recipe {recipe.name!r}.")
        out.append(cls(**dict(kwargs)))
    return out


class RunStats(keras.callbacks.Callback):
    """Seconds per epoch and training images per second (wall clock)."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.epoch_seconds: list[float] = []
        self.images_per_second: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._steps = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1

    def on_epoch_end(self, epoch, logs=None):
        # Measured before validation runs, which Keras does after on_epoch_end's train part;
        # the elapsed time here covers the training steps of the epoch.
        seconds = time.perf_counter() - self._start
        self.epoch_seconds.append(seconds)
        self.images_per_second.append(self._steps * self.batch_size / max(seconds, 1e-9))


def output_accuracies(logs: dict) -> dict:
    """``{output: {"top1": .., "top5": ..}}`` from evaluate() logs."""
    out = {}
    for key, value in logs.items():
        if key.endswith("accuracy"):
            name = key[: -len("accuracy")].rstrip("_") or "output"
            out.setdefault(name, {})["top1"] = float(value)
        elif key.endswith("top5"):
            name = key[: -len("top5")].rstrip("_") or "output"
            out.setdefault(name, {})["top5"] = float(value)
    return out


def print_accuracies(accuracies: dict, title: str) -> None:
    print(f"\n{title}")
    print(f"  {'output':<12} {'top-1':>8} {'top-5':>8}")
    for name, acc in accuracies.items():
        print(
            f"  {name:<12} {100 * acc.get('top1', math.nan):7.2f}% {100 * acc.get('top5', math.nan):7.2f}%"
        )


HISTORY_FILE = "history.json"


def _plain_logs(logs: dict) -> dict:
    out = {}
    for key, value in (logs or {}).items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """The per-epoch log entries of a run (``[]`` when it has no history.json). Each entry is
    ``{"epoch": n, ...logs, "epoch_seconds": s}`` with ``n`` 1-based (as Keras prints it);
    ``val_*`` keys are there only on epochs that evaluated on the test split; ``epoch_seconds``
    is the wall clock from the epoch's start to the end of its evaluation."""
    path = pathlib.Path(run_dir) / HISTORY_FILE
    if not path.exists():
        return []
    return list(json.loads(path.read_text())["epochs"])


class EpochHistory(keras.callbacks.Callback):
    """Appends every epoch's logs to ``<dir>/history.json`` (atomic rewrite each epoch).

    ``previous`` holds the entries of the epochs finished before a resume; entries from the
    resumed epoch on are dropped (they belonged to an epoch the kill cut short of its backup).
    Put it before the backup callback, so an epoch committed to the backup is always in the
    history too."""

    def __init__(self, directory: str | os.PathLike, previous: list[dict] = ()):
        super().__init__()
        self.path = pathlib.Path(directory) / HISTORY_FILE
        self.entries = list(previous)

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        number = int(epoch) + 1
        self.entries = [e for e in self.entries if e["epoch"] < number]
        # epoch_seconds: wall clock from the epoch's start to the end of its evaluation.
        seconds = time.perf_counter() - getattr(self, "_start", time.perf_counter())
        self.entries.append({"epoch": number, **_plain_logs(logs), "epoch_seconds": seconds})
        write_json_atomic(self.path, {"epochs": self.entries})


def primary_output(model) -> str:
    """Name of the deployed output (the first of ``model.tracked_outputs``: the final exit for
    multi-exit models, ``output`` for single-output ones)."""
    return getattr(model, "tracked_outputs", ("output",))[0]


def _val_key(output: str, kind: str = "accuracy") -> str:
    return f"val_{kind}" if output == "output" else f"val_{output}_{kind}"


def best_epoch(history: list[dict], primary: str, eval_every: int = 1) -> dict | None:
    """The evaluated epoch with the highest test-split top-1 of the ``primary`` output (the
    earliest on ties), with every output's top-1/top-5 at that epoch; None if no epoch was
    evaluated. This is the figure the papers' code reports (BYOT keeps the best ensemble
    accuracy over epochs, PS-KD the best top-1); it is chosen on the test split itself, so it is
    optimistic: the last epoch is the honest figure."""
    key = _val_key(primary)
    evaluated = [e for e in history if key in e]
    if not evaluated:
        return None
    best = max(evaluated, key=lambda e: (e[key], -e["epoch"]))
    val = {k[len("val_") :]: v for k, v in best.items() if k.startswith("val_")}
    return {
        "epoch": int(best["epoch"]),
        "selected_by": key,
        "selected_output": primary,
        "evaluated_epochs": len(evaluated),
        "eval_every": int(eval_every),
        "accuracy": output_accuracies(val),
        "note": "best test-split epoch by the primary output's top-1, over evaluated epochs "
        "(what the papers report; optimistic, selected on the test split)",
    }


def _last_epoch(epoch: int, accuracy: dict) -> dict:
    return {
        "epoch": int(epoch),
        "accuracy": accuracy,
        "note": "the model after the final epoch (the honest figure; same as `accuracy`)",
    }


def print_best(best: dict | None) -> None:
    if best is None:
        print("\nbest epoch: no evaluated epoch recorded")
        return
    print_accuracies(
        best["accuracy"],
        f"best epoch {best['epoch']} (by {best['selected_by']}, over {best['evaluated_epochs']} "
        "evaluated epochs; optimistic, the papers' figure)",
    )


def train(recipe: Recipe, out_dir: str | os.PathLike, *, verbose: int | str = "auto") -> dict:
    """Trains ``recipe``, writing the run directory. Rerunning with the same ``out_dir`` resumes
    from the last epoch's backup. Returns the metrics dict also written to metrics.json.

    Under MultiWorkerMirroredStrategy only the chief (`keras_sd.distribute.is_chief`) writes
    ``out_dir``; every worker reads its backup/ to resume, so it must be on shared storage."""
    from keras_sd import distribute

    out = pathlib.Path(out_dir)
    recipe_file = out / "recipe.json"
    if recipe_file.exists():
        previous = json.loads(recipe_file.read_text())
        try:  # fields added since the run started take their defaults
            previous = recipe_from_dict(previous).to_dict()
        except (TypeError, KeyError, ValueError):
            pass
        if previous != recipe.to_dict():
            raise ValueError(
                f"`--out` {str(out)!r} holds a run of a different recipe ({previous.get('name')!r}); "
                "use another --out directory to start a new run."
            )

    keras.utils.set_random_seed(recipe.seed)
    if recipe.precision != "float32":
        keras.mixed_precision.set_global_policy(recipe.precision)
    strategy = distribute.get_strategy(recipe.strategy)
    # Under MultiWorkerMirroredStrategy every worker runs all of this. Only the chief writes the
    # run folder; the others write model, metrics and logs to a private scratch folder (deleted
    # at the end) and read the chief's backup/ to resume, so out_dir must be shared storage.
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
        write_json_atomic(recipe_file, recipe.to_dict())
    try:
        return _fit_and_report(recipe, out, write_dir, strategy, verbose)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _fit_and_report(
    recipe: Recipe, out: pathlib.Path, write_dir: pathlib.Path, strategy, verbose
) -> dict:
    """`train` after the strategy exists: ``out`` is the run folder (its backup/ is read by
    every worker), ``write_dir`` is where this process writes (``out`` on the chief)."""
    from keras_sd import data as data_lib
    from keras_sd import tensorboard as sd_tensorboard

    bundle = data_lib.load(
        recipe.data.name,
        batch_size=recipe.data.batch_size,
        eval_batch_size=recipe.data.eval_batch_size,
        augment=_pipeline_augment(recipe),
        with_index=recipe.data.with_index,
        seed=recipe.seed,
        data_dir=recipe.data.data_dir,
        train_per_class=recipe.data.train_per_class,
        subset_seed=recipe.data.subset_seed,
        image_size=recipe.data.image_size,
    )
    info = bundle.info
    steps = recipe.steps_per_epoch or bundle.batches_per_epoch
    # Keras' BackupAndRestore, but each state is committed by one atomic rename, so a kill at
    # any instant leaves a loadable, self-consistent backup; with save_freq in steps a killed
    # run resumes mid-epoch.
    backup = reliability.AtomicBackupAndRestore(
        str(out / "backup"),
        save_freq=recipe.save_freq,
        delete_checkpoint=False,
        double_checkpoint=True,
    )
    with strategy.scope():
        model = build_model(
            recipe, info.num_classes, info.image_shape, info.num_train, mean=info.mean, std=info.std
        )
        optimizer = build_optimizer(recipe.optimizer, recipe.epochs, steps)
        model.compile(optimizer=optimizer, jit_compile=recipe.jit_compile)
        # BackupAndRestore needs a built model; zeros avoid touching the cached pipelines.
        model(keras.ops.zeros((2, *info.image_shape)), training=False)
        # Restored now, not in fit: the training input must start where the backup is.
        resume, resume_step = backup.restore(model)
    # Batch g of the run is batch g of the endless seeded sequence epoch 0, epoch 1, ... (a
    # pure function of the seed and g), so a resumed run continues with the batches the
    # uninterrupted run saw, nothing replayed.
    train_data = bundle.batches(resume * steps + resume_step, recipe.epochs * steps)
    # The epochs finished before a kill keep their logs (history.json), so the best epoch is
    # over the whole run; entries of the epoch the kill interrupted are dropped.
    previous = [e for e in read_history(write_dir) if e["epoch"] <= resume]
    stats = RunStats(recipe.data.batch_size)
    callbacks = [
        # Raises at the first NaN/inf loss term, before any epoch-end backup could save the
        # broken weights over the last good ones (keras_sd.reliability).
        reliability.NonFiniteLossGuard(),
        # Before the backup: an epoch the backup has committed is always in history.json.
        EpochHistory(write_dir, previous),
        backup,
        # Method callbacks first: they add scheduled weights (alpha, alpha_t) to the epoch logs
        # that TensorBoard then writes.
        *build_callbacks(recipe),
        stats,
        # Reliability diagrams (+ val_ece / val_nll in the logs), exit attention maps, the
        # early-exit plot and the HParams entry (keras_sd.tensorboard); before TensorBoard.
        *sd_tensorboard.inspection_callbacks(
            model,
            write_dir / "logs",
            bundle.test,
            run_dir=out,
            recipe=recipe,
            every_n_epochs=recipe.eval_every,
        ),
        keras.callbacks.TensorBoard(str(write_dir / "logs")),
    ]
    model.fit(
        train_data,
        epochs=recipe.epochs,
        steps_per_epoch=steps,
        validation_data=bundle.test,
        validation_freq=evaluated_epochs(recipe),
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the pipeline shuffles, seeded
    )
    reliability.save_model_atomic(model, write_dir / "model.keras")  # temp file + rename
    logs = model.evaluate(bundle.test, return_dict=True, verbose=0)
    accuracy = output_accuracies(logs)
    metrics = {
        "recipe": recipe.name,
        "epochs": recipe.epochs,
        "calibration": calibration(model, bundle.test),
        "test": {k: float(v) for k, v in logs.items()},
        "accuracy": accuracy,
        "last_epoch": _last_epoch(recipe.epochs, accuracy),
        "best_epoch": best_epoch(read_history(write_dir), primary_output(model), recipe.eval_every),
        "seconds_per_epoch": _mean(stats.epoch_seconds),
        "images_per_second": _mean(stats.images_per_second),
    }
    write_json_atomic(write_dir / "metrics.json", metrics)
    print_accuracies(
        metrics["accuracy"], f"{recipe.name}: test accuracy of every output, last epoch"
    )
    print_best(metrics["best_epoch"])
    print(f"TensorBoard logs: {out / 'logs'}   (tensorboard --logdir {out / 'logs'})")
    return metrics


def calibration(model, test) -> dict:
    """`keras_sd.metrics.calibration_report` of the deployed output on the test split."""
    from keras_sd.metrics import calibration_report

    logits = np.asarray(model.predict(test, verbose=0), dtype="float64")
    labels = np.concatenate([np.asarray(y) for _, y in test])
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return calibration_report(probs / probs.sum(-1, keepdims=True), labels)


def evaluated_epochs(recipe: Recipe) -> list[int]:
    """1-based epochs that evaluate on the test split: every ``eval_every``-th and the last."""
    n = recipe.eval_every
    return [e for e in range(1, recipe.epochs + 1) if e % n == 0 or e == recipe.epochs]


def _pipeline_augment(recipe: Recipe) -> str:
    # Methods that distort inside their training step (two views) take undistorted batches:
    # "none", or for "resize256_crop224" the 256x256 images that the in-step 224 crop cuts.
    if recipe.method == "two_view":
        from keras_sd.data import pipeline

        return pipeline.UNDISTORTED.get(recipe.data.augment, "none")
    return recipe.data.augment


def _mean(values):
    return float(sum(values) / len(values)) if values else None


def load_run(run_dir: str | os.PathLike):
    """``(recipe, model, bundle)`` of a finished run: its recipe.json, model.keras and its data
    (test split un-augmented), for re-evaluation and threshold search."""
    from keras_sd import data as data_lib

    run = pathlib.Path(run_dir)
    for needed in ("recipe.json", "model.keras"):
        if not (run / needed).exists():
            raise ValueError(
                f"`run_dir` {str(run)!r} has no {needed}; is it a finished keras-sd run?"
            )
    recipe = recipe_from_dict(json.loads((run / "recipe.json").read_text()))
    model = keras.models.load_model(run / "model.keras")
    bundle = data_lib.load(
        recipe.data.name,
        batch_size=recipe.data.batch_size,
        eval_batch_size=recipe.data.eval_batch_size,
        augment="none",
        seed=recipe.seed,
        data_dir=recipe.data.data_dir,
        train_per_class=recipe.data.train_per_class,
        subset_seed=recipe.data.subset_seed,
        image_size=recipe.data.image_size,
    )
    return recipe, model, bundle


def evaluate(run_dir: str | os.PathLike, *, verbose: int = 0) -> dict:
    """Re-evaluates a finished run's model (the last epoch's) on its test split and rewrites
    metrics.json's last-epoch part. The best-epoch part cannot be re-evaluated (only the last
    epoch's weights are kept): it is kept as recorded, or rebuilt from history.json."""
    run = pathlib.Path(run_dir)
    recipe, model, bundle = load_run(run)
    logs = model.evaluate(bundle.test, return_dict=True, verbose=verbose)
    previous = (
        json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    )
    accuracy = output_accuracies(logs)
    history = read_history(run)
    best = previous.get("best_epoch") or best_epoch(
        history, primary_output(model), recipe.eval_every
    )
    metrics = {
        **previous,
        "recipe": recipe.name,
        "test": {k: float(v) for k, v in logs.items()},
        "accuracy": accuracy,
        "last_epoch": _last_epoch(history[-1]["epoch"] if history else recipe.epochs, accuracy),
        "best_epoch": best,
        "calibration": calibration(model, bundle.test),
    }
    write_json_atomic(run / "metrics.json", metrics)
    print_accuracies(
        metrics["accuracy"],
        f"{recipe.name}: test accuracy of every output, last epoch (re-evaluated)",
    )
    print_best(best)
    if best is not None:
        print("  (best epoch: as recorded during training, not re-evaluated)")
    return metrics


__all__ = [
    "EpochHistory",
    "best_epoch",
    "build_callbacks",
    "build_model",
    "build_optimizer",
    "evaluate",
    "learning_rate",
    "read_history",
    "recipe_from_dict",
    "train",
    "write_json_atomic",
]
