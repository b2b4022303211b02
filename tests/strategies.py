"""Two-replica MirroredStrategy on the logical CPUs (tests/conftest.py splits the CPU in two).

Every MirroredStrategy starts its collective group/instance keys at the same values, so two
strategies in one process clash in the collective executor's cache ("Collective instance ...
expected type ..."). TF's own tests give each strategy a distinct `_collective_key_base`; so does
this helper, with a process-wide counter, for every test module.
"""

import itertools

import tensorflow as tf

_KEY_BASES = itertools.count(start=10_000, step=10_000)


def mirrored(num_replicas: int = 2) -> tf.distribute.MirroredStrategy:
    devices = [d.name for d in tf.config.list_logical_devices("CPU")[:num_replicas]]
    assert len(devices) == num_replicas, "conftest must split the CPU into logical devices"
    cls = tf.distribute.MirroredStrategy
    saved = cls._collective_key_base
    cls._collective_key_base = next(_KEY_BASES)
    try:
        return cls(devices)
    finally:
        cls._collective_key_base = saved


def run_per_replica(strategy, fn, *tensors, batch_size):
    """Runs ``fn`` on every replica of ``strategy`` (in a tf.function) for each batch of the
    slices of ``tensors``, distributed by ``strategy``."""
    dataset = tf.data.Dataset.from_tensor_slices(tensors).batch(batch_size)

    @tf.function
    def step(*args):
        strategy.run(fn, args=args)

    for args in strategy.experimental_distribute_dataset(dataset):
        step(*args)
