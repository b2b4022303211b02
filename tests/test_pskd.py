"""PS-KD: prediction bank, alpha_t schedule and the Baseline option."""

import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import check_config_roundtrip, check_model
from strategies import mirrored, run_per_replica
from tiny import tiny_backbone

from keras_sd import pskd
from keras_sd.models.base import Baseline

N, C = 16, 5


def data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, C, n)
    return x, y


def softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ce(targets, logits):
    z = np.asarray(logits, np.float64)
    log_p = z - z.max(axis=1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    return -(targets * log_p).sum(axis=1)


def shuffled(x, y, batch, seed=0):
    ds = tf.data.Dataset.from_tensor_slices(({"image": x, "index": np.arange(len(y))}, y))
    return ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True).batch(batch)


def pskd_model(alpha=0.8, n=N, **kwargs):
    return Baseline(tiny_backbone(num_classes=C), pskd_alpha=alpha, num_train_examples=n, **kwargs)


# ---------------------------------------------------------------- targets
def test_step_targets_read_before_write_with_changing_weights():
    """Per step (lr > 0, random order): the target used is (1 - a) y + a P_prev of those samples,
    P_prev being the prediction at the step that last saw them, and the bank holds the new one."""
    x, y = data()
    onehot = np.eye(C)[y]
    model = pskd_model()
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    bank = onehot.copy()  # never-written rows read as one-hot
    rng = np.random.default_rng(1)
    for epoch, alpha in enumerate([0.2, 0.5, 0.8]):
        model.soft_targets.alpha_t.assign(alpha)
        order = rng.permutation(N)
        for b in np.split(order, 4):
            expected_targets = (1 - alpha) * onehot[b] + alpha * bank[b]
            got = model.soft_targets.transform(onehot[b], b)
            np.testing.assert_allclose(got, expected_targets, atol=1e-6)
            logits = np.asarray(model.backbone(x[b], training=True)["logits"])
            logs = model.train_on_batch({"image": x[b], "index": b}, y[b], return_dict=True)
            assert logs["ce_loss"] == pytest.approx(ce(expected_targets, logits).mean(), rel=1e-5)
            bank[b] = softmax(logits)
        stored = np.asarray(model.soft_targets.bank.predictions)
        np.testing.assert_allclose(stored, bank, atol=1e-6)
        assert epoch < 1 or not np.allclose(bank, onehot)


def test_fit_shuffled_epochs_targets_are_keyed_by_index():
    """With lr = 0 the model is constant, so P_prev(x_i) = softmax(f(x_i)) whatever the order:
    epoch 1 trains on one-hot targets, epoch 2 on (1 - alpha_T) y + alpha_T P(x_i)."""
    x, y = data()
    onehot = np.eye(C)[y]
    model = pskd_model(alpha=0.8)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    history = model.fit(shuffled(x, y, 4), epochs=2, verbose=0)
    logits = np.asarray(model.backbone(x, training=True)["logits"])
    p = softmax(logits)
    np.testing.assert_allclose(model.soft_targets.bank.predictions, p, atol=1e-6)
    assert history.history["pskd_alpha_t"] == pytest.approx([0.4, 0.8])
    assert history.history["ce_loss"][0] == pytest.approx(ce(onehot, logits).mean(), rel=1e-5)
    soft = 0.2 * onehot + 0.8 * p
    assert history.history["ce_loss"][1] == pytest.approx(ce(soft, logits).mean(), rel=1e-5)
    # A bank keyed by position instead of index would give another loss after shuffling.
    wrong = 0.2 * onehot + 0.8 * p[::-1]
    assert abs(ce(wrong, logits).mean() - ce(soft, logits).mean()) > 1e-3


def test_no_gradient_into_the_bank():
    x, y = data()
    model = pskd_model()
    model.soft_targets.alpha_t.assign(0.8)
    model.soft_targets.bank.write(
        np.arange(N), softmax(np.random.default_rng(0).normal(size=(N, C)))
    )
    bank = model.soft_targets.bank.predictions
    assert all(v is not bank for v in model.trainable_variables)
    with tf.GradientTape() as tape:
        tape.watch(bank.value)
        _, terms = model.compute_loss_terms(x, tf.one_hot(y, C), training=True, index=tf.range(N))
        loss = tf.reduce_mean(terms["ce_loss"])
    grad_bank, grad_w = tape.gradient(loss, [bank.value, model.backbone.trainable_variables[0]])
    assert grad_bank is None
    assert grad_w is not None


