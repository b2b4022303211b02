"""ResNet-18/34/50/101/152 and ResNeXt-50 (32x4d), CIFAR or ImageNet variant, four stages.

References:
    He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    Xie et al., "Aggregated Residual Transformations for Deep Neural Networks", CVPR 2017.
"""

from __future__ import annotations

import functools

import keras

from keras_sd import validation
from keras_sd.backbones import _common as c
from keras_sd.backbones.resnet_cifar import basic_block

# depth -> (bottleneck?, blocks per stage)
_CONFIGS = {
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
}


def _bottleneck(
    x: object,
    in_filters: int,
    out_filters: int,
    stride: int,
    schedule: c.DepthSchedule,
    name: str,
    *,
    groups: int,
    width_per_group: int,
) -> object:
    """Post-activation bottleneck 1x1-3x3(stride, groups)-1x1; projection 1x1 conv + BN.

    ``out_filters`` is 4 x the stage's planes; the 3x3 is ``planes * width_per_group * groups /
    64`` wide (``planes`` for a ResNet, ``groups = 1, width_per_group = 64``).
    """
    width = out_filters // 4 * width_per_group * groups // 64
    if stride != 1 or in_filters != out_filters:
        shortcut = c.conv(out_filters, 1, stride, name=f"{name}_proj_conv")(x)
        shortcut = c.bn(f"{name}_proj_bn")(shortcut)
    else:
        shortcut = x
    branch = [
        c.conv(width, 1, name=f"{name}_conv1"),
        c.bn(f"{name}_bn1"),
        c.relu(f"{name}_relu1"),
        # Stride on the 3x3 ("ResNet v1.5"), as torchvision and the papers' code.
        c.conv(width, 3, stride, groups=groups, name=f"{name}_conv2"),
        c.bn(f"{name}_bn2"),
        c.relu(f"{name}_relu2"),
        c.conv(out_filters, 1, name=f"{name}_conv3"),
        c.bn(f"{name}_bn3"),
    ]
    y = c.residual(x, shortcut, branch, schedule, name)
    return c.relu(f"{name}_out")(y)


def _stem(inputs: object, variant: str) -> object:
    if variant == "cifar":
        x = c.conv(64, 3, name="stem_conv")(inputs)
    else:
        x = c.conv(64, 7, 2, name="stem_conv")(inputs)
    x = c.relu("stem_relu")(c.bn("stem_bn")(x))
    if variant == "imagenet":
        x = keras.layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    return x


def _build(
    depth: int,
    num_classes: int,
    variant: str,
    input_shape: object,
    groups: int,
    width_per_group: int,
    stochastic_depth: float | None,
    drop_mode: str,
    seed: int | None,
    name: str,
    num_stages: int = 4,
) -> keras.Model:
    num_classes = c.check_num_classes(num_classes)
    if isinstance(num_stages, bool) or not isinstance(num_stages, int) or not 1 <= num_stages <= 4:
        raise ValueError(f"num_stages must be an int in 1..4, got {num_stages!r}")
    variant = c.check_variant(variant)
    shape = c.default_input_shape(input_shape, variant)
    bottleneck, blocks = _CONFIGS[depth]
    blocks = blocks[:num_stages]
    schedule = c.DepthSchedule(stochastic_depth, sum(blocks), drop_mode, seed)

    inputs = c.image_input(shape)
    x = _stem(inputs, variant)
    planes = [64 * 2**s for s in range(len(blocks))]
    if bottleneck:
        block = functools.partial(_bottleneck, groups=groups, width_per_group=width_per_group)
        widths = [4 * p for p in planes]
    else:
        block, widths = basic_block, planes
    stages = c.block_stages(
        x, in_filters=64, widths=widths, blocks=blocks, schedule=schedule, block=block
    )
    return c.head_and_model(inputs, stages, num_classes, name)


