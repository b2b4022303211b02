"""Fault tolerance across workers: only the chief writes the backup folder and the run folder,
every worker restores from the chief's backup, and two workers killed mid-epoch and restarted
finish with the weights and step count of an uninterrupted run."""

import json
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from local_cluster import local_cluster, worker_env
from tiny import tiny_backbone

import keras_sd
from keras_sd import atomic, distribute
from keras_sd.callbacks import AtomicBackupAndRestore, read_backup_metadata

# ---------------------------------------------------------------------------- is_chief
CLUSTER = {"worker": ["127.0.0.1:1111", "127.0.0.1:2222"]}
WITH_CHIEF = {"chief": ["127.0.0.1:3333"], **CLUSTER}
VARIANTS = [
    # (cluster, task type, task index, expected is_chief, expected worker_id)
    (CLUSTER, "worker", 0, True, "worker_0"),
    (CLUSTER, "worker", 1, False, "worker_1"),
    (WITH_CHIEF, "chief", 0, True, "chief_0"),
    (WITH_CHIEF, "worker", 0, False, "worker_0"),  # a chief task exists: worker 0 is not it
    (WITH_CHIEF, "worker", 1, False, "worker_1"),
]


def _set_tf_config(monkeypatch, cluster, task_type=None, index=None):
    config = {"cluster": cluster}
    if task_type is not None:
        config["task"] = {"type": task_type, "index": index}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))


@pytest.mark.parametrize("cluster,task_type,index,chief,name", VARIANTS)
def test_is_chief_follows_tf_config(monkeypatch, cluster, task_type, index, chief, name):
    from tensorflow.python.distribute import multi_worker_util

    _set_tf_config(monkeypatch, cluster, task_type, index)
    assert distribute.is_chief() is chief
    assert distribute.worker_id() == name
    # The same rule as tf.distribute's own multi-worker utilities.
    assert multi_worker_util.is_chief(cluster, task_type, index) is chief


def test_is_chief_outside_a_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.is_chief() is True
    assert distribute.worker_id() == "single"
    _set_tf_config(monkeypatch, CLUSTER)  # a cluster but no task: not a worker of it
    assert distribute.is_chief() is True


def test_evaluator_is_not_chief(monkeypatch):
    # tf.distribute calls an evaluator "chief" for its own summaries; it must not write the
    # training run's folder, so here it is not.
    _set_tf_config(monkeypatch, {**CLUSTER, "evaluator": ["127.0.0.1:4444"]}, "evaluator", 0)
    assert distribute.is_chief() is False
    assert distribute.worker_id() == "evaluator_0"


def _strategy_of(task_type, task_id, cluster=CLUSTER):
    # What MultiWorkerMirroredStrategy exposes, without starting a cluster in this process.
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id
    )
    return types.SimpleNamespace(cluster_resolver=resolver)


def test_is_chief_of_a_strategy_ignores_tf_config(monkeypatch):
    _set_tf_config(monkeypatch, CLUSTER, "worker", 1)
    # A single-process strategy makes its process the chief whatever TF_CONFIG says.
    assert distribute.is_chief(tf.distribute.get_strategy()) is True
    assert distribute.worker_id(tf.distribute.get_strategy()) == "single"
    monkeypatch.delenv("TF_CONFIG")
    assert distribute.is_chief(_strategy_of("worker", 1)) is False
    assert distribute.worker_id(_strategy_of("worker", 1)) == "worker_1"
    assert distribute.is_chief(_strategy_of("worker", 0)) is True
    assert distribute.is_chief(_strategy_of("worker", 0, WITH_CHIEF)) is False


@pytest.mark.parametrize(
    "tf_config,match",
    [
        ("{not json", "TF_CONFIG is not valid JSON"),
        ("[1, 2]", "TF_CONFIG must be a JSON object"),
        (
            json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": "1"}}),
            r"`task.index` must be an integer, got '1'",
        ),
    ],
)
def test_bad_tf_config_raises(monkeypatch, tf_config, match):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match=match):
        distribute.is_chief()


def test_bad_strategy_raises():
    with pytest.raises(
        ValueError, match=r"`strategy` must be a tf.distribute.Strategy.*'mirrored'"
    ):
        distribute.is_chief("mirrored")


# ---------------------------------------------------------------------------- a non-chief, in process
def _tiny_model():
    model = keras_sd.Baseline(tiny_backbone(seed=7))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model(keras.ops.zeros((2, 8, 8, 1)), training=False)
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(32, 8, 8, 1)).astype("float32"), rng.integers(0, 5, 32).astype("int32")


def _ours(temp_root):
    # (autograph also leaves its generated sources in the temp dir)
    return [p for p in temp_root.iterdir() if p.name.startswith("keras_sd_")]


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class _Probe(keras.callbacks.Callback):
    """Records what the backup callback (placed before it) restored and where it saved."""

    def __init__(self, backup):
        super().__init__()
        self.backup, self.saved = backup, []

    def on_train_begin(self, logs=None):
        self.initial_epoch = self.model._initial_epoch
        self.restored = [w.numpy() for w in self.model.weights]

    def on_epoch_end(self, epoch, logs=None):
        private = pathlib.Path(self.backup._private_dir)
        self.saved.append((private, read_backup_metadata(private)["epoch"]))


