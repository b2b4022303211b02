"""Non-finite losses stop training with a clear message and leave the last good backup intact;
files are written atomically; a killed run resumes to the same result."""

import json
import math
import pathlib
import warnings

import keras
import numpy as np
import pytest
from keras import ops
from tiny import tiny_backbone

import keras_sd
from keras_sd import losses
from keras_sd.callbacks import NonFiniteLossError, NonFiniteLossGuard
from keras_sd.models.base import OUTPUT, SelfDistillationModel

STEPS_PER_EPOCH = 4
BATCH = 8


@keras.saving.register_keras_serializable(package="keras_sd_tests")
class PoisonedModel(SelfDistillationModel):
    """Two terms; ``kl_loss`` turns NaN (with NaN gradients) at global step ``bad_step``
    (1-based), ``ce_loss`` stays finite."""

    def __init__(self, backbone, bad_step=None, **kwargs):
        super().__init__(backbone, term_names=("ce_loss", "kl_loss"), **kwargs)
        self.bad_step = bad_step

    def compute_loss_terms(self, images, targets, training, index=None):
        logits = self.backbone(images, training=training)["logits"]
        kl = losses.softened_kl(ops.zeros_like(logits), logits)
        if training and self.bad_step is not None:
            # iterations counts finished steps, so step k (1-based) sees k - 1.
            hit = ops.equal(self.optimizer.iterations, self.bad_step - 1)
            poison = ops.where(hit, float("nan"), 0.0)
            kl = kl + poison * ops.mean(logits, axis=-1)
        ce = losses.soft_target_cross_entropy(targets, logits)
        return {OUTPUT: logits}, {"ce_loss": ce, "kl_loss": kl}


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS_PER_EPOCH * BATCH, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 5, size=STEPS_PER_EPOCH * BATCH)
    return x, y


def _model(bad_step):
    keras.utils.set_random_seed(0)
    model = PoisonedModel(tiny_backbone(), bad_step=bad_step)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    model(np.zeros((2, 8, 8, 1), "float32"))
    return model


def _weights(model):
    return [np.array(v) for v in model.weights]


class _Snapshots(keras.callbacks.Callback):
    """Weights at every epoch end (what BackupAndRestore saved there)."""

    def __init__(self):
        super().__init__()
        self.at_epoch_end = {}

    def on_epoch_end(self, epoch, logs=None):
        self.at_epoch_end[epoch] = _weights(self.model)


@pytest.mark.parametrize("bad_step", [1, 7, 12])
def test_guard_names_first_term_and_step(bad_step):
    x, y = _data()
    model = _model(bad_step)
    with pytest.raises(NonFiniteLossError) as info:
        model.fit(
            x,
            y,
            batch_size=BATCH,
            epochs=4,
            shuffle=False,
            verbose=0,
            callbacks=[NonFiniteLossGuard()],
        )
    err = info.value
    epoch, batch = divmod(bad_step - 1, STEPS_PER_EPOCH)
    assert (err.term, err.step, err.epoch, err.batch) == ("kl_loss", bad_step, epoch + 1, batch + 1)
    assert "ce_loss" not in err.terms and "loss" in err.terms  # the total follows its term
    message = str(err)
    assert "`kl_loss`" in message and f"step {bad_step}" in message
    assert "\n" not in message
    assert model.stop_training


def test_guard_silent_on_finite_training():
    x, y = _data()
    model = _model(None)
    history = model.fit(
        x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0, callbacks=[NonFiniteLossGuard()]
    )
    assert len(history.history["loss"]) == 2
    assert all(math.isfinite(v) for v in history.history["kl_loss"])


def _restore(backup_dir):
    """A fresh model restored from ``backup_dir`` by BackupAndRestore (fit with no epochs left)."""
    model = _model(None)
    x, y = _data()
    restorer = keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=False)
    meta = json.loads((pathlib.Path(backup_dir) / "training_metadata.json").read_text())
    model.fit(x, y, batch_size=BATCH, epochs=meta["epoch"], verbose=0, callbacks=[restorer])
    return model, meta["epoch"]


