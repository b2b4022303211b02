"""Behaviour snapshot: the README's main command and a seed-0 smoke run of every method.

Recorded before a refactor and again after it; the same commands must give the same metrics to
the last digit (or each difference is explained). Each run is a ``keras-sd train`` subprocess in
a fresh run directory, so the snapshot measures exactly what a user runs.

    python benchmarks/behaviour_snapshot.py --out benchmarks/results/behaviour_before.json
    python benchmarks/behaviour_snapshot.py --out /tmp/after.json \
        --compare benchmarks/results/behaviour_before.json
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent

# (label, recipe spec, extra --set overrides). The README's main command runs in full; every other
# row is a 2-epoch run on the embedded digits data (the recipes' `smoke` variant, or --set epochs=2
# for the digits baseline, which has no paper row to shrink).
COMMANDS = [
    ("readme_main", "recipes/multi_exit/resnet20_digits.py", []),
    ("baseline", "recipes/baseline/resnet20_digits.py", ["epochs=2"]),
    ("two_view", "recipes/two_view/resnet32_cifar10.py:smoke", []),
    ("multi_exit", "recipes/multi_exit/resnet18_cifar100.py:smoke", []),
    ("multi_exit_authors_code", "recipes/multi_exit/resnet18_cifar100.py:authors_code,smoke", []),
    ("self_guidance", "recipes/self_guidance/resnet_cifar.py:resnet32,cifar10,smoke", []),
    ("pskd", "recipes/pskd/resnet18_cifar100.py:pskd,smoke", []),
    ("pskd_byot_dmfl", "recipes/pskd/resnet18_cifar100.py:pskd_byot_dmfl,smoke", []),
]


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "keras_sd", "recipes"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _numbers(tree, prefix=""):
    """Flattens a metrics.json into {"a.b": float} for every numeric leaf except timings."""
    out = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(_numbers(value, f"{prefix}{key}."))
    elif isinstance(tree, bool):
        pass
    elif isinstance(tree, (int, float)):
        name = prefix[:-1]
        if not any(
            word in name for word in ("seconds", "minutes", "img_per_s", "per_second", "time")
        ):
            out[name] = float(tree)
    return out


def run_one(label: str, spec: str, sets: list[str], work: pathlib.Path) -> dict:
    out_dir = work / label
    cmd = [sys.executable, "-m", "keras_sd.cli", "train", spec, "--out", str(out_dir)]
    cmd += [arg for s in sets for arg in ("--set", s)] + ["--verbose", "0"]
    start = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{label}: {' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    metrics = json.loads((out_dir / "metrics.json").read_text())
    return {
        "command": "keras-sd train " + spec + "".join(f" --set {s}" for s in sets),
        "seconds": round(time.time() - start, 1),
        "metrics": _numbers(metrics),
    }


def compare(before: dict, after: dict) -> list[str]:
    lines = []
    for label, row in before["runs"].items():
        if label not in after["runs"]:
            lines.append(f"{label}: missing after")
            continue
        b, a = row["metrics"], after["runs"][label]["metrics"]
        for key in sorted(set(b) | set(a)):
            if key not in a or key not in b:
                lines.append(f"{label}.{key}: only {'before' if key in b else 'after'}")
            elif not (a[key] == b[key] or (math.isnan(a[key]) and math.isnan(b[key]))):
                lines.append(f"{label}.{key}: {b[key]!r} -> {a[key]!r}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="snapshot JSON to write")
    parser.add_argument("--compare", help="an earlier snapshot JSON to diff against")
    parser.add_argument("--only", nargs="*", help="labels to run (default: all)")
    args = parser.parse_args(argv)
    rows = [c for c in COMMANDS if not args.only or c[0] in args.only]
    snapshot = {"commit": _git_commit(), "machine": platform.node(), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for label, spec, sets in rows:
            snapshot["runs"][label] = run_one(label, spec, sets, pathlib.Path(tmp))
            print(f"{label}: {snapshot['runs'][label]['seconds']} s", flush=True)
    pathlib.Path(args.out).write_text(json.dumps(snapshot, indent=2, sort_keys=True) + "\n")
    if args.compare:
        diffs = compare(json.loads(pathlib.Path(args.compare).read_text()), snapshot)
        print("\n".join(diffs) if diffs else "identical metrics")
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
