"""`ReliabilityDiagram`: per-epoch reliability diagrams and ``val_ece`` / ``val_nll``."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from keras_sd import validation
from keras_sd.callbacks._summary import _iterate, _softmax, _sparse, _SummaryCallback
from keras_sd.metrics import calibration_report
from keras_sd.models.multi_exit import MultiExitDistiller
from keras_sd.plotting import reliability_diagram_image


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
        validation.positive_int(every_n_epochs, "every_n_epochs")
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
        if not self.writes_epoch(epoch):
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


__all__ = ["ReliabilityDiagram"]
