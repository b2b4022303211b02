"""Mixed precision and XLA for every distiller (issue 8 items 4-5).

Mixed precision: a training step runs (with Keras' loss scaling, applied through
`optimizer.scale_loss` in our step) and, with the same weights, every loss term matches float32
within half-precision tolerance, because all terms are computed in float32 from float16 logits.
XLA: `jit_compile=True` gives the same loss terms as the plain graph on a fixed batch, and trains.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import tiny_backbone

import keras_sd
from keras_sd import backbones

RNG = np.random.default_rng(3)
X = RNG.normal(size=(16, 8, 8, 1)).astype("float32")
Y = RNG.integers(0, 5, size=16).astype("int32")
IDX = np.arange(16, dtype="int32")


def _build(method):
    if method == "baseline":
        return keras_sd.Baseline(tiny_backbone(batch_norm=True), weight_decay=1e-3)
    if method == "two_view":
        return keras_sd.TwoViewDistiller(tiny_backbone(batch_norm=True), seed=1, mmd_weight=1e-2)
    if method == "multi_exit":
        return keras_sd.MultiExitDistiller(
            backbones.resnet_cifar(8, num_classes=5, input_shape=(8, 8, 1))
        )
    if method == "self_guidance":
        bb = backbones.resnet_cifar(
            8, num_classes=5, input_shape=(8, 8, 1), stochastic_depth=0.5, seed=2
        )
        return keras_sd.SelfGuidanceDistiller(bb)
    if method == "pskd":
        return keras_sd.Baseline(tiny_backbone(), pskd_alpha=0.8, num_train_examples=16)
    raise AssertionError(method)


METHODS = ["baseline", "two_view", "multi_exit", "self_guidance", "pskd"]


def _inputs(method):
    return {"image": X, "index": IDX} if method == "pskd" else X


@pytest.fixture
def mixed_policy():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def _eval(model, method):
    return model.evaluate(_inputs(method), Y, batch_size=16, return_dict=True, verbose=0)


@pytest.mark.parametrize("method", METHODS)
def test_mixed_float16_step_runs_and_terms_match_float32(method, mixed_policy):
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    ref = _build(method)
    ref.compile(optimizer="sgd")
    ref_logs = _eval(ref, method)
    keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(0)
    model = _build(method)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    model.set_weights(ref.get_weights())
    logs = _eval(model, method)
    for name, value in ref_logs.items():
        if name.endswith(("loss",)):
            np.testing.assert_allclose(logs[name], value, rtol=2e-2, atol=2e-3, err_msg=name)
    history = model.fit(_inputs(method), Y, batch_size=8, epochs=1, verbose=0).history
    assert all(np.isfinite(v[-1]) for v in history.values()), history


@pytest.mark.parametrize("method", METHODS)
def test_xla_matches_plain_graph(method):
    keras.utils.set_random_seed(0)
    plain = _build(method)
    plain.compile(optimizer="sgd", jit_compile=False)
    ref_logs = _eval(plain, method)
    keras.utils.set_random_seed(0)
    xla = _build(method)
    xla.compile(optimizer=keras.optimizers.SGD(0.01), jit_compile=True)
    xla.set_weights(plain.get_weights())
    logs = _eval(xla, method)
    for name, value in ref_logs.items():
        np.testing.assert_allclose(logs[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
    history = xla.fit(_inputs(method), Y, batch_size=8, epochs=1, verbose=0).history
    assert all(np.isfinite(v[-1]) for v in history.values()), history


def test_per_batch_gate_under_xla_keeps_or_drops_the_whole_batch():
    """Under XLA the per-batch gate is a product, not a `tf.cond` (XLA made the conds ~70x
    slower): each call still keeps or drops the branch for the whole batch, with probability p.
    (XLA's random streams differ from the CPU kernels', so draws are not compared one by one.)"""
    from keras_sd.layers import StochasticDepth

    p, calls = 0.7, 300
    gate = StochasticDepth(
        keras.layers.Dense(4, kernel_initializer="ones"), p, mode="per_batch", seed=5
    )
    x = np.ones((6, 4), "float32")
    gate([x, x])
    step = tf.function(lambda a: gate([a, a], training=True), jit_compile=True)
    kept = []
    for _ in range(calls):
        out = step(x).numpy()
        assert set(np.unique(out)) <= {1.0, 5.0} and len(np.unique(out)) == 1, out  # 1 + 4 or 1
        kept.append(out[0, 0] == 5.0)
    # Binomial(300, 0.7): sd = 7.9 draws; 4 sd either side.
    assert abs(sum(kept) - p * calls) < 4 * np.sqrt(calls * p * (1 - p)), sum(kept)


def test_per_batch_self_guidance_trains_under_xla():
    keras.utils.set_random_seed(0)
    bb = backbones.resnet_cifar(
        8, num_classes=5, input_shape=(8, 8, 1), stochastic_depth=0.5, drop_mode="per_batch", seed=3
    )
    model = keras_sd.SelfGuidanceDistiller(bb, drop_mode="per_batch")
    model.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=True)
    assert model.jit_compile
    history = model.fit(X, Y, batch_size=8, epochs=2, verbose=0).history
    assert all(np.isfinite(v).all() for v in history.values()), history
    assert history["loss"][-1] < history["loss"][0]
