"""The shared serialisation / training harness, now shipped as :mod:`keras_sd.testing`.

Kept under its old names so test modules read ``from harness import check_model``; with the
helpers of the tests of benchmarks/ scripts (`load_benchmark`, `mini_cifar10`).
"""

import importlib.util
import pathlib
import sys

from keras_sd.testing import (
    check_keras_save_load,
    run_layer_test,
    run_model_test,
    run_serialization_test,
)

check_config_roundtrip = run_serialization_test
check_layer = run_layer_test
check_model = run_model_test

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    """benchmarks/<name>.py as a fresh module, registered in sys.modules under ``name``
    (dataclasses resolve their annotations through it)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def mini_cifar10(src: pathlib.Path, dst: pathlib.Path, train: int, test: int) -> pathlib.Path:
    """``dst``: an image folder of symlinks to the first ``train`` / ``test`` images of every
    class of the CIFAR-10 folder ``src`` (train/<class>, test/<class>)."""
    for split, n in (("train", train), ("test", test)):
        for cls in sorted(p for p in (src / split).iterdir() if p.is_dir()):
            (dst / split / cls.name).mkdir(parents=True)
            for f in sorted(cls.iterdir())[:n]:
                (dst / split / cls.name / f.name).symlink_to(f)
    return dst


__all__ = [
    "check_config_roundtrip",
    "check_keras_save_load",
    "check_layer",
    "check_model",
    "load_benchmark",
    "mini_cifar10",
]
