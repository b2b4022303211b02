"""keras_sd.metrics against hand-computed values and independent NumPy references."""

import itertools
import math
from fractions import Fraction

import keras
import numpy as np
import pytest
import tensorflow as tf
from strategies import mirrored, run_per_replica
from tiny import tiny_backbone

from keras_sd import metrics
from keras_sd.models.base import Baseline

# 3 classes, probabilities chosen so confidences are exact binary fractions (no rounding).
HAND_PROBS = np.array(
    [
        [0.5, 0.25, 0.25],  # conf 0.5 on the bin edge -> bin (0.4, 0.5], correct
        [0.25, 0.4375, 0.3125],  # conf 0.4375 -> bin (0.4, 0.5], wrong (label 0)
        [0.75, 0.125, 0.125],  # conf 0.75 -> bin (0.7, 0.8], correct
        [0.875, 0.0625, 0.0625],  # conf 0.875 -> bin (0.8, 0.9], wrong (label 2)
        [0.375, 0.375, 0.25],  # tie on the top: label 1 is tied with class 0 -> correct
    ],
    np.float32,
)
HAND_LABELS = np.array([0, 0, 0, 2, 1])


def run_metric(metric, probs_or_logits, labels, batch=None, sample_weight=None):
    batch = batch or len(labels)
    for s in range(0, len(labels), batch):
        w = None if sample_weight is None else sample_weight[s : s + batch]
        metric.update_state(labels[s : s + batch], probs_or_logits[s : s + batch], sample_weight=w)
    return float(metric.result())


# ---------------------------------------------------------------- independent references
def ref_correct(probs, labels, k=1):
    out = []
    for p, y in zip(probs, labels):
        higher = sum(1 for q in p if q > p[y])
        out.append(higher < k)
    return np.array(out)


def ref_ece(probs, labels, num_bins=10):
    correct = ref_correct(probs, labels)
    conf = [Fraction(float(max(p))) for p in probs]
    total = 0.0
    for m in range(1, num_bins + 1):
        lo, hi = Fraction(m - 1, num_bins), Fraction(m, num_bins)
        members = [i for i, c in enumerate(conf) if (lo < c <= hi) or (m == 1 and c == 0)]
        if not members:
            continue
        acc = np.mean([correct[i] for i in members])
        avg_conf = np.mean([float(conf[i]) for i in members])
        total += abs(acc - avg_conf) * len(members) / len(probs)
    return 100.0 * total


def ref_aurc_one_order(errors):
    cum, risks = 0, []
    for k, e in enumerate(errors, start=1):
        cum += e
        risks.append(cum / k)
    return float(np.mean(risks))


def ref_aurc(probs, labels):
    """Mean over every order of each tie group of the plain (order-dependent) AURC."""
    conf = probs.max(axis=1)
    errors = ~ref_correct(probs, labels)
    groups = {}
    for c, e in zip(conf, errors):
        groups.setdefault(float(c), []).append(int(e))
    ordered = [groups[c] for c in sorted(groups, reverse=True)]
    per_group = [sorted(set(itertools.permutations(g))) for g in ordered]
    # weights: every distinct permutation of a multiset is equally likely under a random order.
    values = [
        ref_aurc_one_order([e for part in combo for e in part])
        for combo in itertools.product(*per_group)
    ]
    return 1000.0 * float(np.mean(values))


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------- ECE
def test_ece_hand_made_bin_edges_ties_and_empty_bins():
    # Bins by hand: (0.3,0.4]: {0.375 correct} gap .625; (0.4,0.5]: {0.5 ok, 0.4375 wrong} gap
    # |1 - 0.9375| = .0625; (0.7,0.8]: {0.75 ok} .25; (0.8,0.9]: {0.875 wrong} .875; six empty
    # bins. (Putting 0.5 in (0.5, 0.6] instead would give .5 + .4375 for the middle bins.)
    expected = 100.0 * (0.625 + 0.0625 + 0.25 + 0.875) / 5
    assert ref_ece(HAND_PROBS, HAND_LABELS) == pytest.approx(expected)
    m = metrics.ExpectedCalibrationError(num_bins=10, from_logits=False)
    assert run_metric(m, HAND_PROBS, HAND_LABELS, batch=2) == pytest.approx(expected, abs=1e-4)
    report = metrics.calibration_report(HAND_PROBS, HAND_LABELS)
    assert report["ece"] == pytest.approx(expected, abs=1e-9)


