"""Wall-clock early-exit inference (TPAMI Algorithm 1) against the plain backbone on this CPU.

Model: a multi-exit self-distilled CIFAR ResNet-20 trained with the CIFAR-10 study's short
schedule (benchmarks/cifar10_study.py, row ``multi_exit``: real CIFAR-10, 1,000 training images
per class, 20 epochs, batch 128, SGD Nesterov, lr 0.1 cosine, weight decay 5e-4). By default the
lowest-seed model the study saved (the first harness's models under the system temp dir, else
the study's short-schedule run directories) is used; if there is none, this script runs the
study's short-schedule multi_exit row for seed 0 first (never in the repo). ``--model
RUN/model.keras`` benchmarks the model of any finished multi-exit run (e.g. a protocol-B row of
the study), on that run's own test split and normalisation (its recipe.json).

Thresholds: the 10,000 test images are split in two seeded halves
(`keras_sd.inference.split_search_report`, as `keras-sd thresholds` does). The genetic search
(`keras_sd.inference.search_thresholds`) and the shared-threshold sweep run on the first half
("search"); among all candidate thresholds, the fastest by MACs that loses at most 0.5 points of
accuracy against the final exit on the search half is picked; every reported accuracy and
throughput is on the second half ("report"), which the search never saw.

Throughput: images per second of (a) the plain backbone (``export_backbone()``, one compiled
graph) and (b) the early-exit serving graph (`keras_sd.inference.EarlyExitModel`, with
data-dependent gathers and conditionals), at batch 1 and batch 256, best of alternating timed
rounds after warm-up; both as ordinary ``tf.function`` graphs reading variables, and both frozen
(weights as constants, `keras_sd.inference.freeze_function`), like against like; and at batch
1 in LiteRT (`EarlyExitModel.export_litert`, run by `keras_sd.litert_runtime.LiteRTEarlyExit`, one
thread and all threads) against the LiteRT plain backbone, with each flatbuffer's median invoke
time (what the stage costs predict at the measured exit shares) and the dynamic-int8 export's
accuracy change and speed. Results go
to benchmarks/results/early_exit.json and to the section
between ``<!-- early_exit:start -->`` and ``<!-- early_exit:end -->`` of docs/results.md.

    python benchmarks/early_exit.py                 # train if needed, then benchmark
    python benchmarks/early_exit.py --train-only    # only make sure the model exists
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import cifar10_study as study  # noqa: E402

from keras_sd import inference  # noqa: E402
from keras_sd.atomic import write_json_atomic  # noqa: E402
from keras_sd.experiment import Experiment  # noqa: E402
from keras_sd.inference.search import (  # noqa: E402
    plain_backbone_function,
    simulate,
    time_rounds,
)
from keras_sd.plotting import plot_tradeoff  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "early_exit.json"
DOC = REPO / "docs" / "results.md"
DEFAULT_MODEL = pathlib.Path("/tmp/keras_sd_early_exit/multi_exit_resnet20_seed0.keras")


SHORT = study.PROTOCOLS["short"]
# Where the first study harness saved its trained models (it had no run directories).
LEGACY_MODELS = pathlib.Path(tempfile.gettempdir()) / "keras_sd_study_models"


def default_model() -> pathlib.Path:
    """The lowest-seed multi-exit model the CIFAR-10 study saved, else DEFAULT_MODEL."""
    saved = sorted(LEGACY_MODELS.glob("multi_exit_seed*.keras"))
    saved += sorted((study.RUNS / "short" / "multi_exit").glob("seed*/model.keras"))
    return saved[0] if saved else DEFAULT_MODEL


SEED = 0
MAX_DROP = 0.5  # accuracy points allowed below the final exit
BETAS = (0.25, 0.5, 1.0, 2.0, 4.0)  # GA runs whose trade-off fronts are pooled
BATCH1_IMAGES = 500  # images timed one at a time (batch 1)
ROUNDS = 5  # timed rounds, alternating plain / early exit; the best of each is kept
PLOT = REPO / "docs" / "methods" / "dynamic_inference.png"


def train_model(path: pathlib.Path) -> None:
    """Runs the study's short-schedule multi_exit row (seed 0; resumable, under the study's run
    root) and copies its model to ``path``."""
    folder = study.cifar10_folder()
    start = time.perf_counter()
    study.run_one(SHORT, "multi_exit", SEED, folder, study.RUNS, eval_every=1)
    print(f"trained in {time.perf_counter() - start:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.keras")
    shutil.copyfile(study.run_dir(study.RUNS, "short", "multi_exit", SEED) / "model.keras", tmp)
    os.replace(tmp, path)


def test_arrays(folder: pathlib.Path, model_path: pathlib.Path):
    """The 10,000 test images (normalised as in training) and labels, as arrays: the test split of
    the run that saved ``model_path`` (its recipe.json, `Experiment.from_run`), else of the
    study's short-schedule multi_exit row (models the first harness saved outside run folders).
    Normalisation is computed from the training images a run used, so a protocol-B model (5,000
    images) and a short-schedule one (10,000) each need their own."""
    run = model_path.parent
    if (run / "recipe.json").exists():
        bundle = Experiment.from_run(run).bundle
    else:
        recipe, _ = study.study_recipe("multi_exit", SHORT, SEED, folder, eval_every=1)
        bundle = Experiment(recipe, evaluation=True).bundle
    xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in bundle.test])
    return np.concatenate(xs).astype("float32"), np.concatenate(ys).astype("int64")


def throughput(fns: dict, images: np.ndarray, batch_size: int) -> dict:
    """Images per second of each compiled function over ``images`` in batches of
    ``batch_size``: one warm-up pass, then ROUNDS rounds that time every function in turn (so
    load changes on the shared CPU hit both alike; `keras_sd.inference.search.time_rounds`); the
    best round of each is kept."""
    seconds = time_rounds(fns, images, batch_size, ROUNDS)
    return {name: len(images) / min(s) for name, s in seconds.items()}


LITERT_IMAGES = 500  # images timed one at a time in LiteRT
LITERT_CHUNK = 25  # images per timed chunk; backbone and early exit alternate chunk by chunk
LITERT_PASSES = 3  # passes over the timed images


def alternating_chunks(fns: dict, images: list) -> dict:
    """Seconds per chunk of LITERT_CHUNK images, one at a time, for each of two callables:
    chunks alternate between them (order swapped every chunk, LITERT_PASSES passes, after a 50-image
    warm-up), so a load change on the shared CPU hits both alike. ``{name: [seconds, ...]}``."""
    pair = list(fns.items())
    for v in images[:50]:
        for _, fn in pair:
            fn(v)
    chunks = {name: [] for name in fns}
    for rep in range(LITERT_PASSES):
        for c, s in enumerate(range(0, len(images), LITERT_CHUNK)):
            for name, fn in pair if (c + rep) % 2 == 0 else pair[::-1]:
                start = time.perf_counter()
                for v in images[s : s + LITERT_CHUNK]:
                    fn(v)
                chunks[name].append(time.perf_counter() - start)
    return chunks


def litert_throughput(folder: pathlib.Path, images: np.ndarray, threads: int, tf_exits) -> dict:
    """Batch-1 images/s of the LiteRT plain backbone and the LiteRT early exit
    (`keras_sd.litert_runtime.LiteRTEarlyExit` on the float32 export in ``folder``), ``threads``
    CPU threads, over `alternating_chunks`: images/s over all chunks and the median of the
    per-chunk-pair ratios; ``tf_exits``: `EarlyExitModel`'s exits on ``images``, to check the
    runtime against."""
    from keras_sd.litert_runtime import LiteRTEarlyExit

    fast = LiteRTEarlyExit(folder, num_threads=threads)
    one = list(images[:LITERT_IMAGES])
    chunks = alternating_chunks({"backbone": fast.backbone, "early_exit": fast}, one)
    seconds = {name: sum(t) for name, t in chunks.items()}
    ratios = [b / e for b, e in zip(chunks["backbone"], chunks["early_exit"], strict=True)]
    n = LITERT_PASSES * len(one)
    return {
        "backbone": n / seconds["backbone"],
        "early_exit": n / seconds["early_exit"],
        "speedup": seconds["backbone"] / seconds["early_exit"],
        "median_chunk_speedup": float(np.median(ratios)),
        "exit_agreement_with_tf": float(np.mean(fast.predict(images)["exit"] == tf_exits)),
        "threads": threads,
        "stage_ms": litert_stage_ms(folder, images[0], threads),
    }


def model_run(model_path: pathlib.Path) -> str:
    """The recipe name of the run that saved ``model_path`` (its recipe.json), or a label for a
    model saved outside a run folder by the first study harness."""
    recipe = model_path.parent / "recipe.json"
    if recipe.exists():
        return json.loads(recipe.read_text()).get("name", "unnamed run")
    return "short schedule, first harness"


def litert_stage_ms(folder: pathlib.Path, image: np.ndarray, threads: int, calls: int = 300):
    """Median milliseconds of one call of each LiteRT flatbuffer of an export (every stage, fed
    the feature map the previous stage gives for ``image``, and the plain backbone), through the
    runtime's own per-stage wrapper (`keras_sd.litert_runtime._Stage`: set the input, invoke, read
    the logits, as `LiteRTEarlyExit` calls it): what each part costs at batch 1, free of the
    runtime's Python between stages."""
    from ai_edge_litert.interpreter import Interpreter

    # The runtime's private stage wrapper, so the timed calls are exactly the runtime's.
    from keras_sd.litert_runtime import _Stage

    manifest = json.loads((folder / "manifest.json").read_text())
    files = [s["file"] for s in manifest["stages"]] + [manifest["backbone"]["file"]]
    out, h = {}, image[None]
    for n, file in enumerate(files):
        stage = _Stage(Interpreter, folder / file, threads)
        is_stage = n < len(files) - 1
        x = np.ascontiguousarray(h if is_stage else image[None])
        logits = "logits" if "logits" in stage.outputs else next(iter(stage.outputs))
        times = []
        for c in range(30 + calls):  # 30 warm-up calls
            start = time.perf_counter()
            stage.invoke(x)
            stage.get(logits)
            if c >= 30:
                times.append(time.perf_counter() - start)
        out["backbone" if not is_stage else f"stage{n + 1}"] = 1e3 * float(np.median(times))
        if is_stage and "stage" in stage.outputs:
            h = stage.get("stage")
    return out


