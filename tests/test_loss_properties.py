"""Property-based tests (Hypothesis) of keras_sd.losses.

Properties: finite for finite inputs, KL >= 0 and exactly 0 for equal inputs, symmetric KL is
symmetric, every logit-based loss is invariant to adding a constant to the logits, and every value
matches an independent float64 NumPy computation.

Input range: logits are drawn from [-1e4, 1e4] (and temperatures from [1/16, 20], so scaled
logits reach 1.6e5). Far beyond what a network produces, yet far from float32 overflow: the
log-softmax subtracts the row maximum, and a difference of two finite float32 values overflows
only above ~1.7e38, a range no loss of any library is finite on.
"""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_sd import losses

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOUND = 1e4


@st.composite
def logit_pair(draw, bound=BOUND):
    """Two float32 logit arrays of the same [batch, classes] shape."""
    batch = draw(st.integers(1, 4))
    classes = draw(st.integers(2, 7))
    elements = st.floats(-bound, bound, width=32, allow_nan=False, allow_infinity=False)
    a = draw(hnp.arrays(np.float32, (batch, classes), elements=elements))
    b = draw(hnp.arrays(np.float32, (batch, classes), elements=elements))
    return a, b


temperatures = st.floats(0.0625, 20.0, width=32)  # Python floats (float32-representable)
kl_scales = st.sampled_from(losses.KL_SCALES)


def np_log_softmax(x):
    x = np.asarray(x, np.float64)
    z = x - x.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_kl(target_logits, logits):
    log_p, log_q = np_log_softmax(target_logits), np_log_softmax(logits)
    return (np.exp(log_p) * (log_p - log_q)).sum(-1)


def kl_factor(t, scale):
    """The factor ``kl_scale`` puts on a KL at temperature ``t``."""
    return t * t if scale == "t2" else 1.0


def kl_tolerance(a, b, t=1.0):
    # float32 log-softmax of values of magnitude m has absolute rounding error ~ m * 2**-23 per
    # class; the KL sums (classes) such differences, each weighted by a probability <= 1.
    m = max(float(np.abs(a).max()), float(np.abs(b).max()), 1.0) / t
    return 4 * a.shape[-1] * m * 2.0**-23


@SETTINGS
@given(logit_pair(), temperatures, kl_scales)
def test_softened_kl_finite_nonnegative_and_matches_float64(pair, t, scale):
    a, b = pair
    kl = np.asarray(losses.softened_kl(a, b, t, scale))
    assert kl.shape == (a.shape[0],)
    assert np.all(np.isfinite(kl))
    factor = kl_factor(t, scale)
    tol = factor * kl_tolerance(a, b, t)
    # The float64 reference itself can round to -1e-29 for near-identical one-hot distributions,
    # so non-negativity is asserted on our float32 value (within its rounding), not on NumPy's.
    expected = factor * np_kl(a / t, b / t)
    assert np.all(kl >= -tol), (kl, tol)
    np.testing.assert_allclose(kl, expected, rtol=1e-4, atol=tol)


@SETTINGS
@given(logit_pair(), temperatures, kl_scales)
def test_kl_is_exactly_zero_for_equal_inputs(pair, t, scale):
    a, _ = pair
    assert np.all(np.asarray(losses.softened_kl(a, a, t, scale)) == 0.0)
    assert np.all(np.asarray(losses.symmetric_kl(a, a, t, scale)) == 0.0)
    assert np.all(np.asarray(losses.kl_from_logits(a, a)) == 0.0)
    assert np.all(np.asarray(losses.feature_kl(a, a)) == 0.0)


@SETTINGS
@given(logit_pair(), temperatures, kl_scales)
def test_symmetric_kl_is_symmetric_and_sum_of_both_directions(pair, t, scale):
    a, b = pair
    ab = np.asarray(losses.symmetric_kl(a, b, t, scale))
    ba = np.asarray(losses.symmetric_kl(b, a, t, scale))
    assert np.all(np.isfinite(ab))
    # The two directions are added in the opposite order; float addition commutes exactly.
    np.testing.assert_array_equal(ab, ba)
    factor = kl_factor(t, scale)
    expected = factor * (np_kl(a / t, b / t) + np_kl(b / t, a / t))
    np.testing.assert_allclose(ab, expected, rtol=1e-4, atol=2 * factor * kl_tolerance(a, b, t))


