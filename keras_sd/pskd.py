"""Progressive self-knowledge distillation (PS-KD): per-sample prediction bank and ``alpha_t``.

PS-KD trains against ``y_soft = (1 - alpha_t) * y + alpha_t * P_prev(x)``, where ``P_prev(x)`` is
the model's own softmax for that very sample from the previous epoch (train mode, augmented input,
T = 1) and ``alpha_t = alpha_T * t / T`` grows linearly over training. This module holds the pieces
every model that offers PS-KD shares:

- `PredictionBank`: a non-trainable ``[num_examples, num_classes]`` variable keyed by the sample
  index the data pipeline carries (``keras_sd.data.load(..., with_index=True)``).
- `ProgressiveSelfKD`: the bank plus the ``alpha_t`` variable; ``transform`` (read, before the
  gradient step) and ``update`` (write, after it). Any keras_sd model takes one as
  ``soft_targets=ProgressiveSelfKD(alpha=0.8, num_examples=50_000)``: the base class's step calls
  both (`keras_sd.models.base.SelfDistillationModel`), so no method repeats the plumbing.
- `PSKDAlphaScheduler`: the callback that sets ``alpha_t`` each epoch and logs it.
- `fit_with_pskd`: what the base model's ``fit`` calls when PS-KD is on (schedule by default,
  early input checks, bank-size errors as `ValueError`).

Reference: Kim, Ji, Yoon & Hwang, "Self-Knowledge Distillation with Progressive Refinement of
Targets", ICCV 2021; combined with BYOT and deep mutual feature learning in Chottananurak, Jeong,
Kabir & Phisannupawong, "Progressive Self-Knowledge Distillation with Mutual Learning" (KAIST),
section 3.1.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_sd import validation

BANK_DTYPES = ("float32", "float16")
# Marker in the runtime assertion message, so `fit_with_pskd` can turn it into a ValueError.
_INDEX_ERROR = "keras_sd.pskd: sample index outside the prediction bank"
MISSING_INDEX_MESSAGE = (
    "PS-KD needs the sample index of every training example: the inputs have no 'index'. "
    "Use `keras_sd.data.load(..., with_index=True)` (or pass x={'image': ..., 'index': ...})."
)


def check_num_examples(value, name: str = "num_train_examples") -> int:
    """Returns a positive int, or raises a ValueError naming ``name``."""
    if value is None:
        raise ValueError(
            f"`{name}` is required when PS-KD is on (the prediction bank has one row per training "
            "example, e.g. 50000 for CIFAR-100); got None."
        )
    return validation.positive_int(value, name)


def check_bank_dtype(value: str) -> str:
    return validation.one_of(value, "bank_dtype", BANK_DTYPES)


@keras.saving.register_keras_serializable(package="keras_sd")
class PredictionBank(keras.layers.Layer):
    """Per-sample class-probability store ``[num_examples, num_classes]`` for PS-KD.

    Initialisation: the bank starts as zeros and a row that was never written reads as the
    one-hot label passed with the batch. A written row holds a softmax, whose sum is 1 (also in
    float16: the largest probability is at least ``1 / num_classes``), so "row sum > 0" is an exact
    "already written" flag. This needs no labels up front, no second per-row flag variable to keep
    in sync across replicas, and works whatever epoch convention or resume point is used.

    Distribution: the variable is mirrored (``synchronization="on_write"``,
    ``aggregation="only_first_replica"``). `write` all-gathers the indices and probabilities of
    every replica first, so the first replica's scatter (which is what gets broadcast) contains
    all replicas' rows. Every replica holds a full copy: see docs/methods/pskd.md for the memory.

    Checkpoints: the variable is a layer weight, so `model.save_weights` / `load_weights` (and
    therefore `keras.callbacks.BackupAndRestore`) keep it.

    Args:
        num_examples: number of training examples; indices must lie in ``[0, num_examples)``.
        num_classes: number of classes.
        storage_dtype: ``"float32"`` or ``"float16"`` (half the memory; reads are float32).

    Reference: Kim et al., "Self-Knowledge Distillation with Progressive Refinement of Targets",
    ICCV 2021.
    """

    def __init__(
        self, num_examples: int, num_classes: int, storage_dtype: str = "float32", **kwargs
    ):
        super().__init__(**kwargs)
        self.num_examples = check_num_examples(num_examples, "num_examples")
        self.num_classes = check_num_examples(num_classes, "num_classes")
        self.storage_dtype = check_bank_dtype(storage_dtype)
        self.predictions = keras.Variable(
            initializer="zeros",
            shape=(self.num_examples, self.num_classes),
            dtype=self.storage_dtype,
            trainable=False,
            autocast=False,
            aggregation="only_first_replica",
            synchronization="on_write",
            name="predictions",
        )
        self.built = True

    def check_index(self, index):
        """``index`` as int32, with a runtime check that it lies in ``[0, num_examples)``."""
        index = tf.cast(tf.reshape(index, [-1]), tf.int32)
        check = tf.debugging.assert_less(
            index,
            tf.constant(self.num_examples, tf.int32),
            message=f"{_INDEX_ERROR} [0, {self.num_examples})",
        )
        check_low = tf.debugging.assert_non_negative(index, message=_INDEX_ERROR)
        with tf.control_dependencies([check, check_low]):
            return tf.identity(index)

    def read(self, index, onehot):
        """Rows ``index`` as float32 ``[batch, num_classes]``; never-written rows give ``onehot``."""
        index = self.check_index(index)
        rows = tf.cast(tf.gather(tf.convert_to_tensor(self.predictions), index), tf.float32)
        written = tf.reduce_sum(rows, axis=-1, keepdims=True) > 0
        return tf.where(written, rows, tf.cast(onehot, tf.float32))

    def write(self, index, probs) -> None:
        """Stores ``probs`` (stop-gradiented) at rows ``index``; all replicas' rows land."""
        # The write checks the range itself: the scatter has no data dependency on the check in
        # `read`, so in a compiled step it could run first and fail with the scatter's own error.
        index = self.check_index(index)
        probs = tf.cast(tf.stop_gradient(probs), self.storage_dtype)
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            index = ctx.all_gather(index, axis=0)
            probs = ctx.all_gather(probs, axis=0)
        self.predictions.value.scatter_update(tf.IndexedSlices(probs, index))

    def call(self, index, onehot):
        return self.read(index, onehot)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_examples=self.num_examples,
            num_classes=self.num_classes,
            storage_dtype=self.storage_dtype,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_sd")
