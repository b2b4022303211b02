"""Shared fixtures: CPU-only TensorFlow, the real CIFAR-10 folder when it is present."""

import fcntl
import os
import pathlib
import tarfile
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
CIFAR10_TARBALL = REPO.parent / "shared" / "data" / "cifar10-jpg.tar.gz"


def _split_logical_cpus() -> None:
    # Two logical CPU devices, so MirroredStrategy tests have two replicas. This must happen
    # before TensorFlow initialises its devices, hence at conftest import time.
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
        )
    except RuntimeError:  # already initialised by an earlier import
        pass


_split_logical_cpus()


@pytest.fixture(scope="session")
def cifar10_dir() -> pathlib.Path:
    """The real CIFAR-10 image folder (train/<class>, test/<class>), unpacked once per session."""
    cache = pathlib.Path(tempfile.gettempdir()) / "keras_sd_cifar10_jpg"
    marker = cache / ".complete"
    # ../shared/data next to the checkout, or next to a parent (a git worktree under /work/wt/).
    tarballs = [p / "shared" / "data" / CIFAR10_TARBALL.name for p in REPO.parents]
    tarball = next((t for t in tarballs if t.exists()), None)
    if tarball is None and not marker.exists():
        pytest.skip(f"real CIFAR-10 not available: {CIFAR10_TARBALL} is absent")
    cache.mkdir(parents=True, exist_ok=True)
    # pytest-xdist workers share the cache: one unpacks, the others wait on the lock.
    with open(cache.parent / "keras_sd_cifar10_jpg.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            with tarfile.open(tarball) as tar:
                tar.extractall(cache, filter="data")
            marker.touch()
    roots = [p for p in cache.iterdir() if p.is_dir() and (p / "train").is_dir()]
    return roots[0] if roots else cache
