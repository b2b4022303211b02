"""TensorBoard callbacks: what `keras.callbacks.TensorBoard` does not already write.

Keras' own callback already writes, per epoch, every entry of the epoch ``logs`` as a scalar:
the total ``loss``, every loss term (``ce_loss``, ``kl_loss``, ...), every output's accuracy and
top-5 (train under ``train/``, ``val_*`` under ``validation/``), the ``learning_rate`` (it reads the
optimizer's schedule), and the scheduled weights that `keras_sd.callbacks` and
`keras_sd.pskd.PSKDAlphaScheduler` put into the logs (``kl_loss_weight``,
``feature_loss_weight``, ``pskd_alpha_t``) when they come before it in the callback list. keras-tuner adds the HParams
entry of every trial itself (it patches a ``TensorBoard`` callback's ``log_dir`` per trial and
appends ``hparams.api.KerasCallback``). What is missing, and added here:

- `ReliabilityDiagram`: per epoch, a reliability diagram image of every output on the validation
  data, and ``val_ece`` / ``val_nll`` (``val_<output>_ece`` ... for multi-output models) added to
  the logs, so TensorBoard plots them and a tuner can optimise them.
- `AttentionMaps`: per epoch, the attention mask of every exit of a `MultiExitDistiller` on a
  fixed set of validation images.
- `EarlyExitPlot`: the early-exit accuracy / acceleration plot when ``thresholds.json`` (written
  by ``keras-sd thresholds``) exists in the run directory.
- `RecipeHParams`: the HParams entry of a plain ``keras-sd train`` run (the recipe's scalar fields),
  so separate runs compare in the HParams dashboard like tuner trials.

All images go to ``<log_dir>/validation`` (they describe validation data), next to Keras' own
validation scalars; summary steps are epochs, like Keras' ``epoch_*`` scalars. Place these
callbacks *before* ``keras.callbacks.TensorBoard`` so the scalars they add to the logs are written.

Reference: calibration conventions of `keras_sd.metrics` (Guo et al., "On Calibration of Modern
Neural Networks", ICML 2017); attention exits of Zhang, Bao & Ma, "Self-Distillation: Towards
Efficient and Compact Neural Networks", TPAMI, Fig. 3(a); early exit: same paper, section 3.3.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import warnings
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_sd import validation
from keras_sd.metrics import calibration_report
from keras_sd.models.multi_exit import MultiExitDistiller

VALIDATION = "validation"


# ---------------------------------------------------------------------------- NumPy helpers
def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def reliability_bins(probs, labels, num_bins: int = 10) -> dict[str, np.ndarray]:
    """Per-bin count, mean confidence and accuracy of the max-softmax confidence.

    Bins follow `keras_sd.metrics`: bin ``m`` (1-based) holds ``(m-1)/M < c <= m/M`` and a
    confidence of exactly 0 goes to the first bin; empty bins have confidence and accuracy NaN.

    Args:
        probs: ``[N, num_classes]`` probabilities.
        labels: ``[N]`` class indices.
        num_bins: number of equal-width bins.

    Returns:
        ``{"count", "confidence", "accuracy", "edges"}`` (``edges`` has ``num_bins + 1`` entries).
    """
    num_bins = validation.positive_int(num_bins, "num_bins")
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"`probs` must have shape [N, num_classes], got {probs.shape}.")
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if labels.shape[0] != probs.shape[0]:
        raise ValueError(
            f"`labels` must have one entry per row of `probs` ({probs.shape[0]}), "
            f"got {labels.shape[0]}."
        )
    confidence = probs.max(axis=1)
    true_p = probs[np.arange(len(labels)), labels]
    correct = (probs > true_p[:, None]).sum(axis=1) == 0
    bins = np.clip(np.ceil(confidence * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    count = np.bincount(bins, minlength=num_bins).astype(np.float64)
    conf_sum = np.bincount(bins, weights=confidence, minlength=num_bins)
    corr_sum = np.bincount(bins, weights=correct.astype(np.float64), minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "count": count,
            "confidence": np.where(count > 0, conf_sum / count, np.nan),
            "accuracy": np.where(count > 0, corr_sum / count, np.nan),
            "edges": np.linspace(0.0, 1.0, num_bins + 1),
        }


def _figure_to_image(fig) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` of a matplotlib figure (closed afterwards)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    plt.close(fig)
    image = tf.io.decode_png(buf.getvalue(), channels=3)
    return np.asarray(image)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def reliability_diagram_image(probs, labels, num_bins: int = 10, title: str = "") -> np.ndarray:
    """A reliability diagram as an RGB uint8 image ``[H, W, 3]``.

    Bars: accuracy per confidence bin; the diagonal is perfect calibration; red bars show the gap
    between accuracy and mean confidence of each bin; the title carries ECE (%) and NLL as in
    `keras_sd.metrics.calibration_report`.
    """
    plt = _pyplot()
    stats = reliability_bins(probs, labels, num_bins)
    report = calibration_report(probs, labels, num_bins=num_bins)
    edges = stats["edges"]
    width = edges[1] - edges[0]
    centres = edges[:-1] + width / 2
    acc = np.nan_to_num(stats["accuracy"])
    conf = np.where(np.isnan(stats["confidence"]), centres, stats["confidence"])
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(4.0, 4.6), dpi=80, gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    top.bar(centres, acc, width=width * 0.95, color="#4c72b0", label="accuracy")
    gap_low = np.minimum(acc, conf)
    top.bar(
        centres,
        np.abs(acc - conf) * (stats["count"] > 0),
        bottom=gap_low,
        width=width * 0.95,
        color="#dd4444",
        alpha=0.5,
        label="gap",
    )
    top.plot([0, 1], [0, 1], "k--", linewidth=1)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=8)
    top.set_title(f"{title}  ECE {report['ece']:.2f}%  NLL {report['nll']:.3f}".strip(), fontsize=9)
    bottom.bar(
        centres,
        stats["count"] / max(1.0, stats["count"].sum()),
        width=width * 0.95,
        color="#888888",
    )
    bottom.set_xlabel("confidence (max softmax)")
    bottom.set_ylabel("share")
    fig.tight_layout()
    return _figure_to_image(fig)


def _colormap(values: np.ndarray) -> np.ndarray:
    """``[..., 3]`` float RGB in [0, 1] of values in [0, 1] (viridis)."""
    import matplotlib

    return np.asarray(matplotlib.colormaps["viridis"](np.clip(values, 0, 1)))[..., :3]


def _to_display(images: np.ndarray) -> np.ndarray:
    """Per-image min-max scaling to [0, 1] RGB (pipelines yield normalised images)."""
    x = np.asarray(images, dtype=np.float64)
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    hi = x.max(axis=(1, 2, 3), keepdims=True)
    x = (x - lo) / np.maximum(hi - lo, 1e-12)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return x[..., :3]


def attention_panels(images: np.ndarray, masks: np.ndarray, min_size: int = 96) -> np.ndarray:
    """Side-by-side panels ``[N, H', 2 W', 3]`` uint8: the image and its attention heat map.

    The mask is averaged over channels and min-max scaled per image (the raw mask lies in
    ``[0.5, 1)``, see `keras_sd.layers.exits.ExitAttention`), resized to the image size, and
    both are enlarged (nearest neighbour) to at least ``min_size`` pixels so 8x8 digits are visible.
    """
    images = _to_display(images)
    m = np.asarray(masks, dtype=np.float64).mean(axis=-1)  # [N, h, w]
    lo = m.min(axis=(1, 2), keepdims=True)
    hi = m.max(axis=(1, 2), keepdims=True)
    m = (m - lo) / np.maximum(hi - lo, 1e-12)
    h, w = images.shape[1:3]
    m = np.asarray(tf.image.resize(m[..., None], (h, w), method="bilinear"))[..., 0]
    heat = _colormap(m)
    panel = np.concatenate([images, heat], axis=2)
    scale = max(1, int(np.ceil(min_size / max(h, 1))))
    panel = np.repeat(np.repeat(panel, scale, axis=1), scale, axis=2)
    return (np.clip(panel, 0, 1) * 255).round().astype(np.uint8)


# ---------------------------------------------------------------------------- data helpers
def _split(x):
    if isinstance(x, Mapping):
        return x["image"]
    return x


def take_images(data, num_images: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The first ``num_images`` images (and labels) of a dataset or an ``(x, y)`` tuple."""
    num_images = validation.positive_int(num_images, "num_images")
    if isinstance(data, tf.data.Dataset):
        xs, ys, n = [], [], 0
        for batch in data:
            x, y = (batch[0], batch[1]) if isinstance(batch, tuple) else (batch, None)
            xs.append(np.asarray(_split(x)))
            if y is not None:
                ys.append(np.asarray(y))
            n += len(xs[-1])
            if n >= num_images:
                break
        if not xs:
            raise ValueError("`validation_data` is empty; need at least one image.")
        return np.concatenate(xs)[:num_images], (np.concatenate(ys)[:num_images] if ys else None)
    if isinstance(data, tuple) and len(data) >= 1:
        x = np.asarray(_split(data[0]))[:num_images]
        y = np.asarray(data[1])[:num_images] if len(data) > 1 else None
        if len(x) == 0:
            raise ValueError("`validation_data` is empty; need at least one image.")
        return x, y
    raise ValueError(
        f"`validation_data` must be a tf.data.Dataset or an (x, y) tuple, got {type(data).__name__}."
    )