class ProgressiveSelfKD(keras.layers.Layer):
    """PS-KD targets: a `PredictionBank` and the scheduled ``alpha_t``; a target transform any
    keras_sd model takes as ``soft_targets=``.

    ``transform(onehot, index)`` returns ``(1 - alpha_t) * onehot + alpha_t * P_prev`` (the model
    calls it before the gradient step); ``update(index, logits)`` writes ``softmax(logits)``
    (T = 1, the model's primary output) into the bank (after it). ``alpha_t`` is a non-trainable variable set by `PSKDAlphaScheduler`, so the
    compiled step sees new values without retracing and checkpoints keep it; it starts at 0.

    Example:
        >>> layer = ProgressiveSelfKD(alpha=0.8, num_examples=4, num_classes=3)
        >>> layer.alpha_at(epoch=1, total_epochs=4)
        0.4

    Args:
        alpha: ``alpha_T``, the final weight of the previous-epoch predictions, in [0, 1]
            (the PS-KD paper uses 0.8).
        num_examples: training-set size (bank rows).
        num_classes: number of classes; None: the model that takes the layer sets it (`build`).
        bank_dtype: ``"float32"`` or ``"float16"`` bank storage.

    Reference: Kim et al., ICCV 2021, Eq. (5)-(6).
    """

    def __init__(
        self,
        alpha: float,
        num_examples: int,
        num_classes: int | None = None,
        bank_dtype: str = "float32",
        **kwargs,
    ):
        kwargs.setdefault("name", "pskd")
        super().__init__(**kwargs)
        self.alpha = validation.unit_interval(alpha, "alpha")
        self.num_examples = check_num_examples(num_examples)
        self.num_classes = (
            None if num_classes is None else check_num_examples(num_classes, "num_classes")
        )
        self.bank_dtype = check_bank_dtype(bank_dtype)
        self.bank = None
        if self.num_classes is not None:
            self.build((None, self.num_classes))

    def build(self, targets_shape):
        """Creates the bank for targets of shape ``[batch, num_classes]``."""
        num_classes = check_num_examples(int(targets_shape[-1]), "num_classes")
        if self.num_classes is not None and num_classes != self.num_classes:
            raise ValueError(
                f"`num_classes`={self.num_classes} of {self.name!r} disagrees with the model's "
                f"{num_classes} classes."
            )
        if self.bank is not None:  # built in __init__; Keras' deserialisation builds again
            return
        self.num_classes = num_classes
        self.bank = PredictionBank(
            self.num_examples, self.num_classes, self.bank_dtype, name="prediction_bank"
        )
        self.alpha_t = keras.Variable(
            0.0, dtype="float32", trainable=False, autocast=False, name="alpha_t"
        )
        self.built = True

    def alpha_at(self, epoch: int, total_epochs: int) -> float:
        """``alpha_T * (epoch + 1) / total_epochs`` for 0-based Keras ``epoch`` (see scheduler)."""
        return self.alpha * min(epoch + 1, total_epochs) / total_epochs

    def transform(self, onehot, index):
        """``(1 - alpha_t) * onehot + alpha_t * bank[index]``; raises if ``index`` is None."""
        if index is None:
            raise ValueError(MISSING_INDEX_MESSAGE)
        onehot = tf.cast(onehot, tf.float32)
        previous = self.bank.read(index, onehot)
        alpha_t = tf.cast(tf.convert_to_tensor(self.alpha_t), tf.float32)
        return tf.stop_gradient((1.0 - alpha_t) * onehot + alpha_t * previous)

    def update(self, index, logits) -> None:
        """Writes ``softmax(logits)`` (train-mode logits of this step) at rows ``index``."""
        if index is None:
            raise ValueError(MISSING_INDEX_MESSAGE)
        self.bank.write(index, ops.softmax(ops.cast(logits, "float32"), axis=-1))

    soft_targets = transform  # the name before the transform moved into the base model

    def call(self, onehot, index):
        return self.transform(onehot, index)

    def get_config(self):
        config = super().get_config()
        config.update(
            alpha=self.alpha,
            num_examples=self.num_examples,
            num_classes=self.num_classes,
            bank_dtype=self.bank_dtype,
        )
        return config