def resnet(
    depth: int,
    num_classes: int = 10,
    *,
    variant: str = "cifar",
    input_shape: tuple[int, int, int] | None = None,
    stochastic_depth: float | None = None,
    drop_mode: str = "per_batch",
    seed: int | None = None,
    name: str | None = None,
    num_stages: int = 4,
) -> keras.Model:
    """ResNet-18/34 (basic blocks) or -50/101/152 (bottleneck blocks), four stages of
    64/128/256/512 planes (strides 1, 2, 2, 2), post-activation, projection shortcuts
    (1x1 conv + BN) where the shape changes.

    ``variant="cifar"``: 3x3 stride-1 stem, no max-pool (as the multi-exit / PS-KD papers
    use on CIFAR). ``variant="imagenet"``: 7x7 stride-2 stem + 3x3 stride-2 max-pool.

    Reference: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.

    Args:
        depth: 18, 34, 50, 101 or 152.
        num_classes: Number of classes.
        variant: ``"cifar"`` or ``"imagenet"``.
        input_shape: ``(height, width, channels)``; default 32x32x3 (cifar) or 224x224x3.
        stochastic_depth: ``None`` or the last block's survival probability in (0, 1].
        drop_mode: ``"per_batch"`` (default: one draw per mini-batch, as Stochastic
            Depth and Self-Guidance) or ``"per_sample"``.
        seed: Base seed of the stochastic-depth gates.
        name: Model name; default ``"resnet{depth}_{variant}"``.
        num_stages: Keep only the first 1..4 stages (the head follows the last kept stage), as
            in the PS-KD seed's Table 4 ablation; 4 is the full network.

    Returns:
        A functional model with output ``{"stages": [s1..s4], "features", "logits"}``.
    """
    validation.one_of(depth, "depth", sorted(_CONFIGS))
    return _build(
        depth,
        num_classes,
        variant,
        input_shape,
        1,
        64,
        stochastic_depth,
        drop_mode,
        seed,
        name or f"resnet{depth}_{variant}",
        num_stages,
    )


def resnext50(
    num_classes: int = 10,
    *,
    variant: str = "cifar",
    cardinality: int = 32,
    width_per_group: int = 4,
    input_shape: tuple[int, int, int] | None = None,
    stochastic_depth: float | None = None,
    drop_mode: str = "per_batch",
    seed: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """ResNeXt-50 (default 32x4d): ResNet-50 whose bottleneck 3x3 is a grouped convolution
    with ``cardinality`` groups of ``width_per_group`` channels in the first stage (doubling
    per stage). Stems as in `resnet`.

    Reference: Xie et al., "Aggregated Residual Transformations for Deep Neural Networks",
    CVPR 2017.

    Args:
        num_classes: Number of classes.
        variant: ``"cifar"`` or ``"imagenet"``.
        cardinality: Number of groups.
        width_per_group: Channels per group in the first stage.
        input_shape: ``(height, width, channels)``; default 32x32x3 (cifar) or 224x224x3.
        stochastic_depth: ``None`` or the last block's survival probability in (0, 1].
        drop_mode: ``"per_batch"`` (default: one draw per mini-batch, as Stochastic
            Depth and Self-Guidance) or ``"per_sample"``.
        seed: Base seed of the stochastic-depth gates.
        name: Model name; default ``"resnext50_{cardinality}x{width_per_group}d_{variant}"``.

    Returns:
        A functional model with output ``{"stages": [s1..s4], "features", "logits"}``.
    """
    validation.positive_int(cardinality, "cardinality")
    validation.positive_int(width_per_group, "width_per_group")
    return _build(
        50,
        num_classes,
        variant,
        input_shape,
        cardinality,
        width_per_group,
        stochastic_depth,
        drop_mode,
        seed,
        name or f"resnext50_{cardinality}x{width_per_group}d_{variant}",
    )


def resnet18(num_classes: int = 10, **kwargs: object) -> keras.Model:
    """ResNet-18 (11.2M parameters, CIFAR variant). See `resnet`."""
    return resnet(18, num_classes, **kwargs)  # type: ignore[arg-type]


def resnet34(num_classes: int = 10, **kwargs: object) -> keras.Model:
    """ResNet-34 (21.3M parameters, CIFAR variant). See `resnet`."""
    return resnet(34, num_classes, **kwargs)  # type: ignore[arg-type]


def resnet50(num_classes: int = 10, **kwargs: object) -> keras.Model:
    """ResNet-50 (25.6M parameters with 1000 classes). See `resnet`."""
    return resnet(50, num_classes, **kwargs)  # type: ignore[arg-type]


def resnet101(num_classes: int = 10, **kwargs: object) -> keras.Model:
    """ResNet-101 (44.5M parameters with 1000 classes). See `resnet`."""
    return resnet(101, num_classes, **kwargs)  # type: ignore[arg-type]


def resnet152(num_classes: int = 10, **kwargs: object) -> keras.Model:
    """ResNet-152 (60.2M parameters with 1000 classes). See `resnet`."""
    return resnet(152, num_classes, **kwargs)  # type: ignore[arg-type]
