"""Is the input pipeline ever the bottleneck? Pipeline images/s against training-step images/s.

The pipeline is `keras_sd.data.load` on the real CIFAR-10 image folder (../shared/data), with
sample indices (as PS-KD needs) and the per-sample CIFAR distortion, plus the two-view distortion
applied twice per batch (the work TwoViewDistiller adds inside its step), timed after the decoded
images are cached (the second pass; the first pass decodes JPEGs once). The training step is
TwoViewDistiller on CIFAR ResNet-20 at the same batch size, fed from memory, in the same process.
The goal is a pipeline at least 5x faster than the step consumes.

The "autoaugment" row is the pipeline with ``augment="autoaugment"`` (pad-crop-flip, the
AutoAugment CIFAR-10 policy and Cutout per sample, the TPAMI multi-exit recipe's distortion),
no in-step distortion, against the cheapest step that could consume it: a plain ``Baseline``
CIFAR ResNet-20 (one forward/backward per image). Its goal is 3x.

    python benchmarks/input_pipeline.py [--batches 40] [--rows cifar autoaugment]
Writes benchmarks/results/input_pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_sd  # noqa: E402
from keras_sd import backbones, data  # noqa: E402
from keras_sd.atomic import write_json_atomic  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from cifar10_study import cifar10_folder  # noqa: E402

OUT = pathlib.Path(__file__).parent / "results" / "input_pipeline.json"
# row -> (augment, training step it is compared with, goal ratio)
ROWS = {"cifar": ("cifar", "two_view", 5.0), "autoaugment": ("autoaugment", "baseline", 3.0)}


def pipeline_rate(batch, batches, folder, augment="cifar"):
    bundle = data.load(
        f"folder:{folder}",
        batch_size=batch,
        augment=augment,
        with_index=True,
        train_per_class=1000,
        subset_seed=0,
    )
    distort = data.distortion("cifar", bundle.info.image_shape, seed=0)

    @tf.function
    def two_views(x):
        if augment != "cifar":  # no in-step distortion: the pipeline's output is consumed
            return x, x
        return distort(x, training=True), distort(x, training=True)

    for _ in bundle.train:  # first pass decodes and fills the cache
        pass
    count, start = 0, time.perf_counter()
    for i, (x, _) in enumerate(bundle.train):
        a, b = two_views(x["image"])
        count += int(a.shape[0])
        if i + 1 >= batches:
            break
    return count / (time.perf_counter() - start)


def step_rate(batch, steps, method="two_view"):
    if method == "two_view":
        model = keras_sd.TwoViewDistiller(backbones.resnet20(num_classes=10), seed=0)
    else:
        model = keras_sd.Baseline(backbones.resnet20(num_classes=10))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * steps, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=batch * steps)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache().repeat()
    model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)
    start = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0)
    return batch * steps / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rows", nargs="+", default=["cifar", "autoaugment"])
    args = parser.parse_args(argv)
    folder = cifar10_folder()
    previous = json.loads(OUT.read_text()) if OUT.exists() else {}
    result = {k: v for k, v in previous.items() if k in ROWS}
    for row in args.rows:
        augment, method, goal = ROWS[row]
        load = os.getloadavg()[0]
        pipe = pipeline_rate(args.batch, args.batches, folder, augment)
        step = step_rate(args.batch, args.steps, method)
        result[row] = {
            "augment": augment,
            "pipeline_images_per_second": round(pipe, 1),
            f"{method}_step_images_per_second": round(step, 1),
            "ratio": round(pipe / step, 2),
            "goal_ratio": goal,
            "load_average_1min_at_start": round(load, 2),
        }
        print(row, result[row], flush=True)
    result["batch"] = args.batch
    result["machine"] = f"{os.cpu_count()} CPUs, TF {tf.__version__}, Keras {keras.__version__}"
    write_json_atomic(OUT, result)


if __name__ == "__main__":
    main()
