"""`keras-sd thresholds RUN_DIR`: threshold search on a finished multi-exit run (and `export_run`,
`keras-sd export RUN_DIR --litert`: its LiteRT early-exit artefact).

Thresholds are chosen on data the report never sees. A `keras-sd train` run trains on its whole
training split, so its only held-out data is the test split: it is partitioned by a seed
(`keras_sd.inference.split_search_report`, ``--split-seed``) into a **search half**, the only
samples the genetic search and the shared-threshold sweep see, and a **report half**, on which
every reported figure is computed: accuracy, MAC acceleration and measured speedup of the chosen
thresholds and of each row of the trade-off table (rows re-scored with
`keras_sd.inference.rescore`; their search-half figures are kept as ``search_*`` fields).
`held_out_parts` is the one place that decides which samples are which.

The measured speedup is that of the compiled early-exit graph over the compiled plain backbone
(runtime "tf-graph") at the search's batch size, on report-half images: the median over
alternating timed rounds (plain backbone, early exit, plain backbone, ...;
`keras_sd.inference.measure_acceleration`). Its field and column name the runtime and the batch
size (``measured_speedup_tf_graph_batch256``).

Writes to RUN_DIR:
    thresholds.json            which samples are which (``split``: seed, counts), the best
                               thresholds, their report-half accuracy / MAC acceleration /
                               measured speedup and search-half figures, images per exit, the
                               trade-off table and the sweep
    thresholds.png             report half: accuracy vs acceleration (GA front and
                               shared-threshold sweep) and, as TPAMI Fig. 8, images classified
                               per exit against the threshold
    logs/thresholds/           the same plot as a TensorBoard image

Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural Networks",
TPAMI, section 3.3, Algorithm 2, Table 5, Fig. 8.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from keras_sd import validation
from keras_sd.inference.early_exit import check_multi_exit
from keras_sd.inference.search import (
    MEASURE_ROUNDS,
    MEASURE_RUNTIME,
    SWEEP_VALUES,
    ExitProbabilities,
    collect_exit_probabilities,
    measure_acceleration,
    rescore,
    search_thresholds,
    split_search_report,
    sweep_thresholds,
)
from keras_sd.plotting import plot_tradeoff

SEARCH_FRACTION = 0.5  # share of the test split the search sees when no training data is held out


def log_png_to_tensorboard(png: bytes, logdir: str | os.PathLike, name: str) -> None:
    """Writes a PNG as a TensorBoard image summary (step 0) under ``logdir``."""
    import tensorflow as tf

    image = tf.image.decode_png(png, channels=4)[None]
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        tf.summary.image(name, image, step=0)
    writer.flush()
    writer.close()


def measured_speedup_field(batch_size: int) -> str:
    """Name of the measured-speedup field / column: runtime and batch size, e.g.
    ``measured_speedup_tf_graph_batch256``."""
    return f"measured_speedup_{MEASURE_RUNTIME.replace('-', '_')}_batch{batch_size}"


def held_out_parts(
    model,
    bundle,
    *,
    split_seed: int,
    keep_images: int,
    batch_size: int,
) -> tuple[ExitProbabilities, ExitProbabilities, dict[str, Any]]:
    """``(search, report, description)``: cached exit probabilities of the samples the threshold
    search may see, of the samples every figure is reported on, and which is which.

    A `keras-sd train` run trains on its whole training split, so both parts come from the test
    split: a seeded ``SEARCH_FRACTION`` of it (`split_search_report`, seed ``split_seed``) for
    the search and the rest for the report. The network runs once over the test split; the
    report part keeps its first ``keep_images`` images (``report.images``) for timing. A run
    that held part of its training data out would return that part as ``search`` and the whole
    test split as ``report``: callers only see the two parts and the description.
    """
    split = split_search_report(
        bundle.info.num_test, search_fraction=SEARCH_FRACTION, seed=split_seed, source="test"
    )
    cached = collect_exit_probabilities(
        model, bundle.test, batch_size=batch_size, keep_indices=split.report[:keep_images]
    )
    if cached.num_samples != bundle.info.num_test:
        raise ValueError(
            f"`bundle`: the test pipeline yielded {cached.num_samples} samples but its DataInfo "
            f"says num_test={bundle.info.num_test}; expected one sample per test example."
        )
    report = cached.take(split.report)
    report = ExitProbabilities(report.probs, report.labels, images=cached.images)
    return cached.take(split.search), report, split.describe()


def _reported_rows(rows: list[dict], key: str) -> list[dict]:
    """Table rows as thresholds.json holds them: the measured speedup under its named field."""
    return [
        {k: v for k, v in r.items() if k != "measured_acceleration"} | {key: None} for r in rows
    ]


def run_threshold_search(
    run_dir: str | os.PathLike,
    *,
    beta: float,
    generations: int = 60,
    population: int = 64,
    seed: int = 0,
    split_seed: int = 0,
    measure: bool = True,
    measure_images: int = 2048,
    batch_size: int = 256,
    progress: bool = True,
) -> dict[str, Any]:
    """Loads RUN_DIR's model and test split, searches thresholds on the search half, reports on
    the other half, writes the files (see the module docstring) and returns the content of
    thresholds.json.

    Args:
        run_dir: a finished ``keras-sd train`` run of the multi_exit method.
        beta: fitness weight of accuracy (eq. 7).
        generations, population, seed: the genetic search's.
        split_seed: seed of the search / report partition of the test split.
        measure: time the early-exit graph against the plain backbone on report-half images.
        measure_images: how many report-half images to time on (>= 1).
        batch_size: batch size of the forward pass and of the timing.
        progress: show the GA's progress bar.
    """

    from keras_sd.atomic import write_json_atomic
    from keras_sd.experiment import Experiment

    split_seed = validation.integer(split_seed, "split_seed")
    if measure:
        measure_images = validation.integer(measure_images, "measure_images", minimum=1)
    batch_size = validation.integer(batch_size, "batch_size", minimum=1)
    run = pathlib.Path(run_dir)
    experiment = Experiment.from_run(run)
    recipe, model = experiment.recipe, experiment.load_model()
    bundle = experiment.bundle
    check_multi_exit(model, f"model in {run / 'model.keras'}")
    search, report, split = held_out_parts(
        model,
        bundle,
        split_seed=split_seed,
        keep_images=measure_images if measure else 0,
        batch_size=batch_size,
    )
    common = dict(beta=beta, measure=False, batch_size=batch_size)
    result = search_thresholds(
        model,
        search,
        generations=generations,
        population=population,
        seed=seed,
        progress=progress,
        **common,
    )
    sweep = sweep_thresholds(model, search, macs=result.macs, **common)
    reported, reported_sweep = rescore(result, report), rescore(sweep, report)
    key = measured_speedup_field(batch_size)
    rows = _reported_rows(reported.table, key)
    chosen = sweep_best = None
    if measure:

        def timed(thresholds):
            return measure_acceleration(
                model, thresholds, report.images, batch_size=batch_size, rounds=MEASURE_ROUNDS
            )

        chosen = timed(reported.thresholds)
        for row in rows:
            row[key] = timed(row["thresholds"])
        sweep_best = timed(reported_sweep.thresholds)
    names = list(model.exit_names)
    n_search, n_report = split["search_images"], split["report_images"]
    png = plot_tradeoff(
        reported,
        reported_sweep,
        names,
        run / "thresholds.png",
        title=f"{recipe.name}: early exit on the report half of the test split ({n_report} "
        f"images); thresholds searched on the other {n_search} (split seed {split_seed})",
        num_samples=n_report,
    )
    log_png_to_tensorboard(png, run / "logs" / "thresholds", f"early_exit/beta_{beta:g}")
    macs = result.to_dict()["macs"]
    payload = {
        "recipe": recipe.name,
        "split": split,
        "search_images": n_search,
        "report_images": n_report,
        "exit_names": names,
        "generations": generations,
        "population": population,
        "seed": seed,
        "beta": result.beta,
        "thresholds": reported.thresholds,
        # Report half: the figures of the chosen thresholds on samples the search never saw.
        "accuracy": reported.accuracy,
        "mac_acceleration": reported.mac_acceleration,
        key: chosen,
        "shares": reported.shares,
        "images_per_exit": [int(round(v * n_report)) for v in reported.shares],
        "fitness": reported.fitness,
        "final_exit_accuracy": reported.final_exit_accuracy,
        "baseline_accuracy": reported.baseline_accuracy,
        # Search half: what the search saw.
        "search_accuracy": result.accuracy,
        "search_mac_acceleration": result.mac_acceleration,
        "search_shares": result.shares,
        "search_fitness": result.fitness,
        "search_final_exit_accuracy": result.final_exit_accuracy,
        "measurement": {
            "field": key,
            "runtime": MEASURE_RUNTIME,
            "batch_size": batch_size,
            "rounds": MEASURE_ROUNDS,
            "statistic": "median over rounds of plain-backbone seconds / early-exit seconds; "
            "each round times the plain backbone then the early-exit graph",
            "images": int(len(report.images)) if measure else 0,
            "part": "report",
        },
        "measured_on_images": int(len(report.images)) if measure else None,
        "table": rows,
        "history": result.history,
        "macs": macs,
        "sweep": {
            "values": list(SWEEP_VALUES),
            "best_threshold": sweep.thresholds[0],
            "fitness": reported_sweep.fitness,
            "accuracy": reported_sweep.accuracy,
            "mac_acceleration": reported_sweep.mac_acceleration,
            key: sweep_best,
            "search_fitness": sweep.fitness,
            "search_accuracy": sweep.accuracy,
            "search_mac_acceleration": sweep.mac_acceleration,
            "table": [
                {k: v for k, v in r.items() if k != "measured_acceleration"}
                for r in reported_sweep.table
            ],
        },
    }
    write_json_atomic(run / "thresholds.json", payload)
    print_summary(payload)
    return payload


def print_summary(payload: dict) -> None:
    """Prints which split is which, the chosen thresholds and the trade-off table."""
    split, key = payload["split"], payload["measurement"]["field"]
    m = payload["measurement"]
    print(
        f"\nthresholds (beta={payload['beta']:g}): "
        + ", ".join(f"{t:.4f}" for t in payload["thresholds"])
    )
    print(
        f"  searched on {split['search_images']} images of the {split['source']} split "
        f"(seed {split['seed']}); every figure below is on the other {split['report_images']} "
        "(report half) unless marked search"
    )
    speed = f"{m['runtime']} batch {m['batch_size']}"
    measured = payload[key]
    print(
        f"  accuracy {payload['accuracy']:.2f}% (final exit {payload['final_exit_accuracy']:.2f}%;"
        f" search half {payload['search_accuracy']:.2f}%), "
        f"MAC acceleration {payload['mac_acceleration']:.2f}x"
        + (
            f", measured speedup {measured:.2f}x ({speed}, median of {m['rounds']} alternating "
            f"rounds on {m['images']} images)"
            if measured is not None
            else ""
        )
    )
    column = f"{m['runtime']} b{m['batch_size']}"
    print(
        f"  {'acc %':>7} {'MACx':>6} {column:>14} {'search acc %':>12} {'search MACx':>11}"
        "  shares per exit (+ensemble)   thresholds"
    )
    for r in payload["table"]:
        meas = r[key]
        print(
            f"  {r['accuracy']:7.2f} {r['mac_acceleration']:6.2f} "
            f"{'-' if meas is None else f'{meas:.2f}x':>14} "
            f"{r['search_accuracy']:12.2f} {r['search_mac_acceleration']:11.2f}  "
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
    from keras_sd.experiment import Experiment
    from keras_sd.inference.early_exit import EarlyExitModel
    from keras_sd.inference.litert import QUANTIZE_OPTIONS, read_thresholds_file

    run = pathlib.Path(run_dir)
    validation.one_of(quantize, "quantize", QUANTIZE_OPTIONS)  # before the slow loading
    experiment = Experiment.from_run(run)
    recipe, model = experiment.recipe, experiment.load_model()
    bundle = experiment.bundle
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
