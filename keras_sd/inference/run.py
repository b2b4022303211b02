"""`keras-sd thresholds RUN_DIR`: threshold search on a finished multi-exit run (and `export_run`,
`keras-sd export RUN_DIR --litert`: its LiteRT early-exit artefact).

The held-out split is the run's **test** split (the only held-out split a `keras-sd train` run
has: it trains on the whole training split). The thresholds are therefore tuned on the data
their accuracy is reported on; for an unbiased figure, search on a part of the test split and
report on the rest, as benchmarks/early_exit.py does.

Writes to RUN_DIR:
    thresholds.json            best thresholds, their accuracy / MAC and measured acceleration,
                               share of images per exit, the trade-off table and the sweep
    thresholds.png             accuracy vs acceleration (GA front and shared-threshold sweep) and,
                               as TPAMI Fig. 8, images classified per exit against the threshold
    logs/thresholds/           the same plot as a TensorBoard image

Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural Networks",
TPAMI, section 3.3, Algorithm 2, Table 5, Fig. 8.
"""

from __future__ import annotations

import io
import os
import pathlib
from typing import Any

import numpy as np

from keras_sd.inference.early_exit import check_multi_exit
from keras_sd.inference.search import (
    SWEEP_VALUES,
    ThresholdSearchResult,
    collect_exit_probabilities,
    search_thresholds,
    simulate,
    sweep_thresholds,
)


