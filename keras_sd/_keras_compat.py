"""Every use of a private Keras or TensorFlow API in keras_sd, one named function each.

keras_sd uses public hooks wherever Keras and TensorFlow have one (``compute_metrics``,
``super().metrics``, ``distribute_strategy``, callback ``on_*`` methods, ``Model.layers``). What
is left has no public equivalent and lives here, so that a Keras or TensorFlow upgrade is checked
in one file: each function names the upstream file it depends on and the versions it was read
against, and ``tests/test_keras_compat.py`` fails, naming both, when the installed versions leave
the verified ranges below. Each function also has a behavioural test there.

Callers import this module, never the private names themselves.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# Versions every shim below was read against and tested on: ``[lower, upper)`` on the
# ``major.minor`` release. Widen a range only after reading the upstream files named below at
# the new version and running tests/test_keras_compat.py there.
VERIFIED_KERAS = ("3.15", "3.16")
VERIFIED_TENSORFLOW = ("2.21", "2.22")


def _major_minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def unverified_versions() -> list[str]:
    """One message per installed library (Keras, TensorFlow) outside its verified range.

    Returns:
        An empty list when both versions are within ``VERIFIED_KERAS`` / ``VERIFIED_TENSORFLOW``.
    """
    problems = []
    for name, installed, (low, high) in (
        ("keras", keras.__version__, VERIFIED_KERAS),
        ("tensorflow", tf.__version__, VERIFIED_TENSORFLOW),
    ):
        if not _major_minor(low) <= _major_minor(installed) < _major_minor(high):
            problems.append(
                f"{name} {installed} is outside the range keras_sd/_keras_compat.py was verified "
                f"on ({name}>={low},<{high}): re-read the upstream files its shims name and run "
                "tests/test_keras_compat.py before widening the range."
            )
    return problems


# ---------------------------------------------------------------------------- Keras internals
def keras_history_operation(tensor):
    """The layer (operation) whose call produced a symbolic `keras.KerasTensor`.

    Keras has no public "producer of this tensor" accessor; every KerasTensor made by a layer
    call carries ``_keras_history = (operation, node_index, tensor_index)``.

    Depends on: keras/src/backend/common/keras_tensor.py and keras/src/ops/node.py
    (Keras 3.15.1).
    """
    return tensor._keras_history.operation


def set_initial_epoch(model: keras.Model, epoch: int) -> None:
    """Makes the `fit` that is starting resume at ``epoch`` (0-based: epochs already done).

    Only valid from a callback's ``on_train_begin``, as Keras' own BackupAndRestore does: `fit`
    reads ``model._initial_epoch`` right after the callbacks' ``on_train_begin`` and then
    ignores its ``initial_epoch`` argument. A restoring callback has no public way to do this.

    Depends on: keras/src/trainers/trainer.py (``Trainer.__init__``: "Can be set by callbacks
    in on_train_begin"), keras/src/backend/tensorflow/trainer.py (``fit``: ``initial_epoch =
    self._initial_epoch or initial_epoch``) and keras/src/callbacks/backup_and_restore.py
    (Keras 3.15.1).
    """
    model._initial_epoch = int(epoch)


class FirstReplicaSymbolicBuild:
    """Model mixin: build from the first local replica's batch, not a cross-replica mean.

    Before the first step Keras' TF trainer takes one distributed batch and averages it across
    replicas with ``strategy.reduce("MEAN", ...)`` only to learn its shapes and dtypes; under
    `tf.distribute.MultiWorkerMirroredStrategy` that reduce fails. The first local replica's
    batch has the shapes and dtypes the symbolic build needs, so this uses it instead. It
    overrides the private ``_maybe_symbolic_build`` and reads the private
    ``_distribute_strategy`` (None unless the model was created under a strategy scope, in which
    case Keras skips the build; the public ``distribute_strategy`` never is None).

    Put it before `keras.Model` in the bases.

    Depends on: keras/src/backend/tensorflow/trainer.py (``TensorFlowTrainer.__init__`` and
    ``_maybe_symbolic_build``) and keras/src/trainers/trainer.py (``_symbolic_build``)
    (Keras 3.15.1).
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = getattr(self, "_distribute_strategy", None)
        if iterator is not None and strategy is not None:
            for _, _, it in iterator:
                batch = next(it)
                break
            data_batch = keras.tree.map_structure(
                lambda v: (
                    strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues)
                    else v
                ),
                batch,
            )
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


# ---------------------------------------------------------------------------- TensorFlow internals
def in_multi_worker_mode(strategy) -> bool:
    """True for a `tf.distribute.MultiWorkerMirroredStrategy` spanning more than one worker.

    This is the test Keras' TF trainer itself makes to choose how it reduces step outputs
    (``_collective_all_reduce_multi_worker``), so callers that must match that choice use it;
    a single-worker MultiWorkerMirroredStrategy behaves like MirroredStrategy there.

    Depends on: keras/src/backend/tensorflow/trainer.py (Keras 3.15.1) and
    tensorflow/python/distribute/collective_all_reduce_strategy.py (TensorFlow 2.21.0).
    """
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    )


def in_xla_context() -> bool:
    """True while tracing a function compiled with XLA (``jit_compile=True``).

    TensorFlow has no public test for this; the internal helper is what its own control flow
    uses to pick XLA-compatible lowerings. Should it move, this returns False (callers then
    take their non-XLA path, which must stay correct, if slower, under XLA).

    Depends on: tensorflow/python/ops/control_flow_util.py (TensorFlow 2.21.0).
    """
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - TensorFlow internals moved
        return False
    graph = tf.compat.v1.get_default_graph()
    return bool(control_flow_util.GraphOrParentsInXlaContext(graph))


def convert_variables_to_constants(concrete_function):
    """A copy of a concrete ``tf.function`` with every variable it reads baked in as a constant.

    TensorFlow has no public "freeze for serving" call for TF2 functions; this is the converter
    its own TFLite and SavedModel tooling uses.

    Depends on: tensorflow/python/framework/convert_to_constants.py
    (``convert_variables_to_constants_v2``, TensorFlow 2.21.0).
    """
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    return convert_variables_to_constants_v2(concrete_function)


__all__ = [
    "VERIFIED_KERAS",
    "VERIFIED_TENSORFLOW",
    "FirstReplicaSymbolicBuild",
    "convert_variables_to_constants",
    "in_multi_worker_mode",
    "in_xla_context",
    "keras_history_operation",
    "set_initial_epoch",
    "unverified_versions",
]
