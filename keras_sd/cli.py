"""The `keras-sd` command line: recipes | train | evaluate | thresholds | tune.

    keras-sd recipes
    keras-sd train RECIPE[:arg] [--set key=value ...] [--out DIR]
    keras-sd evaluate RUN_DIR
    keras-sd thresholds RUN_DIR --beta B
    keras-sd export RUN_DIR --litert [--thresholds FILE] [--quantize dynamic_int8]
    keras-sd tune RECIPE[:arg] [--search a,b] [--tuner random|bayesian|hyperband] [--trials N]

RECIPE is a recipe file or the name of a recipe shipped with the package (as `keras-sd recipes`
lists them, e.g. ``multi_exit/resnet18_cifar100:baseline``). A bad argument (unknown recipe key,
missing file, value out of range) exits with code 2 and one readable line, not a traceback.
TensorFlow is imported only by the commands that train or evaluate, so ``--help`` and
``recipes`` answer at once.
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


def _recipes(args) -> int:
    from keras_sd import recipes

    entries = recipes.catalogue()
    print(f"{len(entries)} packaged recipes; run one with: keras-sd train <name>[:arg]\n")
    for e in entries:
        print(f"{e.name}   [{e.method}]")
        print(f"    row:       {e.row}")
        if e.paper:
            print(f"    paper:     {e.paper}")
        if e.published:
            print(f"    published: {e.published}")
        if e.examples_only:
            print(
                f"    args, e.g. {'; '.join(e.args)} (the docstring lists all; each may add ,smoke)"
            )
        elif e.args:
            print(f"    args:      {', '.join(e.args)} (each may add ,smoke)")
        else:
            print("    args:      smoke")
    return 0


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


def _thresholds(args) -> int:
    from keras_sd.inference.run import run_threshold_search

    run_threshold_search(
        args.run_dir,
        beta=args.beta,
        generations=args.generations,
        population=args.population,
        seed=args.seed,
        split_seed=args.split_seed,
        measure=not args.no_measure,
        measure_images=args.measure_images,
        progress=True,
    )
    return 0


def _export(args) -> int:
    from keras_sd.inference.run import export_run

    if not args.litert:
        raise ValueError("choose an export format: --litert (the only one for now)")
    target, manifest = export_run(
        args.run_dir,
        out=args.out,
        thresholds=args.thresholds,
        quantize=args.quantize,
        backbone=args.backbone,
    )
    files = [s["file"] for s in manifest["stages"]]
    print(
        f"wrote {target}: {', '.join(files)}"
        + (", backbone.tflite" if manifest["backbone"] else "")
        + f", manifest.json (thresholds {', '.join(f'{t:.4f}' for t in manifest['thresholds'])}"
        + f", quantize={manifest['quantize']})"
    )
    print(
        f"run it: from keras_sd.litert_runtime import LiteRTEarlyExit; LiteRTEarlyExit({str(target)!r})"
    )
    return 0


def _tune(args) -> int:
    from keras_sd import recipes, tuning

    recipe = recipes.load(args.recipe, args.set or [])
    out = args.out or _default_out(args.recipe).replace("runs", "studies", 1)
    result = tuning.run_study(
        recipe,
        out,
        search=tuning.parse_search(args.search) if args.search else None,
        tuner=args.tuner,
        trials=args.trials,
        objective=args.objective,
        verbose=args.verbose,
        source=args.recipe,
    )
    print(f"\n{recipe.name}: {len(result.rows)} trial(s), best first")
    print(tuning.format_table(result.rows, result.objective))
    print(f"\nBest recipe: {result.best_recipe_path}   (keras-sd train {result.best_recipe_path})")
    print(f"TensorBoard: tensorboard --logdir {pathlib.Path(out) / 'logs'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-sd",
        description="Self-distillation for Keras 3 / TensorFlow: train and evaluate recipes.",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{recipes,train,evaluate,thresholds,export,tune}"
    )

    p = sub.add_parser(
        "recipes",
        help="list the paper recipes shipped with the package",
        description="List the packaged recipes: name (for keras-sd train), method, paper table "
        "row, paper, published number of the default row, and the accepted :args.",
    )
    p.set_defaults(func=_recipes)

    p = sub.add_parser(
        "train",
        help="train a recipe (resumes if --out already holds a run of it)",
        description="Train RECIPE[:arg] (a recipe file, e.g. recipes/multi_exit/resnet18_cifar100.py"
        ":smoke, or a packaged recipe's name, e.g. multi_exit/resnet18_cifar100:smoke). Writes TensorBoard logs, resumable backups, model.keras and metrics.json to --out; "
        "rerunning the same command continues where it stopped.",
    )
    p.add_argument(
        "recipe",
        help="recipe file or packaged recipe name, optionally with :arg (e.g. :smoke, :baseline)",
    )
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
        description="Reload RUN_DIR/model.keras (the last epoch's model), evaluate it on the "
        "run's test split, print the accuracy of every output and update RUN_DIR/metrics.json's "
        "last-epoch part; the best-epoch part (recorded during training) is kept and printed, "
        "labelled.",
    )
    p.add_argument("run_dir", help="a directory written by keras-sd train")
    p.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2))
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "thresholds",
        help="search early-exit thresholds of a multi-exit run (TPAMI Algorithm 2)",
        description="Genetic search of the early-exit thresholds of RUN_DIR/model.keras (a "
        "multi-exit run). The run's test split (its only held-out split) is cut in two seeded "
        "halves (--split-seed): the search sees only the search half; accuracy, MAC "
        "acceleration and the measured speedup (compiled tf-graph, batch 256, median of "
        "alternating plain-backbone / early-exit rounds) are reported on the other half. Writes "
        "RUN_DIR/thresholds.json (with which half is which), RUN_DIR/thresholds.png (report "
        "half: accuracy vs acceleration, images per exit) and the plot to TensorBoard under "
        "RUN_DIR/logs/thresholds.",
    )
    p.add_argument("run_dir", help="a directory written by keras-sd train (multi_exit method)")
    p.add_argument(
        "--beta",
        type=float,
        required=True,
        help="fitness = MAC acceleration + beta * (accuracy - baseline accuracy), accuracy in %%",
    )
    p.add_argument("--generations", type=int, default=60)
    p.add_argument("--population", type=int, default=64)
    p.add_argument("--seed", type=int, default=0, help="seed of the genetic search")
    p.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="seed of the search / report halves of the test split (default 0)",
    )
    p.add_argument(
        "--measure-images",
        type=int,
        default=2048,
        help="time early exit vs the plain backbone on this many report-half images",
    )
    p.add_argument("--no-measure", action="store_true", help="skip the wall-clock timing")
    p.set_defaults(func=_thresholds)

    p = sub.add_parser(
        "export",
        help="write a deployable early-exit artefact of a multi-exit run (LiteRT)",
        description="Export RUN_DIR/model.keras (a multi-exit run) with the thresholds of "
        "`keras-sd thresholds` as a LiteRT early-exit artefact: one flatbuffer per stage and "
        "manifest.json, run by keras_sd.litert_runtime.LiteRTEarlyExit (NumPy + ai-edge-litert, no "
        'TensorFlow; pip install "keras-sd[litert]").',
    )
    p.add_argument("run_dir", help="a directory written by keras-sd train (multi_exit method)")
    p.add_argument("--litert", action="store_true", help="LiteRT flatbuffers (required)")
    p.add_argument(
        "--thresholds",
        metavar="FILE",
        help="thresholds JSON (default: RUN_DIR/thresholds.json from keras-sd thresholds)",
    )
    p.add_argument("--quantize", choices=("dynamic_int8",), help="int8 weights, float activations")
    p.add_argument("--backbone", action="store_true", help="also write the plain backbone")
    p.add_argument("--out", help="folder to write (default: RUN_DIR/litert or RUN_DIR/litert_int8)")
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "tune",
        help="keras-tuner study over a recipe's fields (resumable)",
        description="Search RECIPE[:arg]'s fields with keras-tuner (default: the method's paper "
        "sweep, e.g. alpha,feature_weight for multi-exit). Rerunning the same command continues "
        "the study in --out; prints a results table and writes --out/best_recipe.py for "
        "keras-sd train, and per-trial TensorBoard logs with HParams under --out/logs.",
    )
    p.add_argument(
        "recipe", help="recipe file or packaged recipe name, optionally with :arg (e.g. :smoke)"
    )
    p.add_argument(
        "--search",
        metavar="FIELDS",
        help="comma-separated fields, each optionally with a space: kl_weight,temperature=1:3,"
        "optimizer.learning_rate=0.01:0.2:log,mmd_weight=0|1e-4|5e-4",
    )
    p.add_argument("--tuner", choices=("random", "bayesian", "hyperband"), default="random")
    p.add_argument("--trials", type=int, default=10, help="total trials of the study")
    p.add_argument(
        "--objective",
        help="logged metric to optimise, NAME[:min|max] (default: final output's val accuracy)",
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe field")
    p.add_argument("--out", help="study directory (default: studies/<method>/<recipe>[_<arg>])")
    p.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2), help="Keras fit verbosity")
    p.set_defaults(func=_tune)
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
    except FloatingPointError as e:  # keras_sd.callbacks.NonFiniteLossError: training diverged
        if os.environ.get("KERAS_SD_DEBUG"):
            raise
        print(f"keras-sd {args.command}: training stopped: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
