"""The `keras-sd` command line: train | evaluate.

    keras-sd train RECIPE[:arg] [--set key=value ...] [--out DIR]
    keras-sd evaluate RUN_DIR

A bad argument (unknown recipe key, missing file, value out of range) exits with code 2 and one
readable line, not a traceback.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys


def _default_out(spec: str) -> str:
    path, _, arg = spec.partition(":")
    stem = pathlib.Path(path).stem + (f"_{arg.replace(',', '_')}" if arg else "")
    return str(pathlib.Path("runs") / pathlib.Path(path).parent.name / stem)


def _train(args) -> int:
    from keras_sd import recipes, train

    recipe = recipes.load(args.recipe, args.set or [])
    if args.strategy:
        recipe = recipes.apply_override(recipe, "strategy", args.strategy)
    if args.precision:
        recipe = recipes.apply_override(recipe, "precision", args.precision)
    train.train(recipe, args.out or _default_out(args.recipe), verbose=args.verbose)
    return 0


def _evaluate(args) -> int:
    from keras_sd import train

    train.evaluate(args.run_dir, verbose=args.verbose)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-sd",
        description="Self-distillation for Keras 3 / TensorFlow: train and evaluate recipes.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate}")

    p = sub.add_parser(
        "train",
        help="train a recipe (resumes if --out already holds a run of it)",
        description="Train RECIPE[:arg] (a recipe file, e.g. recipes/multi_exit/resnet18_cifar100.py"
        ":smoke). Writes TensorBoard logs, resumable backups, model.keras and metrics.json to --out; "
        "rerunning the same command continues where it stopped.",
    )
    p.add_argument("recipe", help="recipe file, optionally with :arg (e.g. :smoke, :baseline)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a recipe field, e.g. --set epochs=10 --set method_args.kl_weight=0.5",
    )
    p.add_argument("--out", help="run directory (default: runs/<method>/<recipe>[_<arg>])")
    p.add_argument(
        "--strategy",
        choices=("auto", "default", "mirrored", "multiworker", "tpu"),
        help="tf.distribute strategy (overrides the recipe's)",
    )
    p.add_argument(
        "--precision",
        choices=("float32", "mixed_float16", "mixed_bfloat16"),
        help="compute precision (overrides the recipe's)",
    )
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="Keras fit verbosity")
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "evaluate",
        help="evaluate a finished run on its test split",
        description="Reload RUN_DIR/model.keras, evaluate it on the run's test split, print the "
        "accuracy of every output and update RUN_DIR/metrics.json.",
    )
    p.add_argument("run_dir", help="a directory written by keras-sd train")
    p.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2))
    p.set_defaults(func=_evaluate)
    return parser


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:
        if os.environ.get("KERAS_SD_DEBUG"):
            raise
        print(f"keras-sd {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