def litert_limits(stage_ms: dict, shares, macs) -> dict:
    """What the stage costs predict for early exit at these shares (ensemble answers pay every
    stage), against the MAC acceleration: how far the per-stage costs are from the MAC shares."""
    stages = [v for k, v in stage_ms.items() if k.startswith("stage")]
    cumulative = np.cumsum(stages)
    paths = [*cumulative, cumulative[-1]]  # exit i pays stages 1..i; the ensemble pays all
    predicted_ms = float(np.dot(shares, paths))
    return {
        "predicted_ms_per_image": predicted_ms,
        "predicted_speedup": stage_ms["backbone"] / predicted_ms,
        "through_all_stages_ms": float(cumulative[-1]),
        "through_all_stages_over_backbone": float(cumulative[-1] / stage_ms["backbone"]),
        "exit_path_ms_over_backbone": [float(c / stage_ms["backbone"]) for c in cumulative],
        "exit_path_macs_over_backbone": [float(m / macs.backbone) for m in macs.exits],
    }


def litert_int8(float32: pathlib.Path, int8: pathlib.Path, images, labels, tf_exits) -> dict:
    """The dynamic-range int8 export (int8 weights, float activations) against the float32 one on
    the same images: accuracy of the early exit, how many exits and predictions change, batch-1
    speed at one thread (`alternating_chunks`)."""
    from keras_sd.litert_runtime import LiteRTEarlyExit

    f32 = LiteRTEarlyExit(float32, num_threads=1)
    i8 = LiteRTEarlyExit(int8, num_threads=1)
    a, b = f32.predict(images), i8.predict(images)
    one = list(images[:LITERT_IMAGES])
    chunks = alternating_chunks({"float32": f32, "dynamic_int8": i8}, one)
    n = LITERT_PASSES * len(one)
    return {
        "accuracy_float32": 100.0 * float(np.mean(a["prediction"] == labels)),
        "accuracy_dynamic_int8": 100.0 * float(np.mean(b["prediction"] == labels)),
        "exits_changed": 100.0 * float(np.mean(a["exit"] != b["exit"])),
        "predictions_changed": 100.0 * float(np.mean(a["prediction"] != b["prediction"])),
        "float32_exits_match_tf": 100.0 * float(np.mean(a["exit"] == tf_exits)),
        "images_per_second_1_thread": {k: n / sum(t) for k, t in chunks.items()},
    }


