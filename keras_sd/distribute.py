"""Choosing a `tf.distribute` strategy from a recipe field or the `--strategy` flag.

The global batch size stays the recipe's: each replica gets ``batch_size / num_replicas``. The
learning rate is never rescaled silently; change it with ``--set optimizer.learning_rate=...``.

Under `tf.distribute.MultiWorkerMirroredStrategy` every worker runs the same callbacks; `is_chief`
tells the one process that writes the run's shared files (the others write to private temporary
folders, as tf.keras 2 did).
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from keras_sd import validation

STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")


def _tf_config() -> dict:
    try:
        config = json.loads(os.environ.get("TF_CONFIG", "") or "{}")
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {config!r}.")
    return config


def _tf_config_workers() -> int:
    return len(_tf_config().get("cluster", {}).get("worker", []))


def cluster_task(
    strategy: tf.distribute.Strategy | None = None,
) -> tuple[str | None, int | None, bool]:
    """``(task_type, task_id, cluster_has_chief)`` of this process.

    With ``strategy``, from its ``cluster_resolver`` (None for single-process strategies, whose
    process is the only one); without, from the ``TF_CONFIG`` environment variable, the same
    source `tf.distribute.MultiWorkerMirroredStrategy` reads.

    Raises:
        ValueError: if ``strategy`` is not a strategy, TF_CONFIG is not a JSON object, or its
            ``task`` has a non-integer ``index``.
    """
    if strategy is not None:
        if not hasattr(strategy, "cluster_resolver"):
            raise ValueError(
                f"`strategy` must be a tf.distribute.Strategy (or None to read TF_CONFIG), "
                f"got {strategy!r}."
            )
        resolver = strategy.cluster_resolver
        if resolver is None or not getattr(resolver, "task_type", None):
            return None, None, False
        spec = resolver.cluster_spec().as_dict()
        return resolver.task_type, int(resolver.task_id or 0), "chief" in spec
    config = _tf_config()
    spec = config.get("cluster") or {}
    task_spec = config.get("task") or {}
    if not task_spec.get("type"):
        return None, None, "chief" in spec
    index = task_spec.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError(f"TF_CONFIG `task.index` must be an integer, got {index!r}.")
    return str(task_spec["type"]), index, "chief" in spec


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes the run's shared files (backup, model, metrics, logs).

    The chief is the ``chief`` task if the cluster has one, else worker 0 (the rule of
    ``tf.distribute``'s multi-worker utilities); a process outside any cluster is its own chief.
    An ``evaluator`` (or any other task) is not: it must not write into the training run's
    folder.

    Args:
        strategy: the strategy training runs under; None reads ``TF_CONFIG``.

    Raises:
        ValueError: as `cluster_task`.
    """
    task_type, task_id, has_chief = cluster_task(strategy)
    if task_type is None:
        return True
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and not has_chief


def worker_id(strategy: tf.distribute.Strategy | None = None) -> str:
    """A name for this process that no other process of the cluster shares: ``"worker_1"``,
    ``"chief_0"``, or ``"single"`` outside a cluster (used to name private temporary folders)."""
    task_type, task_id, _ = cluster_task(strategy)
    return "single" if task_type is None else f"{task_type}_{task_id}"


def get_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """``auto``: MultiWorkerMirroredStrategy when TF_CONFIG names several workers, MirroredStrategy
    with several GPUs, else the default strategy."""
    validation.one_of(name, "strategy", STRATEGIES)
    if name == "auto":
        if _tf_config_workers() > 1:
            name = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
