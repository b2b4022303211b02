"""One worker of the fault-tolerance test (run by test_fault_tolerance.py, TF_CONFIG set by it).

Usage: python ft_worker.py OUT.npz BACKUP_DIR [KILL_EPOCH KILL_BATCH]
Trains `keras_sd.Baseline` on a tiny backbone under MultiWorkerMirroredStrategy for EPOCHS epochs
of STEPS global batches with `AtomicBackupAndRestore(BACKUP_DIR, save_freq="epoch")`, then saves
the trainable weights and ``optimizer.iterations`` to OUT.npz. With KILL_EPOCH KILL_BATCH
(0-based), the process SIGKILLs itself at the end of that batch, as a crashed machine would.

Lines it prints for the test: ``chief=<bool>`` once, ``resumed initial_epoch=<k> iterations=<n>``
after the backup callback has run on_train_begin, ``private_dir=<path>`` (the folder a non-chief
worker saves into) after each epoch's backup, and ``done`` at the end.

The data are the same every epoch (no shuffle) and sharded explicitly (worker i takes elements
i, i + 2, ...), so an epoch restarted after a restore sees exactly the batches it saw before.
"""

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

GLOBAL_BATCH, STEPS, EPOCHS = 16, 4, 3


class Report(keras.callbacks.Callback):
    """Prints what the test checks, and kills this process at (kill_epoch, kill_batch)."""

    def __init__(self, backup, kill=None):
        super().__init__()
        self.backup, self.kill = backup, kill

    def on_train_begin(self, logs=None):
        iterations = int(self.model.optimizer.iterations.numpy())
        print(
            f"resumed initial_epoch={self.model._initial_epoch or 0} iterations={iterations}",
            flush=True,
        )

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.kill == (self.epoch, batch):
            print(f"killing myself at epoch {self.epoch} batch {batch}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    def on_epoch_end(self, epoch, logs=None):
        print(f"private_dir={self.backup._private_dir}", flush=True)


def main(out, backup_dir, kill=None):
    from tiny import tiny_backbone

    import keras_sd
    from keras_sd import distribute
    from keras_sd.callbacks import AtomicBackupAndRestore

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    print(f"chief={distribute.is_chief(strategy)}", flush=True)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = GLOBAL_BATCH * STEPS
    x = rng.normal(size=(n, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 5, size=n).astype("int32")

    def dataset_fn(ctx):
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
        # drop_remainder: every worker takes the same number of steps.
        return ds.batch(ctx.get_per_replica_batch_size(GLOBAL_BATCH), drop_remainder=True).repeat()

    data = strategy.distribute_datasets_from_function(dataset_fn)
    with strategy.scope():
        model = keras_sd.Baseline(tiny_backbone(seed=7), weight_decay=1e-3)
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        model(keras.ops.zeros((2, 8, 8, 1)), training=False)  # the backup callback needs it built
    backup = AtomicBackupAndRestore(backup_dir, save_freq="epoch", delete_checkpoint=False)
    model.fit(
        data,
        epochs=EPOCHS,
        steps_per_epoch=STEPS,
        verbose=0,
        callbacks=[backup, Report(backup, kill)],
    )
    np.savez(
        out,
        iterations=np.asarray(int(model.optimizer.iterations.numpy())),
        **{f"w_{i}": v.numpy() for i, v in enumerate(model.trainable_variables)},
    )
    print("done", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], args[1], (int(args[2]), int(args[3])) if len(args) == 4 else None)
