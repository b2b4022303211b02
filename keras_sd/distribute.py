"""Choosing a `tf.distribute` strategy from a recipe field or the `--strategy` flag.

The global batch size stays the recipe's: each replica gets ``batch_size / num_replicas``. The
learning rate is never rescaled silently; change it with ``--set optimizer.learning_rate=...``.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")


def _tf_config_workers() -> int:
    try:
        config = json.loads(os.environ.get("TF_CONFIG", "") or "{}")
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
    return len(config.get("cluster", {}).get("worker", []))


def get_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """``auto``: MultiWorkerMirroredStrategy when TF_CONFIG names several workers, MirroredStrategy
    with several GPUs, else the default strategy."""
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {name!r}.")
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