def test_evaluation_uses_no_bank():
    x, y = data()
    model = pskd_model()
    model.compile(optimizer="sgd")
    model.soft_targets.alpha_t.assign(0.8)
    model.soft_targets.bank.write(np.arange(N), np.full((N, C), 1.0 / C))
    logs = model.evaluate({"image": x}, y, batch_size=N, return_dict=True, verbose=0)
    logits = np.asarray(model.backbone(x, training=False)["logits"])
    assert logs["ce_loss"] == pytest.approx(ce(np.eye(C)[y], logits).mean(), rel=1e-5)


def test_float16_bank():
    model = pskd_model(bank_dtype="float16")
    assert model.soft_targets.bank.predictions.dtype == "float16"
    p = softmax(np.random.default_rng(0).normal(size=(4, C)))
    model.soft_targets.bank.write(np.array([1, 5, 7, 2]), p)
    got = model.soft_targets.bank.read(np.array([5, 3]), np.eye(C)[[0, 4]])
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got[0], p[1], atol=1e-3)
    np.testing.assert_array_equal(got[1], np.eye(C)[4])  # row 3 never written


# ---------------------------------------------------------------- distribution
def test_two_replica_writes_all_land():
    strategy = mirrored()
    with strategy.scope():
        bank = pskd.PredictionBank(10, 3)
    index = np.array([3, 7, 1, 8], np.int32)
    probs = softmax(np.random.default_rng(0).normal(size=(4, 3))).astype(np.float32)
    run_per_replica(strategy, bank.write, index, probs, batch_size=4)
    expected = np.zeros((10, 3), np.float32)
    expected[index] = probs
    copies = bank.predictions.value.values
    assert len(copies) == 2
    for copy in copies:  # each replica's rows reach every replica's copy
        np.testing.assert_allclose(copy.numpy(), expected, atol=1e-7)


def test_two_replica_fit_fills_the_bank():
    x, y = data()
    strategy = mirrored()
    with strategy.scope():
        model = pskd_model()
        model.compile(optimizer=keras.optimizers.SGD(0.0))
    model.fit(shuffled(x, y, 8), epochs=1, verbose=0)
    p = softmax(model.backbone(x, training=True)["logits"])
    for copy in model.soft_targets.bank.predictions.value.values:
        np.testing.assert_allclose(copy.numpy(), p, atol=1e-6)


# ---------------------------------------------------------------- checkpoints
def test_save_load_weights_keeps_bank_and_alpha(tmp_path):
    x, y = data()
    model = pskd_model()
    model.compile(optimizer="sgd")
    model.fit({"image": x, "index": np.arange(N)}, y, epochs=2, batch_size=8, verbose=0)
    model({"image": x[:1]})  # subclassed models are built by a call
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    clone = pskd_model()
    clone({"image": x[:1]})
    clone.load_weights(path)
    np.testing.assert_array_equal(
        clone.soft_targets.bank.predictions, model.soft_targets.bank.predictions
    )
    assert float(clone.soft_targets.alpha_t) == pytest.approx(0.8)


class _StopAfterEpoch(keras.callbacks.Callback):
    def __init__(self, stop_at):
        super().__init__()
        self.stop_at = stop_at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.stop_at:
            raise RuntimeError("interrupted")


class _BankAtEpochBegin(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.seen[epoch] = np.asarray(self.model.soft_targets.bank.predictions).copy()


def test_backup_and_restore_resume_keeps_the_bank(tmp_path):
    x, y = data()
    backup = str(pathlib.Path(tmp_path) / "backup")
    model = pskd_model()
    model.compile(optimizer="sgd")
    model({"image": x[:1]})
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(
            shuffled(x, y, 8),
            epochs=3,
            verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(backup), _StopAfterEpoch(1)],
        )
    saved = np.asarray(model.soft_targets.bank.predictions).copy()
    assert (saved.sum(axis=1) > 0).all()
    resumed = pskd_model()
    resumed.compile(optimizer="sgd")
    resumed({"image": x[:1]})
    spy = _BankAtEpochBegin()
    history = resumed.fit(
        shuffled(x, y, 8),
        epochs=3,
        verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(backup), spy],
    )
    assert sorted(spy.seen) == [1, 2]  # resumed at epoch 1
    np.testing.assert_array_equal(spy.seen[1], saved)
    assert history.history["pskd_alpha_t"] == pytest.approx([0.8 * 2 / 3, 0.8])