def _iterate(data, max_samples: int | None):
    """Yields ``(images, labels)`` NumPy batches, at most ``max_samples`` samples in all."""
    seen = 0
    if isinstance(data, tuple):
        x, y = np.asarray(_split(data[0])), np.asarray(data[1])
        stop = len(x) if max_samples is None else min(len(x), max_samples)
        for s in range(0, stop, 256):
            yield x[s : min(s + 256, stop)], y[s : min(s + 256, stop)]
        return
    for x, y in data:
        x, y = np.asarray(_split(x)), np.asarray(y)
        if max_samples is not None:
            room = max_samples - seen
            if room <= 0:
                return
            x, y = x[:room], y[:room]
        seen += len(x)
        yield x, y


def _sparse(labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == num_classes and num_classes > 1:
        return labels.argmax(axis=1)
    return labels.reshape(-1).astype(np.int64)


# ---------------------------------------------------------------------------- callbacks
class _SummaryCallback(keras.callbacks.Callback):
    """Base: a lazily created file writer under ``<log_dir>/<subdir>``, flushed after writing."""

    def __init__(self, log_dir: str | os.PathLike, subdir: str = VALIDATION):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ValueError(f"`log_dir` must be a non-empty path, got {log_dir!r}.")
        self.log_dir = str(log_dir)
        self.subdir = subdir
        self._writer = None

    @property
    def writer(self):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, self.subdir))
        return self._writer

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __deepcopy__(self, memo):
        # keras-tuner deep-copies search callbacks; writers and datasets are not copyable, and a
        # fresh writer per copy is what a new trial needs anyway.
        clone = object.__new__(type(self))
        for key, value in self.__dict__.items():
            if key in ("_writer", "_predict"):
                clone.__dict__[key] = None
            elif key in ("_model", "model") or isinstance(value, tf.data.Dataset):
                clone.__dict__[key] = value
            else:
                import copy

                clone.__dict__[key] = copy.deepcopy(value, memo)
        return clone


