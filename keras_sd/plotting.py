"""Figures: reliability diagrams, attention panels and early-exit trade-off plots.

Pure drawing (NumPy in, an RGB ``uint8`` image or PNG bytes out); the TensorBoard callbacks in
`keras_sd.callbacks` and ``keras-sd thresholds`` (`keras_sd.inference.run`) call it. matplotlib is
imported on first use, with the non-interactive Agg backend.

Reference: calibration conventions of `keras_sd.metrics` (Guo et al., "On Calibration of Modern
Neural Networks", ICML 2017); attention exits of Zhang, Bao & Ma, "Self-Distillation: Towards
Efficient and Compact Neural Networks", TPAMI, Fig. 3(a); early exit: same paper, section 3.3
and Fig. 8.
"""

from __future__ import annotations

import io
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from keras_sd import validation
from keras_sd.metrics import bin_statistics, calibration_report


# ---------------------------------------------------------------------------- reliability
def reliability_bins(probs, labels, num_bins: int = 10) -> dict[str, np.ndarray]:
    """Per-bin count, mean confidence and accuracy of the max-softmax confidence.

    Bins follow `keras_sd.metrics`: bin ``m`` (1-based) holds ``(m-1)/M < c <= m/M`` and a
    confidence of exactly 0 goes to the first bin; empty bins have confidence and accuracy NaN.

    Args:
        probs: ``[N, num_classes]`` probabilities.
        labels: ``[N]`` class indices.
        num_bins: number of equal-width bins.

    Returns:
        ``{"count", "confidence", "accuracy", "edges"}`` (``edges`` has ``num_bins + 1`` entries).
    """
    num_bins = validation.positive_int(num_bins, "num_bins")
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"`probs` must have shape [N, num_classes], got {probs.shape}.")
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if labels.shape[0] != probs.shape[0]:
        raise ValueError(
            f"`labels` must have one entry per row of `probs` ({probs.shape[0]}), "
            f"got {labels.shape[0]}."
        )
    confidence = probs.max(axis=1)
    true_p = probs[np.arange(len(labels)), labels]
    correct = (probs > true_p[:, None]).sum(axis=1) == 0
    bins = np.clip(np.ceil(confidence * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    return bin_statistics(
        np.bincount(bins, minlength=num_bins),
        np.bincount(bins, weights=confidence, minlength=num_bins),
        np.bincount(bins, weights=correct.astype(np.float64), minlength=num_bins),
    )


def figure_to_image(fig) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` of a matplotlib figure (closed afterwards)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    plt.close(fig)
    image = tf.io.decode_png(buf.getvalue(), channels=3)
    return np.asarray(image)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def reliability_diagram_image(probs, labels, num_bins: int = 10, title: str = "") -> np.ndarray:
    """A reliability diagram as an RGB uint8 image ``[H, W, 3]``.

    Bars: accuracy per confidence bin; the diagonal is perfect calibration; red bars show the gap
    between accuracy and mean confidence of each bin; the title carries ECE (%) and NLL as in
    `keras_sd.metrics.calibration_report`.
    """
    report = calibration_report(probs, labels, num_bins=num_bins)
    return reliability_diagram_from_bins(
        reliability_bins(probs, labels, num_bins), ece=report["ece"], nll=report["nll"], title=title
    )


def reliability_diagram_from_bins(
    stats: Mapping[str, np.ndarray], *, ece: float, nll: float, title: str = ""
) -> np.ndarray:
    """`reliability_diagram_image` drawn from bin statistics already accumulated.

    Args:
        stats: ``{"count", "confidence", "accuracy", "edges"}`` as `reliability_bins` returns
            them (e.g. `keras_sd.models.SelfDistillationModel.calibration_state`).
        ece: ECE in % for the title.
        nll: NLL for the title.
        title: prefix of the title (e.g. the output's name).
    """
    plt = _pyplot()
    edges = np.asarray(stats["edges"], dtype=np.float64)
    count = np.asarray(stats["count"], dtype=np.float64)
    width = edges[1] - edges[0]
    centres = edges[:-1] + width / 2
    acc = np.nan_to_num(np.asarray(stats["accuracy"], dtype=np.float64))
    conf = np.asarray(stats["confidence"], dtype=np.float64)
    conf = np.where(np.isnan(conf), centres, conf)
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(4.0, 4.6), dpi=80, gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    top.bar(centres, acc, width=width * 0.95, color="#4c72b0", label="accuracy")
    gap_low = np.minimum(acc, conf)
    top.bar(
        centres,
        np.abs(acc - conf) * (count > 0),
        bottom=gap_low,
        width=width * 0.95,
        color="#dd4444",
        alpha=0.5,
        label="gap",
    )
    top.plot([0, 1], [0, 1], "k--", linewidth=1)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=8)
    top.set_title(f"{title}  ECE {ece:.2f}%  NLL {nll:.3f}".strip(), fontsize=9)
    bottom.bar(centres, count / max(1.0, count.sum()), width=width * 0.95, color="#888888")
    bottom.set_xlabel("confidence (max softmax)")
    bottom.set_ylabel("share")
    fig.tight_layout()
    return figure_to_image(fig)


# ---------------------------------------------------------------------------- attention
def _colormap(values: np.ndarray) -> np.ndarray:
    """``[..., 3]`` float RGB in [0, 1] of values in [0, 1] (viridis)."""
    import matplotlib

    return np.asarray(matplotlib.colormaps["viridis"](np.clip(values, 0, 1)))[..., :3]


def _to_display(images: np.ndarray) -> np.ndarray:
    """Per-image min-max scaling to [0, 1] RGB (pipelines yield normalised images)."""
    x = np.asarray(images, dtype=np.float64)
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    hi = x.max(axis=(1, 2, 3), keepdims=True)
    x = (x - lo) / np.maximum(hi - lo, 1e-12)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return x[..., :3]


def attention_panels(images: np.ndarray, masks: np.ndarray, min_size: int = 96) -> np.ndarray:
    """Side-by-side panels ``[N, H', 2 W', 3]`` uint8: the image and its attention heat map.

    The mask is averaged over channels and min-max scaled per image (the raw mask lies in
    ``[0.5, 1)``, see `keras_sd.layers.exits.ExitAttention`), resized to the image size, and
    both are enlarged (nearest neighbour) to at least ``min_size`` pixels so 8x8 digits are visible.
    """
    images = _to_display(images)
    m = np.asarray(masks, dtype=np.float64).mean(axis=-1)  # [N, h, w]
    lo = m.min(axis=(1, 2), keepdims=True)
    hi = m.max(axis=(1, 2), keepdims=True)
    m = (m - lo) / np.maximum(hi - lo, 1e-12)
    h, w = images.shape[1:3]
    m = np.asarray(tf.image.resize(m[..., None], (h, w), method="bilinear"))[..., 0]
    heat = _colormap(m)
    panel = np.concatenate([images, heat], axis=2)
    scale = max(1, int(np.ceil(min_size / max(h, 1))))
    panel = np.repeat(np.repeat(panel, scale, axis=1), scale, axis=2)
    return (np.clip(panel, 0, 1) * 255).round().astype(np.uint8)


# ---------------------------------------------------------------------------- early exit
_ACC_KEYS = ("accuracy", "acc", "top1")
_SPEED_KEYS = ("mac_acceleration", "acceleration", "speedup", "measured_acceleration")


def _pick(row: Mapping, keys) -> float | None:
    for key in keys:
        if key in row and isinstance(row[key], (int, float)) and not isinstance(row[key], bool):
            return float(row[key])
    return None


def early_exit_points(payload: Mapping) -> dict[str, Any]:
    """Reads a ``thresholds.json`` payload: ``{"table": [(acceleration, accuracy)...], "sweep":
    [...],
    "chosen": (acceleration, accuracy) | None, "thresholds": [...] | None, "baseline": float |
    None}``.

    Tolerant of the layout: the trade-off rows are the first list of dicts found under
    ``table`` / ``trade_off`` / ``tradeoff`` / ``sweep`` / ``rows`` (each with an accuracy key:
    ``accuracy`` | ``acc`` | ``top1`` and an acceleration key: ``mac_acceleration`` |
    ``acceleration`` | ``speedup`` | ``measured_acceleration``); the shared-threshold sweep is
    ``sweep.table`` when present (the layout `keras_sd.inference.run` writes); the chosen point
    is the payload's own (or its ``best`` entry's) accuracy and acceleration, the baseline its
    ``final_exit_accuracy`` (or ``baseline_accuracy``).
    """
    if not isinstance(payload, Mapping):
        raise ValueError(
            f"`thresholds.json` must hold a JSON object, got {type(payload).__name__}."
        )
    table = []
    for key in ("table", "trade_off", "tradeoff", "sweep", "rows"):
        rows = payload.get(key)
        if isinstance(rows, Mapping):  # e.g. {"ga": [...], "sweep": [...]}
            rows = next((v for v in rows.values() if isinstance(v, list)), None)
        if isinstance(rows, list) and rows and all(isinstance(r, Mapping) for r in rows):
            for r in rows:
                acc, speed = _pick(r, _ACC_KEYS), _pick(r, _SPEED_KEYS)
                if acc is not None and speed is not None:
                    table.append((speed, acc))
            if table:
                break
    sweep = []
    sweep_rows = (
        payload.get("sweep", {}).get("table") if isinstance(payload.get("sweep"), Mapping) else None
    )
    if isinstance(sweep_rows, list):
        for r in sweep_rows:
            if isinstance(r, Mapping):
                acc, speed = _pick(r, _ACC_KEYS), _pick(r, _SPEED_KEYS)
                if acc is not None and speed is not None:
                    sweep.append((speed, acc))
    best = payload.get("best") if isinstance(payload.get("best"), Mapping) else payload
    acc, speed = _pick(best, _ACC_KEYS), _pick(best, _SPEED_KEYS)
    thresholds = best.get("thresholds", payload.get("thresholds"))
    baseline = _pick(payload, ("baseline_accuracy", "final_exit_accuracy"))
    if not table and (acc is None or speed is None):
        raise ValueError(
            "`thresholds.json` has no accuracy/acceleration: expected a `table` of rows with "
            "'accuracy' and 'acceleration' (or 'mac_acceleration') keys."
        )
    return {
        "table": table,
        "sweep": sweep,
        "chosen": None if acc is None or speed is None else (speed, acc),
        "thresholds": thresholds if isinstance(thresholds, list) else None,
        "baseline": baseline,
    }


def early_exit_image(payload: Mapping) -> np.ndarray:
    """Accuracy against acceleration of the early-exit trade-off, RGB uint8 ``[H, W, 3]``."""
    plt = _pyplot()
    points = early_exit_points(payload)
    fig, ax = plt.subplots(figsize=(4.6, 3.6), dpi=80)
    if points["table"]:
        speed, acc = np.asarray(points["table"]).T
        order = np.argsort(speed)
        ax.plot(speed[order], acc[order], "o-", color="#4c72b0", markersize=3, label="trade-off")
    if points["sweep"]:
        speed, acc = np.asarray(points["sweep"]).T
        order = np.argsort(speed)
        ax.plot(
            speed[order], acc[order], "s:", color="#55a868", markersize=3, label="shared threshold"
        )
    if points["chosen"] is not None:
        ax.plot(*points["chosen"], "*", color="#dd4444", markersize=14, label="chosen")
    if points["baseline"] is not None:
        ax.axhline(points["baseline"], color="k", linestyle="--", linewidth=1, label="final exit")
    ax.set_xlabel("acceleration (x)")
    ax.set_ylabel("accuracy")
    if points["thresholds"]:
        ax.set_title(
            "thresholds " + ", ".join(f"{float(t):.2f}" for t in points["thresholds"]), fontsize=9
        )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return figure_to_image(fig)


def plot_tradeoff(
    result,
    sweep,
    exit_names: list[str],
    path: str | os.PathLike | None = None,
    title: str = "",
    num_samples: int | None = None,
) -> bytes:
    """Draws the trade-off figure; writes it to ``path`` (PNG) if given; returns the PNG bytes.

    ``result`` and ``sweep`` are `keras_sd.inference.ThresholdSearchResult` s (the genetic
    search's and the shared-threshold sweep's).

    Left: accuracy (%) against MAC acceleration for the GA's trade-off table, the shared-threshold
    sweep and the chosen thresholds, with the final exit's and the baseline's accuracy. Right
    (TPAMI Fig. 8): for the shared threshold on the x axis, the overall accuracy (left axis) and
    the number of images (``num_samples`` given) or share of images answered by each exit and by
    the ensemble (right axis).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    # By acceleration: rows re-scored on other samples (`rescore`) need not stay in order.
    rows = sorted(result.table, key=lambda r: r["mac_acceleration"])
    ax.plot(
        [r["mac_acceleration"] for r in rows],
        [r["accuracy"] for r in rows],
        "o-",
        label="GA trade-off (Pareto front of the samples searched on)",
    )
    ax.plot(
        [r["mac_acceleration"] for r in sweep.table],
        [r["accuracy"] for r in sweep.table],
        ".",
        color="tab:gray",
        label="shared threshold 0.50..0.99",
    )
    ax.plot(
        [result.mac_acceleration],
        [result.accuracy],
        "*",
        markersize=16,
        color="tab:red",
        label=f"best, beta={result.beta:g}: " + ", ".join(f"{t:.3f}" for t in result.thresholds),
    )
    ax.axhline(result.final_exit_accuracy, color="k", ls="--", lw=1, label="final exit")
    if abs(result.baseline_accuracy - result.final_exit_accuracy) > 1e-9:
        ax.axhline(result.baseline_accuracy, color="tab:green", ls=":", lw=1, label="baseline")
    ax.set_xlabel("acceleration (backbone MACs / MACs spent)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)

    values = [r["thresholds"][0] for r in sweep.table]
    n = num_samples
    counts = np.asarray([r["shares"] for r in sweep.table]) * (n or 1)
    bx.plot(values, [r["accuracy"] for r in sweep.table], "k-", label="accuracy")
    bx.set_xlabel("threshold (shared by every exit)")
    bx.set_ylabel("accuracy (%)")
    cx = bx.twinx()
    for j, name in enumerate([*exit_names, "ensemble"]):
        cx.plot(values, counts[:, j], "--", label=name)
    cx.set_ylabel("images classified" if n else "share of images")
    lines = bx.get_legend_handles_labels()
    more = cx.get_legend_handles_labels()
    bx.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="center left")
    bx.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    png = buf.getvalue()
    if path is not None:
        pathlib.Path(path).write_bytes(png)
    return png


__all__ = [
    "attention_panels",
    "early_exit_image",
    "early_exit_points",
    "figure_to_image",
    "plot_tradeoff",
    "reliability_bins",
    "reliability_diagram_from_bins",
    "reliability_diagram_image",
]