# ---------------------------------------------------------------- alpha_t schedule
def test_alpha_schedule_epoch_convention_and_logs():
    x, y = data()
    model = pskd_model(alpha=0.6)
    model.compile(optimizer="sgd")
    tb_seen = []

    class AfterScheduler(keras.callbacks.Callback):  # stands for TensorBoard, placed by the user
        def on_epoch_end(self, epoch, logs=None):
            tb_seen.append(logs.get("pskd_alpha_t"))

    history = model.fit(
        {"image": x, "index": np.arange(N)},
        y,
        epochs=4,
        batch_size=16,
        verbose=0,
        callbacks=[AfterScheduler()],
    )
    expected = [0.6 * t / 4 for t in (1, 2, 3, 4)]  # t = epoch + 1: the last epoch has alpha_T
    assert history.history["pskd_alpha_t"] == pytest.approx(expected)
    assert tb_seen == pytest.approx(expected)
    # An explicit scheduler is used as given (not duplicated), here with T = 8 over 2 epochs.
    history = model.fit(
        {"image": x, "index": np.arange(N)},
        y,
        epochs=2,
        batch_size=16,
        verbose=0,
        callbacks=[pskd.PSKDAlphaScheduler(total_epochs=8)],
    )
    assert history.history["pskd_alpha_t"] == pytest.approx([0.6 / 8, 0.6 * 2 / 8])
    # Resuming at epoch 2 continues the schedule.
    history = model.fit(
        {"image": x, "index": np.arange(N)},
        y,
        epochs=4,
        initial_epoch=2,
        batch_size=16,
        verbose=0,
    )
    assert history.history["pskd_alpha_t"] == pytest.approx([0.45, 0.6])


def test_scheduler_errors():
    with pytest.raises(ValueError, match="total_epochs"):
        pskd.PSKDAlphaScheduler(total_epochs=0)
    x, y = data()
    plain = Baseline(tiny_backbone(num_classes=C))
    plain.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="pskd_alpha"):
        plain.fit(x, y, epochs=1, verbose=0, callbacks=[pskd.PSKDAlphaScheduler()])


# ---------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("alpha", [1.5, -0.1, "high"])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="pskd_alpha"):
        pskd_model(alpha=alpha)


@pytest.mark.parametrize("n", [None, 0, 2.5])
def test_bad_num_train_examples(n):
    with pytest.raises(ValueError, match="num_train_examples"):
        pskd_model(n=n)


def test_bad_bank_dtype():
    with pytest.raises(ValueError, match="bank_dtype"):
        pskd_model(bank_dtype="int8")


def test_inputs_without_index():
    x, y = data()
    model = pskd_model()
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="with_index=True"):
        model.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="with_index=True"):
        model.fit({"image": x}, y, epochs=1, verbose=0)
    no_index = tf.data.Dataset.from_tensor_slices(({"image": x}, y)).batch(4)
    with pytest.raises(ValueError, match="with_index=True"):
        model.fit(no_index, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="with_index=True"):  # inside the step (generators)
        model.train_step((tf.constant(x), tf.constant(y)))


def test_bank_smaller_than_data_set():
    x, y = data()
    model = pskd_model(n=N - 4)
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="num_train_examples"):  # static check, arrays
        model.fit({"image": x, "index": np.arange(N)}, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="num_train_examples"):  # in-step check, tf.data
        model.fit(shuffled(x, y, 4), epochs=1, verbose=0)


@pytest.mark.parametrize("compiled", [False, True])
def test_bank_write_checks_the_index_range(compiled):
    # The write must fail on the bank's own range check, not on the scatter's error: in a
    # compiled step nothing else orders the scatter after the check in `read`.
    bank = pskd.PredictionBank(12, 3)
    probs = np.full((2, 3), 1 / 3, np.float32)
    write = tf.function(bank.write) if compiled else bank.write
    for index in ([3, 15], [-1, 2]):
        with pytest.raises(tf.errors.InvalidArgumentError, match=pskd._INDEX_ERROR):
            write(tf.constant(index), probs)
    np.testing.assert_array_equal(bank.predictions.numpy(), np.zeros((12, 3)))


# ---------------------------------------------------------------- serialisation
def test_harness_with_pskd():
    x, y = data()
    check_model(
        lambda: pskd_model(bank_dtype="float16"),
        {"image": x, "index": np.arange(N)},
        y,
        expected_logs={"loss", "ce_loss", "accuracy", "pskd_alpha_t", "val_loss"},
    )


def test_harness_without_pskd_and_config():
    x, y = data()
    check_model(lambda: Baseline(tiny_backbone(num_classes=C)), x, y, expected_logs={"ce_loss"})
    config = pskd_model(alpha=0.5, n=20).get_config()
    # The shorthand is stored as the layer it builds.
    assert "pskd_alpha" not in config
    layer = config["soft_targets"]["config"]
    assert {k: layer[k] for k in ("alpha", "num_examples", "num_classes", "bank_dtype")} == {
        "alpha": 0.5,
        "num_examples": 20,
        "num_classes": C,
        "bank_dtype": "float32",
    }


def test_layer_configs():
    check_config_roundtrip(pskd.PredictionBank(7, 3, "float16"))
    check_config_roundtrip(pskd.ProgressiveSelfKD(0.8, 7, 3, "float32"))
