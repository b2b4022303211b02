"""CIFAR ResNet-(6n+2): three stages of basic blocks, widths 16/32/64.

Reference: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (section 4.2).
"""

from __future__ import annotations

import keras

from keras_sd.backbones import _common as c


def _check_depth(depth: object) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 32, ...), got {depth!r}")
    return depth


def resnet_cifar(
    depth: int,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    *,
    stochastic_depth: float | None = None,
    drop_mode: str = "per_batch",
    seed: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """CIFAR ResNet of depth ``6n+2`` (ResNet-20/32/44/56/110, or e.g. 50 with n = 8).

    3x3 stem with 16 filters, then three stages of ``n`` post-activation basic blocks with
    16, 32 and 64 filters (strides 1, 2, 2). Where the shape changes the shortcut is a
    projection, 1x1 convolution + BatchNorm (option B of the paper); elsewhere identity. This
    adds 0.6% to ResNet-32 compared with the paper's zero-padding option A.

    Reference: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.

    Args:
        depth: ``6n + 2``.
        num_classes: Number of classes of the dense classifier.
        input_shape: ``(height, width, channels)``; any size >= 1 works (e.g. 8x8x1).
        stochastic_depth: ``None`` for plain blocks, or the last block's survival
            probability in (0, 1] (linear decay from the first block, Huang et al. 2016).
        drop_mode: ``"per_batch"`` (default: one draw per mini-batch, as Stochastic
            Depth and Self-Guidance) or ``"per_sample"`` (see `StochasticDepth`).
        seed: Base seed of the stochastic-depth gates (block ``l`` uses ``seed + l``).
        name: Model name; default ``"resnet{depth}"``.

    Returns:
        A functional model with output ``{"stages": [s1, s2, s3], "features", "logits"}``.
    """
    depth = _check_depth(depth)
    num_classes = c.check_num_classes(num_classes)
    input_shape = c.check_input_shape(input_shape)
    n = (depth - 2) // 6
    schedule = c.DepthSchedule(stochastic_depth, 3 * n, drop_mode, seed)

    inputs = c.image_input(input_shape)
    x = c.conv(16, 3, name="stem_conv")(inputs)
    x = c.bn("stem_bn")(x)
    x = c.relu("stem_relu")(x)
    stages = c.block_stages(
        x, in_filters=16, widths=(16, 32, 64), blocks=(n,) * 3, schedule=schedule, block=basic_block
    )
    return c.head_and_model(inputs, stages, num_classes, name or f"resnet{depth}")


def basic_block(
    x: object,
    in_filters: int,
    filters: int,
    stride: int,
    schedule: c.DepthSchedule,
    name: str,
) -> object:
    """Post-activation basic block; projection shortcut (1x1 conv + BN) when shape changes."""
    if stride != 1 or in_filters != filters:
        shortcut = c.conv(filters, 1, stride, name=f"{name}_proj_conv")(x)
        shortcut = c.bn(f"{name}_proj_bn")(shortcut)
    else:
        shortcut = x
    branch = [
        c.conv(filters, 3, stride, name=f"{name}_conv1"),
        c.bn(f"{name}_bn1"),
        c.relu(f"{name}_relu1"),
        c.conv(filters, 3, name=f"{name}_conv2"),
        c.bn(f"{name}_bn2"),
    ]
    y = c.residual(x, shortcut, branch, schedule, name)
    return c.relu(f"{name}_out")(y)


def resnet20(num_classes: int = 10, **kwargs: object) -> keras.Model:
    """CIFAR ResNet-20 (0.27M parameters). See `resnet_cifar`."""
    return resnet_cifar(20, num_classes, **kwargs)  # type: ignore[arg-type]


def resnet32(num_classes: int = 10, **kwargs: object) -> keras.Model:
    """CIFAR ResNet-32 (0.46M parameters). See `resnet_cifar`."""
    return resnet_cifar(32, num_classes, **kwargs)  # type: ignore[arg-type]


def resnet44(num_classes: int = 10, **kwargs: object) -> keras.Model:
    """CIFAR ResNet-44 (0.66M parameters). See `resnet_cifar`."""
    return resnet_cifar(44, num_classes, **kwargs)  # type: ignore[arg-type]


def resnet56(num_classes: int = 10, **kwargs: object) -> keras.Model:
    """CIFAR ResNet-56 (0.85M parameters). See `resnet_cifar`."""
    return resnet_cifar(56, num_classes, **kwargs)  # type: ignore[arg-type]


def resnet110(num_classes: int = 10, **kwargs: object) -> keras.Model:
    """CIFAR ResNet-110 (1.7M parameters). See `resnet_cifar`."""
    return resnet_cifar(110, num_classes, **kwargs)  # type: ignore[arg-type]
