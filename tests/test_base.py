"""The shared training core: loss arithmetic, metrics, distribution, bad input, serialisation."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import check_model
from strategies import mirrored
from tiny import tiny_backbone

import keras_sd

RNG = np.random.default_rng(1)
X = RNG.normal(size=(16, 8, 8, 1)).astype("float32")
Y = RNG.integers(0, 5, size=16)


def np_ce(logits, y):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -logp[np.arange(len(y)), y]


def test_baseline_loss_equals_numpy_with_coupled_weight_decay():
    wd = 1e-3
    model = keras_sd.Baseline(tiny_backbone(), weight_decay=wd)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = model.evaluate(X, Y, batch_size=16, return_dict=True, verbose=0)
    logits = model.predict(X, verbose=0)
    l2 = 0.5 * wd * sum(float((v.numpy() ** 2).sum()) for v in model.trainable_variables)
    np.testing.assert_allclose(logs["ce_loss"], np_ce(logits, Y).mean(), rtol=1e-5)
    np.testing.assert_allclose(logs["weight_decay_loss"], l2, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], np_ce(logits, Y).mean() + l2, rtol=1e-5)
    top1 = (logits.argmax(-1) == Y).mean()
    top5 = np.mean([Y[i] in np.argsort(-logits[i])[:5] for i in range(16)])
    np.testing.assert_allclose(logs["accuracy"], top1)
    np.testing.assert_allclose(logs["top5"], top5)


def test_weight_decay_gradient_is_coupled_like_pytorch_sgd():
    # One SGD step (lr, no momentum) must move each weight by -lr * (dCE/dw + wd * w).
    wd, lr = 0.1, 0.5
    model = keras_sd.Baseline(tiny_backbone(), weight_decay=wd)
    model.compile(optimizer=keras.optimizers.SGD(lr))
    model.predict(X[:1], verbose=0)
    before = [v.numpy().copy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        logits = model(X, training=True)
        ce = tf.reduce_mean(
            tf.keras.losses.sparse_categorical_crossentropy(Y, logits, from_logits=True)
        )
    g = tape.gradient(ce, model.trainable_variables)
    model.fit(X, Y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for w0, gi, v in zip(before, g, model.trainable_variables):
        np.testing.assert_allclose(v.numpy(), w0 - lr * (gi.numpy() + wd * w0), atol=1e-5)


def test_one_hot_labels_equal_sparse_labels():
    model = keras_sd.Baseline(tiny_backbone())
    model.compile(optimizer="sgd")
    a = model.evaluate(X, Y, return_dict=True, verbose=0)
    b = model.evaluate(X, np.eye(5, dtype="float32")[Y], return_dict=True, verbose=0)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)


def test_bad_labels_and_arguments():
    model = keras_sd.Baseline(tiny_backbone())
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="Labels must be sparse"):
        model.evaluate(X, np.zeros((16, 3)), verbose=0)
    with pytest.raises(ValueError, match="weight_decay"):
        keras_sd.Baseline(tiny_backbone(), weight_decay=-1)
    with pytest.raises(ValueError, match="backbone"):
        keras_sd.Baseline("resnet32")
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="from_keras"):
        keras_sd.Baseline(plain)


def test_dict_inputs_with_index_are_accepted():
    model = keras_sd.Baseline(tiny_backbone())
    model.compile(optimizer="sgd")
    x = {"image": X, "index": np.arange(16, dtype="int32")}
    logs = model.fit(x, Y, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0])


def test_harness_baseline(tmp_path):
    check_model(
        lambda: keras_sd.Baseline(tiny_backbone(batch_norm=True), weight_decay=5e-4),
        X,
        Y,
        expected_logs={"loss", "ce_loss", "accuracy", "top5", "val_loss", "val_accuracy"},
    )


def _one_step_weights(strategy, wd=1e-3):
    with strategy.scope():
        model = keras_sd.Baseline(tiny_backbone(seed=3), weight_decay=wd)
        model.compile(optimizer=keras.optimizers.SGD(1.0))
    ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(16)
    logs = model.fit(ds, epochs=1, verbose=0).history
    return [v.numpy() for v in model.trainable_variables], logs["loss"][0]


def test_mirrored_two_replicas_equal_single_device():
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest must split the CPU into two logical devices"
    single_w, single_loss = _one_step_weights(tf.distribute.OneDeviceStrategy("/cpu:0"))
    strategy = mirrored()
    assert strategy.num_replicas_in_sync == 2
    multi_w, multi_loss = _one_step_weights(strategy)
    for a, b in zip(single_w, multi_w):
        np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-5)
    np.testing.assert_allclose(single_loss, multi_loss, rtol=1e-5)


def _logs_and_names(strategy):
    with strategy.scope():
        model = keras_sd.Baseline(tiny_backbone(seed=3), weight_decay=1e-3)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            metrics=[keras_sd.metrics.NegativeLogLikelihood(), keras_sd.metrics.TopKError(1)],
        )
    ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(16)
    history = model.fit(ds, validation_data=ds, epochs=1, verbose=0).history
    return history, model.evaluate(ds, return_dict=True, verbose=0), model.metrics_names


def test_logged_names_and_compiled_metrics_single_and_two_replicas():
    # The metrics property starts from Keras' own list minus its unused "loss" tracker, and
    # compute_metrics updates the compiled metrics: one "loss", the package's trackers first.
    terms = ["loss", "ce_loss", "weight_decay_loss", "accuracy", "top5"]
    single, single_eval, names = _logs_and_names(tf.distribute.OneDeviceStrategy("/cpu:0"))
    assert names == [*terms, "compile_metrics"]
    logged = [*terms, "nll", "top1_error"]
    assert sorted(single) == sorted(logged + [f"val_{k}" for k in logged])
    assert sorted(single_eval) == sorted(logged)
    multi, multi_eval, _ = _logs_and_names(mirrored())
    assert sorted(multi) == sorted(single)
    for key, value in single_eval.items():
        np.testing.assert_allclose(multi_eval[key], value, rtol=1e-5, err_msg=key)
    for key, values in single.items():
        np.testing.assert_allclose(multi[key], values, rtol=1e-5, err_msg=key)


def test_a_fitted_model_saves_its_weights_without_ever_being_called(tmp_path):
    # keras-tuner's checkpoint saves weights at each epoch's end; without a strategy Keras builds
    # nothing before tracing train_step, which never calls the model itself.
    model = keras_sd.Baseline(tiny_backbone(seed=3), weight_decay=1e-3)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    saved = tmp_path / "epoch.weights.h5"

    class SaveAtEpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.save_weights(saved)

    model.fit(X, Y, batch_size=16, epochs=1, callbacks=[SaveAtEpochEnd()], verbose=0)
    fresh = keras_sd.Baseline(tiny_backbone(seed=4), weight_decay=1e-3)
    fresh.load_weights(saved)
    np.testing.assert_array_equal(fresh.predict(X, verbose=0), model.predict(X, verbose=0))