class ReliabilityDiagram(_SummaryCallback):
    """Per-epoch reliability diagrams and calibration scalars on validation data.

    For every output of the model (all exits and the ensemble of a `MultiExitDistiller` via its
    ``call_exits``; the single output otherwise) it writes the image ``reliability/<output>``
    and adds ``val_<output>_ece`` (%) and ``val_<output>_nll`` to the epoch logs; the deployed
    (primary) output's are also added as ``val_ece`` and ``val_nll``. ECE, NLL and the bins are
    those of `keras_sd.metrics.calibration_report` (equal-width bins on the max softmax).

    Args:
        log_dir: TensorBoard log directory (images go to ``<log_dir>/validation``).
        validation_data: a `tf.data.Dataset` of ``(images, labels)`` (images may be a dict with
            ``"image"``) or an ``(x, y)`` tuple of arrays.
        num_bins: calibration bins.
        max_samples: use at most this many validation samples (None: all).
        every_n_epochs: write every n-th epoch (and always the last one).
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        validation_data,
        *,
        num_bins: int = 10,
        max_samples: int | None = None,
        every_n_epochs: int = 1,
    ):
        super().__init__(log_dir)
        if validation_data is None:
            raise ValueError("`validation_data` is required, got None.")
        if not isinstance(validation_data, (tf.data.Dataset, tuple)):
            raise ValueError(
                "`validation_data` must be a tf.data.Dataset or an (x, y) tuple, got "
                f"{type(validation_data).__name__}."
            )
        num_bins = validation.positive_int(num_bins, "num_bins")
        max_samples = validation.positive_int(max_samples, "max_samples", allow_none=True)
        if (
            isinstance(every_n_epochs, bool)
            or not isinstance(every_n_epochs, int)
            or every_n_epochs < 1
        ):
            raise ValueError(f"`every_n_epochs` must be a positive int, got {every_n_epochs!r}.")
        self.validation_data = validation_data
        self.num_bins = num_bins
        self.max_samples = max_samples
        self.every_n_epochs = every_n_epochs
        self._predict = None

    def on_train_begin(self, logs=None):
        model = self.model
        if isinstance(model, MultiExitDistiller):
            fn = lambda x: model.call_exits(x, training=False)  # noqa: E731
        else:
            fn = lambda x: {"output": model(x, training=False)}  # noqa: E731
        self._predict = tf.function(fn, reduce_retracing=True)

    def outputs(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{output: (probs [N, C], labels [N])}`` on the validation data, current weights."""
        if self._predict is None:
            self.on_train_begin()
        logits: dict[str, list] = {}
        labels = []
        for x, y in _iterate(self.validation_data, self.max_samples):
            out = self._predict(tf.convert_to_tensor(x))
            for name, value in out.items():
                logits.setdefault(name, []).append(np.asarray(value))
            labels.append(y)
        if not labels:
            raise ValueError("`validation_data` is empty; the reliability diagram needs samples.")
        result = {}
        for name, parts in logits.items():
            z = np.concatenate(parts)
            result[name] = (_softmax(z), _sparse(np.concatenate(labels), z.shape[-1]))
        return result

    def _primary(self, names) -> str:
        declared = getattr(self.model, "tracked_outputs", None)
        if declared and declared[0] in names:
            return declared[0]
        return "output" if "output" in names else sorted(names)[0]

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 == int(self.params.get("epochs") or 0) if self.params else False
        if (epoch + 1) % self.every_n_epochs and not last:
            return
        outputs = self.outputs()
        primary = self._primary(outputs)
        with self.writer.as_default():
            for name, (probs, labels) in outputs.items():
                report = calibration_report(probs, labels, num_bins=self.num_bins)
                image = reliability_diagram_image(probs, labels, self.num_bins, title=name)
                tf.summary.image(f"reliability/{name}", image[None], step=epoch)
                if logs is not None:
                    prefix = "val_" if name == "output" else f"val_{name}_"
                    logs[f"{prefix}ece"] = report["ece"]
                    logs[f"{prefix}nll"] = report["nll"]
                    if name == primary:
                        logs["val_ece"] = report["ece"]
                        logs["val_nll"] = report["nll"]
        self.writer.flush()