@pytest.mark.parametrize("guard_first", [True, False])
def test_last_good_backup_survives_a_nan_step(tmp_path, guard_first):
    # Step 10 is in epoch 3: epochs 1 and 2 were backed up; the backup must still hold epoch 2.
    x, y = _data()
    model = _model(bad_step=10)
    snaps = _Snapshots()
    backup = keras.callbacks.BackupAndRestore(
        str(tmp_path / "backup"), delete_checkpoint=False, double_checkpoint=True
    )
    cbs = (
        [NonFiniteLossGuard(), backup, snaps]
        if guard_first
        else [backup, snaps, NonFiniteLossGuard()]
    )
    with pytest.raises(NonFiniteLossError):
        model.fit(x, y, batch_size=BATCH, epochs=4, shuffle=False, verbose=0, callbacks=cbs)
    assert sorted(snaps.at_epoch_end) == [0, 1]
    assert not all(np.isfinite(w).all() for w in _weights(model))  # the step did poison weights
    restored, epoch = _restore(tmp_path / "backup")
    assert epoch == 2
    for got, want in zip(_weights(restored), snaps.at_epoch_end[1]):
        np.testing.assert_array_equal(got, want)


def test_terminate_on_nan_alone_would_overwrite_the_backup(tmp_path):
    # Why the guard raises: Keras' TerminateOnNaN only sets stop_training, the epoch still ends
    # and BackupAndRestore saves the NaN weights over the last good ones.
    x, y = _data()
    model = _model(bad_step=10)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False)
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=4,
        shuffle=False,
        verbose=0,
        callbacks=[backup, keras.callbacks.TerminateOnNaN()],
    )
    restored, epoch = _restore(tmp_path / "backup")
    assert epoch == 3
    assert not all(np.isfinite(w).all() for w in _weights(restored))


# ---------------------------------------------------------------------------- atomic writes
def test_json_writes_survive_sigkill_at_random_instants(tmp_path):
    # A forked child rewrites metrics.json (about 1 MB, so a write takes a while) in a loop and is
    # SIGKILLed at random instants; the file must always be one complete payload.
    import os
    import random
    import signal
    import time

    from keras_sd.atomic import write_json_atomic

    path = tmp_path / "metrics.json"
    rng = random.Random(0)
    for kill in range(20):
        pid = os.fork()
        if pid == 0:  # child: pure Python, no TensorFlow use after fork
            try:
                for i in range(10**9):
                    write_json_atomic(path, {"kill": kill, "i": i, "rows": [i] * 200_000})
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if not path.exists():
            continue  # killed before the first rename
        payload = json.loads(path.read_text())  # never torn
        assert payload["rows"] == [payload["i"]] * 200_000
    assert path.exists()


CHILD = r"""
import os, sys, json
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import keras, numpy as np
from keras_sd import atomic, callbacks
from keras_sd.atomic import write_json_atomic

out = sys.argv[1]
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64), keras.layers.Dense(3)])
model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), loss="mse")
model(np.zeros((1, 16), "float32"))
x = np.ones((8, 16), "float32"); y = np.zeros((8, 3), "float32")

class Writers(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        atomic.save_model_atomic(self.model, os.path.join(out, "model.keras"))
        write_json_atomic(os.path.join(out, "metrics.json"), {"epoch": epoch, "rows": [epoch] * 50_000})
        if epoch == self.params["epochs"] - 1 or os.path.exists(os.path.join(out, "ready")):
            return
        open(os.path.join(out, "ready"), "w").close()

backup = callbacks.AtomicBackupAndRestore(
    os.path.join(out, "backup"), delete_checkpoint=False, double_checkpoint=True)
model.fit(x, y, batch_size=4, epochs=10**6, verbose=0, callbacks=[backup, Writers()])
"""


def _restored_iterations(backup_dir):
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), loss="mse")
    model(np.zeros((1, 16), "float32"))
    from keras_sd.callbacks import AtomicBackupAndRestore, read_backup_metadata

    meta = read_backup_metadata(backup_dir)
    cb = AtomicBackupAndRestore(str(backup_dir), delete_checkpoint=False, double_checkpoint=True)
    model.fit(
        np.ones((8, 16)),
        np.zeros((8, 3)),
        batch_size=4,
        epochs=meta["epoch"],
        verbose=0,
        callbacks=[cb],
    )
    return int(model.optimizer.iterations.numpy()), meta["epoch"], model