def component_latency(model, images: np.ndarray) -> dict:
    """Milliseconds per batch of each backbone segment and exit head, at batch 1 and 256: where
    the time of an early-exit path goes (the heads' many small depthwise ops cost far more time
    per MAC than the backbone's convolutions)."""
    import tensorflow as tf

    def compiled(layer, shape):
        spec = tf.TensorSpec((None, *shape), "float32")
        return tf.function(lambda v: layer(v, training=False), input_signature=[spec])

    out = {}
    for batch, n in ((1, 100), (256, 256)):
        h = images[:n]
        fns, inputs = {}, {}
        for i, segment in enumerate(model.backbone_segments()):
            fns[f"segment{i + 1}"] = compiled(segment, h.shape[1:])
            inputs[f"segment{i + 1}"] = h
            if i < len(model.exit_heads):
                nxt = np.asarray(segment(h, training=False))
                fns[f"head{i + 1}"] = compiled(model.exit_heads[i], nxt.shape[1:])
                inputs[f"head{i + 1}"] = nxt
                h = nxt
        fns["backbone"] = plain_backbone_function(model)
        inputs["backbone"] = images[:n]
        out[f"batch_{batch}"] = {
            name: 1000.0 * batch / throughput({name: fn}, inputs[name], batch)[name]
            for name, fn in fns.items()
        }
    return out