def test_ece_from_logits_streaming_matches_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(97, 7)).astype(np.float32) * 3
    labels = rng.integers(0, 7, 97)
    probs = softmax(logits.astype(np.float64)).astype(np.float32)
    m = metrics.ExpectedCalibrationError(num_bins=15)
    got = run_metric(m, logits, labels, batch=10)
    assert got == pytest.approx(ref_ece(probs, labels, 15), abs=1e-3)
    assert metrics.calibration_report(probs, labels, num_bins=15)["ece"] == pytest.approx(
        ref_ece(probs, labels, 15), abs=1e-6
    )


def test_ece_sample_weight_equals_repetition():
    w = np.array([2, 1, 3, 1, 2], np.float32)
    rep = np.repeat(np.arange(5), w.astype(int))
    m = metrics.ExpectedCalibrationError(from_logits=False)
    got = run_metric(m, HAND_PROBS, HAND_LABELS, sample_weight=w)
    assert got == pytest.approx(ref_ece(HAND_PROBS[rep], HAND_LABELS[rep]), abs=1e-4)


def test_ece_reset_and_onehot_labels():
    m = metrics.ExpectedCalibrationError(from_logits=False)
    run_metric(m, HAND_PROBS[:1], HAND_LABELS[:1])
    m.reset_state()
    assert float(m.result()) == 0.0
    onehot = np.eye(3)[HAND_LABELS]
    assert run_metric(m, HAND_PROBS, onehot) == pytest.approx(
        ref_ece(HAND_PROBS, HAND_LABELS), abs=1e-4
    )


# ---------------------------------------------------------------- NLL
def test_nll_hand_and_logits():
    true_p = HAND_PROBS[np.arange(5), HAND_LABELS].astype(np.float64)
    expected = -np.mean(np.log(true_p))
    m = metrics.NegativeLogLikelihood(from_logits=False)
    assert run_metric(m, HAND_PROBS, HAND_LABELS, batch=3) == pytest.approx(expected, rel=1e-6)
    logits = np.log(HAND_PROBS) + 4.0  # a constant shift leaves the softmax unchanged
    m = metrics.NegativeLogLikelihood()
    assert run_metric(m, logits, HAND_LABELS[:, None]) == pytest.approx(expected, rel=1e-5)
    assert metrics.calibration_report(HAND_PROBS, HAND_LABELS)["nll"] == pytest.approx(expected)


# ---------------------------------------------------------------- top-k
def test_topk_error_with_ties():
    scores = np.array(
        [
            [3.0, 3.0, 1.0, 0.0, 0.0, 0.0],  # label 1 tied with class 0 at the top: top-1 correct
            [3.0, 2.0, 1.0, 0.5, 0.4, 0.3],  # label 5 is 6th: wrong at top-1 and top-5
            [3.0, 2.0, 1.0, 0.5, 0.4, 0.4],  # label 5 tied with class 4 for 5th: top-5 correct
            [0.0, 1.0, 2.0, 0.0, 0.0, 0.0],  # label 0, three classes tie at the bottom: rank 2
        ],
        np.float32,
    )
    labels = np.array([1, 5, 5, 0])
    top1 = metrics.TopKError(k=1)
    assert run_metric(top1, scores, labels) == pytest.approx(75.0)  # hand: only row 0 correct
    top5 = metrics.TopKError(k=5)
    assert run_metric(top5, scores, labels, batch=1) == pytest.approx(25.0)  # only row 1 wrong
    assert top1.name == "top1_error" and top5.name == "top5_error"
    expected1 = 100 * (1 - ref_correct(scores, labels, 1).mean())
    assert expected1 == pytest.approx(75.0)


# ---------------------------------------------------------------- AURC
def test_aurc_hand_no_ties():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]], np.float32)
    labels = np.array([0, 0, 0, 0])  # conf 0.9 ok, 0.8 wrong, 0.7 ok, 0.6 wrong
    expected = 1000 * (0 + 1 / 2 + 1 / 3 + 2 / 4) / 4
    m = metrics.AURC(capacity=16, from_logits=False)
    assert run_metric(m, probs, labels, batch=3) == pytest.approx(expected, rel=1e-6)
    assert metrics.calibration_report(probs, labels)["aurc"] == pytest.approx(expected)


