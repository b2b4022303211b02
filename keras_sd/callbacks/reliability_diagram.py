"""`ReliabilityDiagram`: per-epoch reliability diagrams and ``val_ece`` / ``val_nll``."""

from __future__ import annotations

import os
import warnings

import numpy as np
import tensorflow as tf

from keras_sd import validation
from keras_sd.callbacks._summary import _iterate, _softmax, _sparse, _SummaryCallback
from keras_sd.metrics import calibration_report
from keras_sd.models.base import CALIBRATION_BINS
from keras_sd.models.multi_exit import MultiExitDistiller
from keras_sd.plotting import reliability_bins, reliability_diagram_from_bins


class ReliabilityDiagram(_SummaryCallback):
    """Per-epoch reliability diagrams and calibration scalars on validation data.

    For every output of the model (all exits and the ensemble of a `MultiExitDistiller` via its
    ``call_exits``; the single output otherwise) it writes the image ``reliability/<output>``
    and adds ``val_<output>_ece`` (%) and ``val_<output>_nll`` to the epoch logs; the deployed
    (primary) output's are also added as ``val_ece`` and ``val_nll``. ECE, NLL and the bins are
    those of `keras_sd.metrics.calibration_report` (equal-width bins on the max softmax).

    Two sources:

    - ``validation_data`` given: the callback predicts it at the end of each written epoch (any
      Keras model).
    - ``validation_data=None``: no second pass. A keras_sd model accumulates the calibration of
      its outputs while ``fit`` validates (`SelfDistillationModel.calibration_state`, in float32
      where the first source computes in float64); the callback draws that, on the epochs ``fit``
      validated (its ``validation_freq``) that ``every_n_epochs`` selects. This halves the cost
      of an evaluated epoch's inspection; ``keras-sd train`` uses it.

    Args:
        log_dir: TensorBoard log directory (images go to ``<log_dir>/validation``).
        validation_data: a `tf.data.Dataset` of ``(images, labels)`` (images may be a dict with
            ``"image"``) or an ``(x, y)`` tuple of arrays; or None to draw ``fit``'s own
            validation pass (keras_sd models only).
        num_bins: calibration bins (with ``validation_data=None``, those the model tracks:
            `keras_sd.models.base.CALIBRATION_BINS`).
        max_samples: use at most this many validation samples (None: all; only with
            ``validation_data``).
        every_n_epochs: write every n-th epoch (and always the last one).
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        validation_data=None,
        *,
        num_bins: int = 10,
        max_samples: int | None = None,
        every_n_epochs: int = 1,
    ):
        super().__init__(log_dir)
        if validation_data is not None and not isinstance(
            validation_data, (tf.data.Dataset, tuple)
        ):
            raise ValueError(
                "`validation_data` must be a tf.data.Dataset, an (x, y) tuple or None (fit's "
                f"validation pass), got {type(validation_data).__name__}."
            )
        num_bins = validation.positive_int(num_bins, "num_bins")
        max_samples = validation.positive_int(max_samples, "max_samples", allow_none=True)
        validation.positive_int(every_n_epochs, "every_n_epochs")
        if validation_data is None and max_samples is not None:
            raise ValueError(
                f"`max_samples` ({max_samples}) needs `validation_data`: with "
                "validation_data=None the diagram covers fit's whole validation pass."
            )
        if validation_data is None and num_bins != CALIBRATION_BINS:
            raise ValueError(
                f"`num_bins` must be {CALIBRATION_BINS} (the bins a keras_sd model tracks) with "
                f"validation_data=None, got {num_bins}; pass validation_data for other bins."
            )
        self.validation_data = validation_data
        self.num_bins = num_bins
        self.max_samples = max_samples
        self.every_n_epochs = every_n_epochs
        self._predict = None
        self._warned = False

    def on_train_begin(self, logs=None):
        model = self.model
        if self.validation_data is None:
            if not callable(getattr(model, "calibration_state", None)):
                raise ValueError(
                    "ReliabilityDiagram(validation_data=None) draws the calibration a keras_sd "
                    f"model tracks during fit's validation; {type(model).__name__} does not "
                    "track it: pass `validation_data`."
                )
            return
        if isinstance(model, MultiExitDistiller):
            fn = lambda x: model.call_exits(x, training=False)  # noqa: E731
        else:
            fn = lambda x: {"output": model(x, training=False)}  # noqa: E731
        self._predict = tf.function(fn, reduce_retracing=True)

    def outputs(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{output: (probs [N, C], labels [N])}`` on the validation data, current weights."""
        if self.validation_data is None:
            raise ValueError(
                "`outputs()` predicts `validation_data`, which is None here; use "
                "`model.calibration_state()` for fit's validation pass."
            )
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

    def _from_fit(self, epoch):
        """``{output: calibration_state entry}`` of fit's validation pass, or None if this
        epoch did not validate."""
        state = self.model.calibration_state()
        if not state or any(v["num_examples"] == 0 for v in state.values()):
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"ReliabilityDiagram(validation_data=None): fit did not validate at epoch "
                    f"{epoch + 1}, so there is no diagram to draw; give fit validation_data and "
                    "a validation_freq that includes the epochs every_n_epochs selects.",
                    stacklevel=2,
                )
            return None
        return state

    def _from_pass(self):
        result = {}
        for name, (probs, labels) in self.outputs().items():
            report = calibration_report(probs, labels, num_bins=self.num_bins)
            result[name] = {
                **reliability_bins(probs, labels, self.num_bins),
                "ece": report["ece"],
                "nll": report["nll"],
            }
        return result

    def on_epoch_end(self, epoch, logs=None):
        if not self.writes_epoch(epoch):
            return
        outputs = self._from_pass() if self.validation_data is not None else self._from_fit(epoch)
        if outputs is None:
            return
        primary = self._primary(outputs)
        with self.writer.as_default():
            for name, stats in outputs.items():
                image = reliability_diagram_from_bins(
                    stats, ece=stats["ece"], nll=stats["nll"], title=name
                )
                tf.summary.image(f"reliability/{name}", image[None], step=epoch)
                if logs is not None:
                    prefix = "val_" if name == "output" else f"val_{name}_"
                    logs[f"{prefix}ece"] = stats["ece"]
                    logs[f"{prefix}nll"] = stats["nll"]
                    if name == primary:
                        logs["val_ece"] = stats["ece"]
                        logs["val_nll"] = stats["nll"]
        self.writer.flush()


__all__ = ["ReliabilityDiagram"]
