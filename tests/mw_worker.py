"""One process of the multi-worker tests (run by test_multiworker.py).

Usage: python mw_worker.py METHOD MODE OUT.npz
  MODE "multiworker": one of two workers under MultiWorkerMirroredStrategy (TF_CONFIG set by the test);
  MODE "mirrored":    one process, two logical CPU devices, MirroredStrategy (the same replicas);
  MODE "single":      one device.
Trains METHOD for two epochs of three global batches of 16 and saves the trainable weights.

Replica r sees the same examples in every mode: worker r takes the elements r, r + 2, ... of each
global batch (explicit sharding), and the mirrored run's pipeline deals the same halves to its two
replicas. Per-replica batch statistics (batch norm, MMD) therefore match between the multi-worker
and mirrored runs; only the BN-free baseline can also match a single device exactly.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

GLOBAL_BATCH, STEPS, EPOCHS, WORKERS = 16, 3, 2, 2


def build(method):
    from tiny import tiny_backbone

    import keras_sd
    from keras_sd import backbones

    if method == "baseline":
        return keras_sd.Baseline(tiny_backbone(seed=7), weight_decay=1e-3)
    if method == "two_view":
        return keras_sd.TwoViewDistiller(
            tiny_backbone(seed=7), temperature=2.0, mmd_weight=1e-2, seed=5
        )
    if method == "multi_exit":
        return keras_sd.MultiExitDistiller(
            backbones.resnet_cifar(8, num_classes=5, input_shape=(8, 8, 1)), alpha=0.6
        )
    if method == "self_guidance":
        backbone = backbones.resnet_cifar(
            8, num_classes=5, input_shape=(8, 8, 1), stochastic_depth=0.5, seed=3
        )
        return keras_sd.SelfGuidanceDistiller(backbone)
    if method == "pskd":
        return keras_sd.Baseline(
            tiny_backbone(seed=7), pskd_alpha=0.8, num_train_examples=GLOBAL_BATCH * STEPS
        )
    raise SystemExit(f"unknown method {method}")


def main(method, mode, out):
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    elif mode == "multiworker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = GLOBAL_BATCH * STEPS
    x = rng.normal(size=(n, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 5, size=n).astype("int32")
    index = np.arange(n, dtype="int32")
    with_index = method == "pskd"

    def elements(order):
        inputs = {"image": x[order], "index": index[order]} if with_index else x[order]
        return tf.data.Dataset.from_tensor_slices((inputs, y[order]))

    with strategy.scope():
        model = build(method)
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    per_replica = GLOBAL_BATCH // WORKERS
    if mode == "multiworker":
        # Explicit sharding: worker i takes elements i, i + W, ...; drop_remainder keeps every
        # worker at the same number of steps.
        def dataset_fn(ctx):
            ds = elements(np.arange(n)).shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
            return ds.batch(
                ctx.get_per_replica_batch_size(GLOBAL_BATCH), drop_remainder=True
            ).repeat()

        data = strategy.distribute_datasets_from_function(dataset_fn)
    elif mode == "mirrored":
        # One pipeline deals per-replica batches round robin: order each global batch as
        # [its even elements, its odd elements] so replica r gets what worker r gets.
        order = np.concatenate(
            [
                np.r_[b * GLOBAL_BATCH : (b + 1) * GLOBAL_BATCH].reshape(-1, WORKERS).T.ravel()
                for b in range(STEPS)
            ]
        )

        def dataset_fn(ctx):
            return elements(order).batch(per_replica, drop_remainder=True).repeat()

        data = strategy.distribute_datasets_from_function(dataset_fn)
    else:
        data = elements(np.arange(n)).batch(GLOBAL_BATCH, drop_remainder=True).repeat()
    model.fit(data, epochs=EPOCHS, steps_per_epoch=STEPS, verbose=0)
    np.savez(out, *[v.numpy() for v in model.trainable_variables])
    print("done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