def test_aurc_ties_by_expectation_and_order_free():
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.5, 0.5]], np.float32)
    labels = np.array([0, 0, 0])  # conf .9 ok, .9 wrong, .5 (tie in classes -> correct)
    # Two orders of the tied pair: risks (0, .5, 1/3) and (1, .5, 1/3).
    expected = 1000 * ((0 + 0.5 + 1 / 3) + (1 + 0.5 + 1 / 3)) / 6
    assert ref_aurc(probs, labels) == pytest.approx(expected)
    for perm in itertools.permutations(range(3)):
        m = metrics.AURC(capacity=8, from_logits=False)
        got = run_metric(m, probs[list(perm)], labels[list(perm)])
        assert got == pytest.approx(expected, rel=1e-6)


def test_aurc_random_ties_against_brute_force():
    rng = np.random.default_rng(1)
    top = rng.choice([0.5, 0.625, 0.75], size=9)  # exact in float32, tie groups of size ~3
    probs = np.stack([top, 1 - top], axis=1).astype(np.float32)
    probs[::2] = probs[::2, ::-1]
    labels = rng.integers(0, 2, 9)
    expected = ref_aurc(probs, labels)
    m = metrics.AURC(capacity=9, from_logits=False)
    assert run_metric(m, probs, labels, batch=4) == pytest.approx(expected, rel=1e-6)
    assert metrics.calibration_report(probs, labels)["aurc"] == pytest.approx(expected, rel=1e-9)


def test_aurc_capacity_and_sample_weight_errors():
    m = metrics.AURC(capacity=3, from_logits=False)
    m.update_state(HAND_LABELS[:3], HAND_PROBS[:3])
    with pytest.raises(tf.errors.InvalidArgumentError, match="capacity=3"):
        m.update_state(HAND_LABELS[3:], HAND_PROBS[3:])
    with pytest.raises(ValueError, match="sample_weight"):
        metrics.AURC(capacity=3).update_state(HAND_LABELS, HAND_PROBS, sample_weight=np.ones(5))


def test_aurc_two_replicas_sees_every_sample():
    strategy = mirrored()
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(20, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 20)
    with strategy.scope():
        m = metrics.AURC(capacity=16)
    run_per_replica(strategy, m.update_state, labels, logits, batch_size=8)
    probs = softmax(logits.astype(np.float64))
    assert float(m.result()) == pytest.approx(ref_aurc(probs, labels), rel=1e-5)


# ---------------------------------------------------------------- keras integration
def test_compile_and_evaluate_match_report():
    x = np.random.default_rng(3).normal(size=(24, 8, 8, 1)).astype(np.float32)
    y = np.arange(24) % 5
    model = Baseline(tiny_backbone())
    model.compile(
        optimizer="sgd",
        metrics=[
            metrics.ExpectedCalibrationError(),
            metrics.NegativeLogLikelihood(),
            metrics.AURC(capacity=64),
            metrics.TopKError(1),
            metrics.TopKError(5),
        ],
    )
    logs = model.evaluate(x, y, batch_size=10, return_dict=True, verbose=0)
    probs = softmax(np.asarray(model.predict(x, verbose=0), np.float64))
    report = metrics.calibration_report(probs, y)
    assert logs["ece"] == pytest.approx(report["ece"], abs=1e-3)
    assert logs["nll"] == pytest.approx(report["nll"], rel=1e-4)
    assert logs["aurc"] == pytest.approx(report["aurc"], rel=1e-4)
    assert logs["top1_error"] == pytest.approx(report["top1_error"], abs=1e-4)
    assert logs["top5_error"] == pytest.approx(report["top5_error"], abs=1e-4)
    assert math.isfinite(logs["loss"])


@pytest.mark.parametrize(
    "factory",
    [
        lambda: metrics.ExpectedCalibrationError(num_bins=7, from_logits=False),
        lambda: metrics.NegativeLogLikelihood(name="my_nll"),
        lambda: metrics.AURC(capacity=11),
        lambda: metrics.TopKError(k=5),
    ],
)
def test_config_roundtrip(factory):
    m = factory()
    config = m.get_config()
    clone = type(m).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(m))
    assert type(restored) is type(m) and restored.get_config() == config


@pytest.mark.parametrize(
    "factory, name",
    [
        (lambda: metrics.ExpectedCalibrationError(num_bins=0), "num_bins"),
        (lambda: metrics.TopKError(k=0), "`k`"),
        (lambda: metrics.AURC(capacity=-1), "capacity"),
        (lambda: metrics.NegativeLogLikelihood(from_logits="yes"), "from_logits"),
        (lambda: metrics.calibration_report(np.ones(3), [0]), "probs"),
        (lambda: metrics.calibration_report(np.ones((2, 3)) / 3, [0]), "labels"),
    ],
)
def test_bad_arguments(factory, name):
    with pytest.raises(ValueError, match=name):
        factory()
