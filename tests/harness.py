"""The shared serialisation / training harness, now shipped as :mod:`keras_sd.testing`.

Kept under its old names so test modules read ``from harness import check_model``.
"""

from keras_sd.testing import (
    check_keras_save_load,
    run_layer_test,
    run_model_test,
    run_serialization_test,
)

check_config_roundtrip = run_serialization_test
check_layer = run_layer_test
check_model = run_model_test

__all__ = ["check_config_roundtrip", "check_keras_save_load", "check_layer", "check_model"]