def test_non_chief_restores_from_backup_dir_and_writes_only_privately(tmp_path, monkeypatch):
    backup, private_root = tmp_path / "backup", tmp_path / "tmp"
    private_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_root))
    x, y = _data()
    chief = _tiny_model()
    chief.fit(
        x,
        y,
        batch_size=8,
        epochs=1,
        verbose=0,
        callbacks=[AtomicBackupAndRestore(str(backup), delete_checkpoint=False)],
    )
    chief_weights = [w.numpy() for w in chief.weights]
    before = _snapshot(backup)
    assert read_backup_metadata(backup)["epoch"] == 1 and before

    asked = []

    def not_chief(strategy=None):
        asked.append(strategy)
        return False

    monkeypatch.setattr(distribute, "is_chief", not_chief)
    worker = _tiny_model()
    # delete_checkpoint=True: even so the non-chief must leave the chief's folder alone.
    callback = AtomicBackupAndRestore(str(backup), delete_checkpoint=True, double_checkpoint=True)
    probe = _Probe(callback)
    worker.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[callback, probe])

    assert probe.initial_epoch == 1  # read the chief's backup
    assert len(probe.restored) == len(chief_weights)
    for got, want in zip(probe.restored, chief_weights):
        np.testing.assert_array_equal(got, want)
    assert [epoch for _, epoch in probe.saved] == [2, 3]  # it did save, every epoch ...
    for private, _ in probe.saved:  # ... into its own folder, under the local temp dir
        assert private.parent == private_root and backup not in private.parents
    assert _snapshot(backup) == before  # not a byte of the chief's folder changed
    assert _ours(private_root) == []  # the private folder is gone at train end
    assert asked and all(s is worker.distribute_strategy for s in asked)


def test_non_chief_train_writes_nothing_into_the_run_folder(tmp_path, monkeypatch):
    from keras_sd import train as train_lib
    from keras_sd.recipes import DataConfig, OptimizerConfig, Recipe

    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_root))
    monkeypatch.setattr(distribute, "is_chief", lambda strategy=None: False)
    saved = []
    save_model_atomic = atomic.save_model_atomic

    def spy(model, path):
        saved.append(pathlib.Path(path))
        save_model_atomic(model, path)

    monkeypatch.setattr(atomic, "save_model_atomic", spy)
    recipe = Recipe(
        name="test/ft_non_chief",
        backbone="resnet_cifar",
        backbone_args={"depth": 8},
        data=DataConfig(name="digits", batch_size=32),
        optimizer=OptimizerConfig(learning_rate=0.05, schedule="constant"),
        epochs=1,
        steps_per_epoch=2,
        strategy="default",
    )
    out = tmp_path / "run"
    metrics = train_lib.train(recipe, out, verbose=0)
    assert 0.0 <= metrics["accuracy"]["output"]["top1"] <= 1.0  # it trained and evaluated
    # model.keras went to the scratch folder
    assert len(saved) == 1 and saved[0].parent.parent == scratch_root
    assert saved[0].parent.name.startswith("keras_sd_run_single_")
    assert not out.exists()  # no recipe.json, backup/, logs/, model.keras, metrics.json
    assert _ours(scratch_root) == []  # scratch removed at the end


# ---------------------------------------------------------------------------- two workers, a kill
WORKER = pathlib.Path(__file__).with_name("ft_worker.py")
EPOCHS, STEPS = 3, 4  # ft_worker.py's EPOCHS and STEPS
KILL_EPOCH, KILL_BATCH = 1, 1  # 0-based: mid-way through the second epoch
TIMEOUT = 240


