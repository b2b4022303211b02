"""The one training core every self-distillation method shares.

`SelfDistillationModel` owns `train_step` and `test_step`. A method subclass supplies only
`compute_loss_terms(images, targets, training, index)`, returning its named outputs (logits) and its
named loss terms (one value per sample, or a scalar batch statistic), and declares the weight of
each term to this constructor (``loss_weights``). The core keeps every weight in a non-trainable
variable named after its term (``kl_loss_weight``), so one callback schedules any term of any
method; it reduces every term over the batch, scales for the replica count, sums with the weights,
applies gradients and keeps one `keras.metrics.Mean` per term, plus top-1 / top-5 accuracy of every
output, so TensorBoard shows each term with no extra code.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_sd import _keras_compat, losses, metrics, pskd, validation

OUTPUT = "output"  # name of the single output of single-output models
# Bins of the calibration each model tracks in `test_step` (the PS-KD seed's ECE uses 10).
CALIBRATION_BINS = 10


def check_backbone(backbone) -> None:
    """Raises a ValueError unless ``backbone`` follows the keras_sd backbone contract."""
    if not isinstance(backbone, keras.Model):
        raise ValueError(
            "`backbone` must be a keras.Model returning {'stages', 'features', 'logits'} "
            f"(see keras_sd.backbones), got {type(backbone).__name__}."
        )
    try:
        out = backbone.output
    except (AttributeError, ValueError):  # a model that was never built on an input
        out = None
    if not isinstance(out, Mapping) or not {"stages", "features", "logits"} <= set(out):
        raise ValueError(
            "`backbone` must output a dict with keys 'stages', 'features' and 'logits', got "
            f"{type(out).__name__}{sorted(out) if isinstance(out, Mapping) else ''}. "
            "Wrap a plain Keras model with keras_sd.backbones.from_keras."
        )
    if len(out["stages"]) < 1:
        raise ValueError("`backbone` must expose at least one stage in out['stages'], got none.")


def backbone_num_classes(backbone) -> int:
    """Number of classes of a contract backbone (the width of its logits)."""
    return int(backbone.output["logits"].shape[-1])


class SelfDistillationModel(_keras_compat.FirstReplicaSymbolicBuild, keras.Model):
    """Base class: one `train_step` / `test_step` for every self-distillation method.

    The steps are overridden, not `compute_loss`, because methods run their own forward passes.

    Subclasses implement `compute_loss_terms` and pass their loss terms with their weights and
    the names of their outputs to this constructor. Inputs are image batches, or dicts
    ``{"image": ..., "index": ...}`` when the data pipeline carries per-sample indices (PS-KD).
    Labels are sparse integers ``[batch]`` (or ``[batch, 1]``), or one-hot / soft targets
    ``[batch, num_classes]``.

    Target transform: with ``soft_targets`` (a `keras_sd.pskd.ProgressiveSelfKD`) every method
    trains against PS-KD's progressive targets. The step replaces the training targets by
    ``soft_targets.transform(targets, index)`` before the method's terms, and after the gradient
    update writes the primary output's softmax into the layer's bank
    (``soft_targets.update(index, logits)``); `fit` adds the ``alpha_t`` schedule. Evaluation
    uses the one-hot targets. The model then needs the sample index (``needs_sample_index``).

    Distribution: each per-sample term is averaged over the replica's batch and divided by the
    number of replicas (Keras 3's convention for `keras.losses.Loss`), so the gradients that
    `tf.distribute` sums across replicas equal the single-device gradients on the same global
    batch when replicas get equal batches. Batch statistics (MMD) are computed per replica.

    Weight decay: ``weight_decay`` adds ``0.5 * weight_decay * sum(w ** 2)`` over every trainable
    variable to the objective, so each gradient gains ``weight_decay * w`` *before* momentum. That is
    what PyTorch's ``SGD(weight_decay=...)`` does, which all the papers' code uses (Keras'
    optimizer ``weight_decay`` is decoupled, as in AdamW, and would not reproduce them).

    Loss weights: ``loss_weights`` maps each term the subclass returns to its configured weight
    (kept as given in ``self.loss_weights``). The live weight of term ``t`` is the non-trainable
    float32 variable ``self.term_weights[t]``, named ``f"{t}_weight"``: a callback assigns it
    (`keras_sd.callbacks.DistillationAnnealing`) and the compiled step reads the new value without
    retracing; checkpoints keep it.

    Args:
        backbone: a functional model following the keras_sd backbone contract.
        loss_weights: term name -> weight >= 0, in the order the terms are logged (each term gets
            a Mean tracker and a weight variable). Default: ``{"ce_loss": 1.0}``.
        tracked_outputs: names of the outputs whose accuracy is tracked; the first one is primary.
        calibrated_outputs: names of the outputs whose calibration `test_step` accumulates (see
            `calibration_state`); default: the primary output. Not saved with the model: it
            decides what evaluation accumulates, not what the model computes.
        weight_decay: coupled L2 coefficient, >= 0.
        soft_targets: a `keras_sd.pskd.ProgressiveSelfKD` (PS-KD targets), or None.
        pskd_alpha, num_train_examples, bank_dtype: shorthand for ``soft_targets=
            ProgressiveSelfKD(pskd_alpha, num_train_examples, bank_dtype=bank_dtype)`` (the
            recipes' spelling; `get_config` stores ``soft_targets``).
        term_names: deprecated spelling of ``loss_weights`` with every weight 1.
    """

    def __init__(
        self,
        backbone: keras.Model,
        *,
        loss_weights: Mapping[str, float] | None = None,
        tracked_outputs: Sequence[str] = (OUTPUT,),
        calibrated_outputs: Sequence[str] | None = None,
        weight_decay: float = 0.0,
        soft_targets: pskd.ProgressiveSelfKD | None = None,
        pskd_alpha: float | None = None,
        num_train_examples: int | None = None,
        bank_dtype: str = "float32",
        term_names: Sequence[str] | None = None,
        **kwargs,
    ):
        check_backbone(backbone)
        soft_targets = _soft_targets(soft_targets, pskd_alpha, num_train_examples, bank_dtype)
        super().__init__(**kwargs)
        self.backbone = backbone
        self.num_classes = backbone_num_classes(backbone)
        self.weight_decay = validation.non_negative(weight_decay, "weight_decay")
        self.loss_weights = _check_loss_weights(loss_weights, term_names)
        self.term_names = tuple(self.loss_weights)
        self.tracked_outputs = tuple(tracked_outputs)
        # One non-trainable variable per term, named after it: what schedules assign.
        self.term_weights = {
            name: keras.Variable(
                weight, dtype="float32", trainable=False, autocast=False, name=f"{name}_weight"
            )
            for name, weight in self.loss_weights.items()
        }
        if soft_targets is not None:
            soft_targets.build((None, self.num_classes))  # checks a given width
        self.soft_targets = soft_targets
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.term_trackers = {n: keras.metrics.Mean(name=n) for n in self.term_names}
        if self.weight_decay > 0:
            self.term_trackers["weight_decay_loss"] = keras.metrics.Mean(name="weight_decay_loss")
        k = min(5, self.num_classes)
        self.accuracy_trackers = {}
        for name in self.tracked_outputs:
            prefix = "" if name == OUTPUT else f"{name}_"
            self.accuracy_trackers[name] = (
                keras.metrics.CategoricalAccuracy(name=f"{prefix}accuracy"),
                keras.metrics.TopKCategoricalAccuracy(k=k, name=f"{prefix}top5"),
            )
        calibrated = self.tracked_outputs[:1] if calibrated_outputs is None else calibrated_outputs
        unknown = sorted(set(calibrated) - set(self.tracked_outputs))
        if unknown:
            raise ValueError(
                f"`calibrated_outputs` must name tracked outputs {list(self.tracked_outputs)}, got "
                f"{unknown}."
            )
        # Accumulated by `test_step` only and kept out of `metrics` (so out of the logs): the
        # state of the last evaluation pass, which `ReliabilityDiagram` draws without predicting
        # the validation data a second time. `reset_metrics` clears it with the rest.
        self.calibration_trackers = {
            name: (
                metrics.ExpectedCalibrationError(CALIBRATION_BINS, name=f"{name}_ece"),
                metrics.NegativeLogLikelihood(name=f"{name}_nll"),
            )
            for name in calibrated
        }
        # Every variable of this class exists now (the backbone is a built functional model; the
        # trackers made theirs). Without a strategy Keras builds nothing before tracing
        # `train_step`, which never calls the model itself, so `built` would stay False after
        # `fit` and `save_weights` (keras-tuner's per-epoch checkpoint) would refuse the model.
        # Subclasses that add layers build them in their constructors (MultiExitDistiller's
        # heads, TwoViewDistiller's distortion).
        self.built = True

    # ------------------------------------------------------------------ subclass API
    def compute_loss_terms(self, images, targets, training: bool, index=None):
        """Returns ``(outputs, terms)``.

        Args:
            images: image batch (already un-wrapped from any index dict).
            targets: ``[batch, num_classes]`` float targets (one-hot for sparse labels).
            training: True in `train_step`, False in `test_step`.
            index: ``[batch]`` int sample indices when the pipeline carries them, else None.

        Returns:
            outputs: dict output name -> logits, with keys ``output_names`` (for accuracy).
            terms: dict term name -> ``[batch]`` per-sample values or a scalar batch statistic.
        """
        raise NotImplementedError

    def term_weight(self, name: str):
        """The live weight of loss term ``name``: its float32 variable ``term_weights[name]``."""
        return ops.convert_to_tensor(self.term_weights[name])

    def after_train_step(self, images, targets, outputs, index) -> None:
        """Hook run after the gradient update (and after the ``soft_targets`` bank write)."""

    @property
    def needs_sample_index(self) -> bool:
        """Whether training inputs must carry ``"index"`` (PS-KD's per-sample bank)."""
        return self.soft_targets is not None

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def split_inputs(x):
        """``(images, index)`` from an image batch or a ``{"image", "index"}`` dict."""
        if isinstance(x, Mapping):
            if "image" not in x:
                raise ValueError(
                    f"Dict inputs must have an 'image' key (and optionally 'index'), got {sorted(x)}."
                )
            return x["image"], x.get("index")
        return x, None

    def check_label_array(self, y) -> None:
        """Raises a ValueError for in-memory sparse labels outside ``0..num_classes-1``.

        Inside the compiled step an out-of-range label would silently become an all-zero target
        (``one_hot``) and a zero loss, so array labels given to `fit` / `evaluate` are checked
        eagerly here; tf.data pipelines from `keras_sd.data.load` check their labels themselves.
        """
        if not isinstance(y, (np.ndarray, list, tuple)):
            return  # None (labels inside a dataset), tensors or dicts: not checked eagerly
        labels = np.asarray(y)
        if labels.ndim == 2 and labels.shape[-1] == self.num_classes and self.num_classes > 1:
            return  # one-hot / soft targets
        if labels.ndim == 2 and labels.shape[-1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 or not labels.size or not np.issubdtype(labels.dtype, np.number):
            return  # shape problems are reported by `labels_to_targets`
        bad = (labels < 0) | (labels >= self.num_classes) | (labels != np.round(labels))
        if bad.any():
            raise ValueError(
                f"Labels must be integer class indices in 0..{self.num_classes - 1} (or one-hot of "
                f"width {self.num_classes}); got {labels[bad][0]!r} at position "
                f"{int(np.flatnonzero(bad)[0])}."
            )

    def fit(self, x=None, y=None, *args, **kwargs):
        if self.soft_targets is not None:
            # Prepends the alpha_t schedule, checks the index statically, names bank errors.
            return pskd.fit_with_pskd(self, self._checked_fit, x, y, *args, **kwargs)
        return self._checked_fit(x, y, *args, **kwargs)

    def _checked_fit(self, x=None, y=None, *args, **kwargs):
        self.check_label_array(y)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self.check_label_array(y)
        return super().evaluate(x, y, *args, **kwargs)

    def labels_to_targets(self, y):
        """One-hot float32 targets ``[batch, num_classes]`` from sparse or one-hot labels."""
        if y is None:
            raise ValueError("Labels are required to train or evaluate; got `y=None`.")
        rank = len(y.shape)
        if rank == 2 and y.shape[-1] == self.num_classes and self.num_classes > 1:
            return ops.cast(y, "float32")
        if rank == 2 and y.shape[-1] == 1:
            y = ops.squeeze(y, axis=-1)
            rank = 1
        if rank != 1:
            raise ValueError(
                f"Labels must be sparse class indices of shape [batch] or [batch, 1], or one-hot of "
                f"shape [batch, {self.num_classes}]; got shape {tuple(y.shape)}."
            )
        return ops.one_hot(ops.cast(y, "int32"), self.num_classes)

    # ------------------------------------------------------------------ keras.Model
    def call(self, inputs, training=False):
        images, _ = self.split_inputs(inputs)
        return self.backbone(images, training=training)["logits"]

    @property
    def metrics(self):
        # Own trackers first (their order is the order of the logs), then what Keras tracks
        # besides them (metrics passed to `compile`, sublayer metrics), minus Keras' own "loss"
        # tracker: this step never updates it, `total_loss_tracker` reports "loss" instead.
        own = [self.total_loss_tracker, *self.term_trackers.values()]
        for top1, top5 in self.accuracy_trackers.values():
            own += [top1, top5]
        known = {id(m) for m in own}
        known |= {id(m) for pair in self.calibration_trackers.values() for m in pair}
        rest = [m for m in super().metrics if id(m) not in known and m.name != "loss"]
        return own + rest

    def reset_metrics(self):
        super().reset_metrics()
        for pair in self.calibration_trackers.values():
            for metric in pair:
                metric.reset_state()

    def calibration_state(self) -> dict[str, dict]:
        """Calibration of each calibrated output over the evaluation pass since the last reset.

        ``fit`` and ``evaluate`` reset it when they start (and ``fit`` at every epoch), and only
        `test_step` adds to it, so after ``fit``'s validation of an epoch it holds that pass, and
        it is empty (``num_examples == 0``) after an epoch that did not validate.

        Returns:
            ``{output: {"count", "confidence", "accuracy", "edges", "ece", "nll",
            "num_examples"}}``: the per-bin arrays of `keras_sd.plotting.reliability_bins`, ECE
            (%) and NLL as `keras_sd.metrics`, and the number of samples seen (summed over
            replicas).
        """
        state = {}
        for name, (ece, nll) in self.calibration_trackers.items():
            bins = ece.bins()
            state[name] = {
                **bins,
                "ece": float(ece.result()),
                "nll": float(nll.result()),
                "num_examples": int(round(float(bins["count"].sum()))),
            }
        return state

    def _reduce_terms(self, terms):
        reduced = {}
        for name, value in terms.items():
            if name not in self.term_trackers:
                raise ValueError(
                    f"{type(self).__name__} returned an undeclared loss term {name!r}; declared: "
                    f"{sorted(self.term_trackers)}."
                )
            value = ops.cast(value, "float32")
            reduced[name] = value if len(value.shape) == 0 else ops.mean(value)
        return reduced

    def _weighted_total(self, reduced):
        total = ops.zeros((), "float32")
        for name, value in reduced.items():
            total = total + self.term_weight(name) * value
        return total

    def _weight_decay_loss(self):
        squares = [ops.sum(ops.square(ops.cast(v, "float32"))) for v in self.trainable_variables]
        return 0.5 * self.weight_decay * ops.sum(ops.stack(squares))

    def _update_metrics(self, x, y, total, reduced, outputs, targets):
        batch = ops.shape(targets)[0]
        self.total_loss_tracker.update_state(total, sample_weight=batch)
        for name, value in reduced.items():
            self.term_trackers[name].update_state(value, sample_weight=batch)
        for name, (top1, top5) in self.accuracy_trackers.items():
            logits = ops.cast(outputs[name], "float32")
            top1.update_state(targets, logits)
            top5.update_state(targets, logits)
        # Keras' public hook updates the metrics passed to `compile` (on the primary output) and
        # returns every result in `self.metrics`.
        logs = self.compute_metrics(x, y, outputs[self.tracked_outputs[0]])
        if _keras_compat.in_multi_worker_mode(tf.distribute.get_strategy()):
            # Keras 3.15's TF trainer reduces step outputs under MultiWorkerMirroredStrategy with
            # `strategy.reduce("MEAN", v, axis=0)` (trainer.reduce_per_replica), which rejects
            # scalars; a [1]-shaped log reduces to the same scalar.
            logs = {k: ops.reshape(v, (1,)) for k, v in logs.items()}
        return logs

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError(
                "`sample_weight` is not supported by self-distillation models (every term is a "
                "batch mean); got a sample_weight tensor."
            )
        images, index = self.split_inputs(x)
        targets = self.labels_to_targets(y)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            if self.soft_targets is not None:
                targets = self.soft_targets.transform(targets, index)
            outputs, terms = self.compute_loss_terms(images, targets, training=True, index=index)
            reduced = self._reduce_terms(terms)
            total = self._weighted_total(reduced)
            if self.weight_decay > 0:
                reduced["weight_decay_loss"] = self._weight_decay_loss()
                total = total + reduced["weight_decay_loss"]
            if self.losses:  # layer regularisers / add_loss, if a user's backbone has any
                total = total + ops.sum(ops.stack([ops.sum(v) for v in self.losses]))
            scaled = total / replicas
            if self.optimizer is not None:
                scaled = self.optimizer.scale_loss(scaled)  # loss scaling under mixed precision
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        if self.soft_targets is not None:
            self.soft_targets.update(index, outputs[self.tracked_outputs[0]])
        self.after_train_step(images, targets, outputs, index)
        return self._update_metrics(x, y, total, reduced, outputs, targets)

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        images, index = self.split_inputs(x)
        targets = self.labels_to_targets(y)
        outputs, terms = self.compute_loss_terms(images, targets, training=False, index=index)
        reduced = self._reduce_terms(terms)
        total = self._weighted_total(reduced)
        if self.weight_decay > 0:  # reported so train and validation `loss` mean the same thing
            reduced["weight_decay_loss"] = self._weight_decay_loss()
            total = total + reduced["weight_decay_loss"]
        for name, (ece, nll) in self.calibration_trackers.items():
            logits = ops.cast(outputs[name], "float32")
            ece.update_state(targets, logits)
            nll.update_state(targets, logits)
        return self._update_metrics(x, y, total, reduced, outputs, targets)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(x, training=False)

    # ------------------------------------------------------------------ serialisation
    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "weight_decay": self.weight_decay,
            "soft_targets": (
                None
                if self.soft_targets is None
                else keras.saving.serialize_keras_object(self.soft_targets)
            ),
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = copy.deepcopy(config)  # Keras' functional from_config consumes nested dicts
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if isinstance(config.get("soft_targets"), dict):
            config["soft_targets"] = keras.saving.deserialize_keras_object(config["soft_targets"])
        return cls(**config)


def _soft_targets(soft_targets, pskd_alpha, num_train_examples, bank_dtype):
    """The `ProgressiveSelfKD` from ``soft_targets`` or the ``pskd_alpha`` shorthand, or None."""
    pskd.check_bank_dtype(bank_dtype)
    if pskd_alpha is not None:
        if soft_targets is not None:
            raise ValueError(
                "Pass `soft_targets` or its shorthand `pskd_alpha` (with `num_train_examples`), "
                f"not both; got pskd_alpha={pskd_alpha!r} and soft_targets={soft_targets!r}."
            )
        return pskd.ProgressiveSelfKD(
            validation.unit_interval(pskd_alpha, "pskd_alpha"),
            pskd.check_num_examples(num_train_examples),
            bank_dtype=bank_dtype,
        )
    if soft_targets is not None and not isinstance(soft_targets, pskd.ProgressiveSelfKD):
        raise ValueError(
            "`soft_targets` must be a keras_sd.pskd.ProgressiveSelfKD or None, got "
            f"{type(soft_targets).__name__}."
        )
    return soft_targets


def _check_loss_weights(loss_weights, term_names) -> dict[str, float]:
    """``{term: float weight >= 0}`` from ``loss_weights`` (or the deprecated ``term_names``)."""
    if loss_weights is not None and term_names is not None:
        raise ValueError(
            f"Pass `loss_weights` (term -> weight) or the deprecated `term_names`, not both; got "
            f"loss_weights={loss_weights!r} and term_names={term_names!r}."
        )
    if loss_weights is None:
        loss_weights = dict.fromkeys(term_names or ("ce_loss",), 1.0)
    if not isinstance(loss_weights, Mapping) or not loss_weights:
        raise ValueError(
            f"`loss_weights` must be a non-empty dict of term name -> weight, got {loss_weights!r}."
        )
    checked = {}
    for name, weight in loss_weights.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"`loss_weights` keys must be term names (str), got {name!r}.")
        checked[name] = validation.non_negative(weight, f"loss_weights[{name!r}]")
    return checked


@keras.saving.register_keras_serializable(package="keras_sd")
class Baseline(SelfDistillationModel):
    """Plain cross-entropy training of a backbone: the reference every method is compared with.

    PS-KD alone is this model with ``soft_targets=keras_sd.pskd.ProgressiveSelfKD(...)`` (or the
    shorthand ``pskd_alpha=0.8, num_train_examples=N``), as for every method.

    Example:
        >>> from keras_sd import backbones
        >>> model = Baseline(backbones.get("resnet20", input_shape=(8, 8, 1), num_classes=10))
        >>> model.term_names
        ('ce_loss',)
    """

    def compute_loss_terms(self, images, targets, training, index=None):
        logits = self.backbone(images, training=training)["logits"]
        return {OUTPUT: logits}, {"ce_loss": losses.soft_target_cross_entropy(targets, logits)}
