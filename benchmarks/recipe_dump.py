"""Dump of every recipe the loader builds, to check that a refactor of recipes/ changes none.

For every recipe file, every argument it accepts (its variants, the rows the test suite loads,
and for the Self-Guidance files every network/data set/row combination), each also with
``smoke``, plus a few bad arguments: ``recipes.load(spec).to_dict()``, or the ValueError's text.
Keys are ``"recipes/<method>/<file>.py:<arg>"``.

    python benchmarks/recipe_dump.py --out /tmp/before.json
    python benchmarks/recipe_dump.py --out /tmp/after.json --compare /tmp/before.json

``--compare`` loads exactly the specs of the earlier dump and prints every difference.
``--fingerprints FILE`` writes, per recipe file, its arguments and one sha256 over their recipes:
tests/test_recipe_dump.py checks the recipes against the committed
tests/fixtures/recipe_fingerprints.json (made from the dump of the tree before the recipes moved
their shared pieces into the package).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keras_sd import recipes  # noqa: E402

BAD = ["bogus", "baseline,bogus"]
# Arguments the old files accept beyond their ARGS lists (multi-word Self-Guidance arguments).
SELF_GUIDANCE = {
    "resnet_cifar.py": [
        ",".join(filter(None, (n, d, b, p)))
        for n, d, b, p in itertools.product(
            ("", "resnet32", "resnet50", "resnet110"),
            ("", "cifar10", "cifar100"),
            ("", "baseline"),
            ("", "per_sample"),
        )
    ],
    "resnet_cifar_lambda.py": [
        f"{d},{r}"
        for d in ("cifar10", "cifar100")
        for r in ("baseline", "stochastic_depth", "0", "0.1", "0.25", "0.5", "1", "3", "0.7")
    ]
    + ["cifar10", "cifar10,-1"],
    "resnet_cifar_fer2013.py": ["resnet32", "resnet50", "resnet110", "resnet50,baseline"],
    "resnet_cifar_raf.py": ["resnet32", "resnet50", "resnet110", "resnet50,baseline"],
    "resnet110_cifar100_ablation.py": [
        "baseline",
        "stochastic_depth",
        "no_distillation",
        "no_backward_full",
        "full",
    ],
}


def _file_args(path: pathlib.Path) -> list:
    ns: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), ns)
    args = list(ns.get("ARGS", ns.get("VARIANTS", [None])))
    args += SELF_GUIDANCE.get(path.name, [])
    return list(dict.fromkeys(args))


def all_specs(root: pathlib.Path = ROOT) -> list[str]:
    specs = []
    for path in recipes.all_recipe_files(root / "recipes"):
        rel = path.relative_to(root).as_posix()
        for arg in _file_args(path) + BAD:
            specs.append(f"{rel}:{arg}" if arg else rel)
            specs.append(f"{rel}:{arg},smoke" if arg else f"{rel}:smoke")
    return list(dict.fromkeys(specs))


def dump(specs, root: pathlib.Path = ROOT) -> dict:
    out = {}
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for spec in specs:
            try:
                out[spec] = recipes.load(spec).to_dict()
            except ValueError as e:
                out[spec] = {"error": str(e)}
    finally:
        os.chdir(cwd)
    return out


def fingerprints(dumped: dict) -> dict:
    """``{file: {"args": [...], "sha256": ...}}`` over the specs of ``dumped`` that loaded."""
    out: dict = {}
    for spec, recipe in sorted(dumped.items()):
        if "error" in recipe:
            continue
        file, _, arg = spec.partition(":")
        entry = out.setdefault(file, {"args": [], "recipes": []})
        entry["args"].append(arg)
        entry["recipes"].append(recipe)
    return {
        file: {
            "args": e["args"],
            "sha256": hashlib.sha256(json.dumps(e["recipes"], sort_keys=True).encode()).hexdigest(),
        }
        for file, e in out.items()
    }


def compare(before: dict, after: dict) -> list[str]:
    lines = []
    for spec in before:
        a, b = before[spec], after.get(spec)
        if a == b:
            continue
        if not isinstance(b, dict):
            lines.append(f"{spec}: missing")
            continue
        keys = sorted(set(a) | set(b))
        diffs = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]
        lines.append(f"{spec}: " + "; ".join(diffs))
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--compare", help="an earlier dump: load its specs, print differences")
    parser.add_argument("--fingerprints", help="also write per-file fingerprints of the dump here")
    args = parser.parse_args(argv)
    before = json.loads(pathlib.Path(args.compare).read_text()) if args.compare else None
    result = dump(list(before) if before else all_specs())
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    if args.fingerprints:
        text = json.dumps(fingerprints(result), indent=1, sort_keys=True)
        pathlib.Path(args.fingerprints).write_text(text + "\n")
    n_err = sum("error" in v for v in result.values())
    print(f"{len(result)} specs ({n_err} errors) -> {args.out}")
    if before is not None:
        lines = compare(before, result)
        print("\n".join(lines) if lines else "identical")
        return 1 if lines else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
