"""Pre-activation ResNet-18/34 (CIFAR 3x3 stem) and Wide ResNets.

References:
    He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016.
    Zagoruyko and Komodakis, "Wide Residual Networks", BMVC 2016.
"""

from __future__ import annotations

import functools

import keras

from keras_sd import validation
from keras_sd.backbones import _common as c

_PREACT_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def preact_block(
    x: object,
    in_filters: int,
    filters: int,
    stride: int,
    schedule: c.DepthSchedule,
    name: str,
    dropout: float = 0.0,
) -> object:
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 + shortcut.

    Where the shape changes, the first BN-ReLU is shared by the branch and a 1x1 projection
    shortcut (no BN, as in both papers), so it lies outside the (droppable) branch.
    """
    tail = [
        c.conv(filters, 3, stride, name=f"{name}_conv1"),
        c.bn(f"{name}_bn2"),
        c.relu(f"{name}_relu2"),
    ]
    if dropout:
        tail.append(keras.layers.Dropout(dropout, name=f"{name}_dropout"))
    tail.append(c.conv(filters, 3, name=f"{name}_conv2"))
    if stride != 1 or in_filters != filters:
        pre = c.relu(f"{name}_relu1")(c.bn(f"{name}_bn1")(x))
        shortcut = c.conv(filters, 1, stride, name=f"{name}_proj_conv")(pre)
        return c.residual(pre, shortcut, tail, schedule, name)
    head = [c.bn(f"{name}_bn1"), c.relu(f"{name}_relu1")]
    return c.residual(x, x, head + tail, schedule, name)


def preact_resnet(
    depth: int,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    *,
    stochastic_depth: float | None = None,
    drop_mode: str = "per_batch",
    seed: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """Pre-activation ResNet-18 or -34 for CIFAR: 3x3 stride-1 stem, no max-pool, four stages
    of 64/128/256/512 filters (strides 1, 2, 2, 2), final BN-ReLU.

    Stage outputs are the raw residual sums, except the last, which includes the final
    BN-ReLU (the tensor that is pooled into ``features``).

    Reference: He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016.

    Args:
        depth: 18 or 34.
        num_classes: Number of classes.
        input_shape: ``(height, width, channels)``.
        stochastic_depth: ``None`` or the last block's survival probability in (0, 1].
        drop_mode: ``"per_batch"`` (default: one draw per mini-batch, as Stochastic
            Depth and Self-Guidance) or ``"per_sample"``.
        seed: Base seed of the stochastic-depth gates.
        name: Model name; default ``"preact_resnet{depth}"``.

    Returns:
        A functional model with output ``{"stages": [s1..s4], "features", "logits"}``.
    """
    validation.one_of(depth, "depth", sorted(_PREACT_BLOCKS))
    num_classes = c.check_num_classes(num_classes)
    input_shape = c.check_input_shape(input_shape)
    blocks = _PREACT_BLOCKS[depth]
    schedule = c.DepthSchedule(stochastic_depth, sum(blocks), drop_mode, seed)

    inputs = c.image_input(input_shape)
    x = c.conv(64, 3, name="stem_conv")(inputs)
    stages = c.block_stages(
        x,
        in_filters=64,
        widths=(64, 128, 256, 512),
        blocks=blocks,
        schedule=schedule,
        block=preact_block,
    )
    stages[-1] = c.final_bn_relu(stages[-1])
    return c.head_and_model(inputs, stages, num_classes, name or f"preact_resnet{depth}")


def preact_resnet18(num_classes: int = 10, **kwargs: object) -> keras.Model:
    """Pre-activation ResNet-18, CIFAR stem (11.2M parameters). See `preact_resnet`."""
    return preact_resnet(18, num_classes, **kwargs)  # type: ignore[arg-type]


def preact_resnet34(num_classes: int = 10, **kwargs: object) -> keras.Model:
    """Pre-activation ResNet-34, CIFAR stem (21.3M parameters). See `preact_resnet`."""
    return preact_resnet(34, num_classes, **kwargs)  # type: ignore[arg-type]


def wide_resnet(
    depth: int,
    width: int,
    num_classes: int = 10,
    dropout: float = 0.0,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    *,
    stochastic_depth: float | None = None,
    drop_mode: str = "per_batch",
    seed: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """Wide ResNet WRN-``depth``-``width``: 3x3 stem with 16 filters, three stages of
    ``(depth - 4) / 6`` pre-activation blocks with 16k/32k/64k filters (strides 1, 2, 2),
    dropout between the two convolutions of a block, final BN-ReLU.

    The last stage output includes the final BN-ReLU.

    Reference: Zagoruyko and Komodakis, "Wide Residual Networks", BMVC 2016.

    Args:
        depth: ``6n + 4`` (16, 22, 28, 40, ...).
        width: Widening factor ``k`` >= 1.
        num_classes: Number of classes.
        dropout: Dropout rate inside each block, in [0, 1).
        input_shape: ``(height, width, channels)``.
        stochastic_depth: ``None`` or the last block's survival probability in (0, 1].
        drop_mode: ``"per_batch"`` (default: one draw per mini-batch, as Stochastic
            Depth and Self-Guidance) or ``"per_sample"``.
        seed: Base seed of the stochastic-depth gates.
        name: Model name; default ``"wrn{depth}_{width}"``.

    Returns:
        A functional model with output ``{"stages": [s1, s2, s3], "features", "logits"}``.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...), got {depth!r}")
    validation.positive_int(width, "width")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    num_classes = c.check_num_classes(num_classes)
    input_shape = c.check_input_shape(input_shape)
    n = (depth - 4) // 6
    schedule = c.DepthSchedule(stochastic_depth, 3 * n, drop_mode, seed)

    inputs = c.image_input(input_shape)
    x = c.conv(16, 3, name="stem_conv")(inputs)
    stages = c.block_stages(
        x,
        in_filters=16,
        widths=(16 * width, 32 * width, 64 * width),
        blocks=(n,) * 3,
        schedule=schedule,
        block=functools.partial(preact_block, dropout=dropout),
    )
    stages[-1] = c.final_bn_relu(stages[-1])
    return c.head_and_model(inputs, stages, num_classes, name or f"wrn{depth}_{width}")


def wrn16_8(num_classes: int = 10, **kwargs: object) -> keras.Model:
    """WRN-16-8 (11.0M parameters). See `wide_resnet`."""
    return wide_resnet(16, 8, num_classes, **kwargs)  # type: ignore[arg-type]


def wrn28_10(num_classes: int = 10, **kwargs: object) -> keras.Model:
    """WRN-28-10 (36.5M parameters). See `wide_resnet`."""
    return wide_resnet(28, 10, num_classes, **kwargs)  # type: ignore[arg-type]


def wrn40_4(num_classes: int = 10, **kwargs: object) -> keras.Model:
    """WRN-40-4 (8.9M parameters). See `wide_resnet`."""
    return wide_resnet(40, 4, num_classes, **kwargs)  # type: ignore[arg-type]
