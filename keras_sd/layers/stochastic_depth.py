"""Stochastic-depth residual gate and the full-network (teacher) context.

Reference: Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016; used as the
student/teacher split of Self-Guidance (Zheng & Peng, "Self-Guidance: Improve Deep Neural Network
Generalization via Knowledge Distillation", WACV 2022).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from keras_sd import _keras_compat, validation

_MODES = ("per_sample", "per_batch")

# Thread-local so concurrent replicas / threads tracing different passes do not see each
# other's flag. It is a plain Python value read when `call` runs, i.e. at trace time under
# tf.function: the training step traces the student and the teacher calls separately.
_STATE = threading.local()


def _full_network_active() -> bool:
    return getattr(_STATE, "depth", 0) > 0


@contextlib.contextmanager
def full_network() -> Iterator[None]:
    """Run every `StochasticDepth` gate as the full network (gate = p, deterministic).

    Inside this context a call with ``training=True`` keeps the branch's BatchNorm in
    training mode but replaces the Bernoulli gate with its expectation ``p``: the
    Self-Guidance teacher pass. Nested use is allowed. The flag is thread-local and read at
    call (trace) time; under `tf.distribute` enter it inside the replica function (e.g. in
    ``train_step``), since each replica runs in its own thread.

    Example:
        >>> with keras_sd.layers.full_network():
        ...     teacher_out = backbone(x, training=True)
    """
    _STATE.depth = getattr(_STATE, "depth", 0) + 1
    try:
        yield
    finally:
        _STATE.depth -= 1


def is_full_network() -> bool:
    """Whether the calling thread is inside `full_network()`."""
    return _full_network_active()


@keras.saving.register_keras_serializable(package="keras_sd")
class StochasticDepth(keras.layers.Layer):
    """Residual block gate: ``shortcut + gate * branch(x)``.

    Called as ``layer([x, shortcut], training=...)``. Post-activation blocks apply their ReLU
    after this layer.

    * ``training=True`` (student): ``gate ~ Bernoulli(p)``, drawn per sample (shape
      ``[B, 1, ..., 1]``) or once per batch. In ``"per_batch"`` mode a dropped branch is not
      computed at all (conditional execution), so a sampled sub-network is really cheaper.
    * ``training=True`` inside `full_network()` (teacher): ``gate = p``, deterministic,
      BatchNorm in the branch in training mode.
    * ``training=False`` (inference): ``gate = p``, deterministic.

    There is no ``1/p`` rescaling at training time; the expectation over the gate equals the
    deterministic pass, as in the original Stochastic Depth.

    Reference: Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.

    Args:
        branch: The residual branch, a Keras layer or model mapping ``x`` to a tensor with the
            shortcut's shape.
        survival_probability: ``p`` in (0, 1]. ``p == 1`` makes the identity residual block.
        mode: ``"per_batch"`` (default: one draw per batch, the original Stochastic Depth) or
            ``"per_sample"`` (each sample its own draw, drop-path style).
        seed: Seed of the layer's `keras.random.SeedGenerator` (``None``: unseeded).
        **kwargs: Base `keras.layers.Layer` arguments (``name``, ``dtype``, ...).
    """

    def __init__(
        self,
        branch: keras.layers.Layer,
        survival_probability: float,
        mode: str = "per_batch",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(branch, dict):  # tolerate a serialized branch
            branch = keras.saving.deserialize_keras_object(branch)
        if not isinstance(branch, keras.layers.Layer):
            raise ValueError(
                f"branch must be a keras.layers.Layer (or Model), got {branch!r} "
                f"of type {type(branch).__name__}"
            )
        p = validation.survival_probability(survival_probability, "survival_probability")
        validation.one_of(mode, "mode", _MODES)
        seed = validation.integer(seed, "seed", allow_none=True)
        self.branch = branch
        self.survival_probability = p
        self.mode = mode
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape: Any) -> None:
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(
                f"StochasticDepth expects inputs [x, shortcut], got input shape {input_shape!r}"
            )
        x_shape, shortcut_shape = input_shape
        if not self.branch.built:
            self.branch.build(x_shape)
        try:
            out_shape = self.branch.compute_output_shape(x_shape)
        except NotImplementedError:  # layers without it: trace the call symbolically
            out_shape = self.branch.compute_output_spec(keras.KerasTensor(x_shape)).shape
        if tuple(out_shape)[1:] != tuple(shortcut_shape)[1:]:
            raise ValueError(
                f"branch output shape {tuple(out_shape)} does not match shortcut shape "
                f"{tuple(shortcut_shape)}"
            )
        self.built = True

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[1]

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x, shortcut = inputs
        p = self.survival_probability
        if p == 1.0:
            return shortcut + self.branch(x, training=training)
        if not training:
            return shortcut + p * self.branch(x, training=False)
        if _full_network_active():
            return shortcut + p * self.branch(x, training=True)
        if self.mode == "per_sample":
            shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
            u = self._per_replica_uniform(shape)
            gate = ops.cast(u < p, self.compute_dtype)
            return shortcut + gate * self.branch(x, training=True)
        # per_batch: one draw; the dropped branch is never executed. Under tf.distribute all
        # replicas share the (mirrored) generator state, so the global batch drops together,
        # as it would on one device.
        u = self._uniform(())
        if _keras_compat.in_xla_context():
            # Measured on TF 2.21 CPU: a training step with these conds compiled by XLA took
            # ~37 s instead of ~0.5 s. Under XLA the branch is computed and gated instead: the
            # same draw and output, without the saving of a skipped branch (XLA cannot skip),
            # and a dropped branch's BN moving statistics are updated as in per-sample mode.
            # Keras' jit_compile="auto" turns XLA on by default on GPUs: pass
            # jit_compile=False there to keep the skipping.
            return shortcut + ops.cast(u < p, self.compute_dtype) * self.branch(x, training=True)
        return ops.cond(
            u < p,
            lambda: shortcut + self.branch(x, training=True),
            lambda: shortcut,
        )

    def _per_replica_uniform(self, shape: Any) -> Any:
        # The generator state is mirrored, so every replica would draw the same masks for its
        # local batch; fold the replica id into the seed so per-sample masks are independent
        # across the global batch.
        replica = tf.distribute.get_replica_context()
        if replica is None or replica.num_replicas_in_sync == 1:
            return self._uniform(shape)
        seed = ops.cast(self.seed_generator.next(), "int64")
        replica_id = ops.cast(replica.replica_id_in_sync_group, "int64")
        seed = seed + ops.stack([replica_id * 2654435761, ops.zeros_like(replica_id)])
        return self._uniform(shape, seed)

    def _uniform(self, shape: Any, seed: Any = None) -> Any:
        # Note: XLA's stateless generators give other streams than the CPU kernels for the
        # same seed (checked on TF 2.21, also with alg="philox"), so a run with
        # jit_compile=True drops other blocks than one without; each is reproducible.
        if seed is None:
            return keras.random.uniform(shape, seed=self.seed_generator, dtype=self.compute_dtype)
        return tf.random.stateless_uniform(shape, seed=seed, dtype=self.compute_dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "branch": keras.saving.serialize_keras_object(self.branch),
                "survival_probability": self.survival_probability,
                "mode": self.mode,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> StochasticDepth:
        config = dict(config)
        config["branch"] = keras.saving.deserialize_keras_object(config["branch"])
        return cls(**config)
