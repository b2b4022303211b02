"""Every loss function against NumPy computed here, including gradients (none into a target)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_sd import losses

RNG = np.random.default_rng(0)


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_kl(t, s):
    lp, lq = np_log_softmax(t), np_log_softmax(s)
    return (np.exp(lp) * (lp - lq)).sum(-1)


def grads(fn, *tensors):
    tensors = [tf.Variable(t) for t in tensors]
    with tf.GradientTape(persistent=True) as tape:
        out = tf.reduce_sum(fn(*tensors))
    return [tape.gradient(out, t) for t in tensors]


@pytest.mark.parametrize("kl_scale,factor", [("t2", 9.0), ("none", 1.0)])
def test_softened_kl_matches_numpy_and_gradient(kl_scale, factor):
    t, s = RNG.normal(size=(5, 7)).astype("float32"), RNG.normal(size=(5, 7)).astype("float32")
    T = 3.0
    out = losses.softened_kl(t, s, T, kl_scale).numpy()
    np.testing.assert_allclose(out, factor * np_kl(t / T, s / T), rtol=1e-5, atol=1e-6)
    gt, gs = grads(lambda a, b: losses.softened_kl(a, b, T, kl_scale), t, s)
    assert gt is None  # stop-gradient on the target
    # d/ds KL(p||q(s/T)) = (q - p) / T, per row.
    p = np.exp(np_log_softmax(t / T))
    q = np.exp(np_log_softmax(s / T))
    np.testing.assert_allclose(gs.numpy(), factor * (q - p) / T, rtol=1e-4, atol=1e-6)


def test_kl_is_zero_for_equal_inputs_and_nonnegative():
    z = RNG.normal(size=(4, 10)).astype("float32")
    np.testing.assert_allclose(losses.softened_kl(z, z, 2.0).numpy(), 0.0, atol=1e-6)
    assert (losses.softened_kl(z, z[::-1], 2.0).numpy() >= 0).all()


def test_symmetric_kl_each_direction_only_into_its_learner():
    a, b = RNG.normal(size=(3, 5)).astype("float32"), RNG.normal(size=(3, 5)).astype("float32")
    T = 2.0
    out = losses.symmetric_kl(a, b, T).numpy()
    np.testing.assert_allclose(out, T**2 * (np_kl(b / T, a / T) + np_kl(a / T, b / T)), rtol=1e-5)
    ga, gb = grads(lambda u, v: losses.symmetric_kl(u, v, T), a, b)
    pa, pb = np.exp(np_log_softmax(a / T)), np.exp(np_log_softmax(b / T))
    # Paper's gradient: branch a gets (p_a - p_b) (times T for the T^2 convention), b the reverse.
    np.testing.assert_allclose(ga.numpy(), T * (pa - pb), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gb.numpy(), T * (pb - pa), rtol=1e-4, atol=1e-6)


def test_soft_target_cross_entropy():
    y = np.eye(6, dtype="float32")[[0, 3, 5]] * 0.7 + 0.05
    z = RNG.normal(size=(3, 6)).astype("float32")
    np.testing.assert_allclose(
        losses.soft_target_cross_entropy(y, z).numpy(), -(y * np_log_softmax(z)).sum(-1), rtol=1e-5
    )
    gy, gz = grads(losses.soft_target_cross_entropy, y, z)
    assert gy is None
    np.testing.assert_allclose(
        gz.numpy(), np.exp(np_log_softmax(z)) * y.sum(-1, keepdims=True) - y, atol=1e-6
    )


def test_feature_l2_flattens_and_stops_target():
    t, f = (
        RNG.normal(size=(2, 3, 3, 4)).astype("float32"),
        RNG.normal(size=(2, 3, 3, 4)).astype("float32"),
    )
    np.testing.assert_allclose(
        losses.feature_l2(t, f).numpy(), ((f - t) ** 2).reshape(2, -1).sum(-1), rtol=1e-5
    )
    gt, gf = grads(losses.feature_l2, t, f)
    assert gt is None
    np.testing.assert_allclose(gf.numpy(), 2 * (f - t), rtol=1e-5)


def test_feature_kl():
    t, f = RNG.normal(size=(4, 16)).astype("float32"), RNG.normal(size=(4, 16)).astype("float32")
    np.testing.assert_allclose(losses.feature_kl(t, f).numpy(), np_kl(t, f), rtol=1e-5, atol=1e-6)
    gt, gf = grads(losses.feature_kl, t, f)
    assert gt is None and gf is not None


def test_mean_feature_mmd_is_squared_norm_of_mean_difference():
    a, b = RNG.normal(size=(8, 5)).astype("float32"), RNG.normal(size=(8, 5)).astype("float32")
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum()
    # The published mistake: mean over all elements of the squared difference (not this).
    wrong = ((a.mean(0) - b.mean(0)) ** 2).mean()
    out = float(losses.mean_feature_mmd(a, b))
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert abs(out - wrong) > 1e-3
    ga, gb = grads(losses.mean_feature_mmd, a, b)
    np.testing.assert_allclose(
        ga.numpy(), np.tile(2 * (a.mean(0) - b.mean(0)) / 8, (8, 1)), rtol=1e-5
    )
    np.testing.assert_allclose(gb.numpy(), -ga.numpy(), rtol=1e-5)


@pytest.mark.parametrize("bad", [0, -1.0, "x", None])
def test_bad_temperature(bad):
    with pytest.raises(ValueError, match="temperature"):
        losses.softened_kl(np.zeros((1, 2)), np.zeros((1, 2)), bad)


def test_bad_kl_scale():
    with pytest.raises(ValueError, match="kl_scale"):
        losses.softened_kl(np.zeros((1, 2)), np.zeros((1, 2)), 1.0, "T^2")


def test_docstring_examples():
    import doctest

    result = doctest.testmod(losses)
    assert result.attempted > 0 and result.failed == 0


def test_distillation_references_follow_the_path():
    logits = [np.full((2, 3), float(k)) for k in range(4)]
    features = [np.full((2, 5), 10.0 * k) for k in range(4)]
    refs = {
        p: losses.distillation_references(p, 1, logits, features, 2.0)
        for p in ("deepest", "transitive", "dense")
    }
    # Exit 2 (index 1) of 4: the deepest is exit 4, the next deeper exit 3, dense both 3 and 4.
    assert [float(np.asarray(r[0])[0, 0]) for r in refs["deepest"]] == [3.0]
    assert [float(np.asarray(r[0])[0, 0]) for r in refs["transitive"]] == [2.0]
    assert [float(np.asarray(r[1])[0, 0]) for r in refs["dense"]] == [20.0, 30.0]
    # Ensemble: softmax(ref / T) is the mean of the softened probabilities, by hand in NumPy.
    rng = np.random.default_rng(0)
    z = [rng.normal(size=(4, 6)).astype("float32") for _ in range(3)]
    [(ref, feature)] = losses.distillation_references("ensemble", 0, z, features[:3], 2.0)
    soft = [np.exp(v / 2.0) / np.exp(v / 2.0).sum(-1, keepdims=True) for v in z]
    got = np.exp(np.asarray(ref) / 2.0)
    np.testing.assert_allclose(got / got.sum(-1, keepdims=True), np.mean(soft, 0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(feature), np.full((2, 5), 10.0), rtol=0)
    with pytest.raises(ValueError, match=r"`path` must be one of .* got 'widest'"):
        losses.distillation_references("widest", 0, z, features[:3], 2.0)
