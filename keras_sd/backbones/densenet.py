"""DenseNet for CIFAR without bottleneck or compression (the plain "DenseNet (k = 12)" rows).

Reference: Huang et al., "Densely Connected Convolutional Networks", CVPR 2017.
"""

from __future__ import annotations

import keras

from keras_sd import validation
from keras_sd.backbones import _common as c


def densenet(
    depth: int,
    growth_rate: int = 12,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    *,
    name: str | None = None,
) -> keras.Model:
    """DenseNet-``depth`` (no bottleneck, no compression), as used by the DDGSD paper.

    3x3 stem with 16 filters; three dense blocks of ``(depth - 4) / 3`` layers
    (BN-ReLU-conv3x3 with ``growth_rate`` filters, concatenated to the input); transitions
    BN-ReLU-conv1x1 (same width) + 2x2 average pooling; final BN-ReLU. Stage outputs are the
    dense blocks' outputs, the last one after the final BN-ReLU.

    Reference: Huang et al., "Densely Connected Convolutional Networks", CVPR 2017.

    Args:
        depth: ``3n + 4`` (40, 100, ...).
        growth_rate: ``k``, filters added per layer.
        num_classes: Number of classes.
        input_shape: ``(height, width, channels)``.
        name: Model name; default ``"densenet{depth}"`` (``"densenet{depth}_k{k}"`` when
            ``growth_rate != 12``).

    Returns:
        A functional model with output ``{"stages": [s1, s2, s3], "features", "logits"}``.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 7 or (depth - 4) % 3:
        raise ValueError(f"depth must be 3n+4 with n >= 1 (7, 10, ..., 40, 100), got {depth!r}")
    validation.positive_int(growth_rate, "growth_rate")
    num_classes = c.check_num_classes(num_classes)
    input_shape = c.check_input_shape(input_shape)
    n = (depth - 4) // 3

    inputs = c.image_input(input_shape)
    x = c.conv(16, 3, name="stem_conv")(inputs)
    channels = 16
    stages = []
    for s in range(3):
        for i in range(n):
            prefix = f"block{s + 1}_layer{i + 1}"
            y = c.relu(f"{prefix}_relu")(c.bn(f"{prefix}_bn")(x))
            y = c.conv(growth_rate, 3, name=f"{prefix}_conv")(y)
            x = keras.layers.Concatenate(name=f"{prefix}_concat")([x, y])
            channels += growth_rate
        if s < 2:
            stages.append(x)
            prefix = f"transition{s + 1}"
            x = c.relu(f"{prefix}_relu")(c.bn(f"{prefix}_bn")(x))
            x = c.conv(channels, 1, name=f"{prefix}_conv")(x)
            x = keras.layers.AveragePooling2D(2, padding="same", name=f"{prefix}_pool")(x)
        else:
            stages.append(c.final_bn_relu(x))
    default = f"densenet{depth}" if growth_rate == 12 else f"densenet{depth}_k{growth_rate}"
    return c.head_and_model(inputs, stages, num_classes, name or default)


def densenet40(num_classes: int = 10, **kwargs: object) -> keras.Model:
    """DenseNet-40 (k = 12, 1.0M parameters). See `densenet`."""
    return densenet(40, 12, num_classes, **kwargs)  # type: ignore[arg-type]


def densenet100(num_classes: int = 10, **kwargs: object) -> keras.Model:
    """DenseNet-100 (k = 12, 7.0M parameters). See `densenet`."""
    return densenet(100, 12, num_classes, **kwargs)  # type: ignore[arg-type]
