"""One worker of the two-process MultiWorkerMirroredStrategy test (run by test_multiworker.py).

Usage: python mw_worker.py METHOD OUT.npz  (TF_CONFIG set by the test; no TF_CONFIG = single process)
Trains METHOD on fixed data for a few global batches with explicit sharding and saves the weights.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tiny import tiny_backbone  # noqa: E402

import keras_sd  # noqa: E402

GLOBAL_BATCH, STEPS = 16, 3


def build(method):
    backbone = tiny_backbone(seed=7)
    if method == "baseline":
        return keras_sd.Baseline(backbone, weight_decay=1e-3)
    raise SystemExit(f"unknown method {method}")


def main(method, out):
    multi = "TF_CONFIG" in os.environ
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if multi else tf.distribute.get_strategy()
    rng = np.random.default_rng(0)
    n = GLOBAL_BATCH * STEPS
    x = rng.normal(size=(n, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 5, size=n).astype("int32")
    with strategy.scope():
        model = build(method)
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    if multi:
        # Explicit sharding: worker i takes elements i, i + W, ...; each global batch is the union
        # of the workers' local batches, so it holds the same 16 examples as the single-process
        # batch (in another order, which a batch mean does not see). drop_remainder keeps every
        # worker at the same step count.
        def dataset_fn(ctx):
            ds = tf.data.Dataset.from_tensor_slices((x, y))
            ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
            return ds.batch(ctx.get_per_replica_batch_size(GLOBAL_BATCH), drop_remainder=True)

        data = strategy.distribute_datasets_from_function(dataset_fn)
    else:
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH, drop_remainder=True)
    model.fit(data, epochs=1, steps_per_epoch=STEPS, verbose=0)
    np.savez(out, *[v.numpy() for v in model.trainable_variables])
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
