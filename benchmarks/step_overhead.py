"""Training throughput of every method against plain `keras.Model.fit` of the same backbone.

Same backbone (CIFAR ResNet-20 at 32x32x3, 10 classes), same batch size, same process, synthetic
data already in memory (so the input pipeline is not measured). Methods are timed in interleaved
rounds (plain, method A, method B, ..., plain, ...) and each method's median over rounds is used, so
slow drifts of the machine hit every method alike. The ratio is plain images/s divided by the
method's images/s (1.0 = no overhead; two views cost two forward/backward passes, so 2.0 is their
floor).

    python benchmarks/step_overhead.py                      # all methods
    python benchmarks/step_overhead.py --methods two_view_concat --rounds 5
Writes benchmarks/results/step_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_sd  # noqa: E402
from keras_sd import backbones  # noqa: E402
from keras_sd.train import write_json_atomic  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "step_overhead.json"
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
        ds = tf.data.Dataset.from_tensor_slices(({"image": x, "index": np.arange(n, dtype="int32")}, y))
    else:
        ds = tf.data.Dataset.from_tensor_slices((x, y))
    return ds.batch(batch, drop_remainder=True).cache().repeat().prefetch(2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jit", action="store_true", help="jit_compile=True (XLA)")
    args = parser.parse_args(argv)
    table = builders(args.batch * args.steps)
    names = ["plain_keras"] + [m for m in (args.methods or table) if m != "plain_keras"]
    unknown = set(names) - set(table)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; known: {sorted(table)}")
    models, skipped = {}, {}
    for name in names:
        try:
            model, with_index = table[name]()
        except (ImportError, AttributeError, TypeError) as e:  # method not implemented yet
            skipped[name] = f"{type(e).__name__}: {e}"
            print(f"skip {name}: {skipped[name]}")
            continue
        if args.jit:
            model.jit_compile = True
        ds = dataset(args.batch, args.steps, with_index)
        model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)  # trace and warm up
        models[name] = (model, ds)
    seconds = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, (model, ds) in models.items():
            start = time.perf_counter()
            model.fit(ds, epochs=1, steps_per_epoch=args.steps, verbose=0)
            seconds[name].append(time.perf_counter() - start)
    ips = {n: args.batch * args.steps / statistics.median(s) for n, s in seconds.items()}
    rows = {
        n: {
            "images_per_second": round(ips[n], 2),
            "ratio_to_plain_keras": round(ips["plain_keras"] / ips[n], 3),
            "seconds_per_round": [round(s, 3) for s in seconds[n]],
        }
        for n in models
    }
    print(f"{'method':<26} {'images/s':>10} {'x plain fit':>12}")
    for n, r in rows.items():
        print(f"{n:<26} {r['images_per_second']:>10.1f} {r['ratio_to_plain_keras']:>12.3f}")
    previous = json.loads(OUT.read_text()) if OUT.exists() else {}
    key = "xla" if args.jit else "no_xla"
    previous[key] = {
        "backbone": "resnet20",
        "input_shape": list(SHAPE),
        "batch": args.batch,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, TF {tf.__version__}, Keras {keras.__version__}",
        "methods": rows,
        "skipped": skipped,
    }
    write_json_atomic(OUT, previous)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