@pytest.mark.slow
def test_checkpoint_model_and_metrics_survive_sigkill(tmp_path):
    # A child trains with 2 steps per epoch and, every epoch, commits a backup, model.keras and
    # metrics.json. It is SIGKILLed at random instants and restarted (resuming from its backup).
    # After every kill: every file is whole, and the backup is self-consistent: the restored
    # optimizer has taken exactly 2 steps per epoch the metadata says are done.
    import random
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = random.Random(1)
    last_epoch = 0
    for _ in range(4):
        (tmp_path / "ready").unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
        deadline = time.time() + 90
        while not (tmp_path / "ready").exists():
            assert proc.poll() is None, "child died"
            assert time.time() < deadline
            time.sleep(0.05)
        time.sleep(rng.uniform(0.05, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        payload = json.loads((tmp_path / "metrics.json").read_text())
        assert payload["rows"] == [payload["epoch"]] * 50_000
        loaded = keras.models.load_model(tmp_path / "model.keras")
        assert all(np.isfinite(w).all() for w in loaded.get_weights())
        iterations, epoch, _ = _restored_iterations(tmp_path / "backup")
        assert iterations == 2 * epoch
        assert epoch > last_epoch  # each restart resumed and made progress
        last_epoch = epoch
    backups = sorted(p.name for p in (tmp_path / "backup").glob("ckpt-*.weights.h5"))
    assert len(backups) <= 3  # current + previous (+ one written but not yet committed)


# ---------------------------------------------------------------------------- crash and resume
RESUME_RECIPE = """
from keras_sd.recipes import DataConfig, OptimizerConfig, Recipe


def get_config(arg=None):
    # PS-KD on a tiny CIFAR ResNet: a seeded shuffle, per-batch pad-crop-flip augmentation, a
    # cosine schedule, momentum slots, BatchNorm statistics, the alpha_t schedule and the
    # per-sample prediction bank all have to come back exactly after a kill.
    return Recipe(
        name="reliability/resume",
        method="baseline",
        backbone="resnet_cifar",
        backbone_args={"depth": 8},
        method_args={"pskd_alpha": 0.8},
        data=DataConfig(name="digits", batch_size=64, augment="cifar", with_index=True),
        optimizer=OptimizerConfig(learning_rate=0.05, schedule="cosine"),
        epochs=EPOCHS,
        strategy="default",
    )
"""
RESUME_EPOCHS = 5


def _train_cmd(out):
    return [
        sys_executable(),
        "-m",
        "keras_sd.cli",
        "train",
        "recipe.py",
        "--out",
        str(out),
        "--verbose",
        "0",
    ]


def sys_executable():
    import sys

    return sys.executable


def _committed_epoch(out):
    from keras_sd.callbacks import read_backup_metadata

    try:
        meta = read_backup_metadata(out / "backup")
    except (ValueError, OSError):
        return 0
    return 0 if meta is None else meta["epoch"]


def _weights_of(run):
    import keras_sd  # noqa: F401  (registers the classes model.keras names)

    return [np.asarray(w) for w in keras.models.load_model(run / "model.keras").get_weights()]


def _start_training(out, cwd, env):
    import subprocess

    return subprocess.Popen(
        _train_cmd(out), cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _commit_times(out, cwd, env, position):
    """Trains into ``out`` uninterrupted, recording when each backup commit, ``position(out)``,
    first appears (to place kills at chosen moments of a later run)."""
    import time

    proc = _start_training(out, cwd, env)
    commits = {}
    while proc.poll() is None:
        commits.setdefault(position(out), time.monotonic())
        time.sleep(0.01)
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    return commits


def _assert_rerun_matches(ref, run, cwd, env):
    """Reruns the killed ``run`` to the end: its weights equal those of ``ref``, bit for bit."""
    import subprocess

    final = subprocess.run(_train_cmd(run), cwd=cwd, env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr[-2000:]
    want, got = _weights_of(ref), _weights_of(run)
    assert len(want) == len(got)
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_sigkilled_training_resumes_to_the_uninterrupted_weights(tmp_path):
    """`keras-sd train` SIGKILLed at 6 random moments (mid-epoch in every epoch and during the
    final evaluate / save) and rerun each time finishes with exactly the weights of an
    uninterrupted run.

    Tolerance: none (bit-exact). On CPU every kernel here is deterministic for a fixed machine
    and thread setting, and a resumed run replays exactly the uninterrupted run's operations on
    the restored state, so any difference is a resume bug, not float noise.
    """
    import os
    import random
    import signal
    import time

    (tmp_path / "recipe.py").write_text(RESUME_RECIPE.replace("EPOCHS", str(RESUME_EPOCHS)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    ref = tmp_path / "uninterrupted"
    # The reference run, timing the wall clock between its backup commits (one epoch with
    # validation and callbacks) to place the kills below.
    commits = _commit_times(ref, tmp_path, env, _committed_epoch)
    epoch_wall = max(commits[e + 1] - commits[e] for e in range(1, RESUME_EPOCHS - 1))

    run = tmp_path / "killed"
    rng = random.Random(0)
    # Kill a random fraction of an epoch after the backup reaches a chosen epoch: mid-epoch in
    # every epoch, and once after the last epoch, during the final evaluate / save.
    targets = [*range(RESUME_EPOCHS), RESUME_EPOCHS]
    killed_at = []
    for target in targets:
        proc = _start_training(run, tmp_path, env)
        # (Epoch 0: wait for fit to start, i.e. TensorBoard's logs folder, not just the import.)
        while proc.poll() is None and (
            _committed_epoch(run) < target or not (run / "logs" / "train").exists()
        ):
            time.sleep(0.01)
        if target < RESUME_EPOCHS:
            time.sleep(rng.uniform(0.1, 0.9) * epoch_wall)
        else:
            time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:  # finished before this kill: nothing left to interrupt
            assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at.append(_committed_epoch(run))
    print(f"SIGKILLs after committed epochs {killed_at} (targets {targets})")
    assert len(killed_at) >= 5, killed_at
    assert min(killed_at) < RESUME_EPOCHS  # at least one kill forced epochs to be retrained
    _assert_rerun_matches(ref, run, tmp_path, env)


def _committed_state(out):
    """(epoch, step) of the run's last backup commit, (0, 0) before the first."""
    from keras_sd.callbacks import read_backup_metadata

    try:
        meta = read_backup_metadata(out / "backup")
    except (ValueError, OSError):
        return 0, 0
    return (0, 0) if meta is None else (meta["epoch"], meta.get("step", 0))


MID_EPOCH_EPOCHS, MID_EPOCH_SAVE_FREQ = 3, 5
DIGITS_STEPS = 1437 // 64  # steps per epoch of RESUME_RECIPE's data


@pytest.mark.slow
def test_sigkilled_mid_epoch_resumes_from_the_step_backup_to_the_uninterrupted_weights(tmp_path):
    """With ``save_freq=5`` (steps), `keras-sd train` SIGKILLed a little after step commits in
    each of the 3 epochs resumes each time from the last commit, mid-epoch (epoch k, step s),
    with the batches of the uninterrupted run from there, and finishes with exactly its weights.

    Tolerance: none (bit-exact), as in the epoch-level test above: a resumed run that restarted
    the epoch, skipped steps or saw other batches would differ.
    """
    import os
    import random
    import signal
    import time

    recipe = RESUME_RECIPE.replace("EPOCHS", str(MID_EPOCH_EPOCHS)).replace(
        'strategy="default",', f'strategy="default",\n        save_freq={MID_EPOCH_SAVE_FREQ},'
    )
    assert "save_freq=5" in recipe
    (tmp_path / "recipe.py").write_text(recipe)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

    def position(state):
        return state[0] * DIGITS_STEPS + state[1]

    ref = tmp_path / "uninterrupted"
    commits = _commit_times(ref, tmp_path, env, lambda out: position(_committed_state(out)))
    # Commits every 5 steps (a commit due on an epoch's last step is made at its end).
    assert {5, 10, 15, 20, 25, 30} <= set(commits), sorted(commits)
    step_wall = (commits[30] - commits[25]) / 5

    run = tmp_path / "killed"
    rng = random.Random(0)
    killed_at = []
    for target in (5, 25, 50):  # commits (0, 5), (1, 3) and (2, 6)
        proc = _start_training(run, tmp_path, env)
        while proc.poll() is None and position(_committed_state(run)) < target:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 3.0) * step_wall)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at.append(_committed_state(run))
    print(f"SIGKILLs after commits {killed_at} (epoch, step)")
    assert sum(step > 0 for _, step in killed_at) >= 2, killed_at  # resumed mid-epoch
    assert [position(s) for s in killed_at] == sorted(position(s) for s in killed_at)
    _assert_rerun_matches(ref, run, tmp_path, env)


@keras.saving.register_keras_serializable(package="keras_sd_tests")
class IndexRecorder(keras.Model):
    """A linear classifier on digits that records the example indices of every training batch
    (run eagerly)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(10)
        self.seen = []

    def call(self, x):
        return self.dense(ops.reshape(x["image"], (-1, 64)))

    def train_step(self, data):
        self.seen.append(np.asarray(data[0]["index"]))
        return super().train_step(data)


def _recorder():
    keras.utils.set_random_seed(0)
    model = IndexRecorder()
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,
    )
    model({"image": np.zeros((1, 8, 8, 1), "float32")})
    return model


class _EpochStarts(keras.callbacks.Callback):
    """{epoch: global step at its start} (the recorder's batch count plus ``offset``)."""

    def __init__(self, offset=0):
        super().__init__()
        self.offset, self.starts = offset, {}

    def on_epoch_begin(self, epoch, logs=None):
        self.starts[epoch] = self.offset + len(self.model.seen)


class _CrashAtStep(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step, self.done = step, 0

    def on_train_batch_end(self, batch, logs=None):
        self.done += 1
        if self.done == self.step:
            raise RuntimeError(f"simulated kill after step {self.step}")


def test_step_backup_resumes_mid_epoch_with_the_uninterrupted_batches(tmp_path):
    """Backups every 3 steps, 5 steps per epoch, killed after global step 8: the resumed fit
    starts at epoch 1 step 1 (the commit after step 6), sees exactly the uninterrupted run's
    batches from step 7 on and ends with its weights and step count, bit for bit."""
    from keras_sd import data
    from keras_sd.callbacks import AtomicBackupAndRestore

    epochs, steps = 4, 5
    bundle = data.load("digits", batch_size=64, augment="cifar", with_index=True, seed=2)
    assert bundle.batches_per_epoch == 22  # Keras epochs (5 steps) and data epochs differ
    # Independently: the stream is data epoch 0 then the start of data epoch 1.
    expected = [np.asarray(x["index"]) for e in (0, 1) for x, _ in bundle.epoch(e)]
    expected = expected[: epochs * steps]

    def fit(model, callbacks, start=0):
        """``epochs`` Keras epochs of ``steps`` steps over the stream from its batch ``start``."""
        return model.fit(
            bundle.batches(start, epochs * steps),
            epochs=epochs,
            steps_per_epoch=steps,
            verbose=0,
            shuffle=False,
            callbacks=callbacks,
        )

    ref = _recorder()
    ref_starts = _EpochStarts()
    fit(ref, [AtomicBackupAndRestore(str(tmp_path / "a"), save_freq=3), ref_starts])
    assert len(ref.seen) == epochs * steps
    assert ref_starts.starts == {0: 0, 1: 5, 2: 10, 3: 15}
    for got, want in zip(ref.seen, expected):
        np.testing.assert_array_equal(got, want)

    killed = _recorder()
    with pytest.raises(RuntimeError, match="after step 8"):
        backup = AtomicBackupAndRestore(str(tmp_path / "b"), save_freq=3, delete_checkpoint=False)
        fit(killed, [backup, _CrashAtStep(8)])
    meta = json.loads((tmp_path / "b" / "training_metadata.json").read_text())
    assert (meta["epoch"], meta["step"]) == (1, 1)  # step 6 = 1 * 5 + 1

    resumed = _recorder()
    backup = AtomicBackupAndRestore(str(tmp_path / "b"), save_freq=3)
    epoch, step = backup.restore(resumed)
    assert (epoch, step) == (1, 1)
    assert int(resumed.optimizer.iterations.numpy()) == 6
    starts = _EpochStarts(offset=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. Keras' "input ran out of data"
        history = fit(resumed, [backup, starts], start=epoch * steps + step).history
    assert len(history["loss"]) == epochs - 1  # epochs 1 (its last 4 steps), 2 and 3
    # Epochs 2 and 3 start at the uninterrupted run's steps (callbacks' per-epoch schedules and
    # epoch-end saves stay aligned): epoch 1 ended after its remaining 4 steps.
    assert starts.starts == {1: 6, 2: 10, 3: 15}
    assert len(resumed.seen) == epochs * steps - 6
    for got, want in zip(resumed.seen, expected[6:]):
        np.testing.assert_array_equal(got, want)
    assert int(resumed.optimizer.iterations.numpy()) == epochs * steps
    for got, want in zip(resumed.get_weights(), ref.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_a_backup_without_step_resumes_at_the_epoch_start_and_warns(tmp_path):
    from keras_sd.callbacks import AtomicBackupAndRestore

    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")

    def dense():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        return model

    backup = tmp_path / "backup"
    dense().fit(
        x,
        y,
        batch_size=2,
        epochs=2,
        verbose=0,
        callbacks=[AtomicBackupAndRestore(str(backup), save_freq=3, delete_checkpoint=False)],
    )
    # Rewrite the commit as an older keras_sd wrote it: a mid-epoch state, no "step".
    path = backup / "training_metadata.json"
    meta = json.loads(path.read_text())
    assert (meta["epoch"], meta["step"], meta["batch"]) == (1, 2, 1)
    del meta["step"]
    path.write_text(json.dumps(meta))
    model = dense()
    with pytest.warns(UserWarning, match="older keras_sd .* start of epoch 1"):
        history = model.fit(
            x,
            y,
            batch_size=2,
            epochs=3,
            verbose=0,
            callbacks=[AtomicBackupAndRestore(str(backup), save_freq=3, delete_checkpoint=False)],
        ).history
    assert len(history["loss"]) == 2  # epoch 1 from its start, then epoch 2
    assert int(model.optimizer.iterations.numpy()) == 6 + 2 * 4


@pytest.mark.parametrize("save_freq", [0, -3, 2.5, True, "batch", None])
def test_bad_save_freq_is_named(tmp_path, save_freq):
    from keras_sd.callbacks import AtomicBackupAndRestore

    with pytest.raises(ValueError, match=f"save_freq={save_freq!r}"):
        AtomicBackupAndRestore(str(tmp_path), save_freq=save_freq)


def _all_state(model):
    # In creation order (paths differ between two instances only by Keras' unique-name suffixes).
    return [(v.path, np.array(v)) for v in [*model.variables, *model.optimizer.variables]]


@pytest.mark.parametrize("method", ["two_view", "pskd", "self_guidance"])
def test_backup_restores_every_variable(tmp_path, method):
    """After one epoch, a fresh model restored from AtomicBackupAndRestore has every model and
    optimizer variable of the trained one: weights, BatchNorm statistics, momentum, the step
    counter (schedule position), SeedGenerator states and the PS-KD bank."""
    from keras_sd import backbones
    from keras_sd.callbacks import AtomicBackupAndRestore

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 5, size=16)

    def build():
        keras.utils.set_random_seed(1)
        if method == "two_view":
            model = keras_sd.TwoViewDistiller(tiny_backbone(), distortion="cifar", seed=3)
        elif method == "pskd":
            model = keras_sd.Baseline(tiny_backbone(), pskd_alpha=0.8, num_train_examples=16)
        else:
            model = keras_sd.SelfGuidanceDistiller(
                backbones.get(
                    "resnet_cifar",
                    depth=8,
                    num_classes=5,
                    input_shape=(8, 8, 1),
                    stochastic_depth=0.5,
                    seed=2,
                )
            )
        model.compile(
            optimizer=keras.optimizers.SGD(
                keras.optimizers.schedules.CosineDecay(0.05, 100), momentum=0.9
            )
        )
        model(np.zeros((2, 8, 8, 1), "float32"))
        model.optimizer.build(model.trainable_variables)
        return model

    inputs = {"image": x, "index": np.arange(16)} if method == "pskd" else x
    model = build()
    backup = str(tmp_path / "backup")
    model.fit(
        inputs,
        y,
        batch_size=4,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[AtomicBackupAndRestore(backup, delete_checkpoint=False)],
    )
    trained = _all_state(model)
    fresh = build()
    before = _all_state(fresh)
    fresh.fit(
        inputs,
        y,
        batch_size=4,
        epochs=1,
        verbose=0,
        callbacks=[AtomicBackupAndRestore(backup, delete_checkpoint=False)],
    )
    restored = _all_state(fresh)
    assert len(restored) == len(trained) == len(before)
    # Training moved the state that matters (else the comparison below would prove nothing).
    changed = [k for (k, a), (_, b) in zip(trained, before) if not np.array_equal(a, b)]
    assert any("iteration" in k for k in changed)
    if method != "pskd":
        assert any("seed_generator" in k for k in changed), changed
    else:
        # The PS-KD prediction bank (its path is under the `soft_targets` transform that owns it).
        assert any(k.rsplit("/", 1)[-1] == "predictions" for k in changed), changed
    for (key, want), (_, got) in zip(trained, restored):
        np.testing.assert_array_equal(got, want, err_msg=key)
