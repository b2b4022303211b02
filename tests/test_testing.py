"""keras_sd.testing: the harness passes sound objects and fails each kind of broken one."""

import doctest

import keras
import numpy as np
import pytest
from tiny import tiny_backbone

import keras_sd
from keras_sd import testing


class _NotJSON(keras.layers.Layer):
    def get_config(self):
        return {**super().get_config(), "table": np.arange(3)}


@keras.saving.register_keras_serializable(package="keras_sd_test")
class _Scale(keras.layers.Layer):
    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, x):
        return x * self.scale

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="keras_sd_test")
class _ForgetsItsArgument(_Scale):
    """get_config omits `scale`, so a revived layer silently falls back to the default."""

    def get_config(self):
        # _Scale's config records `scale` (as Keras' automatic one would); dropping it is the bug.
        config = super().get_config()
        config.pop("scale", None)
        return config


class _Unregistered(_Scale):
    pass


def test_sound_layer_passes_and_returns_the_clone():
    clone = testing.run_serialization_test(_Scale(2.5, name="s"))
    assert clone.scale == 2.5 and clone.name == "s"
    testing.run_layer_test(lambda: _Scale(2.5), np.ones((2, 3), "float32"))


def test_lost_argument_is_caught():
    layer = _ForgetsItsArgument(3.0)
    with pytest.raises(AssertionError, match="tolerance"):
        # The configs agree (both lack `scale`), but the saved model predicts x, not 3x.
        testing.run_layer_test(lambda: layer, np.ones((2, 3), "float32"))


def test_config_that_is_not_json_is_caught():
    with pytest.raises(AssertionError, match="JSON"):
        testing.run_serialization_test(_NotJSON())


def test_unregistered_class_is_caught():
    with pytest.raises((AssertionError, TypeError, ValueError)):
        testing.run_serialization_test(_Unregistered(2.0))


def test_model_harness_on_a_real_model():
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    y = np.array([0, 1, 2, 0])
    model = testing.run_model_test(
        lambda: keras_sd.Baseline(tiny_backbone(num_classes=3)), x, y, expected_logs={"ce_loss"}
    )
    assert model.optimizer is not None


def test_docstring_examples_run():
    result = doctest.testmod(testing, verbose=False)
    assert result.attempted >= 2 and result.failed == 0
