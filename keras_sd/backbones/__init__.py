"""Backbones returning ``{"stages": [s_1, ..., s_K], "features": h, "logits": z}``.

Every builder returns a functional `keras.Model` with one NHWC float32 image input; ``stages``
are the outputs of each stage (spatial size non-increasing), ``features`` the globally pooled
vector fed to the final dense classifier and ``logits`` its output (no softmax). Kernels use
He-normal initialisation; there is no weight decay inside the models.

Use `get` with a registered name (see `names`), or the builders directly::

    net = keras_sd.backbones.get("resnet32", num_classes=100)
    net = keras_sd.backbones.resnet_cifar(50, num_classes=100, stochastic_depth=0.5)

Keras models from elsewhere: `from_keras` (any functional model, stages by layer name) and
`from_keras_hub` (keras-hub image backbones, stages from pyramid levels or transformer blocks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from keras_sd.backbones._common import survival_probabilities
from keras_sd.backbones.adapter import from_keras
from keras_sd.backbones.densenet import densenet, densenet40, densenet100
from keras_sd.backbones.hub import (
    KerasHubLayer,
    from_keras_hub,
    hub_resnet,
    hub_resnet18,
    hub_resnet50,
    hub_vit,
    hub_vit_tiny,
)
from keras_sd.backbones.mobilenet_v2 import mobilenet_v2
from keras_sd.backbones.preact_resnet import (
    preact_resnet,
    preact_resnet18,
    preact_resnet34,
    wide_resnet,
    wrn16_8,
    wrn28_10,
    wrn40_4,
)
from keras_sd.backbones.resnet import (
    resnet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext50,
)
from keras_sd.backbones.resnet_cifar import (
    resnet20,
    resnet32,
    resnet44,
    resnet56,
    resnet110,
    resnet_cifar,
)

_REGISTRY: dict[str, Callable[..., keras.Model]] = {
    # CIFAR ResNet-(6n+2); any depth through "resnet_cifar" (depth=...), e.g. 50 -> n = 8.
    "resnet_cifar": resnet_cifar,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet44": resnet44,
    "resnet56": resnet56,
    "resnet110": resnet110,
    # Pre-activation ResNets and WRNs.
    "preact_resnet": preact_resnet,
    "preact_resnet18": preact_resnet18,
    "preact_resnet34": preact_resnet34,
    "wide_resnet": wide_resnet,
    "wrn16_8": wrn16_8,
    "wrn28_10": wrn28_10,
    "wrn40_4": wrn40_4,
    # DenseNet without bottleneck or compression.
    "densenet": densenet,
    "densenet40": densenet40,
    "densenet100": densenet100,
    # Four-stage ResNets (variant="cifar" | "imagenet") and ResNeXt-50.
    "resnet": resnet,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet152": resnet152,
    "resnext50": resnext50,
    "mobilenet_v2": mobilenet_v2,
    # keras-hub architectures built from config (keras-sd[hub]; random weights, no download):
    # a ViT (DeiT-Tiny dimensions by default, 4-pixel patches) and keras-hub's ResNets.
    "hub_vit": hub_vit,
    "hub_vit_tiny": hub_vit_tiny,
    "hub_resnet": hub_resnet,
    "hub_resnet18": hub_resnet18,
    "hub_resnet50": hub_resnet50,
}


def names() -> list[str]:
    """The names `get` accepts, sorted."""
    return sorted(_REGISTRY)


def get(name: str, **kwargs: Any) -> keras.Model:
    """Build a registered backbone: ``get("resnet32", num_classes=100, input_shape=...)``.

    Names are case-insensitive and ``-`` is read as ``_``. Note ``"resnet50"`` is the four-stage
    bottleneck ResNet-50; the CIFAR ResNet-(6n+2) of depth 50 is
    ``get("resnet_cifar", depth=50)``.

    Args:
        name: A name from `names()`.
        **kwargs: Passed to the builder (``num_classes``, ``input_shape``, ``depth``, ...).

    Returns:
        The backbone model.

    Raises:
        ValueError: Unknown name (the message lists the known ones).
    """
    key = name.lower().replace("-", "_") if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ValueError(f"unknown backbone name {name!r}; known names: {', '.join(names())}")
    try:
        return _REGISTRY[key](**kwargs)
    except TypeError as e:
        if "unexpected keyword argument" not in str(e):
            raise
        raise ValueError(f"backbone {name!r} does not take these arguments: {e}") from None


__all__ = [
    "densenet",
    "densenet40",
    "densenet100",
    "from_keras",
    "from_keras_hub",
    "KerasHubLayer",
    "get",
    "hub_resnet",
    "hub_resnet18",
    "hub_resnet50",
    "hub_vit",
    "hub_vit_tiny",
    "mobilenet_v2",
    "names",
    "preact_resnet",
    "preact_resnet18",
    "preact_resnet34",
    "resnet",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet44",
    "resnet50",
    "resnet56",
    "resnet101",
    "resnet110",
    "resnet152",
    "resnet_cifar",
    "resnext50",
    "survival_probabilities",
    "wide_resnet",
    "wrn16_8",
    "wrn28_10",
    "wrn40_4",
]
