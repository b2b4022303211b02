"""StochasticDepth: student / teacher / inference gates, seeding, per-batch skipping,
serialisation (Self-Guidance, issue 6 items 1-2 and the layer parts of item 5)."""

import math
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf
from strategies import mirrored

from keras_sd import backbones
from keras_sd.layers.stochastic_depth import StochasticDepth, full_network, is_full_network


def _binomial_bound(p: float, n: int, sigmas: float = 4.0) -> float:
    return sigmas * math.sqrt(p * (1.0 - p) / n)


def _gates(layer: StochasticDepth, batch: int, training: bool = True) -> np.ndarray:
    """Per-sample gate values: identity branch, x = ones, shortcut = zeros."""
    x = np.ones((batch, 2, 2, 1), np.float32)
    out = keras.ops.convert_to_numpy(layer([x, np.zeros_like(x)], training=training))
    # Every position of a sample carries the same gate.
    np.testing.assert_array_equal(out, np.broadcast_to(out[:, :1, :1, :], out.shape))
    return out[:, 0, 0, 0]


@keras.saving.register_keras_serializable(package="keras_sd_tests")
class CountingIdentity(keras.layers.Layer):
    """Identity that counts how many times its computation actually ran."""

    def build(self, input_shape):
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False, name="n")

    def call(self, x):
        self.count.assign_add(1.0)
        return x


def test_per_sample_masks_keep_about_p_and_differ_within_batch():
    p, batch = 0.7, 4000
    layer = StochasticDepth(keras.layers.Identity(), p, mode="per_sample", seed=3)
    gates = _gates(layer, batch)
    assert set(np.unique(gates)) == {0.0, 1.0}  # Bernoulli, no 1/p rescaling
    assert abs(gates.mean() - p) <= _binomial_bound(p, batch)


def test_monte_carlo_student_mean_equals_teacher():
    p, n = 0.6, 20000
    dense = keras.layers.Dense(3, kernel_initializer="glorot_uniform", bias_initializer="ones")
    layer = StochasticDepth(dense, p, mode="per_sample", seed=11)
    x1 = np.array([[0.5, -1.0, 2.0, 0.25]], np.float32)
    short1 = np.array([[0.1, 0.2, -0.3]], np.float32)
    layer([x1, short1])  # build
    w, b = (keras.ops.convert_to_numpy(v) for v in dense.weights)
    branch = x1 @ w + b
    expected_teacher = short1 + p * branch

    with full_network():
        teacher = keras.ops.convert_to_numpy(layer([x1, short1], training=True))
    np.testing.assert_allclose(teacher, expected_teacher, rtol=1e-5, atol=1e-6)
    inference = keras.ops.convert_to_numpy(layer([x1, short1], training=False))
    np.testing.assert_allclose(inference, expected_teacher, rtol=1e-5, atol=1e-6)

    student = keras.ops.convert_to_numpy(
        layer([np.repeat(x1, n, 0), np.repeat(short1, n, 0)], training=True)
    )
    # Each student output is either shortcut or shortcut + branch.
    kept = np.isclose(student, short1 + branch, atol=1e-5).all(axis=1)
    dropped = np.isclose(student, short1, atol=1e-6).all(axis=1)
    assert np.all(kept ^ dropped)
    tol = 4.0 * np.abs(branch) * math.sqrt(p * (1 - p) / n) + 1e-6
    assert np.all(np.abs(student.mean(axis=0) - expected_teacher[0]) <= tol[0])