def benchmark(
    model_path: pathlib.Path,
    generations: int,
    population: int,
    limit: int | None = None,
    write_plot: bool = True,
) -> dict:
    folder = study.cifar10_folder()
    model = keras.models.load_model(model_path)
    x, y = test_arrays(folder, model_path)
    if limit:  # quick check of the script only; reported figures use every test image
        x, y = x[:limit], y[:limit]
    split = inference.split_search_report(len(x), seed=SEED)
    search_idx, report_idx = split.search, split.report
    search = inference.collect_exit_probabilities(
        model, (x[search_idx], y[search_idx]), keep_images=0
    )
    report = inference.collect_exit_probabilities(
        model, (x[report_idx], y[report_idx]), keep_images=0
    )
    macs = inference.count_macs(model)
    exit_acc = {
        name: 100.0 * float((report.probs[i].argmax(-1) == report.labels).mean())
        for i, name in enumerate(model.exit_names)
    }
    exit_acc["ensemble"] = 100.0 * float((report.probs.mean(0).argmax(-1) == report.labels).mean())

    # Candidates: the pooled trade-off fronts of GA runs at several beta, and the sweep.
    candidates, ga_runs = [], {}
    for beta in BETAS:
        res = inference.search_thresholds(
            model,
            search,
            beta=beta,
            generations=generations,
            population=population,
            seed=SEED,
            macs=macs,
            table_rows=10_000,
            measure=False,
            progress=False,
        )
        ga_runs[beta] = res
        candidates += [r["thresholds"] for r in res.table]
    sweep = inference.sweep_thresholds(model, search, beta=1.0, macs=macs, measure=False)
    candidates += [r["thresholds"] for r in sweep.table]
    cand = np.asarray(candidates)
    sim_s = simulate(search.probs, search.labels, cand, macs.path_macs)
    final_s = 100.0 * float((search.probs[-1].argmax(-1) == search.labels).mean())
    ok = sim_s["accuracy"] >= final_s - MAX_DROP
    j = int(np.flatnonzero(ok)[np.argmin(sim_s["macs"][ok])])
    chosen = [float(t) for t in cand[j]]
    sim_r = simulate(report.probs, report.labels, np.asarray(chosen), macs.path_macs)
    final_r = exit_acc[model.exit_names[-1]]

    # Wall clock on the report half: plain backbone vs the early-exit serving graph.
    early = inference.EarlyExitModel(model, chosen)
    fns = {
        "backbone": plain_backbone_function(model),
        "early_exit": early.serving_function(),
        "backbone_frozen": plain_backbone_function(model, frozen=True),
        "early_exit_frozen": early.serving_function(frozen=True),
    }
    images = x[report_idx]
    load_before = os.getloadavg()
    tp1 = throughput(fns, images[:BATCH1_IMAGES], 1)
    tp256 = throughput(fns, images, 256)
    components = component_latency(model, images)
    mac_acceleration = float(macs.backbone / sim_r["macs"][0])
    # The graph answers as the NumPy replay of Algorithm 1 did (and is what LiteRT must match).
    served = early.predict_early_exit(images, batch_size=256)
    with tempfile.TemporaryDirectory() as tmp:
        float32, int8 = pathlib.Path(tmp) / "float32", pathlib.Path(tmp) / "int8"
        early.export_litert(float32, backbone=True)
        early.export_litert(int8, quantize="dynamic_int8")
        litert = {
            "1_thread": litert_throughput(float32, images, 1, served["exit"]),
            # Every core this process may use (one under `taskset -c 1`).
            "all_threads": litert_throughput(
                float32, images, len(os.sched_getaffinity(0)), served["exit"]
            ),
        }
        for v in litert.values():
            v["limits"] = litert_limits(v["stage_ms"], sim_r["shares"][0], macs)
            v["fraction_of_mac_acceleration"] = v["speedup"] / mac_acceleration
        litert["dynamic_int8"] = litert_int8(float32, int8, images, y[report_idx], served["exit"])
    load_after = os.getloadavg()
    agree = float(np.mean(served["exit"] == sim_r["exit"][0]))

    plot_tradeoff(
        inference.rescore(ga_runs[1.0], report),
        inference.rescore(sweep, report),
        list(model.exit_names),
        PLOT if write_plot and not limit else None,
        title=f"Multi-exit ResNet-20, CIFAR-10 study ({model_run(model_path)}): report half of the "
        f"test split ({report.num_samples} images; thresholds searched on the other half)",
        num_samples=report.num_samples,
    )
    import tensorflow as tf

    return {
        "protocol": __doc__.split("\n\n")[1] + "\n\n" + __doc__.split("\n\n")[2],
        "model": str(model_path),
        "model_run": model_run(model_path),
        "search_images": int(search.num_samples),
        "report_images": int(report.num_samples),
        "exit_accuracy_report": exit_acc,
        "max_drop_points": MAX_DROP,
        "thresholds": chosen,
        "search_accuracy": float(sim_s["accuracy"][j]),
        "search_final_exit_accuracy": final_s,
        "accuracy": float(sim_r["accuracy"][0]),
        "final_exit_accuracy": final_r,
        "accuracy_drop_points": final_r - float(sim_r["accuracy"][0]),
        "shares": [float(v) for v in sim_r["shares"][0]],
        "mac_acceleration": mac_acceleration,
        "macs": {
            "backbone": macs.backbone,
            "exits": list(macs.exits),
            "heads": list(macs.heads),
            "segments": list(macs.segments),
        },
        "throughput_images_per_second": {"batch_1": tp1, "batch_256": tp256},
        "measured_speedup": {
            "batch_1": tp1["early_exit"] / tp1["backbone"],
            "batch_256": tp256["early_exit"] / tp256["backbone"],
        },
        "measured_speedup_frozen": {
            "batch_1": tp1["early_exit_frozen"] / tp1["backbone_frozen"],
            "batch_256": tp256["early_exit_frozen"] / tp256["backbone_frozen"],
        },
        "batch_1_images": BATCH1_IMAGES,
        "component_ms_per_batch": components,
        "litert_batch_1": litert,
        "graph_exit_agreement": agree,
        "ga": {
            str(b): {
                "thresholds": r.thresholds,
                "search_accuracy": r.accuracy,
                "mac_acceleration": r.mac_acceleration,
                "fitness": r.fitness,
            }
            for b, r in ga_runs.items()
        },
        "sweep_best_beta1": {
            "threshold": sweep.thresholds[0],
            "search_accuracy": sweep.accuracy,
            "mac_acceleration": sweep.mac_acceleration,
        },
        "generations": generations,
        "population": population,
        "machine": {
            "cpus": os.cpu_count(),
            # Cores this process may run on (fewer than `cpus` under taskset).
            "cpus_used": len(os.sched_getaffinity(0)),
            "load_average_before": list(load_before),
            "load_average_after": list(load_after),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }


def table(r: dict) -> str:
    sp, spf = r["measured_speedup"], r["measured_speedup_frozen"]
    tp = r["throughput_images_per_second"]
    shares = ", ".join(
        f"{n} {100 * s:.1f}%"
        for n, s in zip(
            [f"exit{i + 1}" for i in range(len(r["shares"]) - 1)] + ["ensemble"], r["shares"]
        )
    )
    load = r["machine"]["load_average_before"][0], r["machine"]["load_average_after"][0]
    return "\n".join(
        [
            "Early-exit inference (TPAMI Algorithm 1) of the multi-exit ResNet-20 from the CIFAR-10 "
            f"study ({r.get('model_run', 'short schedule')}), thresholds found by the genetic "
            "search on half of the test split, "
            "figures on the other half ("
            f"{r['report_images']} images). Produced by `python benchmarks/early_exit.py`.",
            "",
            "| | accuracy (%) | MAC acceleration | batch 1 img/s | batch 256 img/s "
            "| batch 1 img/s, frozen | batch 256 img/s, frozen |",
            "|---|---|---|---|---|---|---|",
            f"| plain backbone (final exit) | {r['final_exit_accuracy']:.2f} | 1.00x "
            f"| {tp['batch_1']['backbone']:.0f} | {tp['batch_256']['backbone']:.0f} "
            f"| {tp['batch_1']['backbone_frozen']:.0f} "
            f"| {tp['batch_256']['backbone_frozen']:.0f} |",
            f"| early exit, thresholds {', '.join(f'{t:.3f}' for t in r['thresholds'])} "
            f"| {r['accuracy']:.2f} | {r['mac_acceleration']:.2f}x "
            f"| {tp['batch_1']['early_exit']:.0f} ({sp['batch_1']:.2f}x) "
            f"| {tp['batch_256']['early_exit']:.0f} ({sp['batch_256']:.2f}x) "
            f"| {tp['batch_1']['early_exit_frozen']:.0f} ({spf['batch_1']:.2f}x) "
            f"| {tp['batch_256']['early_exit_frozen']:.0f} ({spf['batch_256']:.2f}x) |",
            "",
            *litert_rows(r),
            f"Answered by: {shares}. Accuracy change vs the final exit: "
            f"{-r['accuracy_drop_points']:+.2f} points (limit -{r['max_drop_points']}). "
            f"Model: `{pathlib.Path(r['model']).name}`. Measured on "
            f"{r['machine'].get('cpus_used', r['machine']['cpus'])} of the machine's "
            f"{r['machine']['cpus']} CPU cores (load average {load[0]:.1f} before, "
            f"{load[1]:.1f} after); best of {ROUNDS} "
            "alternating rounds. Frozen: weights baked in as constants "
            "(`EarlyExitModel.serving_function(frozen=True)`), for both rows.",
            "",
            "Where the time goes (ms per batch, compiled graphs): "
            + "; ".join(
                f"batch {b.split('_')[1]}: "
                + ", ".join(
                    f"{k} {v:.2f}" for k, v in _pipeline_order(r["component_ms_per_batch"][b])
                )
                for b in ("batch_1", "batch_256")
            )
            + ".",
        ]
    )


def _pipeline_order(times: dict) -> list[tuple[str, float]]:
    """``times`` (ms by part) in the order an image meets the parts: segment / stage k, then
    head k, by k, the whole backbone last (the results JSON stores its keys sorted)."""

    def key(name):
        m = re.fullmatch(r"(segment|stage|head)(\d+)", name)
        return (0, int(m[2]), m[1] == "head") if m else (1, 0, name)

    return sorted(times.items(), key=lambda kv: key(kv[0]))


def litert_rows(r: dict) -> list[str]:
    """The LiteRT batch-1 table (absent from results written before it existed)."""
    lt = r.get("litert_batch_1")
    if not lt:
        return []
    out = [
        "LiteRT (`keras_sd.litert_runtime.LiteRTEarlyExit`, float32, same thresholds), batch 1: "
        "img/s over chunks of 25 images alternating backbone / early exit; speedup on total "
        "time (median of chunk pairs).",
        "",
        "| LiteRT, batch 1 | plain backbone | early exit | speedup | of the MAC acceleration "
        "| predicted by stage times |",
        "|---|---|---|---|---|---|",
    ]
    for key in ("1_thread", "all_threads"):
        v = lt[key]
        frac = v.get("fraction_of_mac_acceleration")
        pred = (v.get("limits") or {}).get("predicted_speedup")
        label = "1 thread" if key == "1_thread" else f"all threads ({v['threads']})"
        out.append(
            f"| {label} | {v['backbone']:.0f} img/s "
            f"| {v['early_exit']:.0f} img/s "
            f"| **{v['speedup']:.2f}x** ({v['median_chunk_speedup']:.2f}x) "
            f"| {'-' if frac is None else f'{frac:.2f}'} "
            f"| {'-' if pred is None else f'{pred:.2f}x'} |"
        )
    one = lt["1_thread"]
    if one.get("stage_ms"):
        lim = one["limits"]
        out += [
            "",
            "One thread, median ms per invoke: "
            + ", ".join(f"{k} {v:.3f}" for k, v in _pipeline_order(one["stage_ms"]))
            + ". Cost of answering at each exit, as a fraction of the backbone: "
            + ", ".join(f"{v:.2f}" for v in lim["exit_path_ms_over_backbone"])
            + " in time against "
            + ", ".join(f"{v:.2f}" for v in lim["exit_path_macs_over_backbone"])
            + " in MACs; an image that goes through every stage costs "
            + f"{lim['through_all_stages_over_backbone']:.2f}x the backbone.",
        ]
    q = lt.get("dynamic_int8")
    if q:
        ips = q["images_per_second_1_thread"]
        out += [
            "",
            f"Dynamic int8 (int8 weights, float activations), same thresholds, report half: "
            f"early-exit accuracy {q['accuracy_dynamic_int8']:.2f} % against "
            f"{q['accuracy_float32']:.2f} % in float32 "
            f"({q['accuracy_dynamic_int8'] - q['accuracy_float32']:+.2f} points); "
            f"{q['exits_changed']:.1f} % of exits and {q['predictions_changed']:.1f} % of "
            f"predictions change; one thread, batch 1: {ips['dynamic_int8']:.0f} img/s against "
            f"{ips['float32']:.0f} img/s in float32.",
        ]
    return [*out, ""]


def write_doc(r: dict) -> None:
    text = DOC.read_text() if DOC.exists() else "# Results\n"
    DOC.write_text(
        study.replace_section(
            text, key="early_exit", body=table(r) + "\n", heading="## Early-exit inference"
        )
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=pathlib.Path, default=None, help="default: see above")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--generations", type=int, default=80)
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--limit", type=int, help="only this many test images (script check)")
    parser.add_argument("--dry-run", action="store_true", help="print, write no result files")
    args = parser.parse_args(argv)
    args.model = args.model or default_model()
    if not args.model.exists():
        train_model(args.model)
    if args.train_only:
        return
    result = benchmark(
        args.model, args.generations, args.population, args.limit, write_plot=not args.dry_run
    )
    if not args.dry_run:
        write_json_atomic(RESULTS, result)
        write_doc(result)
    print(table(result))


if __name__ == "__main__":
    main()
