"""Training throughput of every method against plain `keras.Model.fit` of the same backbone.

Same backbone (CIFAR ResNet-20 at 32x32x3, 10 classes), same batch size, same process, synthetic
data already in memory (so the input pipeline is not measured). Methods are timed in interleaved
rounds (plain, method A, method B, ..., plain, ...); a round times ``--steps`` consecutive training
steps inside one `fit` call (a callback stamps the end of each batch, so `fit`'s start and end are
not counted), and each method's median over rounds is used, so
slow drifts of the machine hit every method alike. The ratio is plain images/s divided by the
method's images/s (1.0 = no overhead; two views cost two forward/backward passes, so 2.0 is their
floor).

Peak memory: each method is also built and trained for a few steps alone in a fresh child process,
whose peak resident set size (`ru_maxrss`) is reported, with its ratio to the child that trains
plain `fit`. On CPU, TensorFlow has no allocator statistics (`get_memory_info` is GPU-only), so
the child samples its resident set size every 2 ms: ``peak_rss_mib`` is the process peak and
``training_mib`` the peak minus the RSS before the model was built (what the model, its
optimizer state, traced graphs and activations add); the memory ratio is on ``training_mib``.

By default both modes run, without and then with XLA (`jit_compile=True`); each mode has its own
plain baseline, and the XLA rows also give the ratio to plain non-XLA `fit`.

    python benchmarks/step_overhead.py                      # all methods, both modes, memory
    python benchmarks/step_overhead.py --methods two_view_concat --rounds 5 --xla off --no-memory
Writes benchmarks/results/step_overhead.json and the table between the ``step_overhead`` markers
of docs/results.md (``--table`` rewrites only the table).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_sd  # noqa: E402
from keras_sd import backbones  # noqa: E402
from keras_sd.atomic import write_json_atomic  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import cifar10_study as study  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "step_overhead.json"
DOC = REPO / "docs" / "results.md"
GOALS = {  # the issues' ceilings on the ratio to plain fit (no XLA)
    "two_view_concat": "<= 2.1",
    "multi_exit": "<= 1.35",
    "self_guidance_per_batch": "<= 1.9",
    "pskd": "<= 1.05",
}
SHAPE, CLASSES = (32, 32, 3), 10


def _bb(**kw):
    return backbones.resnet20(num_classes=CLASSES, input_shape=SHAPE, **kw)


def _plain():
    bb = _bb()
    model = keras.Model(bb.input, bb.output["logits"])
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model, False


def _sd(model, needs_index=False):
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True))
    return model, needs_index


def _two_view(views):
    from keras_sd.models.two_view import TwoViewDistiller

    return lambda: _sd(TwoViewDistiller(_bb(), views=views))


def _multi_exit():
    from keras_sd.models.multi_exit import MultiExitDistiller

    return _sd(MultiExitDistiller(_bb()))


def _self_guidance(mode):
    def build():
        from keras_sd.models.self_guidance import SelfGuidanceDistiller

        return _sd(SelfGuidanceDistiller(_bb(stochastic_depth=0.5, drop_mode=mode), drop_mode=mode))

    return build


def _pskd(steps_total):
    return _sd(keras_sd.Baseline(_bb(), pskd_alpha=0.8, num_train_examples=steps_total), True)


def _pskd_byot_dmfl(steps_total):
    from keras_sd.models.multi_exit import MultiExitDistiller

    model = MultiExitDistiller(
        _bb(),
        alpha=0.1,
        feature_weight=1e-6,
        pskd_alpha=0.8,
        num_train_examples=steps_total,
        mutual_feature_weight=1.0,
    )
    return _sd(model, True)


def builders(num_examples):
    return {
        "plain_keras": _plain,
        "baseline": lambda: _sd(keras_sd.Baseline(_bb())),
        "two_view_concat": _two_view("concat"),
        "two_view_separate": _two_view("separate"),
        "multi_exit": _multi_exit,
        "self_guidance_per_batch": _self_guidance("per_batch"),
        "self_guidance_per_sample": _self_guidance("per_sample"),
        "pskd": lambda: _pskd(num_examples),
        "pskd_byot_dmfl": lambda: _pskd_byot_dmfl(num_examples),
    }


def dataset(batch, steps, with_index):
    rng = np.random.default_rng(0)
    n = batch * steps
    x = rng.normal(size=(n, *SHAPE)).astype("float32")
    y = rng.integers(0, CLASSES, size=n).astype("int32")
    if with_index:
        ds = tf.data.Dataset.from_tensor_slices(
            ({"image": x, "index": np.arange(n, dtype="int32")}, y)
        )
    else:
        ds = tf.data.Dataset.from_tensor_slices((x, y))
    return ds.batch(batch, drop_remainder=True).cache().repeat().prefetch(2)


def _build(table, name, args, jit):
    model, with_index = table[name]()
    if jit:
        model.jit_compile = True
    ds = dataset(args.batch, args.steps, with_index)
    model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)  # trace and warm up
    return model, ds


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _memory_child(table, name, args):
    """Runs in a fresh process: train one method a few steps, print its peak RSS in MiB.

    A thread samples the resident set every 2 ms from before the model is built to the end of
    training; ``peak_rss_mib`` is the maximum and ``training_mib`` the maximum minus the RSS
    before the model existed (TensorFlow, the data and the interpreter excluded)."""
    import threading

    before = _rss_mib()
    peak, stop = [before], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mib())
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    model, ds = _build(table, name, args, args.xla == "on")
    model.fit(ds, epochs=1, steps_per_epoch=args.steps, verbose=0)
    stop.set()
    thread.join()
    peak[0] = max(peak[0], _rss_mib())
    print(json.dumps({"peak_rss_mib": peak[0], "training_mib": peak[0] - before}))


def peak_memory(name, args, jit):
    cmd = [sys.executable, __file__, "--memory-child", name, "--batch", str(args.batch)]
    cmd += ["--steps", str(args.steps), "--xla", "on" if jit else "off"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


class _StepClock(keras.callbacks.Callback):
    """Times training steps from the end of the first batch to the end of the last.

    `fit` has a per-call cost that is not the step's: here, the end of a `fit` over a repeated
    `tf.data` pipeline sometimes waits up to ~2 s (the rounds' durations clustered at multiples
    of 5.1 s), which timing whole `fit` calls mixed into the ratios. The first step of each call
    (iterator start) is excluded too; ``steps`` steps are timed per round.
    """

    def on_train_begin(self, logs=None):
        self.stamps = []

    def on_train_batch_end(self, batch, logs=None):
        self.stamps.append(time.perf_counter())

    def seconds_per_step(self) -> float:
        return (self.stamps[-1] - self.stamps[0]) / (len(self.stamps) - 1)


def run_mode(table, names, args, jit):
    models, skipped = {}, {}
    for name in names:
        try:
            models[name] = _build(table, name, args, jit)
        except (ImportError, AttributeError, TypeError) as e:  # method not implemented yet
            skipped[name] = f"{type(e).__name__}: {e}"
            print(f"skip {name}: {skipped[name]}")
    seconds = {name: [] for name in models}
    clock = _StepClock()
    for _ in range(args.rounds):
        for name, (model, ds) in models.items():
            model.fit(ds, epochs=1, steps_per_epoch=args.steps + 1, verbose=0, callbacks=[clock])
            seconds[name].append(clock.seconds_per_step())
    del models
    keras.backend.clear_session()
    ips = {n: args.batch / statistics.median(s) for n, s in seconds.items()}
    rows = {
        n: {
            "images_per_second": round(ips[n], 2),
            "ratio_to_plain_keras": round(ips["plain_keras"] / ips[n], 3),
            "seconds_per_step": [round(s, 4) for s in seconds[n]],
        }
        for n in seconds
    }
    if args.memory:
        for n in rows:
            mem = peak_memory(n, args, jit)
            rows[n]["peak_rss_mib"] = round(mem["peak_rss_mib"], 1)
            rows[n]["training_mib"] = round(mem["training_mib"], 1)
        for n in rows:
            rows[n]["memory_ratio_to_plain_keras"] = round(
                rows[n]["training_mib"] / rows["plain_keras"]["training_mib"], 3
            )
    return rows, skipped


def table(results: dict) -> str:
    """Markdown table of both modes from the results JSON (for docs/results.md)."""
    modes = [m for m in ("no_xla", "xla") if m in results]
    names = list(dict.fromkeys(n for m in modes for n in results[m]["methods"]))
    head = "| method | goal (no XLA) |"
    rule = "|---|---|"
    for m in modes:
        label = "XLA" if m == "xla" else "no XLA"
        head += f" {label} img/s | {label} x plain | {label} train MiB (x plain) |"
        rule += "---|---|---|"
    lines = [head, rule]
    for n in names:
        row = f"| {n} | {GOALS.get(n, '')} |"
        for m in modes:
            r = results[m]["methods"].get(n)
            if r is None:
                row += " - | - | - |"
                continue
            mem = (
                f"{r['training_mib']:.0f} ({r['memory_ratio_to_plain_keras']:.2f}x)"
                if "training_mib" in r
                else "-"
            )
            row += f" {r['images_per_second']:.0f} | {r['ratio_to_plain_keras']:.2f}x | {mem} |"
        lines.append(row)
    notes = []
    for m in modes:
        info = results[m]
        load = info.get("load_average_at_end")
        notes.append(
            f"{'XLA' if m == 'xla' else 'no XLA'}: batch {info['batch']}, median of "
            f"{info['rounds']} rounds of {info['steps_per_round']} steps"
            + (f", load average {load[0]:.1f} at the end" if load else "")
            + (f", {info['cpus_used']} CPU core(s) used" if "cpus_used" in info else "")
        )
    return "\n".join(lines) + "\n\n" + "; ".join(notes) + ".\n"


def write_doc(results: dict) -> None:
    text = DOC.read_text() if DOC.exists() else "# Results\n"
    DOC.write_text(
        study.replace_section(
            text, key="step_overhead", body=table(results), heading="## Training step overhead"
        )
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--xla", choices=["off", "on", "both"], default="both", help="jit_compile (XLA)"
    )
    parser.add_argument(
        "--no-memory", dest="memory", action="store_false", help="skip peak-memory children"
    )
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--table", action="store_true", help="only rewrite docs/results.md")
    args = parser.parse_args(argv)
    if args.table:
        return write_doc(json.loads(OUT.read_text()))
    table = builders(args.batch * args.steps)
    if args.memory_child:
        return _memory_child(table, args.memory_child, args)
    names = ["plain_keras"] + [m for m in (args.methods or table) if m != "plain_keras"]
    unknown = set(names) - set(table)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; known: {sorted(table)}")
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.xla]
    previous = json.loads(OUT.read_text()) if OUT.exists() else {}
    results = {}
    for jit in modes:
        key = "xla" if jit else "no_xla"
        rows, skipped = run_mode(table, names, args, jit)
        results[key] = rows
        if jit and "no_xla" in results:
            base = results["no_xla"]["plain_keras"]["images_per_second"]
            for r in rows.values():
                r["ratio_to_plain_keras_no_xla"] = round(base / r["images_per_second"], 3)
        print(
            f"\n{key}: {'method':<26} {'images/s':>10} {'x plain fit':>12} {'train MiB':>10} {'x plain mem':>12}"
        )
        for n, r in rows.items():
            mem = r.get("training_mib", float("nan"))
            memr = r.get("memory_ratio_to_plain_keras", float("nan"))
            print(
                f"{key}: {n:<26} {r['images_per_second']:>10.1f} {r['ratio_to_plain_keras']:>12.3f}"
                f" {mem:>10.0f} {memr:>12.3f}"
            )
        kept = previous.get(key, {})
        if (
            args.methods
            and kept.get("batch") == args.batch
            and kept.get("steps_per_round") == args.steps
        ):
            # A partial rerun (--methods): update those rows, keep the others (their ratios are
            # each against the plain baseline timed in their own run).
            rows = {**kept.get("methods", {}), **rows}
        previous[key] = {
            "backbone": "resnet20",
            "input_shape": list(SHAPE),
            "batch": args.batch,
            "steps_per_round": args.steps,
            "rounds": args.rounds,
            "load_average_at_end": list(os.getloadavg()),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, TF {tf.__version__}, Keras {keras.__version__}",
            # Cores this process may run on (fewer than the machine's under taskset).
            "cpus_used": len(os.sched_getaffinity(0)),
            "methods": rows,
            "skipped": skipped,
        }
        write_json_atomic(OUT, previous)
    write_doc(previous)
    print(f"wrote {OUT} and the table in {DOC}")


if __name__ == "__main__":
    main()