def test_teacher_keeps_batchnorm_in_training_mode_and_inference_uses_moving_stats():
    p = 0.5
    layer = StochasticDepth(keras.layers.BatchNormalization(epsilon=1e-3), p, seed=0)
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(16, 5)).astype(np.float32)
    short = rng.normal(size=(16, 5)).astype(np.float32)
    with full_network():
        assert is_full_network()
        t1 = keras.ops.convert_to_numpy(layer([x, short], training=True))
        t2 = keras.ops.convert_to_numpy(layer([x, short], training=True))
    assert not is_full_network()
    normed = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3)
    np.testing.assert_allclose(t1, short + p * normed, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(t1, t2)

    bn = layer.branch
    mean, var = (keras.ops.convert_to_numpy(v) for v in (bn.moving_mean, bn.moving_variance))
    i1 = keras.ops.convert_to_numpy(layer([x, short], training=False))
    i2 = keras.ops.convert_to_numpy(layer([x, short], training=False))
    np.testing.assert_allclose(
        i1, short + p * (x - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_array_equal(i1, i2)


def test_full_network_flag_is_thread_local():
    seen = []
    with full_network():
        t = threading.Thread(target=lambda: seen.append(is_full_network()))
        t.start()
        t.join()
        assert is_full_network()
    assert seen == [False]


def test_per_batch_drops_whole_batch_and_skips_branch_computation():
    p, calls, batch = 0.5, 300, 6
    layer = StochasticDepth(CountingIdentity(), p, mode="per_batch", seed=5)
    x = np.ones((batch, 3), np.float32)
    zeros = np.zeros_like(x)
    step = tf.function(lambda a, s: layer([a, s], training=True))
    kept = 0
    for _ in range(calls):
        out = step(x, zeros).numpy()
        assert np.all(out == out[0, 0])  # one draw for the whole batch
        assert out[0, 0] in (0.0, 1.0)
        kept += int(out[0, 0] == 1.0)
    assert abs(kept / calls - p) <= _binomial_bound(p, calls)
    # The branch ran exactly on the kept draws: dropped draws skip its computation.
    assert float(layer.branch.count.numpy()) == kept


def test_per_sample_mode_runs_branch_every_time():
    layer = StochasticDepth(CountingIdentity(), 0.5, mode="per_sample", seed=5)
    x = np.ones((4, 3), np.float32)
    for _ in range(5):
        layer([x, x], training=True)
    assert float(layer.branch.count.numpy()) == 5.0


def test_same_seed_same_masks_different_seed_different_masks():
    def masks(seed):
        layer = StochasticDepth(keras.layers.Identity(), 0.5, seed=seed)
        return np.stack([_gates(layer, 64) for _ in range(3)])

    np.testing.assert_array_equal(masks(7), masks(7))
    assert not np.array_equal(masks(7), masks(8))


def test_successive_student_calls_draw_new_masks():
    layer = StochasticDepth(keras.layers.Identity(), 0.5, seed=1)
    assert not np.array_equal(_gates(layer, 64), _gates(layer, 64))


def test_survival_one_is_identity_residual_block():
    layer = StochasticDepth(keras.layers.Identity(), 1.0, mode="per_batch", seed=0)
    for _ in range(20):
        np.testing.assert_array_equal(_gates(layer, 8), np.ones(8))


@pytest.mark.parametrize("p", [0.0, -0.1, 1.5, float("nan"), "high", None])
def test_bad_survival_probability_raises(p):
    with pytest.raises(ValueError, match="survival_probability"):
        StochasticDepth(keras.layers.Identity(), p)


def test_bad_mode_branch_and_shapes_raise():
    with pytest.raises(ValueError, match="mode.*per_sample.*per_batch.*'sometimes'"):
        StochasticDepth(keras.layers.Identity(), 0.5, mode="sometimes")
    with pytest.raises(ValueError, match="branch"):
        StochasticDepth(lambda x: x, 0.5)
    with pytest.raises(ValueError, match=r"^`seed` must be an int or None, got 1\.5\.$"):
        StochasticDepth(keras.layers.Identity(), 0.5, seed=1.5)
    # bool is an int subclass: a flag passed as the seed is refused, not taken as seed 1.
    with pytest.raises(ValueError, match=r"^`seed` must be an int or None, got True\.$"):
        StochasticDepth(keras.layers.Identity(), 0.5, seed=True)
    # A NumPy integer (e.g. from an array of seeds) is a seed, stored as a plain int.
    layer = StochasticDepth(keras.layers.Identity(), 0.5, seed=np.int64(7))
    assert layer.get_config()["seed"] == 7 and type(layer.get_config()["seed"]) is int
    layer = StochasticDepth(keras.layers.Dense(4), 0.5)
    with pytest.raises(ValueError, match="shortcut shape"):
        layer([np.ones((2, 3), np.float32), np.ones((2, 3), np.float32)])


def test_config_round_trip():
    branch = keras.Sequential([keras.layers.Dense(3), keras.layers.ReLU()])
    layer = StochasticDepth(branch, 0.75, mode="per_batch", seed=4, name="gate")
    layer([np.ones((2, 5), np.float32), np.ones((2, 3), np.float32)])
    config = layer.get_config()
    assert {k: config[k] for k in ("survival_probability", "mode", "seed")} == {
        "survival_probability": 0.75,
        "mode": "per_batch",
        "seed": 4,
    }
    clone = StochasticDepth.from_config(config)
    assert clone.get_config() == config
    assert isinstance(clone.branch, keras.Sequential)


@pytest.mark.parametrize("mode", ["per_sample", "per_batch"])
def test_backbone_with_stochastic_depth_saves_and_loads(tmp_path, mode):
    model = backbones.resnet_cifar(
        8, num_classes=4, input_shape=(8, 8, 1), stochastic_depth=0.5, drop_mode=mode, seed=2
    )
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 1)).astype(np.float32)
    model(x, training=True)  # move the BN statistics and the seed state
    path = tmp_path / "sd.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    before, after = model(x, training=False), loaded(x, training=False)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(before["logits"]), keras.ops.convert_to_numpy(after["logits"])
    )
    gates = [
        (layer.survival_probability, layer.mode, layer.seed)
        for layer in loaded.layers
        if isinstance(layer, StochasticDepth)
    ]
    assert gates == [(1 - i / 3 * 0.5, mode, 2 + i) for i in (1, 2, 3)]


