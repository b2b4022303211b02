"""The shared serialisation / training harness every keras_sd layer and model goes through.

Usage from a test module::

    from harness import check_model, check_layer
    check_model(lambda: keras_sd.Baseline(tiny_backbone()), x, y, expected_logs={"loss", ...})
"""

from __future__ import annotations

import math
import pathlib
import tempfile
from collections.abc import Callable, Iterable

import keras
import numpy as np


def _predict(model, x):
    return keras.tree.map_structure(np.asarray, model(x, training=False))


def _assert_same(a, b, atol=1e-6):
    for u, v in zip(keras.tree.flatten(a), keras.tree.flatten(b)):
        np.testing.assert_allclose(u, v, atol=atol, rtol=1e-6)


def check_config_roundtrip(obj):
    """`get_config` -> `from_config` gives an object with the same config."""
    config = obj.get_config()
    clone = type(obj).from_config(config)
    assert clone.get_config() == config
    return clone


def check_keras_save_load(model, x, tmpdir: pathlib.Path | None = None):
    """`.keras` save and load gives identical predictions (training=False)."""
    before = _predict(model, x)
    path = pathlib.Path(tmpdir or tempfile.mkdtemp()) / f"{model.name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    _assert_same(before, _predict(loaded, x))
    return loaded


def check_layer(layer_factory: Callable[[], keras.layers.Layer], x):
    """A layer: config round trip, and a model wrapping it saves and loads with the same output."""
    layer = layer_factory()
    check_config_roundtrip(layer)
    inp = keras.Input(x.shape[1:])
    model = keras.Model(inp, layer(inp))
    check_keras_save_load(model, x)


def check_model(
    model_factory: Callable[[], keras.Model],
    x,
    y,
    *,
    expected_logs: Iterable[str] = (),
    optimizer: str | keras.optimizers.Optimizer = "sgd",
    batch_size: int | None = None,
):
    """A self-distillation model: one fit step is finite and logs the expected names; config round
    trip; `.keras` save/load with identical predictions. Returns the trained model."""
    model = model_factory()
    model.compile(optimizer=optimizer)
    history = model.fit(
        x, y, epochs=1, batch_size=batch_size or len(y), verbose=0, validation_data=(x, y)
    )
    logs = {k: v[-1] for k, v in history.history.items()}
    missing = set(expected_logs) - set(logs)
    assert not missing, f"missing logs {sorted(missing)}; got {sorted(logs)}"
    for name, value in logs.items():
        assert math.isfinite(value), f"{name} = {value}"
    clone = check_config_roundtrip(model)
    assert type(clone) is type(model)
    check_keras_save_load(model, x)
    return model