@SETTINGS
@given(logit_pair(), st.integers(0, 6))
def test_cross_entropy_finite_and_matches_float64(pair, label):
    logits, other = pair
    classes = logits.shape[-1]
    onehot = np.eye(classes, dtype=np.float32)[np.full(logits.shape[0], label % classes)]
    soft = np.exp(np_log_softmax(other)).astype(np.float32)  # a probability vector per row
    for targets in (onehot, soft):
        ce = np.asarray(losses.soft_target_cross_entropy(targets, logits))
        assert np.all(np.isfinite(ce))
        expected = -(targets.astype(np.float64) * np_log_softmax(logits)).sum(-1)
        assert np.all(expected >= 0)
        tol = kl_tolerance(logits, logits)
        assert np.all(ce >= -tol)
        np.testing.assert_allclose(ce, expected, rtol=1e-4, atol=tol)


@SETTINGS
@given(logit_pair(bound=20.0), st.floats(-100, 100, width=32), temperatures, kl_scales)
def test_invariant_to_adding_a_constant_to_logits(pair, c, t, scale):
    a, b = pair
    c = np.float32(c)
    # Rounding of a + c (|a + c| <= 120) moves each logit by <= 120 * 2**-24; through a
    # log-softmax and a sum over <= 7 classes, and times T**2 / T, that bounds the change.
    tol = 8 * 7 * 120 * 2.0**-23 * max(t, 1.0 / t) * kl_factor(t, scale)
    base = np.asarray(losses.softened_kl(a, b, t, scale))
    for shifted in (
        losses.softened_kl(a + c, b, t, scale),
        losses.softened_kl(a, b + c, t, scale),
        losses.softened_kl(a + c, b - c, t, scale),
    ):
        np.testing.assert_allclose(np.asarray(shifted), base, rtol=0, atol=tol)
    np.testing.assert_allclose(
        np.asarray(losses.symmetric_kl(a + c, b, t, scale)),
        np.asarray(losses.symmetric_kl(a, b, t, scale)),
        rtol=0,
        atol=2 * tol,
    )
    np.testing.assert_allclose(
        np.asarray(losses.feature_kl(a + c, b - c)),
        np.asarray(losses.feature_kl(a, b)),
        rtol=0,
        atol=8 * 7 * 120 * 2.0**-23,
    )
    targets = np.exp(np_log_softmax(b)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(losses.soft_target_cross_entropy(targets, a + c)),
        np.asarray(losses.soft_target_cross_entropy(targets, a)),
        rtol=0,
        atol=8 * 7 * 120 * 2.0**-23,
    )


@SETTINGS
@given(logit_pair(bound=100.0), st.floats(-100, 100, width=32))
def test_feature_distances_finite_nonnegative_and_shift_invariant(pair, c):
    a, b = pair
    c = np.float32(c)
    l2 = np.asarray(losses.feature_l2(a, b))
    mmd = float(losses.mean_feature_mmd(a, b))
    expected_l2 = ((b.astype(np.float64) - a) ** 2).sum(-1)
    expected_mmd = ((a.astype(np.float64).mean(0) - b.astype(np.float64).mean(0)) ** 2).sum()
    assert np.all(np.isfinite(l2)) and np.isfinite(mmd)
    assert np.all(l2 >= 0) and mmd >= 0
    np.testing.assert_allclose(l2, expected_l2, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(mmd, expected_mmd, rtol=1e-4, atol=1e-3)
    assert np.all(np.asarray(losses.feature_l2(a, a)) == 0.0)
    assert float(losses.mean_feature_mmd(a, a)) == 0.0
    # Shifting both sides by the same constant: |x + c| <= 200, so each difference moves by at
    # most 2 * 200 * 2**-24; the squared sum over <= 7 dims bounds the change.
    diff = float(np.abs(b.astype(np.float64) - a).max()) + 1.0
    tol = 7 * 2 * diff * 2 * 200 * 2.0**-24 + 1e-6
    np.testing.assert_allclose(np.asarray(losses.feature_l2(a + c, b + c)), l2, rtol=1e-5, atol=tol)
    np.testing.assert_allclose(
        float(losses.mean_feature_mmd(a + c, b + c)), mmd, rtol=1e-5, atol=tol
    )
