"""Calibration and error metrics of the PS-KD seed's Table 1, as Keras metrics and one function.

Keras metrics (usable in ``compile(metrics=[...])`` and ``evaluate``; the training core passes the
user's sparse labels and the primary output's logits):

- `ExpectedCalibrationError` -- ECE in %, equal-width bins on the max-softmax confidence.
- `NegativeLogLikelihood` -- mean ``-log p_y``.
- `AURC` -- area under the risk-coverage curve, x 1000.
- `TopKError` -- top-k error in %.

`calibration_report(probs, labels)` computes all of them with NumPy for ``metrics.json``;
`bin_statistics(count, confidence_sum, correct_sum)` turns ECE's per-bin sums into the bin means a
reliability diagram draws (`ExpectedCalibrationError.bins()` gives them for a metric's state).

Conventions shared by all:

- Labels are class indices ``[batch]`` / ``[batch, 1]``, or one-hot ``[batch, num_classes]``.
- A prediction is *correct* at top-k when fewer than ``k`` classes score strictly higher than the
  true class (``tf.math.in_top_k``): classes tied with the true class count in its favour. Top-1
  correctness in ECE and AURC uses the same rule, so it never depends on how argmax breaks ties.
- Confidence is the largest softmax probability.
- ECE bins: bin ``m`` (1-based) holds ``(m - 1) / M < confidence <= m / M`` (Guo et al. 2017);
  a confidence of exactly 0 goes to the first bin. The comparison is exact (float64).
- AURC ties: samples with equal confidence are indistinguishable to a selective classifier, so the
  risk at each coverage inside a tie group is its expected value over all orders of the group
  (the group's errors spread evenly over its positions). The result does not depend on input order.

Reference: Chottananurak et al., "Progressive Self-Knowledge Distillation with Mutual Learning"
(KAIST), section 4.1 metrics, as the PS-KD authors' code computes them; ECE: Guo,
Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks", ICML 2017; AURC: Geifman,
Uziel & El-Yaniv, "Bias-Reduced Uncertainty Estimation for Deep Neural Classifiers", ICLR 2019.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_sd import validation

_EPS = 1e-12


def _labels(y_true, num_classes: int):
    """Sparse int32 labels ``[batch]`` from sparse or one-hot labels."""
    y_true = tf.convert_to_tensor(y_true)
    if y_true.shape.rank == 2 and y_true.shape[-1] == num_classes and num_classes > 1:
        return tf.cast(tf.argmax(y_true, axis=-1), tf.int32)
    return tf.cast(tf.reshape(y_true, [-1]), tf.int32)


def _log_probs(y_pred, from_logits: bool):
    y_pred = tf.cast(y_pred, tf.float32)
    if from_logits:
        return tf.nn.log_softmax(y_pred, axis=-1)
    return tf.math.log(tf.clip_by_value(y_pred, _EPS, 1.0))


def _rank_of_label(scores, labels):
    """Number of classes scoring strictly higher than the true class."""
    true_score = tf.gather(scores, labels[:, None], batch_dims=1)
    return tf.reduce_sum(tf.cast(scores > true_score, tf.int32), axis=-1)


def _weights(sample_weight, batch):
    if sample_weight is None:
        return tf.ones([batch], tf.float32)
    return tf.reshape(tf.cast(sample_weight, tf.float32), [-1])


def bin_statistics(count, confidence_sum, correct_sum) -> dict[str, np.ndarray]:
    """Per-bin ``{"count", "confidence", "accuracy", "edges"}`` from per-bin sums.

    ``confidence`` and ``accuracy`` are the bin means (NaN for an empty bin); ``edges`` are the
    ``M + 1`` equal-width bin edges on [0, 1] of the bins described in the module docstring.
    """
    count = np.asarray(count, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "count": count,
            "confidence": np.where(count > 0, np.asarray(confidence_sum) / count, np.nan),
            "accuracy": np.where(count > 0, np.asarray(correct_sum) / count, np.nan),
            "edges": np.linspace(0.0, 1.0, len(count) + 1),
        }


class _LogitMetric(keras.metrics.Metric):
    def __init__(self, from_logits: bool = True, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if not isinstance(from_logits, bool):
            raise ValueError(f"`from_logits` must be a bool, got {from_logits!r}.")
        self.from_logits = from_logits

    def _prepare(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        labels = _labels(y_true, int(y_pred.shape[-1]))
        log_p = _log_probs(y_pred, self.from_logits)
        return labels, log_p

    def get_config(self):
        return {"from_logits": self.from_logits, "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_sd")
class ExpectedCalibrationError(_LogitMetric):
    """Expected calibration error in %: ``100 * sum_m |acc_m - conf_m| * n_m / N``.

    ``M = num_bins`` equal-width bins on the max-softmax confidence (see the module docstring for
    the exact bin edges); empty bins contribute nothing. State is three per-bin sums, so it is
    exact across batches and replicas.

    Args:
        num_bins: number of equal-width bins (10 in the seed).
        from_logits: ``y_pred`` are logits (default) or probabilities.
        name: metric name.
    """

    def __init__(self, num_bins: int = 10, from_logits: bool = True, name="ece", dtype=None):
        super().__init__(from_logits=from_logits, name=name, dtype=dtype)
        self.num_bins = validation.positive_int(num_bins, "num_bins")
        shape = (self.num_bins,)
        self.bin_count = self.add_variable(shape, "zeros", "float32", name="bin_count")
        self.bin_confidence = self.add_variable(shape, "zeros", "float32", name="bin_confidence")
        self.bin_correct = self.add_variable(shape, "zeros", "float32", name="bin_correct")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels, log_p = self._prepare(y_true, y_pred)
        confidence = tf.exp(tf.reduce_max(log_p, axis=-1))
        correct = tf.cast(_rank_of_label(log_p, labels) == 0, tf.float32)
        w = _weights(sample_weight, tf.shape(labels)[0])
        # ceil(c * M) - 1 in float64 is exact for float32 c, giving (m-1)/M < c <= m/M.
        scaled = tf.cast(confidence, tf.float64) * self.num_bins
        bins = tf.clip_by_value(tf.cast(tf.math.ceil(scaled), tf.int32) - 1, 0, self.num_bins - 1)
        self.bin_count.assign_add(tf.math.unsorted_segment_sum(w, bins, self.num_bins))
        self.bin_confidence.assign_add(
            tf.math.unsorted_segment_sum(w * confidence, bins, self.num_bins)
        )
        self.bin_correct.assign_add(tf.math.unsorted_segment_sum(w * correct, bins, self.num_bins))

    def bins(self) -> dict[str, np.ndarray]:
        """The accumulated bins as `bin_statistics` (what a reliability diagram draws)."""
        return bin_statistics(
            *(
                np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float64)
                for v in (self.bin_count, self.bin_confidence, self.bin_correct)
            )
        )

    def result(self):
        total = tf.reduce_sum(self.bin_count)
        gap = tf.reduce_sum(tf.abs(self.bin_correct - self.bin_confidence))
        return 100.0 * tf.math.divide_no_nan(gap, total)

    def get_config(self):
        return {"num_bins": self.num_bins, **super().get_config()}


@keras.saving.register_keras_serializable(package="keras_sd")
class NegativeLogLikelihood(_LogitMetric):
    """Mean negative log-likelihood ``-log p_y`` (natural log) of the true class.

    Args:
        from_logits: ``y_pred`` are logits (default) or probabilities (clipped at 1e-12).
        name: metric name.
    """

    def __init__(self, from_logits: bool = True, name="nll", dtype=None):
        super().__init__(from_logits=from_logits, name=name, dtype=dtype)
        self.total = self.add_variable((), "zeros", "float32", name="total")
        self.count = self.add_variable((), "zeros", "float32", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels, log_p = self._prepare(y_true, y_pred)
        nll = -tf.gather(log_p, labels[:, None], batch_dims=1)[:, 0]
        w = _weights(sample_weight, tf.shape(labels)[0])
        self.total.assign_add(tf.reduce_sum(w * nll))
        self.count.assign_add(tf.reduce_sum(w))

    def result(self):
        return tf.math.divide_no_nan(self.total, self.count)


@keras.saving.register_keras_serializable(package="keras_sd")
class TopKError(_LogitMetric):
    """Top-k error in %: the share of samples whose true class is not among the top ``k``.

    Ties follow ``tf.math.in_top_k``: correct when fewer than ``k`` classes score strictly higher.

    Args:
        k: 1 for top-1 error, 5 for top-5 error (any positive int).
        from_logits: ``y_pred`` are logits (default) or probabilities.
        name: metric name (default ``top{k}_error``).
    """

    def __init__(self, k: int = 1, from_logits: bool = True, name=None, dtype=None):
        k = validation.positive_int(k, "k")
        super().__init__(from_logits=from_logits, name=name or f"top{k}_error", dtype=dtype)
        self.k = k
        self.wrong = self.add_variable((), "zeros", "float32", name="wrong")
        self.count = self.add_variable((), "zeros", "float32", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = tf.cast(tf.convert_to_tensor(y_pred), tf.float32)
        labels = _labels(y_true, int(y_pred.shape[-1]))
        # Ranks are the same for logits and probabilities, so no softmax is needed here.
        wrong = tf.cast(_rank_of_label(y_pred, labels) >= self.k, tf.float32)
        w = _weights(sample_weight, tf.shape(labels)[0])
        self.wrong.assign_add(tf.reduce_sum(w * wrong))
        self.count.assign_add(tf.reduce_sum(w))

    def result(self):
        return 100.0 * tf.math.divide_no_nan(self.wrong, self.count)

    def get_config(self):
        return {"k": self.k, **super().get_config()}


def _aurc_from_sorted_groups(confidence, error):
    """AURC (not scaled) of float64 vectors, ties handled by expectation; 0 when empty."""
    order = tf.argsort(confidence, direction="DESCENDING", stable=True)
    c = tf.gather(confidence, order)
    e = tf.gather(error, order)
    n = tf.size(c)
    values, group = tf.unique(c)  # sorted, so equal confidences are consecutive: ids 0, 1, ...
    num_groups = tf.size(values)
    size = tf.math.unsorted_segment_sum(tf.ones_like(e), group, num_groups)
    errors = tf.math.unsorted_segment_sum(e, group, num_groups)
    start = tf.cumsum(size, exclusive=True)
    errors_before = tf.cumsum(errors, exclusive=True)
    k = tf.cast(tf.range(1, n + 1), tf.float64)
    inside = k - tf.gather(start, group)  # 1..size within the group
    cumulative = tf.gather(errors_before, group) + inside * tf.gather(errors / size, group)
    return tf.math.divide_no_nan(tf.reduce_sum(cumulative / k), tf.cast(n, tf.float64))


@keras.saving.register_keras_serializable(package="keras_sd")
class AURC(_LogitMetric):
    """Area under the risk-coverage curve, x 1000 (lower is better).

    Samples are sorted by confidence, highest first; the risk at coverage ``k / N`` is the error
    rate of the ``k`` most confident samples and AURC is the mean of those ``N`` risks. Ties: see
    the module docstring (expected risk over the orders of each tie group).

    The metric keeps every confidence and correctness bit in a fixed-capacity buffer, so it is
    exact (not binned). Under ``tf.distribute`` every replica writes its own row of a
    ``[replicas, capacity]`` buffer and the rows are summed on read (the other rows are zero), so
    the result covers all replicas. Create it inside the strategy scope (as ``compile`` does).
    Exceeding ``capacity`` samples on one replica between resets raises an error.

    Args:
        capacity: samples per replica that fit between ``reset_state`` calls (default 50000:
            CIFAR's 10000 test images, ImageNet's 50000 validation images).
        from_logits: ``y_pred`` are logits (default) or probabilities.
        name: metric name.
    """

    def __init__(self, capacity: int = 50_000, from_logits: bool = True, name="aurc", dtype=None):
        super().__init__(from_logits=from_logits, name=name, dtype=dtype)
        self.capacity = validation.positive_int(capacity, "capacity")
        self.replicas = int(tf.distribute.get_strategy().num_replicas_in_sync)
        shape = (self.replicas, self.capacity)
        self.confidences = self.add_variable(shape, "zeros", "float32", name="confidences")
        self.errors = self.add_variable(shape, "zeros", "float32", name="errors")
        self.counts = self.add_variable((self.replicas,), "zeros", "int32", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                "`sample_weight` is not supported by AURC (a ranking metric); got a tensor."
            )
        labels, log_p = self._prepare(y_true, y_pred)
        confidence = tf.exp(tf.reduce_max(log_p, axis=-1))
        error = tf.cast(_rank_of_label(log_p, labels) > 0, tf.float32)
        ctx = tf.distribute.get_replica_context()
        replica = tf.cast(ctx.replica_id_in_sync_group if ctx is not None else 0, tf.int32)
        batch = tf.shape(labels)[0]
        start = tf.convert_to_tensor(self.counts)[replica]
        check = tf.debugging.assert_less_equal(
            start + batch,
            self.capacity,
            message=f"AURC: more than capacity={self.capacity} samples; raise `capacity`",
        )
        with tf.control_dependencies([check]):
            rows = tf.fill([batch], replica)
            index = tf.stack([rows, start + tf.range(batch)], axis=1)
        self.confidences.assign(
            tf.tensor_scatter_nd_update(tf.convert_to_tensor(self.confidences), index, confidence)
        )
        self.errors.assign(
            tf.tensor_scatter_nd_update(tf.convert_to_tensor(self.errors), index, error)
        )
        self.counts.assign_add(batch * tf.one_hot(replica, self.replicas, dtype=tf.int32))

    def result(self):
        valid = tf.sequence_mask(tf.convert_to_tensor(self.counts), self.capacity)
        confidence = tf.cast(tf.boolean_mask(self.confidences, valid), tf.float64)
        error = tf.cast(tf.boolean_mask(self.errors, valid), tf.float64)
        return tf.cast(1000.0 * _aurc_from_sorted_groups(confidence, error), tf.float32)

    def get_config(self):
        return {"capacity": self.capacity, **super().get_config()}


# ---------------------------------------------------------------------------- NumPy report
def calibration_report(probs, labels, *, num_bins: int = 10) -> dict:
    """Top-1/top-5 error (%), NLL, ECE (%) and AURC (x 1000) of predicted probabilities.

    Same conventions as the Keras metrics (module docstring); pure NumPy, for ``metrics.json``.

    Args:
        probs: ``[N, num_classes]`` probabilities (e.g. ``softmax(model.predict(x))``).
        labels: ``[N]`` class indices (or ``[N, 1]``, or one-hot ``[N, num_classes]``).
        num_bins: ECE bins.

    Returns:
        ``{"top1_error", "top5_error", "nll", "ece", "aurc", "num_examples"}`` as Python numbers.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"`probs` must have shape [N, num_classes], got {probs.shape}.")
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == probs.shape[1] and probs.shape[1] > 1:
        labels = labels.argmax(axis=1)
    labels = labels.reshape(-1).astype(np.int64)
    if labels.shape[0] != probs.shape[0]:
        raise ValueError(
            f"`labels` must have one entry per row of `probs` ({probs.shape[0]}), got {labels.shape[0]}."
        )
    num_bins = validation.positive_int(num_bins, "num_bins")
    n = probs.shape[0]
    true_p = probs[np.arange(n), labels]
    rank = (probs > true_p[:, None]).sum(axis=1)
    correct = rank == 0
    confidence = probs.max(axis=1)
    bins = np.clip(np.ceil(confidence * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    gap = sum(abs(correct[bins == m].sum() - confidence[bins == m].sum()) for m in range(num_bins))
    # AURC with ties by expectation.
    order = np.argsort(-confidence, kind="stable")
    c, e = confidence[order], (~correct[order]).astype(np.float64)
    _, start, size = np.unique(-c, return_index=True, return_counts=True)
    group_errors = np.add.reduceat(e, start) if n else np.zeros(0)
    cumulative = np.empty(n)
    before = 0.0
    for s, m, g in zip(start, size, group_errors):
        cumulative[s : s + m] = before + np.arange(1, m + 1) * g / m
        before += g
    aurc = float(np.mean(cumulative / np.arange(1, n + 1))) if n else 0.0
    safe = np.maximum(true_p, _EPS)
    return {
        "top1_error": 100.0 * float(np.mean(rank >= 1)) if n else 0.0,
        "top5_error": 100.0 * float(np.mean(rank >= 5)) if n else 0.0,
        "nll": float(np.mean(-np.log(safe))) if n else 0.0,
        "ece": 100.0 * float(gap) / n if n else 0.0,
        "aurc": 1000.0 * aurc,
        "num_examples": int(n),
    }


__all__ = [
    "AURC",
    "ExpectedCalibrationError",
    "NegativeLogLikelihood",
    "TopKError",
    "bin_statistics",
    "calibration_report",
]
