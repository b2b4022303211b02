"""Mixed precision and XLA for every distiller (issue 8 items 4-5).

Mixed precision: a training step runs (with Keras' loss scaling, applied through
`optimizer.scale_loss` in our step) and, with the same weights, every loss term matches float32
within half-precision tolerance, because all terms are computed in float32 from float16 logits.
XLA: `jit_compile=True` gives the same loss terms as the plain graph on a fixed batch, and trains.
"""

import keras
import numpy as np
import pytest
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
