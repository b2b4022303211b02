"""What the reliability diagram adds to an evaluated epoch: a second pass, or none.

`keras_sd.callbacks.ReliabilityDiagram` can predict the validation data itself (any Keras model)
or draw the calibration a keras_sd model accumulated while ``fit`` validated
(``validation_data=None``, what ``keras-sd train`` uses). This times, per evaluated epoch, Keras'
validation pass and the callback's ``on_epoch_end`` in both modes, on CIFAR ResNet-20 (32x32x3,
10 classes, synthetic data in memory) as a baseline and as a 3-exit `MultiExitDistiller`. Rounds
interleave the modes (none, predict, fit-state, none, ...), one model each, and each figure is the
median over rounds, so slow drifts of the machine hit every mode alike. For the baseline, an
``untracked`` model (``calibrated_outputs=()``) gives what its validation costs without the
calibration accumulated in ``test_step``. The ratio is (validation + diagram) /
validation of the same round: 1.0 means the diagram costs nothing beyond Keras' validation.

    taskset -c 1 python benchmarks/evaluation_pass.py            # writes results/evaluation_pass.json
    python benchmarks/evaluation_pass.py --rounds 2 --val 512    # quick look
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_sd  # noqa: E402
from keras_sd import backbones, callbacks  # noqa: E402
from keras_sd.atomic import write_json_atomic  # noqa: E402
from keras_sd.models.multi_exit import MultiExitDistiller  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "evaluation_pass.json"
MODES = ("none", "predict", "fit_state")


class _Clock(keras.callbacks.Callback):
    """Seconds of the validation pass (on_test_begin .. on_test_end) of the last epoch."""

    def on_test_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_test_end(self, logs=None):
        self.validation = time.perf_counter() - self.start


class _Timed(keras.callbacks.Callback):
    """Wraps a callback and times its on_epoch_end."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seconds, self.started = inner, 0.0, False

    def set_model(self, model):
        super().set_model(model)
        self.inner.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.inner.set_params(params)

    def on_train_begin(self, logs=None):
        # Once: the prediction function it builds is kept across rounds as it is across the
        # epochs of one fit, so rounds after the warm-up do not time its tracing.
        if not self.started:
            self.inner.on_train_begin(logs)
            self.started = True

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        self.inner.on_epoch_end(epoch, logs)
        self.seconds = time.perf_counter() - start

    def on_train_end(self, logs=None):
        self.inner.on_train_end(logs)


def _model(kind: str, tracked: bool = True):
    keras.utils.set_random_seed(0)
    net = backbones.get("resnet_cifar", num_classes=10, input_shape=(32, 32, 3), depth=20)
    if kind == "multi_exit":
        model = MultiExitDistiller(net)
    else:  # untracked: what validation cost before models tracked their calibration
        model = keras_sd.Baseline(net, calibrated_outputs=None if tracked else ())
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    return model


def measure(kind: str, rounds: int, num_val: int, batch: int) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=2 * batch)
    xv = rng.normal(size=(num_val, 32, 32, 3)).astype("float32")
    yv = rng.integers(0, 10, size=num_val)
    models = {m: _model(kind) for m in MODES}
    modes = list(MODES)
    if kind == "baseline":
        models["untracked"] = _model(kind, tracked=False)
        modes.append("untracked")
    times: dict[str, list] = {m: [] for m in modes}
    logdir = tempfile.mkdtemp(prefix="evaluation_pass_")
    diagrams = {
        "predict": _Timed(callbacks.ReliabilityDiagram(f"{logdir}/predict", (xv, yv))),
        "fit_state": _Timed(callbacks.ReliabilityDiagram(f"{logdir}/fit_state", None)),
    }
    for r in range(rounds + 1):  # round 0 warms up (traces) every mode, not counted
        for mode in modes:
            model = models[mode]
            clock = _Clock()
            extra = [diagrams[mode]] if mode in diagrams else []
            model.fit(
                x,
                y,
                batch_size=batch,
                epochs=1,
                validation_data=(xv, yv),
                validation_batch_size=256,
                callbacks=[clock, *extra],
                verbose=0,
            )
            if r:
                times[mode].append((clock.validation, extra[0].seconds if extra else 0.0))
    result = {}
    for mode, rows in times.items():
        validation = statistics.median(v for v, _ in rows)
        diagram = statistics.median(d for _, d in rows)
        ratio = statistics.median((v + d) / v for v, d in rows)
        result[mode] = {
            "validation_s": round(validation, 3),
            "diagram_s": round(diagram, 3),
            "ratio_to_validation": round(ratio, 3),
        }
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--val", type=int, default=2000, help="validation images")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args(argv)
    payload = {
        "machine": (
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"affinity {sorted(os.sched_getaffinity(0))}, TF {tf.__version__}, "
            f"Keras {keras.__version__}"
        ),
        "validation_images": args.val,
        "rounds": args.rounds,
        "models": {},
    }
    for kind in ("baseline", "multi_exit"):
        payload["models"][kind] = measure(kind, args.rounds, args.val, args.batch)
        for mode, row in payload["models"][kind].items():
            print(f"{kind:10s} {mode:9s} {row}")
    write_json_atomic(args.out, payload)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