def plot_tradeoff(
    result: ThresholdSearchResult,
    sweep: ThresholdSearchResult,
    exit_names: list[str],
    path: str | os.PathLike | None = None,
    title: str = "",
    num_samples: int | None = None,
) -> bytes:
    """Draws the trade-off figure; writes it to ``path`` (PNG) if given; returns the PNG bytes.

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
    rows = result.table
    ax.plot(
        [r["mac_acceleration"] for r in rows],
        [r["accuracy"] for r in rows],
        "o-",
        label="GA trade-off (Pareto front)",
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


def log_png_to_tensorboard(png: bytes, logdir: str | os.PathLike, name: str) -> None:
    """Writes a PNG as a TensorBoard image summary (step 0) under ``logdir``."""
    import tensorflow as tf

    image = tf.image.decode_png(png, channels=4)[None]
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        tf.summary.image(name, image, step=0)
    writer.flush()
    writer.close()


def run_threshold_search(
    run_dir: str | os.PathLike,
    *,
    beta: float,
    generations: int = 60,
    population: int = 64,
    seed: int = 0,
    measure: bool = True,
    measure_images: int = 2048,
    batch_size: int = 256,
    progress: bool = True,
) -> dict[str, Any]:
    """Loads RUN_DIR's model and test split, searches thresholds, writes the files (see the
    module docstring) and returns the content of thresholds.json."""

    from keras_sd.train import load_run, write_json_atomic

    run = pathlib.Path(run_dir)
    recipe, model, bundle = load_run(run)
    check_multi_exit(model, f"model in {run / 'model.keras'}")
    cached = collect_exit_probabilities(
        model, bundle.test, keep_images=measure_images if measure else 0
    )
    common = dict(beta=beta, measure=measure, batch_size=batch_size)
    result = search_thresholds(
        model,
        cached,
        generations=generations,
        population=population,
        seed=seed,
        progress=progress,
        **common,
    )
    sweep = sweep_thresholds(model, cached, macs=result.macs, **common)
    names = list(model.exit_names)
    png = plot_tradeoff(
        result,
        sweep,
        names,
        run / "thresholds.png",
        title=f"{recipe.name}: early exit on the test split ({cached.num_samples} images)",
        num_samples=cached.num_samples,
    )
    log_png_to_tensorboard(png, run / "logs" / "thresholds", f"early_exit/beta_{beta:g}")
    best = simulate(
        cached.probs, cached.labels, np.asarray(result.thresholds), result.macs.path_macs
    )
    payload = {
        "recipe": recipe.name,
        "split": "test",
        "num_samples": cached.num_samples,
        "exit_names": names,
        "generations": generations,
        "population": population,
        "seed": seed,
        **result.to_dict(),
        "images_per_exit": [int(round(s * cached.num_samples)) for s in best["shares"][0]],
        "measured_on_images": None if cached.images is None else int(len(cached.images)),
        "sweep": {
            "values": list(SWEEP_VALUES),
            "best_threshold": sweep.thresholds[0],
            "fitness": sweep.fitness,
            "accuracy": sweep.accuracy,
            "mac_acceleration": sweep.mac_acceleration,
            "measured_acceleration": sweep.measured_acceleration,
            "table": sweep.table,
        },
    }
    write_json_atomic(run / "thresholds.json", payload)
    print_summary(payload)
    return payload


def print_summary(payload: dict) -> None:
    """Prints the chosen thresholds and the trade-off table."""
    print(
        f"\nthresholds ({payload['split']} split, {payload['num_samples']} images, "
        f"beta={payload['beta']:g}): " + ", ".join(f"{t:.4f}" for t in payload["thresholds"])
    )
    print(
        f"  accuracy {payload['accuracy']:.2f}% (final exit {payload['final_exit_accuracy']:.2f}%), "
        f"MAC acceleration {payload['mac_acceleration']:.2f}x"
        + (
            f", measured {payload['measured_acceleration']:.2f}x"
            if payload["measured_acceleration"]
            else ""
        )
    )
    print(f"  {'acc %':>7} {'MACx':>6} {'timex':>6}  shares per exit (+ensemble)   thresholds")
    for r in payload["table"]:
        meas = r["measured_acceleration"]
        print(
            f"  {r['accuracy']:7.2f} {r['mac_acceleration']:6.2f} "
            f"{meas if meas is None else round(meas, 2)!s:>6}  "
            + " ".join(f"{s:.2f}" for s in r["shares"])
            + "   "
            + " ".join(f"{t:.3f}" for t in r["thresholds"])
        )


def export_run(
    run_dir: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    thresholds: str | os.PathLike | None = None,
    quantize: str | None = None,
    backbone: bool = False,
) -> tuple[pathlib.Path, dict]:
    """`keras-sd export RUN_DIR --litert`: the LiteRT artefact of a finished multi-exit run.

    Args:
        run_dir: a finished ``keras-sd train`` run of the multi_exit method.
        out: the folder to write (default ``RUN_DIR/litert``, ``RUN_DIR/litert_int8`` when
            quantised).
        thresholds: a thresholds JSON (default ``RUN_DIR/thresholds.json``, written by
            ``keras-sd thresholds``).
        quantize: ``None`` or ``"dynamic_int8"``.
        backbone: also write the plain backbone (the baseline to time against).

    Returns:
        ``(folder written, manifest)``. The manifest's normalisation is the run's data
        pipeline's ``(x / scale - mean) / std``.
    """
    from keras_sd.data.pipeline import _make_source
    from keras_sd.inference.early_exit import EarlyExitModel
    from keras_sd.inference.litert import QUANTIZE_OPTIONS, read_thresholds_file
    from keras_sd.train import load_run

    run = pathlib.Path(run_dir)
    if quantize not in QUANTIZE_OPTIONS:  # before the slow model and data loading
        raise ValueError(f"`quantize` must be one of {QUANTIZE_OPTIONS}, got {quantize!r}.")
    recipe, model, bundle = load_run(run)
    k = check_multi_exit(model, f"model in {run / 'model.keras'}")
    values = read_thresholds_file(
        thresholds if thresholds is not None else run / "thresholds.json", k
    )
    info = bundle.info
    # DataInfo has no pixel scale; the source knows it (255 for 8-bit images, 16 for digits).
    scale = _make_source(recipe.data.name, recipe.data.data_dir, recipe.data.image_size).scale
    target = (
        pathlib.Path(out)
        if out is not None
        else run / ("litert_int8" if quantize == "dynamic_int8" else "litert")
    )
    manifest = EarlyExitModel(model, values).export_litert(
        target,
        quantize=quantize,
        normalization={"mean": list(info.mean), "std": list(info.std), "scale": float(scale)},
        backbone=backbone,
    )
    return target, manifest