def test_backbone_student_gradients_and_teacher_determinism():
    model = backbones.resnet_cifar(
        8, num_classes=3, input_shape=(8, 8, 1), stochastic_depth=0.5, seed=0
    )
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 1)).astype(np.float32)

    @tf.function
    def passes(inp):
        with tf.GradientTape() as tape:
            student = model(inp, training=True)["logits"]
            loss = tf.reduce_sum(student**2)
        grads = tape.gradient(loss, model.trainable_variables)
        with full_network():
            teacher = model(inp, training=True)["logits"]
        return grads, teacher

    grads1, teacher1 = passes(x)
    _, teacher2 = passes(x)
    assert all(g is not None for g in grads1)
    np.testing.assert_array_equal(teacher1.numpy(), teacher2.numpy())


def _two_replica_strategy():
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs two logical CPU devices (set up by conftest)")
    return mirrored()


@pytest.mark.parametrize("mode", ["per_sample", "per_batch"])
def test_masks_across_replicas(mode):
    strategy = _two_replica_strategy()
    p, local = 0.5, 512
    with strategy.scope():
        layer = StochasticDepth(keras.layers.Identity(), p, mode=mode, seed=3)
        layer.build([(None, 1), (None, 1)])

    @tf.function
    def step():
        def replica_fn():
            x = tf.ones((local, 1))
            return layer([x, tf.zeros_like(x)], training=True)

        return strategy.run(replica_fn)

    draws = [
        [r.numpy().ravel() for r in strategy.experimental_local_results(step())] for _ in range(8)
    ]
    for a, b in draws:
        if mode == "per_sample":
            # Independent masks per replica, each keeping about p.
            assert not np.array_equal(a, b)
            for m in (a, b):
                assert abs(m.mean() - p) <= _binomial_bound(p, local)
        else:
            # One draw for the global batch, as on a single device.
            assert np.array_equal(a, b) and len(set(a)) == 1
    if mode == "per_batch":
        assert len({d[0][0] for d in draws}) == 2  # both outcomes occur over 8 steps (p=0.5)


def test_full_network_inside_replica_function():
    # train_step runs in each replica's thread, so the context is entered there.
    strategy = _two_replica_strategy()
    p = 0.25
    with strategy.scope():
        layer = StochasticDepth(keras.layers.Identity(), p, seed=0)
        layer.build([(None, 1), (None, 1)])

    @tf.function
    def step():
        def replica_fn():
            x = tf.ones((64, 1))
            with full_network():
                return layer([x, tf.zeros_like(x)], training=True)

        return strategy.run(replica_fn)

    for r in strategy.experimental_local_results(step()):
        np.testing.assert_array_equal(r.numpy(), np.full((64, 1), p, np.float32))
