"""Loss mathematics of every method, as pure functions.

Each function that compares a target with a learner takes the *target first*, wraps it in
stop-gradient (a learner never receives gradient through its own target) and returns one value per
sample, with no reduction: the training core averages over the global batch. The exceptions are
`mean_feature_mmd` and `batch_feature_distance`, batch statistics that return a scalar.

KL divergences are computed from log-softmax of logits (never ``log(softmax + eps)``), and
``KL(p || q) = sum_k p_k (log p_k - log q_k)`` with ``p`` the target.

Conventions shared by all methods: docs/architecture.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from keras import ops

from keras_sd import validation

KL_SCALES = ("t2", "none")


def check_kl_scale(kl_scale: str) -> str:
    """Returns ``kl_scale`` or raises if it is not one of ``KL_SCALES``.

    Example:
        >>> check_kl_scale("t2")
        't2'
    """
    return validation.one_of(kl_scale, "kl_scale", KL_SCALES)


def _flatten(x):
    shape = ops.shape(x)
    if len(shape) == 2:
        return x
    return ops.reshape(x, (shape[0], -1))


def kl_from_logits(target_logits, logits, stop_target_gradient: bool = True):
    """Per-sample ``KL(softmax(target_logits) || softmax(logits))``; target stop-gradiented.

    ``stop_target_gradient=False`` lets the gradient reach the target side as well (for a method
    whose teacher also moves towards its student).

    Example:
        >>> ops.convert_to_numpy(kl_from_logits([[2.0, 0.0, -1.0]], [[0.5, 0.5, 0.0]])).round(4)
        array([0.4548], dtype=float32)
    """
    target_logits = ops.cast(target_logits, "float32")
    if stop_target_gradient:
        target_logits = ops.stop_gradient(target_logits)
    logits = ops.cast(logits, "float32")
    log_p = ops.log_softmax(target_logits, axis=-1)
    log_q = ops.log_softmax(logits, axis=-1)
    return ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)


def softened_kl(
    target_logits,
    logits,
    temperature: float = 1.0,
    kl_scale: str = "t2",
    stop_target_gradient: bool = True,
):
    """Per-sample ``KL(sg(p_target^T) || p^T)``, times ``T**2`` when ``kl_scale="t2"``.

    Args:
        target_logits: ``[batch, classes]`` logits of the target (teacher) side.
        logits: ``[batch, classes]`` logits of the learner.
        temperature: softening temperature ``T > 0``.
        kl_scale: ``"t2"`` multiplies by ``T**2`` (Hinton et al.) so the gradient scale does not shrink
            with ``T``; ``"none"`` leaves it out, as the official BYOT code does.
        stop_target_gradient: True (the default) stop-gradients the target; False sends
            gradient into both sides (Self-Guidance's ``teacher_gradient=True``).

    Returns:
        ``[batch]`` tensor.

    Example:
        >>> t, s = [[2.0, 0.0, -1.0]], [[0.5, 0.5, 0.0]]
        >>> ops.convert_to_numpy(softened_kl(t, s, temperature=2.0, kl_scale="none")).round(4)
        array([0.1511], dtype=float32)
        >>> ops.convert_to_numpy(softened_kl(t, s, temperature=2.0, kl_scale="t2")).round(4)
        array([0.6045], dtype=float32)
    """
    t = validation.positive(temperature, "temperature")
    check_kl_scale(kl_scale)
    kl = kl_from_logits(
        ops.cast(target_logits, "float32") / t,
        ops.cast(logits, "float32") / t,
        stop_target_gradient,
    )
    return kl * (t * t) if kl_scale == "t2" else kl


def symmetric_kl(logits_a, logits_b, temperature: float = 1.0, kl_scale: str = "t2"):
    """Per-sample ``KL(sg(p_b^T) || p_a^T) + KL(sg(p_a^T) || p_b^T)``: the mutual-learning pair.

    Each direction sends gradient only into its learner side (``a`` learns from a frozen ``b`` and
    vice versa), which is the gradient the two-view paper derives for each branch.

    Reference: Xu & Liu, "Data-Distortion Guided Self-Distillation for Deep Neural Networks", AAAI 2019.

    Example:
        >>> a, b = [[2.0, 0.0, -1.0]], [[0.5, 0.5, 0.0]]
        >>> ops.convert_to_numpy(symmetric_kl(a, b, temperature=2.0, kl_scale="none")).round(4)
        array([0.3037], dtype=float32)
    """
    return softened_kl(logits_b, logits_a, temperature, kl_scale) + softened_kl(
        logits_a, logits_b, temperature, kl_scale
    )


def soft_target_cross_entropy(targets, logits):
    """Per-sample ``-sum_k sg(targets_k) * log_softmax(logits)_k``.

    ``targets`` are probability vectors (one-hot labels, smoothed or PS-KD soft targets).

    Example:
        >>> z = [[2.0, 0.0, -1.0]]
        >>> ops.convert_to_numpy(soft_target_cross_entropy([[0.0, 1.0, 0.0]], z)).round(4)
        array([2.1698], dtype=float32)
    """
    targets = ops.stop_gradient(ops.cast(targets, "float32"))
    return -ops.sum(targets * ops.log_softmax(ops.cast(logits, "float32"), axis=-1), axis=-1)


def feature_l2(target_features, features):
    """Per-sample squared L2 distance ``||F - sg(F_target)||_2^2``, summed over feature dimensions.

    Feature maps of any rank are flattened per sample.

    Example:
        >>> ops.convert_to_numpy(feature_l2([[1.0, 2.0]], [[0.0, 0.0]]))
        array([5.], dtype=float32)
    """
    target = _flatten(ops.stop_gradient(ops.cast(target_features, "float32")))
    diff = _flatten(ops.cast(features, "float32")) - target
    return ops.sum(ops.square(diff), axis=-1)


def feature_kl(target_features, features):
    """Per-sample ``KL(softmax(sg(F_target)) || softmax(F))`` over flattened feature vectors.

    Used by deep mutual feature learning (`mutual_feature_kl`), where features are normalised by
    softmax.

    Example:
        >>> ops.convert_to_numpy(feature_kl([[2.0, 0.0, -1.0]], [[0.5, 0.5, 0.0]])).round(4)
        array([0.4548], dtype=float32)
    """
    return kl_from_logits(_flatten(target_features), _flatten(features))


def mutual_feature_kl(features: Sequence[Any]):
    """Deep mutual feature loss of Chottananurak et al. (eq. 3), per sample ``[batch]``.

    ``1/(N-1) * sum_{i<N} [KL(F_i || F_N) + KL(F_N || F_i)]`` between the softmax-normalised
    feature vectors of the ``N`` exits, ``F_N`` the deepest. As in deep mutual learning, each
    direction is the loss of its *second* argument, whose target (the first argument) is
    stop-gradiented: ``KL(sg(F_N) || F_i)`` trains exit ``i`` towards the deepest feature and
    ``KL(sg(F_i) || F_N)`` trains the deepest feature towards exit ``i``. So, unlike the BYOT
    terms, the final exit's feature (the backbone) also learns from the shallow ones; no gradient
    flows into the target side of either direction (the pattern of `symmetric_kl`).

    Reference: Chottananurak et al., "Progressive Self-Knowledge Distillation with Mutual
    Learning", eq. 3; Zhang et al., "Deep Mutual Learning", CVPR 2018.

    Args:
        features: ``[F_1, ..., F_N]``, ``N >= 2`` tensors ``[batch, dim]`` (any rank is
            flattened per sample), shallow to deep.

    Example:
        >>> shallow, deepest = [[0.5, 0.5, 0.0]], [[2.0, 0.0, -1.0]]
        >>> ops.convert_to_numpy(mutual_feature_kl([shallow, deepest])).round(4)
        array([1.0156], dtype=float32)
    """
    if len(features) < 2:
        raise ValueError(
            f"`features` must hold at least 2 exits' features (N >= 2), got {len(features)}."
        )
    deepest = features[-1]
    total = None
    for f in features[:-1]:
        pair = feature_kl(deepest, f) + feature_kl(f, deepest)
        total = pair if total is None else total + pair
    return total / float(len(features) - 1)


mutual_feature_loss = mutual_feature_kl  # the name of its logged term; kept for callers


def log_mean_softmax(logits: Sequence[Any], temperature: float = 1.0):
    """``log(mean_k softmax(z_k / T))`` computed stably with logsumexp; ``[batch, classes]``.

    The result is a valid logits tensor whose softmax is the ensemble's mean probability.

    Example:
        >>> ensemble = log_mean_softmax([[[10.0, 0.0]], [[0.0, 10.0]]])
        >>> ops.convert_to_numpy(ops.softmax(ensemble)).round(4)
        array([[0.5, 0.5]], dtype=float32)
    """
    logp = ops.stack(
        [ops.log_softmax(ops.cast(z, "float32") / temperature, axis=-1) for z in logits], axis=0
    )
    return ops.logsumexp(logp, axis=0) - math.log(len(logits))


# BYOT's distillation paths (TPAMI Table 7): which deeper exits a shallow exit imitates.
DISTILLATION_PATHS = ("deepest", "ensemble", "transitive", "dense")


def distillation_references(
    path: str, i: int, logits: Sequence[Any], features: Sequence[Any], temperature: float
):
    """``[(ref_logits, ref_feature), ...]``: what shallow exit ``i`` (0-based) of ``K`` exits
    imitates under a BYOT distillation ``path`` (TPAMI Table 7), one pair per teacher.

    ``"deepest"``: exit ``K``; ``"transitive"``: exit ``i + 1``; ``"dense"``: every deeper exit;
    ``"ensemble"``: all ``K`` exits at once, as reference logits ``T * log(mean_k softmax(z_k /
    T))`` (softened by ``T`` again inside `softened_kl` they give back the mean of the softened
    probabilities) and the mean feature. Reference logits are such that ``softmax(ref / T)`` is
    the reference distribution.

    Example:
        >>> logits = [[[2.0, 0.0]], [[0.0, 2.0]], [[1.0, 1.0]]]
        >>> features = [[[0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]], [[2.0, 2.0, 2.0]]]
        >>> [len(distillation_references(p, 0, logits, features, 3.0))
        ...  for p in ("deepest", "transitive", "dense", "ensemble")]
        [1, 1, 2, 1]
        >>> [(ref_logits, ref_feature)] = distillation_references("ensemble", 0, logits, features, 3.0)
        >>> ops.convert_to_numpy(ops.softmax(ref_logits / 3.0)).round(4)
        array([[0.5, 0.5]], dtype=float32)
        >>> ops.convert_to_numpy(ref_feature).tolist()
        [[1.0, 1.0, 1.0]]
    """
    validation.one_of(path, "path", DISTILLATION_PATHS)
    last = len(logits) - 1
    if path == "deepest":
        return [(logits[last], features[last])]
    if path == "transitive":
        return [(logits[i + 1], features[i + 1])]
    if path == "dense":
        return [(logits[j], features[j]) for j in range(i + 1, last + 1)]
    ref_logits = temperature * log_mean_softmax(logits, temperature)
    ref_features = ops.mean(ops.stack([ops.cast(f, "float32") for f in features]), axis=0)
    return [(ref_logits, ref_features)]


def mean_feature_mmd(features_a, features_b):
    """``|| mean_i h(x_a,i) - mean_i h(x_b,i) ||_2^2``: squared L2 between the batch-mean features.

    A batch statistic (one scalar): the means are over the batch, giving one vector per view, and the
    squared norm is over feature dimensions. Under ``tf.distribute`` it is computed per replica on the
    local batch. Both sides receive gradient.

    Example:
        >>> float(mean_feature_mmd([[1.0, 0.0], [3.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]))
        4.0
    """
    a = ops.mean(_flatten(ops.cast(features_a, "float32")), axis=0)
    b = ops.mean(_flatten(ops.cast(features_b, "float32")), axis=0)
    return ops.sum(ops.square(a - b))


def batch_feature_distance(target_features, features):
    """``|| F - sg(F_target) ||_2`` over the whole batch: one scalar, *not* squared, not averaged.

    The Frobenius norm of the ``[batch, dim]`` difference, i.e. ``sqrt(sum_{j,d} (F_jd -
    T_jd)^2)`` summed over samples *and* feature dimensions before the square root. This is the
    feature hint of the official BYOT code (``torch.dist(adapted_feature, teacher_feature)``, whose
    default ``p=2`` flattens both tensors), as opposed to the paper's per-sample squared norm
    (`feature_l2`). Like `mean_feature_mmd` it is a batch statistic: it grows like
    ``sqrt(batch)``, and under ``tf.distribute`` it is computed per replica on the local batch, so
    with ``R`` replicas the training core's total is the mean of the ``R`` local norms, not the
    norm of the global batch (about ``1 / sqrt(R)`` of it). The target side is stop-gradiented.

    At a zero difference the value is 0 and the gradient 0 (as PyTorch's), not NaN.

    Args:
        target_features: ``[batch, ...]`` reference features (flattened per sample).
        features: ``[batch, ...]`` learner features (e.g. after an adaptation layer).

    Returns:
        A scalar tensor.

    Example:
        >>> float(batch_feature_distance([[3.0], [4.0]], [[0.0], [0.0]]))
        5.0
    """
    target = _flatten(ops.stop_gradient(ops.cast(target_features, "float32")))
    diff = _flatten(ops.cast(features, "float32")) - target
    squares = ops.sum(ops.square(diff))
    positive = squares > 0
    # Double `where`: the sqrt never sees 0, so its gradient stays finite at a zero difference.
    return ops.where(positive, ops.sqrt(ops.where(positive, squares, 1.0)), 0.0)