class _Run:
    """Two ft_worker.py processes on fresh 127.0.0.1 ports, logs in files."""

    def __init__(self, root, tag, backup, kill=None):
        cluster = local_cluster(2)
        self.logs = [root / f"{tag}_w{i}.log" for i in range(2)]
        self.outs = [root / f"{tag}_w{i}.npz" for i in range(2)]
        self.tmps = [root / f"{tag}_tmp{i}" for i in range(2)]
        self.procs = []
        for i in range(2):
            self.tmps[i].mkdir()
            env = worker_env(cluster, i, TMPDIR=str(self.tmps[i]))
            args = [sys.executable, str(WORKER), str(self.outs[i]), str(backup)]
            if kill is not None and i == 1:
                args += [str(k) for k in kill]
            with open(self.logs[i], "w") as log:
                self.procs.append(
                    subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
                )

    def log(self, i):
        return self.logs[i].read_text()

    def wait(self, deadline, until=None):
        """Polls until ``until(procs)`` (default: all exited); fails at ``deadline``."""
        until = until or (lambda procs: all(p.poll() is not None for p in procs))
        while not until(self.procs):
            if time.monotonic() > deadline:
                pytest.fail("workers timed out:\n" + "\n".join(self.log(i)[-2000:] for i in (0, 1)))
            time.sleep(0.2)

    def reap(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def _result(path):
    with np.load(path) as f:
        weights = [
            f[k]
            for k in sorted((k for k in f.files if k.startswith("w_")), key=lambda k: int(k[2:]))
        ]
        return int(f["iterations"]), weights


@pytest.mark.slow
def test_two_workers_killed_mid_epoch_resume_to_the_uninterrupted_result(tmp_path):
    """Run A trains two workers uninterrupted; run B's worker 1 SIGKILLs itself mid-epoch 2,
    worker 0 is then killed too (if the broken collective has not already ended it), and both
    are restarted on the same backup folder. They resume at the start of epoch 2 and end with
    A's step count and A's weights.

    Tolerance: none (bit-exact). The restore is a float32 round trip of every variable,
    the data of an epoch are the same batches in the same order before and after the restart,
    and with two workers the gradient all-reduce is one IEEE addition per element, which is
    commutative, so no reduction-order noise exists; any difference is a resume bug.
    """
    deadline = time.monotonic() + TIMEOUT
    backup_a, backup_b = tmp_path / "backup_a", tmp_path / "backup_b"
    runs = []
    try:
        # Run A and the first attempt of run B side by side (4 processes, separate clusters).
        run_a = _Run(tmp_path, "A", backup_a)
        run_b1 = _Run(tmp_path, "B1", backup_b, kill=(KILL_EPOCH, KILL_BATCH))
        runs += [run_a, run_b1]
        run_b1.wait(deadline, until=lambda procs: procs[1].poll() is not None)
        w0, w1 = run_b1.procs
        assert w1.returncode == -signal.SIGKILL, run_b1.log(1)[-3000:]
        assert f"killing myself at epoch {KILL_EPOCH} batch {KILL_BATCH}" in run_b1.log(1)
        # Worker 0 is blocked in (or has failed out of) the step's collective: the orchestrator
        # kills it too. Give it no chance to finish: it cannot, with its peer gone.
        time.sleep(2.0)
        exited_alone = w0.poll() is not None
        if not exited_alone:
            w0.send_signal(signal.SIGKILL)
        w0.wait()
        print(
            f"worker 0 after its peer's death: {'failed by itself' if exited_alone else 'killed'}"
            f" (exit {w0.returncode})"
        )
        assert w0.returncode != 0 and "done" not in run_b1.log(0).split(), run_b1.log(0)[-3000:]
        # The chief committed epoch 1 and nothing after; worker 1 wrote nothing there.
        assert read_backup_metadata(backup_b)["epoch"] == KILL_EPOCH
        assert sorted(p.name for p in backup_b.iterdir()) == [
            f"ckpt-e{KILL_EPOCH}-s0.extra.npz",
            f"ckpt-e{KILL_EPOCH}-s0.weights.h5",
            "training_metadata.json",
        ]

        run_b2 = _Run(tmp_path, "B2", backup_b)  # both restarted, new ports
        runs.append(run_b2)
        run_b2.wait(deadline)
        run_a.wait(deadline)
        for run in (run_a, run_b2):
            for i in (0, 1):
                assert run.procs[i].returncode == 0, run.log(i)[-3000:]
    finally:
        for run in runs:  # every process reaped, even on failure
            run.reap()

    for i in (0, 1):
        assert "resumed initial_epoch=0 iterations=0" in run_a.log(i)
        # Resumed from the backup at the end of epoch 1 (4 optimizer steps), on both workers.
        assert f"resumed initial_epoch={KILL_EPOCH} iterations={KILL_EPOCH * STEPS}" in (
            run_b2.log(i)
        ), run_b2.log(i)[-3000:]
    assert read_backup_metadata(backup_b)["epoch"] == EPOCHS
    # Worker 1's private backup folder was under its own TMPDIR and is gone at train end.
    private = [
        line.split("=", 1)[1]
        for line in run_b2.log(1).splitlines()
        if line.startswith("private_dir=")
    ]
    assert len(private) == EPOCHS - KILL_EPOCH
    assert pathlib.Path(private[0]).parent == run_b2.tmps[1]
    assert not pathlib.Path(private[0]).exists()
    assert "private_dir=None" in run_b2.log(0)  # the chief wrote only into backup_dir

    steps_a, weights_a = _result(run_a.outs[0])
    assert steps_a == EPOCHS * STEPS
    for i in (0, 1):
        steps, weights = _result(run_b2.outs[i])
        assert steps == EPOCHS * STEPS  # the same number of steps as the uninterrupted run
        assert len(weights) == len(weights_a)
        for got, want, other in zip(weights, weights_a, _result(run_b2.outs[1 - i])[1]):
            np.testing.assert_array_equal(got, other)  # both workers agree
            np.testing.assert_array_equal(got, want)  # and equal the uninterrupted run