def has_attention_exits(model) -> bool:
    """True for a `MultiExitDistiller` whose shallow exits have attention modules."""
    return isinstance(model, MultiExitDistiller) and all(
        # A bottleneck exit head has no attention module at all.
        getattr(h, "attention_module", None) is not None
        for h in model.exit_heads
    )


class AttentionMaps(_SummaryCallback):
    """Attention masks of every shallow exit on a fixed set of validation images, per epoch.

    Writes ``attention/exit<i>``: one panel per image, the image next to the channel-mean of the
    exit's attention mask (`keras_sd.layers.exits.ExitAttention.attention_mask`, inference mode),
    min-max scaled per image. The images are the first ``num_images`` of ``validation_data``,
    taken once, so epochs compare on the same images.

    Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural
    Networks", TPAMI, Fig. 3(a) and Fig. 6 (attention visualisation).

    Args:
        log_dir: TensorBoard log directory (images go to ``<log_dir>/validation``).
        validation_data: dataset or ``(x, y)`` tuple the images are taken from.
        num_images: how many images.
        every_n_epochs: write every n-th epoch (and always the last one).
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        validation_data,
        *,
        num_images: int = 4,
        every_n_epochs: int = 1,
    ):
        super().__init__(log_dir)
        if (
            isinstance(every_n_epochs, bool)
            or not isinstance(every_n_epochs, int)
            or every_n_epochs < 1
        ):
            raise ValueError(f"`every_n_epochs` must be a positive int, got {every_n_epochs!r}.")
        self.images, _ = take_images(validation_data, num_images)
        self.every_n_epochs = every_n_epochs

    def masks(self) -> list[np.ndarray]:
        """Attention mask of every shallow exit, ``[num_images, h_i, w_i, C_i]``, shallow first."""
        model = self.model
        if not has_attention_exits(model):
            raise ValueError(
                f"AttentionMaps needs a MultiExitDistiller with attention exits, got "
                f"{type(model).__name__}."
            )
        x = tf.convert_to_tensor(self.images, dtype="float32")
        maps = model.exit_graph.feature_maps(x, training=False)
        return [
            np.asarray(head.attention_module.attention_mask(m, training=False))
            for head, m in zip(model.exit_heads, maps)
        ]

    def on_train_begin(self, logs=None):
        if not has_attention_exits(self.model):
            raise ValueError(
                f"AttentionMaps needs a MultiExitDistiller with attention exits, got "
                f"{type(self.model).__name__}."
            )

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 == int(self.params.get("epochs") or 0) if self.params else False
        if (epoch + 1) % self.every_n_epochs and not last:
            return
        with self.writer.as_default():
            for i, mask in enumerate(self.masks(), start=1):
                panels = attention_panels(self.images, mask)
                tf.summary.image(f"attention/exit{i}", panels, step=epoch, max_outputs=len(panels))
        self.writer.flush()


# ---------------------------------------------------------------------------- early exit
_ACC_KEYS = ("accuracy", "acc", "top1")
_SPEED_KEYS = ("mac_acceleration", "acceleration", "speedup", "measured_acceleration")


def _pick(row: Mapping, keys) -> float | None:
    for key in keys:
        if key in row and isinstance(row[key], (int, float)) and not isinstance(row[key], bool):
            return float(row[key])
    return None


def early_exit_points(payload: Mapping) -> dict[str, Any]:
    """Reads a ``thresholds.json`` payload: ``{"table": [(acceleration, accuracy)...], "sweep":
    [...],
    "chosen": (acceleration, accuracy) | None, "thresholds": [...] | None, "baseline": float |
    None}``.

    Tolerant of the layout: the trade-off rows are the first list of dicts found under
    ``table`` / ``trade_off`` / ``tradeoff`` / ``sweep`` / ``rows`` (each with an accuracy key:
    ``accuracy`` | ``acc`` | ``top1`` and an acceleration key: ``mac_acceleration`` |
    ``acceleration`` | ``speedup`` | ``measured_acceleration``); the shared-threshold sweep is
    ``sweep.table`` when present (the layout `keras_sd.inference.run` writes); the chosen point
    is the payload's own (or its ``best`` entry's) accuracy and acceleration, the baseline its
    ``final_exit_accuracy`` (or ``baseline_accuracy``).
    """
    if not isinstance(payload, Mapping):
        raise ValueError(
            f"`thresholds.json` must hold a JSON object, got {type(payload).__name__}."
        )
    table = []
    for key in ("table", "trade_off", "tradeoff", "sweep", "rows"):
        rows = payload.get(key)
        if isinstance(rows, Mapping):  # e.g. {"ga": [...], "sweep": [...]}
            rows = next((v for v in rows.values() if isinstance(v, list)), None)
        if isinstance(rows, list) and rows and all(isinstance(r, Mapping) for r in rows):
            for r in rows:
                acc, speed = _pick(r, _ACC_KEYS), _pick(r, _SPEED_KEYS)
                if acc is not None and speed is not None:
                    table.append((speed, acc))
            if table:
                break
    sweep = []
    sweep_rows = (
        payload.get("sweep", {}).get("table") if isinstance(payload.get("sweep"), Mapping) else None
    )
    if isinstance(sweep_rows, list):
        for r in sweep_rows:
            if isinstance(r, Mapping):
                acc, speed = _pick(r, _ACC_KEYS), _pick(r, _SPEED_KEYS)
                if acc is not None and speed is not None:
                    sweep.append((speed, acc))
    best = payload.get("best") if isinstance(payload.get("best"), Mapping) else payload
    acc, speed = _pick(best, _ACC_KEYS), _pick(best, _SPEED_KEYS)
    thresholds = best.get("thresholds", payload.get("thresholds"))
    baseline = _pick(payload, ("baseline_accuracy", "final_exit_accuracy"))
    if not table and (acc is None or speed is None):
        raise ValueError(
            "`thresholds.json` has no accuracy/acceleration: expected a `table` of rows with "
            "'accuracy' and 'acceleration' (or 'mac_acceleration') keys."
        )
    return {
        "table": table,
        "sweep": sweep,
        "chosen": None if acc is None or speed is None else (speed, acc),
        "thresholds": thresholds if isinstance(thresholds, list) else None,
        "baseline": baseline,
    }


def early_exit_image(payload: Mapping) -> np.ndarray:
    """Accuracy against acceleration of the early-exit trade-off, RGB uint8 ``[H, W, 3]``."""
    plt = _pyplot()
    points = early_exit_points(payload)
    fig, ax = plt.subplots(figsize=(4.6, 3.6), dpi=80)
    if points["table"]:
        speed, acc = np.asarray(points["table"]).T
        order = np.argsort(speed)
        ax.plot(speed[order], acc[order], "o-", color="#4c72b0", markersize=3, label="trade-off")
    if points["sweep"]:
        speed, acc = np.asarray(points["sweep"]).T
        order = np.argsort(speed)
        ax.plot(
            speed[order], acc[order], "s:", color="#55a868", markersize=3, label="shared threshold"
        )
    if points["chosen"] is not None:
        ax.plot(*points["chosen"], "*", color="#dd4444", markersize=14, label="chosen")
    if points["baseline"] is not None:
        ax.axhline(points["baseline"], color="k", linestyle="--", linewidth=1, label="final exit")
    ax.set_xlabel("acceleration (x)")
    ax.set_ylabel("accuracy")
    if points["thresholds"]:
        ax.set_title(
            "thresholds " + ", ".join(f"{float(t):.2f}" for t in points["thresholds"]), fontsize=9
        )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _figure_to_image(fig)


class EarlyExitPlot(_SummaryCallback):
    """Logs ``early_exit/trade_off`` when ``thresholds_path`` exists (and again when it changes).

    Checked at the start of training and at the end of every epoch; a file it cannot read is
    reported with a warning and skipped, never stopping training.

    Args:
        log_dir: TensorBoard log directory (image goes to ``<log_dir>/validation``).
        thresholds_path: the run's ``thresholds.json`` (written by ``keras-sd thresholds``).
    """

    def __init__(self, log_dir: str | os.PathLike, thresholds_path: str | os.PathLike):
        super().__init__(log_dir)
        if not isinstance(thresholds_path, (str, os.PathLike)) or not str(thresholds_path):
            raise ValueError(f"`thresholds_path` must be a path, got {thresholds_path!r}.")
        self.thresholds_path = str(thresholds_path)
        self._seen = None

    def write(self, step: int) -> bool:
        """Writes the plot if the file exists and changed since the last write; True if written."""
        path = pathlib.Path(self.thresholds_path)
        if not path.is_file():
            return False
        stamp = (path.stat().st_mtime_ns, path.stat().st_size)
        if stamp == self._seen:
            return False
        try:
            image = early_exit_image(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError) as err:
            warnings.warn(f"EarlyExitPlot: skipping {path}: {err}", stacklevel=2)
            self._seen = stamp
            return False
        with self.writer.as_default():
            tf.summary.image("early_exit/trade_off", image[None], step=step)
        self.writer.flush()
        self._seen = stamp
        return True

    def on_train_begin(self, logs=None):
        self.write(step=0)

    def on_epoch_end(self, epoch, logs=None):
        self.write(step=epoch)


# ---------------------------------------------------------------------------- hparams
def _hparam_value(value):
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return json.dumps(value, sort_keys=True, default=str)


def recipe_hparams(recipe) -> dict[str, bool | int | float | str]:
    """The recipe's fields as HParams values (``method_args.alpha``, ``optimizer.learning_rate``, ...).

    Scalars stay scalars; tuples, dicts and None become their JSON text.
    """
    d = recipe.to_dict()
    out: dict[str, Any] = {}
    for key in ("method", "backbone", "epochs", "seed", "precision", "strategy"):
        out[key] = _hparam_value(d[key])
    for group in ("method_args", "backbone_args"):
        for k, v in d[group].items():
            out[f"{group}.{k}"] = _hparam_value(v)
    for k in ("name", "learning_rate", "weight_decay", "schedule", "momentum"):
        out[f"optimizer.{k}"] = _hparam_value(d["optimizer"][k])
    for k in ("name", "batch_size", "augment"):
        out[f"data.{k}"] = _hparam_value(d["data"][k])
    return out


class RecipeHParams(keras.callbacks.Callback):
    """HParams plugin entry of a training run: the recipe's fields (`recipe_hparams`).

    Writes the session start at ``on_train_begin`` and its end at ``on_train_end`` to
    ``log_dir`` (the parent of Keras' ``train/`` and ``validation/``), as keras-tuner does for
    its trials, so the HParams dashboard lists the run with its validation metrics.

    Args:
        log_dir: TensorBoard log directory of the run.
        recipe: the `keras_sd.recipes.Recipe` that runs.
        trial_id: session name (default: the recipe's name).
    """

    def __init__(self, log_dir: str | os.PathLike, recipe, trial_id: str | None = None):
        super().__init__()
        if not hasattr(recipe, "to_dict"):
            raise ValueError(f"`recipe` must be a keras_sd Recipe, got {type(recipe).__name__}.")
        self.log_dir = str(log_dir)
        self.hparams = recipe_hparams(recipe)
        self.trial_id = trial_id or recipe.name
        self._writer = None

    def _write(self, fn):
        writer = tf.summary.create_file_writer(self.log_dir)
        with writer.as_default():
            fn()
        writer.close()

    def on_train_begin(self, logs=None):
        from tensorboard.plugins.hparams import api as hp_api

        self._write(lambda: hp_api.hparams(self.hparams, trial_id=self.trial_id))

    def on_train_end(self, logs=None):
        from tensorboard.plugins.hparams import api_pb2, summary

        raw = summary.session_end_pb(api_pb2.STATUS_SUCCESS).SerializeToString()
        self._write(lambda: tf.summary.experimental.write_raw_pb(raw, step=0))


# ---------------------------------------------------------------------------- assembly
def inspection_callbacks(
    model,
    log_dir: str | os.PathLike,
    validation_data,
    *,
    run_dir: str | os.PathLike | None = None,
    recipe=None,
    num_images: int = 4,
    max_samples: int | None = None,
    every_n_epochs: int = 1,
) -> list[keras.callbacks.Callback]:
    """The callbacks of this module that apply to ``model``, in the order to use them.

    `ReliabilityDiagram` always; `AttentionMaps` for multi-exit models with attention exits;
    `EarlyExitPlot` (``<run_dir>/thresholds.json``) for multi-exit models when ``run_dir`` is
    given; `RecipeHParams` when ``recipe`` is given. Put them before
    ``keras.callbacks.TensorBoard(log_dir)``. ``every_n_epochs`` thins the two per-epoch
    image callbacks (each runs over the validation data) to match an evaluation frequency.
    """
    callbacks: list[keras.callbacks.Callback] = [
        ReliabilityDiagram(
            log_dir, validation_data, max_samples=max_samples, every_n_epochs=every_n_epochs
        )
    ]
    if has_attention_exits(model):
        callbacks.append(
            AttentionMaps(
                log_dir, validation_data, num_images=num_images, every_n_epochs=every_n_epochs
            )
        )
    if run_dir is not None and isinstance(model, MultiExitDistiller):
        callbacks.append(EarlyExitPlot(log_dir, pathlib.Path(run_dir) / "thresholds.json"))
    if recipe is not None:
        callbacks.append(RecipeHParams(log_dir, recipe))
    return callbacks


__all__ = [
    "AttentionMaps",
    "EarlyExitPlot",
    "RecipeHParams",
    "ReliabilityDiagram",
    "attention_panels",
    "early_exit_image",
    "early_exit_points",
    "has_attention_exits",
    "inspection_callbacks",
    "recipe_hparams",
    "reliability_bins",
    "reliability_diagram_image",
    "take_images",
]
