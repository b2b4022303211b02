"""Turn any functional Keras model into the backbone dict form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from keras_sd import _keras_compat
from keras_sd.backbones import _common as c


def _layer(model: keras.Model, name: Any, arg: str) -> keras.layers.Layer:
    if not isinstance(name, str):
        raise ValueError(f"{arg} must be a layer name (str), got {name!r}")
    for layer in model.layers:
        if layer.name == name:
            return layer
    known = [layer.name for layer in model.layers]
    preview = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
    raise ValueError(
        f"{arg}: model {model.name!r} has no layer named {name!r} ({len(known)} layers: {preview})"
    )


def _single_output(layer: keras.layers.Layer, arg: str) -> Any:
    try:
        out = layer.output
    except (AttributeError, ValueError) as err:
        raise ValueError(
            f"{arg}: layer {layer.name!r} has no single output tensor (used more than once?)"
        ) from err
    if isinstance(out, (list, tuple, dict)):
        raise ValueError(f"{arg}: layer {layer.name!r} has several outputs; name a single one")
    return out


def _final_dense(model: keras.Model) -> keras.layers.Dense | None:
    outputs = model.outputs
    if len(outputs) != 1:
        return None
    layer = _keras_compat.keras_history_operation(outputs[0])
    return layer if isinstance(layer, keras.layers.Dense) else None


def _linear_copy(dense: keras.layers.Dense, features: Any) -> Any:
    """Logits of a dense head: the head itself when linear, else a linear copy of it."""
    if dense.get_config().get("activation") in (None, "linear"):
        return _single_output(dense, "logits_layer")
    # A softmax head (keras.applications default): the logits are its pre-activation, so
    # rebuild the layer without activation and copy its weights.
    config = dict(dense.get_config(), activation=None, name=f"{dense.name}_logits")
    linear = keras.layers.Dense.from_config(config)
    logits = linear(features)
    linear.set_weights(dense.get_weights())
    return logits


def from_keras(
    model: keras.Model,
    stage_layers: Sequence[str],
    *,
    features_layer: str | None = None,
    logits_layer: str | None = None,
    num_classes: int | None = None,
) -> keras.Model:
    """Wrap a functional Keras model so it returns ``{"stages", "features", "logits"}``.

    * ``stages``: the outputs of the layers named in ``stage_layers`` (forward order, >= 2).
    * With a classifier head (``logits_layer``, or, when neither ``logits_layer`` nor
      ``features_layer`` is given, a model whose output layer is a `Dense`): ``logits`` is
      the head's pre-activation (a softmax head is replaced by a linear copy with the same
      weights) and ``features`` its input (or the ``features_layer`` output).
    * Otherwise (e.g. ``include_top=False``, or only ``features_layer`` given): ``features``
      is the ``features_layer`` output, or the model output globally average-pooled (kept as
      is when already 2-D), and a new ``Dense(num_classes)`` (He-normal) gives ``logits``;
      ``num_classes`` is then required.

    The returned model shares the wrapped model's layers and weights.

    Example:
        >>> base = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
        >>> net = from_keras(base, ["conv2_block3_out", "conv3_block4_out",
        ...                         "conv4_block6_out", "conv5_block3_out"])

    Args:
        model: A functional `keras.Model` with one input.
        stage_layers: Names of the layers whose outputs are the stages, in forward order.
        features_layer: Optional layer whose output is ``features`` (must be 2-D).
        logits_layer: Optional `Dense` layer giving the logits.
        num_classes: Classes of the new head when the model has none.

    Returns:
        A functional `keras.Model` with the contract's dict output, named like ``model``.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a functional keras.Model, got {type(model).__name__}")
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs or len(inputs) != 1:
        raise ValueError(f"model must be a functional keras.Model with one input, got {model!r}")
    if isinstance(stage_layers, str) or not isinstance(stage_layers, Sequence):
        raise ValueError(f"stage_layers must be a list of layer names, got {stage_layers!r}")
    if len(stage_layers) < 2:
        raise ValueError(
            f"stage_layers must name at least 2 layers, got {len(stage_layers)}: {stage_layers!r}"
        )
    order = {layer.name: i for i, layer in enumerate(model.layers)}
    stage_objs = [_layer(model, n, "stage_layers") for n in stage_layers]
    positions = [order[layer.name] for layer in stage_objs]
    if any(b <= a for a, b in zip(positions, positions[1:])):
        raise ValueError(
            f"stage_layers must be distinct and in forward order, got {list(stage_layers)!r} "
            f"(positions in the model: {positions})"
        )
    stages = [_single_output(layer, "stage_layers") for layer in stage_objs]

    features = None
    if features_layer is not None:
        features = _single_output(_layer(model, features_layer, "features_layer"), "features_layer")
        if len(features.shape) != 2:
            raise ValueError(
                f"features_layer: output of {features_layer!r} must be 2-D [batch, dim], "
                f"got shape {tuple(features.shape)}"
            )
    head = None
    if logits_layer is not None:
        head = _layer(model, logits_layer, "logits_layer")
        if not isinstance(head, keras.layers.Dense):
            raise ValueError(
                f"logits_layer must name a Dense layer, got {logits_layer!r} "
                f"({type(head).__name__})"
            )
    elif features_layer is None:
        head = _final_dense(model)

    if head is not None:
        head_input = head.input
        if features is None:
            features = head_input
        logits = _linear_copy(head, head_input)
    else:
        if num_classes is None:
            raise ValueError(
                "num_classes is required when the model has no Dense classifier head "
                "(e.g. include_top=False) or features_layer is given without logits_layer"
            )
        num_classes = c.check_num_classes(num_classes)
        if features is None:
            out = model.outputs[0]
            if len(out.shape) == 4:
                features = keras.layers.GlobalAveragePooling2D(name="sd_avg_pool")(out)
            elif len(out.shape) == 2:
                features = out
            else:
                raise ValueError(
                    f"model output must be 4-D or 2-D to derive features, got shape "
                    f"{tuple(out.shape)}; pass features_layer"
                )
        logits = keras.layers.Dense(
            num_classes, kernel_initializer=c.KERNEL_INIT, name="sd_logits"
        )(features)
    return keras.Model(
        inputs[0], {"stages": stages, "features": features, "logits": logits}, name=model.name
    )
