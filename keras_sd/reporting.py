"""What a run reports: accuracies of every output, the best evaluated epoch, calibration.

The figures ``keras-sd train`` and ``keras-sd evaluate`` write to metrics.json and print.
"""

from __future__ import annotations

import math

import numpy as np

from keras_sd.recipes import Recipe


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


def last_epoch(epoch: int, accuracy: dict) -> dict:
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


__all__ = [
    "best_epoch",
    "calibration",
    "evaluated_epochs",
    "last_epoch",
    "output_accuracies",
    "primary_output",
    "print_accuracies",
    "print_best",
]
