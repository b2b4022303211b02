"""First steps of one CIFAR-10 study run, step by step: loss terms and kernel norms.

A diagnostic for a run that learns slowly from its first epoch (docs/results.md, PS-KD + BYOT +
DMFL seed 1): it rebuilds a row of `cifar10_study.py` exactly as the study trains it (the same
recipe, seeding, data order and optimizer; a test checks the first epoch against
`keras_sd.experiment.Experiment.train`), trains ``--steps`` optimizer steps, and records after
every step

* each loss term of that step (Keras logs running means over the epoch; the script recovers
  every step's own value from them),
* the norm of every convolution and dense kernel.

It prints the kernels whose norm grew most and the logs after the last step. A kernel followed
by batch normalisation is scale invariant: its gradient shrinks as 1/|w| and its effective
learning rate as lr/|w|^2, so a kernel that grows 3x early in training learns about 9x more
slowly until coupled weight decay, which is slow, has shrunk it back.

``--init-seed`` and ``--data-seed`` separate the two things a run's seed decides: the weights'
initialisation and the data order / augmentation draws (by default both are ``--seed``, which is
the study run). ``--method-args`` / ``--optimizer`` override recipe fields for a diagnostic
variant (JSON objects); such a variant is not a study row. ``--checkout DIR`` runs another
checkout's ``keras_sd`` and study rows, e.g. the pinned worktree the study's runs came from
(its data order differs from main's, so only it reproduces those runs' first steps).

    python benchmarks/early_training.py --row pskd_byot_dmfl --seed 1
    python benchmarks/early_training.py --row pskd_byot_dmfl --init-seed 1 --data-seed 0
    python benchmarks/early_training.py --row pskd_byot_dmfl --seed 1 --checkout /work/wt/study_fd
    python benchmarks/early_training.py --row pskd_byot_dmfl --seed 1 \\
        --method-args '{"mutual_feature_weight": 0.0}' --out /tmp/probe.json
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent


def _study(root: pathlib.Path = HERE.parent):
    spec = importlib.util.spec_from_file_location(
        "cifar10_study", root / "benchmarks" / "cifar10_study.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["cifar10_study"] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def step_values(running: list[float]) -> list[float]:
    """Each step's own value from Keras' running means over one epoch (step ``i`` 0-based):
    ``v_i = (i + 1) * m_i - i * m_{i-1}``."""
    return [(i + 1) * m - (i * running[i - 1] if i else 0.0) for i, m in enumerate(running)]


def _build(recipe, init_seed: int):
    """``(compiled model, batches(n) -> the run's first n training batches, steps per epoch,
    method callbacks)``, seeded as the run: the data seed before anything is built, then
    ``init_seed`` before the model if it differs."""
    import keras

    import keras_sd

    # A checkout older than the Experiment redesign, e.g. the study's fd09bde. (Asked of the
    # package folder: with an editable install of another checkout, an import of
    # keras_sd.experiment would find that checkout's module instead of failing.)
    if not (pathlib.Path(keras_sd.__file__).parent / "experiment.py").is_file():
        return _build_pinned(recipe, init_seed)
    from keras_sd.experiment import Experiment

    experiment = Experiment(recipe)
    keras.utils.set_random_seed(recipe.seed)  # as Experiment.train, before anything is built
    bundle = experiment.bundle
    if init_seed != recipe.seed:
        keras.utils.set_random_seed(init_seed)
    model = experiment.compile(experiment.build_model())
    model(keras.ops.zeros((2, *bundle.info.image_shape)), training=False)
    return (
        model,
        lambda n: bundle.batches(0, n),
        experiment.steps_per_epoch,
        experiment.method_callbacks(),
    )


def _build_pinned(recipe, init_seed: int):
    """`_build` on the study's pinned checkout (`fd09bde`): `keras_sd.train`'s builders, and an
    epoch-seeded training pipeline whose first iteration is the run's first epoch."""
    import keras

    from keras_sd import data as data_lib
    from keras_sd import train as train_lib

    keras.utils.set_random_seed(recipe.seed)  # as train.train, before anything is built
    d = recipe.data
    bundle = data_lib.load(
        d.name,
        batch_size=d.batch_size,
        eval_batch_size=d.eval_batch_size,
        augment=train_lib._pipeline_augment(recipe),
        with_index=d.with_index,
        seed=recipe.seed,
        data_dir=d.data_dir,
        train_per_class=d.train_per_class,
        subset_seed=d.subset_seed,
        image_size=d.image_size,
    )
    info = bundle.info
    if init_seed != recipe.seed:
        keras.utils.set_random_seed(init_seed)
    per_epoch = recipe.steps_per_epoch or max(1, info.num_train // d.batch_size)
    model = train_lib.build_model(recipe, info.num_classes, info.image_shape, info.num_train)
    model.compile(
        optimizer=train_lib.build_optimizer(recipe.optimizer, recipe.epochs, per_epoch),
        jit_compile=recipe.jit_compile,
    )
    model(keras.ops.zeros((2, *info.image_shape)), training=False)
    return model, lambda n: bundle.train.take(n), per_epoch, train_lib.build_callbacks(recipe)


def probe(
    recipe,
    *,
    init_seed: int,
    steps: int | None = None,
) -> dict:
    """Trains ``recipe`` (its ``seed`` is the data seed) from weights initialised with
    ``init_seed`` for ``steps`` optimizer steps (default: one epoch) and returns
    ``{"steps", "terms": {name: [per step]}, "running": {name: [Keras logs]}, "kernels":
    {path: [norm at init, after step 1, ...]}}``."""
    import keras
    import numpy as np

    model, batches, per_epoch, callbacks = _build(recipe, init_seed)
    steps = per_epoch if steps is None else steps
    if not isinstance(steps, int) or not 1 <= steps <= per_epoch:
        raise ValueError(
            f"`steps` must be an int in [1, {per_epoch}] (one epoch of this run), got {steps!r}."
        )
    kernels = [v for v in model.trainable_variables if v.path.endswith("kernel")]
    norms = {v.path: [float(np.linalg.norm(v.numpy()))] for v in kernels}
    running: dict[str, list[float]] = {}

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            for name, value in (logs or {}).items():
                running.setdefault(name, []).append(float(value))
            for v in kernels:
                norms[v.path].append(float(np.linalg.norm(v.numpy())))

        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    # fit sees the run's epochs (callbacks such as DistillationAnnealing schedule by them: with
    # epochs=1 its "last epoch" would be this one) and stops after the first.
    model.fit(
        batches(steps),
        epochs=recipe.epochs,
        steps_per_epoch=steps,
        callbacks=[*callbacks, Record()],
        verbose=0,
        shuffle=False,
    )
    return {
        "steps": steps,
        "terms": {k: step_values(v) for k, v in running.items()},
        "running": running,
        "kernels": norms,
    }


def report(result: dict, top: int = 10) -> str:
    growth = sorted(
        ((n[-1] / n[0], path) for path, n in result["kernels"].items() if n[0] > 0), reverse=True
    )
    lines = [f"kernel norm after {result['steps']} steps / at init (the {top} largest):"]
    for ratio, path in growth[:top]:
        n = result["kernels"][path]
        lines.append(f"  {ratio:5.2f}x  {n[0]:7.2f} -> {n[-1]:7.2f}  {path}")
    lines.append("running means of the logs after the last step:")
    lines.append(
        "  "
        + ", ".join(f"{k} {v[-1]:.4g}" for k, v in result["running"].items() if "top5" not in k)
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkout",
        type=pathlib.Path,
        help="run another checkout's keras_sd and study rows, e.g. a pinned worktree of the study",
    )
    parser.add_argument("--row", required=True, help="a cifar10_study.py row (see its --list)")
    parser.add_argument("--protocol", default="B", help="study protocol (default B)")
    parser.add_argument("--seed", type=int, default=0, help="the study run's seed (default 0)")
    parser.add_argument("--init-seed", type=int, help="initialisation seed (default --seed)")
    parser.add_argument("--data-seed", type=int, help="data-order seed (default --seed)")
    parser.add_argument("--steps", type=int, help="optimizer steps (default: one epoch)")
    parser.add_argument("--method-args", type=_json_object, default={})
    parser.add_argument("--optimizer", type=_json_object, default={})
    parser.add_argument("--data", type=pathlib.Path, help="CIFAR-10 image folder")
    parser.add_argument("--out", type=pathlib.Path, help="write the whole record as JSON")
    args = parser.parse_args(argv)
    if args.checkout is not None:
        if not (args.checkout / "keras_sd" / "__init__.py").is_file():
            parser.error(f"--checkout {str(args.checkout)!r} is not a keras_sd checkout")
        sys.path.insert(0, str(args.checkout.resolve()))
    study = _study(args.checkout.resolve() if args.checkout else HERE.parent)
    if args.protocol not in study.PROTOCOLS:
        parser.error(f"--protocol {args.protocol!r} must be one of {tuple(study.PROTOCOLS)}")
    if args.row not in study.ROWS:
        parser.error(f"--row {args.row!r} must be one of {tuple(study.ROWS)}")
    for name in ("seed", "init_seed", "data_seed"):
        value = getattr(args, name)
        if value is not None and value < 0:
            parser.error(f"--{name.replace('_', '-')} {value} must be an integer >= 0")
    folder = study.check_folder(args.data) if args.data else study.cifar10_folder()
    data_seed = args.seed if args.data_seed is None else args.data_seed
    init_seed = args.seed if args.init_seed is None else args.init_seed
    protocol = study.PROTOCOLS[args.protocol]
    recipe, _ = study.study_recipe(args.row, protocol, data_seed, folder, eval_every=1)
    try:
        optimizer = dataclasses.replace(recipe.optimizer, **args.optimizer)
    except TypeError as e:
        parser.error(f"--optimizer {json.dumps(args.optimizer)}: {e}")
    recipe = recipe.replace(
        method_args={**recipe.method_args, **args.method_args}, optimizer=optimizer
    )
    try:
        result = probe(recipe, init_seed=init_seed, steps=args.steps)
    except (TypeError, ValueError) as e:
        parser.error(str(e))
    result.update(
        row=args.row,
        protocol=args.protocol,
        init_seed=init_seed,
        data_seed=data_seed,
        method_args=args.method_args,
        optimizer=args.optimizer,
    )
    print(f"{args.protocol}/{args.row} init seed {init_seed}, data seed {data_seed}")
    print(report(result))
    if args.out:
        args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