def find_pskd(model) -> ProgressiveSelfKD | None:
    """The model's `ProgressiveSelfKD` (its ``soft_targets``), or None when PS-KD is off."""
    layer = getattr(model, "soft_targets", None)
    return layer if isinstance(layer, ProgressiveSelfKD) else None


class PSKDAlphaScheduler(keras.callbacks.Callback):
    """Sets ``alpha_t = alpha_T * t / total_epochs`` at the start of every epoch, and logs it.

    Epoch convention: ``t = epoch + 1`` with Keras' 0-based ``epoch``, i.e. ``t`` counts epochs
    from 1, so the last epoch trains with ``alpha_T`` exactly ("alpha_T is the value of alpha at
    the last epoch", PS-KD section 3.2) and the first with ``alpha_T / total_epochs``. This is what
    the PS-KD authors' code does (``alpha_T * (epoch + 1) / end_epoch`` with a 0-based ``epoch``).
    The first epoch's targets are one-hot either way, because the bank has not been written yet.
    The seed paper does not restate the schedule. ``epoch`` is absolute, so resuming with
    ``initial_epoch`` (BackupAndRestore) continues the schedule.

    The value goes into the epoch ``logs`` as ``pskd_alpha_t``; a `keras.callbacks.TensorBoard`
    placed *after* this callback records it (`fit_with_pskd` prepends the scheduler for that reason).

    Args:
        total_epochs: ``T`` of the schedule; None uses ``fit``'s ``epochs``.
    """

    def __init__(self, total_epochs: int | None = None):
        super().__init__()
        self.total_epochs = validation.positive_int(total_epochs, "total_epochs", allow_none=True)

    def _pskd(self) -> ProgressiveSelfKD:
        layer = find_pskd(self.model)
        if layer is None:
            raise ValueError(
                f"PSKDAlphaScheduler: the model {type(self.model).__name__} has PS-KD off "
                "(no `soft_targets`); construct it with "
                "`soft_targets=keras_sd.pskd.ProgressiveSelfKD(alpha, num_examples)` (or the "
                "shorthand `pskd_alpha=..., num_train_examples=...`)."
            )
        return layer

    def on_epoch_begin(self, epoch, logs=None):
        total = self.total_epochs or int(self.params.get("epochs") or 0)
        if total < 1:
            raise ValueError("PSKDAlphaScheduler: `total_epochs` is unknown; pass it explicitly.")
        layer = self._pskd()
        layer.alpha_t.assign(layer.alpha_at(epoch, total))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["pskd_alpha_t"] = float(ops.convert_to_numpy(self._pskd().alpha_t))


