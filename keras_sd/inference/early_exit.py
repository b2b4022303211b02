"""Dynamic early-exit inference on a multi-exit model (TPAMI Algorithm 1), with real savings.

For exits ``1..K`` in order, exit ``i`` answers for the samples whose top softmax probability is
strictly greater than ``thresholds[i]``; only the samples still undecided continue to the next
backbone stage; samples no exit is sure of get the ensemble (mean softmax) of all ``K`` exits.
Within a batch the deeper stages run on the undecided samples only (gather, compute, scatter back
in order), and a stage whose input is empty is skipped by a ``tf.cond``, so both the arithmetic
and the wall-clock time shrink with the share of easy samples.

Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural Networks",
TPAMI, section 3.3 and Algorithm 1.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_sd import _keras_compat, validation
from keras_sd.litert_runtime import ExitThresholds, check_thresholds
from keras_sd.models.multi_exit import MultiExitDistiller


def freeze_function(fn, input_signature: Sequence[tf.TensorSpec]):
    """A ``tf.function`` that computes what ``fn`` does, with every variable it reads baked in
    as a constant (a snapshot: later weight or threshold changes do not reach it).

    Why: TensorFlow's graph executor pays a few microseconds per node, and at batch 1 a small
    CNN is mostly that overhead: a CIFAR ResNet-20 pass has 438 nodes, a quarter of them
    ``ReadVariableOp`` and most of the rest batch-norm arithmetic on those variables. With the
    variables as constants, Grappler folds that arithmetic away when the function is first run
    (measured here: the plain ResNet-20 at batch 1 from 1.65 to 1.29 ms per image). TensorFlow
    has no public "freeze for serving" call for TF2 functions; this uses the converter its own
    TFLite and SavedModel tooling uses (``convert_variables_to_constants_v2``) and re-imports
    the frozen graph into an ordinary ``tf.function``. The converter lowers ``tf.cond`` to
    Switch/Merge, whose untaken side is still never computed, so an early exit stays early.

    Args:
        fn: a ``tf.function`` or Python callable of one tensor argument.
        input_signature: one ``tf.TensorSpec`` for that argument.
    """
    if len(input_signature) != 1:
        raise ValueError(
            f"`input_signature` must hold one tf.TensorSpec, got {list(input_signature)!r}."
        )
    concrete = tf.function(fn).get_concrete_function(*input_signature)
    frozen = _keras_compat.convert_variables_to_constants(concrete)
    graph_def = frozen.graph.as_graph_def()
    input_name = frozen.inputs[0].name
    output_names = [t.name for t in frozen.outputs]
    structure = concrete.structured_outputs

    @tf.function(input_signature=list(input_signature))
    def frozen_fn(x):
        outputs = tf.graph_util.import_graph_def(
            graph_def, input_map={input_name: x}, return_elements=output_names, name="frozen"
        )
        return tf.nest.pack_sequence_as(structure, outputs)

    return frozen_fn


class _Untracked:
    """Plain attribute holder that Keras does not track (no double saving of shared layers)."""

    def __init__(self, **items):
        self.__dict__.update(items)


def check_multi_exit(model: Any, name: str = "model") -> int:
    """Returns the number of exits ``K`` of a multi-exit model, or raises ``ValueError``.

    A multi-exit model here is a `keras_sd.MultiExitDistiller`; it always has at least one
    shallow exit besides the backbone's head.
    """
    if not isinstance(model, MultiExitDistiller):
        raise ValueError(
            f"`{name}` must be a multi-exit model (keras_sd.MultiExitDistiller with shallow "
            f"exits), got a {type(model).__name__} without exits."
        )
    return model.num_exits


@keras.saving.register_keras_serializable(package="keras_sd")
class EarlyExitModel(ExitThresholds, keras.Model):
    """A multi-exit model that stops computing for a sample once an exit is confident.

    ``model(images)`` returns ``{"prediction": int32 [batch], "exit": int32 [batch], "logits":
    float32 [batch, classes]}``. ``exit[j]`` is the 0-based exit that answered sample ``j``
    (``i`` for ``exit{i + 1}``) or ``num_exits`` (`ensemble_index`) for the ensemble; ``logits``
    are that exit's logits (for the ensemble, the log of the mean softmax of all exits, whose
    softmax is the ensemble's probability), ``prediction`` their argmax.

    The computation is Algorithm 1 batched: stage 1 and exit 1 run on the whole batch; the
    samples with ``max softmax > thresholds[0]`` are answered and scattered to their positions;
    stage 2 and exit 2 run on the others only (gathered with ``tf.boolean_mask``), and so on; a
    stage with no sample left is skipped (``tf.cond``). The same code runs eagerly and inside
    ``tf.function`` (data-dependent control flow in the graph), so `export` writes a SavedModel
    whose serving function really exits early. Run it in inference mode only.

    The thresholds live in a non-trainable variable: `set_thresholds` changes the trade-off
    without retracing (TPAMI: "adjust its trade-offs between response time and accuracy on the
    fly"), and ``.keras`` files keep them.

    Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural
    Networks", TPAMI, section 3.3, Algorithm 1.

    Args:
        multi_exit_model: a `keras_sd.MultiExitDistiller` (its weights are shared, not copied).
        thresholds: ``num_exits`` values in ``(0, 1]``, shallow to deep (see `check_thresholds`).
    """

    def __init__(self, multi_exit_model: keras.Model, thresholds: Sequence[float], **kwargs):
        num_exits = check_multi_exit(multi_exit_model, "multi_exit_model")
        values = check_thresholds(thresholds, num_exits)
        super().__init__(**kwargs)
        self.multi_exit_model = multi_exit_model
        self.num_exits = num_exits
        self.num_classes = int(multi_exit_model.num_classes)
        self._thresholds = values
        self.threshold_variable = keras.Variable(
            values, dtype="float32", trainable=False, name="thresholds"
        )
        # Held outside Keras' object tracking: the stage models share the multi-exit model's
        # layers, which must be saved once.
        self._runtime = _Untracked(
            stages=multi_exit_model.exit_graph.stage_models(multi_exit_model.exit_heads),
            serving_fn=None,
            frozen_fn=None,
        )
        self.input_spec_shape = tuple(self._runtime.stages[0].inputs[0].shape[1:])
        self.built = True

    def set_thresholds(self, thresholds: Sequence[float]) -> None:
        """Replaces the thresholds (no retracing: they are read from a variable)."""
        values = check_thresholds(thresholds, self.num_exits)
        self._thresholds = values
        self.threshold_variable.assign(values)
        self._runtime.frozen_fn = None  # a frozen graph holds the old thresholds as constants

    # ------------------------------------------------------------------ inference
    def call(self, images, training=False):
        if training:
            raise ValueError(
                "`training` must be False: EarlyExitModel is for inference; train the "
                "multi-exit model itself."
            )
        images = tf.convert_to_tensor(images)
        batch = tf.shape(images)[0]
        out_logits = tf.zeros(tf.stack([batch, self.num_classes]), dtype="float32")
        out_exit = tf.fill(tf.expand_dims(batch, 0), tf.constant(self.num_exits, "int32"))
        index = tf.range(batch, dtype="int32")
        out_logits, out_exit = self._stage(0, images, index, None, out_logits, out_exit)
        return {
            "prediction": tf.argmax(out_logits, axis=-1, output_type="int32"),
            "exit": out_exit,
            "logits": out_logits,
        }

    def _stage(self, i, h, index, log_prob_sum, out_logits, out_exit):
        """Runs stage ``i`` + exit ``i`` on the undecided samples ``index`` (positions in the
        batch), scatters the confident answers and recurses into the next stage inside a
        ``tf.cond`` that skips it when no sample is left. Returns the updated outputs."""
        res = self._runtime.stages[i](h, training=False)
        z = tf.cast(res["logits"], "float32")
        log_p = tf.nn.log_softmax(z, axis=-1)
        # Running log of the sum of every exit's softmax, for the ensemble (logsumexp-stable).
        log_prob_sum = (
            log_p
            if log_prob_sum is None
            else tf.reduce_logsumexp(tf.stack([log_prob_sum, log_p]), 0)
        )
        confident = tf.reduce_max(tf.nn.softmax(z, axis=-1), axis=-1) > self.threshold_variable[i]
        rows = tf.expand_dims(index, -1)
        if i == self.num_exits - 1:
            ensemble = log_prob_sum - math.log(self.num_exits)
            answer = tf.where(tf.expand_dims(confident, -1), z, ensemble)
            which = tf.where(confident, i, self.num_exits)
            out_logits = tf.tensor_scatter_nd_update(out_logits, rows, answer)
            out_exit = tf.tensor_scatter_nd_update(out_exit, rows, tf.cast(which, "int32"))
            return out_logits, out_exit
        done = tf.boolean_mask(rows, confident)
        out_logits = tf.tensor_scatter_nd_update(out_logits, done, tf.boolean_mask(z, confident))
        out_exit = tf.tensor_scatter_nd_update(
            out_exit, done, tf.fill(tf.shape(done)[:1], tf.constant(i, "int32"))
        )
        undecided = tf.logical_not(confident)
        next_index = tf.boolean_mask(index, undecided)
        next_h = tf.boolean_mask(res["stage"], undecided)
        next_sum = tf.boolean_mask(log_prob_sum, undecided)
        return tf.cond(
            tf.size(next_index) > 0,
            lambda: self._stage(i + 1, next_h, next_index, next_sum, out_logits, out_exit),
            lambda: (out_logits, out_exit),
        )

    def predict_early_exit(
        self, x, batch_size: int = 256, frozen: bool = False
    ) -> dict[str, np.ndarray]:
        """NumPy outputs (see the class docstring) for an array of images, batch by batch, with a
        compiled graph (``frozen``: see `serving_function`)."""
        batch_size = validation.positive_int(batch_size, "batch_size")
        x = np.asarray(x)
        if x.ndim == 0 or len(x) == 0:
            raise ValueError("`x` is empty; predict_early_exit needs at least one image.")
        fn = self.serving_function(frozen=frozen)
        parts = [
            {k: np.asarray(v) for k, v in fn(tf.constant(x[s : s + batch_size], "float32")).items()}
            for s in range(0, len(x), batch_size)
        ]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def serving_function(self, frozen: bool = False) -> tf.types.experimental.GenericFunction:
        """The compiled (``tf.function``) early-exit graph for float32 image batches of any size.

        Args:
            frozen: bake the current weights and thresholds into the graph as constants
                (`freeze_function`): the same answers, less per-node overhead (the gain is
                largest at small batches), but a snapshot: after training further, rebuild it;
                `set_thresholds` discards it.
        """
        validation.boolean(frozen, "frozen")
        spec = tf.TensorSpec((None, *self.input_spec_shape), "float32", name="images")
        if self._runtime.serving_fn is None:
            self._runtime.serving_fn = tf.function(
                lambda images: self(images, training=False), input_signature=[spec]
            )
        if not frozen:
            return self._runtime.serving_fn
        if self._runtime.frozen_fn is None:
            self._runtime.frozen_fn = freeze_function(self._runtime.serving_fn, [spec])
        return self._runtime.frozen_fn

    # ------------------------------------------------------------------ export
    def export_serving(self, path: str | os.PathLike) -> None:
        """Writes a TensorFlow SavedModel whose ``serve`` signature performs the early exit.

        ``tf.saved_model.load(path).serve(images)`` (or the ``serving_default`` signature)
        returns ``{"prediction", "exit", "logits"}``; the graph contains the gathers and the
        ``tf.cond``s, so a loaded model skips the deeper stages like this one.
        """
        archive = keras.export.ExportArchive()
        archive.track(self)
        spec = tf.TensorSpec((None, *self.input_spec_shape), "float32", name="images")
        archive.add_endpoint(
            "serve", lambda images: self(images, training=False), input_signature=[spec]
        )
        archive.write_out(str(path), verbose=False)

    def export_litert(
        self,
        path: str | os.PathLike,
        *,
        quantize: str | None = None,
        normalization: dict | None = None,
        backbone: bool = False,
    ) -> dict:
        """Writes a LiteRT artefact of this early exit: one flatbuffer per stage and a manifest.

        Run it with ``keras_sd.litert_runtime.LiteRTEarlyExit(path)`` (also
        ``keras_sd.inference.LiteRTEarlyExit``; NumPy and ``ai-edge-litert``, no TensorFlow),
        which gives the same ``{"prediction", "exit", "logits"}``. See
        `keras_sd.inference.litert.export_litert` for the files and the arguments
        (``quantize=None | "dynamic_int8"``); returns the manifest.
        """
        from keras_sd.inference.litert import export_litert

        return export_litert(
            self, path, quantize=quantize, normalization=normalization, backbone=backbone
        )

    # ------------------------------------------------------------------ serialisation
    def get_config(self):
        return {
            **super().get_config(),
            "multi_exit_model": keras.saving.serialize_keras_object(self.multi_exit_model),
            "thresholds": list(self._thresholds),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["multi_exit_model"] = keras.saving.deserialize_keras_object(
            config["multi_exit_model"]
        )
        return cls(**config)
