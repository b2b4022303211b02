"""Checks every keras_sd layer and model goes through; for anyone adding a method or a layer.

The same harness the package's own test suite uses, shipped so that a new method or exit head
is held to the same standard (in the spirit of keras-hub's ``TestCase.run_serialization_test``):

* :func:`run_serialization_test`: ``get_config`` survives a JSON round trip and
  ``keras.saving.serialize_keras_object`` / ``deserialize_keras_object``, and the revived object
  has the same config and the same public attributes;
* :func:`run_layer_test`: the above, plus a model wrapping the layer saves to ``.keras`` and loads
  with identical outputs;
* :func:`run_model_test`: ``fit`` before ``compile`` raises; one ``fit`` step logs the expected
  names with finite values; the serialization test; ``.keras`` save/load with identical
  predictions.

Assertions raise ``AssertionError`` (so they work under pytest and plain ``unittest``).

Example:

>>> import keras, numpy as np
>>> from keras_sd import testing
>>> clone = testing.run_serialization_test(keras.layers.Dense(3, name="d"))
>>> clone.units
3
"""

from __future__ import annotations

import json
import math
import pathlib
import tempfile
from collections.abc import Callable, Iterable

import keras
import numpy as np

__all__ = [
    "check_keras_save_load",
    "run_layer_test",
    "run_model_test",
    "run_serialization_test",
]


def _predict(model, x):
    return keras.tree.map_structure(np.asarray, model(x, training=False))


def _assert_same(a, b, atol=1e-6):
    flat_a, flat_b = keras.tree.flatten(a), keras.tree.flatten(b)
    assert len(flat_a) == len(flat_b), f"{len(flat_a)} outputs before, {len(flat_b)} after"
    for u, v in zip(flat_a, flat_b):
        np.testing.assert_allclose(u, v, atol=atol, rtol=1e-6)


def _public_attributes(obj) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


def run_serialization_test(obj, *, compare_attributes: bool = True):
    """Round-trips ``obj`` through its config, JSON and Keras' object serialization.

    Checks that (1) the config is JSON-serialisable and unchanged by a JSON round trip;
    (2) ``type(obj).from_config(config)`` gives an object with the same config and (with
    ``compare_attributes``) the same public attribute names; (3) ``keras.saving.serialize_keras_object`` ->
    ``deserialize_keras_object`` gives an object of the same type with the same config (this
    is the path ``.keras`` files and nested layers take, so a class that is not registered
    as serialisable fails here).

    Args:
        obj: a Keras layer, model or other object with ``get_config``/``from_config``.
        compare_attributes: compare public attribute names with the revived object's. Only
            meaningful for a freshly constructed object: compiling and fitting a model adds
            attributes (``optimizer``, ``history``, ...) that no constructor sets.

    Returns:
        The object revived by ``from_config``.
    """
    config = obj.get_config()
    try:
        json_config = json.dumps(config, sort_keys=True)
    except TypeError as err:
        raise AssertionError(
            f"{type(obj).__name__}.get_config() is not JSON-serialisable: {err}"
        ) from err

    clone = type(obj).from_config(json.loads(json_config))
    assert type(clone) is type(obj), f"from_config gave {type(clone).__name__}"
    clone_json = json.dumps(clone.get_config(), sort_keys=True)
    assert clone_json == json_config, (
        f"config changed by from_config:\n before {json_config}\n after  {clone_json}"
    )
    missing = _public_attributes(obj) - _public_attributes(clone) if compare_attributes else ()
    assert not missing, f"attributes lost by from_config: {sorted(missing)}"

    serialized = keras.saving.serialize_keras_object(obj)
    json.dumps(serialized)  # the form written into .keras archives must be JSON too
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is type(obj), (
        f"deserialize_keras_object gave {type(revived).__name__}, expected {type(obj).__name__}"
        " (is the class registered with keras.saving.register_keras_serializable?)"
    )
    revived_json = json.dumps(revived.get_config(), sort_keys=True)
    assert revived_json == json_config, (
        f"config changed by serialize/deserialize_keras_object:\n before {json_config}\n"
        f" after  {revived_json}"
    )
    return clone


def check_keras_save_load(model, x, tmpdir: str | pathlib.Path | None = None):
    """``.keras`` save and load gives a model of the same type with identical predictions.

    Predictions are compared with ``training=False`` (dropout / stochastic depth off).

    Returns:
        The loaded model.
    """
    before = _predict(model, x)
    path = pathlib.Path(tmpdir or tempfile.mkdtemp()) / f"{model.name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model), f"loaded a {type(loaded).__name__}"
    _assert_same(before, _predict(loaded, x))
    return loaded


def run_layer_test(layer_factory: Callable[[], keras.layers.Layer], x):
    """A layer: :func:`run_serialization_test`, and a functional model wrapping it saves to
    ``.keras`` and loads with the same output on ``x``."""
    layer = layer_factory()
    run_serialization_test(layer)
    inp = keras.Input(x.shape[1:])
    model = keras.Model(inp, layer(inp))
    check_keras_save_load(model, x)


def run_model_test(
    model_factory: Callable[[], keras.Model],
    x,
    y,
    *,
    expected_logs: Iterable[str] = (),
    optimizer: str | keras.optimizers.Optimizer = "sgd",
    batch_size: int | None = None,
):
    """A self-distillation model, end to end on ``(x, y)``.

    Checks: ``fit`` before ``compile`` raises ``ValueError``; :func:`run_serialization_test` on
    a fresh model; one epoch of ``fit`` (with validation on the same data) logs every name in
    ``expected_logs`` and only finite values; the trained model's config round trips too; and
    ``.keras`` save/load gives identical predictions.

    Args:
        model_factory: builds a fresh, uncompiled model (called twice).
        x, y: a small batch of inputs and integer labels.
        expected_logs: names that must appear in the history (e.g. ``"kl_loss"``).
        optimizer: passed to ``compile``.
        batch_size: defaults to ``len(y)`` (one step).

    Returns:
        The trained model.
    """
    uncompiled = model_factory()
    try:
        uncompiled.fit(x, y, epochs=1, batch_size=batch_size or len(y), verbose=0)
    except ValueError:
        pass
    else:
        raise AssertionError(f"{type(uncompiled).__name__}.fit ran without compile()")

    run_serialization_test(model_factory())
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
    run_serialization_test(model, compare_attributes=False)
    check_keras_save_load(model, x)
    return model