def _fit_arguments(args, kwargs) -> inspect.BoundArguments:
    signature = inspect.signature(keras.Model.fit)
    bound = signature.bind(None, *args, **kwargs)  # None stands for self
    return bound


def check_fit_inputs(layer: ProgressiveSelfKD, x) -> None:
    """Static checks before training: the inputs carry ``index`` and, for in-memory inputs, every
    index fits the bank. Generators and `keras.utils.PyDataset` are checked inside the step."""
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        first = spec[0] if isinstance(spec, tuple) else spec
        if not (isinstance(first, Mapping) and "index" in first):
            raise ValueError(MISSING_INDEX_MESSAGE)
        return
    if isinstance(x, Mapping):
        if "index" not in x:
            raise ValueError(MISSING_INDEX_MESSAGE)
        values = np.asarray(x["index"])
        if values.size and (values.max() >= layer.num_examples or values.min() < 0):
            raise ValueError(
                f"`num_train_examples`={layer.num_examples} is smaller than the data set: sample "
                f"index {int(values.max())} seen (indices must lie in [0, {layer.num_examples}))."
            )
        return
    if isinstance(x, np.ndarray) or tf.is_tensor(x):
        raise ValueError(MISSING_INDEX_MESSAGE)


def fit_with_pskd(model, fit, *args, **kwargs):
    """Runs ``fit(*args, **kwargs)`` for a model with PS-KD on.

    Prepends a `PSKDAlphaScheduler` when ``callbacks`` has none (so ``alpha_t`` follows the
    schedule and is logged before TensorBoard's ``on_epoch_end``), checks the inputs statically
    where it can, and turns the in-step bank range assertion into a ValueError naming
    ``num_train_examples``. Under ``jit_compile=True`` XLA drops that assertion, so only the
    static check applies.
    """
    layer = find_pskd(model)
    bound = _fit_arguments(args, kwargs)
    callbacks = list(bound.arguments.get("callbacks") or [])
    if not any(isinstance(c, PSKDAlphaScheduler) for c in callbacks):
        callbacks.insert(0, PSKDAlphaScheduler())
    bound.arguments["callbacks"] = callbacks
    check_fit_inputs(layer, bound.arguments.get("x"))
    call_args = bound.args[1:]
    try:
        return fit(*call_args, **bound.kwargs)
    except tf.errors.InvalidArgumentError as e:
        if _INDEX_ERROR in str(e):
            raise ValueError(
                f"`num_train_examples`={layer.num_examples} is smaller than the data set: a sample "
                f"index outside [0, {layer.num_examples}) reached the PS-KD prediction bank."
            ) from e
        raise


__all__ = [
    "BANK_DTYPES",
    "PSKDAlphaScheduler",
    "PredictionBank",
    "ProgressiveSelfKD",
    "find_pskd",
    "fit_with_pskd",
]
