"""MobileNetV2 with stages split at the resolution changes.

Reference: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018.
"""

from __future__ import annotations

import keras

from keras_sd.backbones import _common as c

# (expansion t, output channels c, repeats n, first stride s), Table 2 of the paper.
_CONFIG = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _divisible(value: float, divisor: int = 8) -> int:
    # Round to a multiple of 8 without going more than 10% below, as the reference code.
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _relu6(name: str) -> keras.layers.ReLU:
    return keras.layers.ReLU(max_value=6.0, name=name)


def mobilenet_v2(
    num_classes: int = 10,
    width_multiplier: float = 1.0,
    *,
    variant: str = "cifar",
    input_shape: tuple[int, int, int] | None = None,
    stochastic_depth: float | None = None,
    drop_mode: str = "per_batch",
    seed: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """MobileNetV2: inverted residual blocks with linear bottlenecks, final 1x1 conv to 1280.

    ``variant="imagenet"``: the paper's network (stride-2 stem, output stride 32, five stages
    at /2, /4, /8, /16, /32). ``variant="cifar"``: stem stride 1 and the second block group
    stride 1 (output stride 8; four stages at /1, /2, /4, /8), the usual CIFAR adaptation.
    Stages end where the resolution changes; the last includes the final 1x1 conv.
    Stochastic depth, when set, gates the inverted residual blocks that have an identity
    shortcut.

    Reference: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
    CVPR 2018.

    Args:
        num_classes: Number of classes.
        width_multiplier: Channel multiplier > 0 (channels rounded to multiples of 8).
        variant: ``"cifar"`` or ``"imagenet"``.
        input_shape: ``(height, width, channels)``; default 32x32x3 (cifar) or 224x224x3.
        stochastic_depth: ``None`` or the last gated block's survival probability in (0, 1].
        drop_mode: ``"per_batch"`` (default: one draw per mini-batch, as Stochastic
            Depth and Self-Guidance) or ``"per_sample"``.
        seed: Base seed of the stochastic-depth gates.
        name: Model name; default ``"mobilenet_v2_{variant}"`` (plus ``_{multiplier}`` when
            it is not 1).

    Returns:
        A functional model with output ``{"stages": [...], "features", "logits"}``.
    """
    ok = isinstance(width_multiplier, (int, float)) and not isinstance(width_multiplier, bool)
    if not ok or width_multiplier <= 0:
        raise ValueError(f"width_multiplier must be a number > 0, got {width_multiplier!r}")
    num_classes = c.check_num_classes(num_classes)
    variant = c.check_variant(variant)
    shape = c.default_input_shape(input_shape, variant)
    config = list(_CONFIG)
    if variant == "cifar":
        config[1] = (6, 24, 2, 1)
    # Blocks with an identity shortcut (stride 1, equal widths) are the gated ones.
    num_gated, ch_in = 0, _divisible(32 * width_multiplier)
    for _, ch, n, s in config:
        ch_out = _divisible(ch * width_multiplier)
        for i in range(n):
            num_gated += int((s if i == 0 else 1) == 1 and ch_in == ch_out)
            ch_in = ch_out
    schedule = c.DepthSchedule(stochastic_depth, num_gated, drop_mode, seed)

    inputs = c.image_input(shape)
    in_ch = _divisible(32 * width_multiplier)
    x = c.conv(in_ch, 3, 2 if variant == "imagenet" else 1, name="stem_conv")(inputs)
    x = _relu6("stem_relu")(c.bn("stem_bn")(x))
    stages = []
    has_blocks = False
    for g, (t, ch, n, s) in enumerate(config):
        out_ch = _divisible(ch * width_multiplier)
        if s == 2 and has_blocks:
            stages.append(x)
        for i in range(n):
            stride = s if i == 0 else 1
            prefix = f"group{g + 1}_block{i + 1}"
            branch = []
            if t != 1:
                branch += [
                    c.conv(in_ch * t, 1, name=f"{prefix}_expand"),
                    c.bn(f"{prefix}_expand_bn"),
                    _relu6(f"{prefix}_expand_relu"),
                ]
            branch += [
                keras.layers.DepthwiseConv2D(
                    3,
                    stride,
                    padding="same",
                    use_bias=False,
                    depthwise_initializer=c.KERNEL_INIT,
                    name=f"{prefix}_depthwise",
                ),
                c.bn(f"{prefix}_depthwise_bn"),
                _relu6(f"{prefix}_depthwise_relu"),
                c.conv(out_ch, 1, name=f"{prefix}_project"),
                c.bn(f"{prefix}_project_bn"),
            ]
            if stride == 1 and in_ch == out_ch:
                x = c.residual(x, x, branch, schedule, prefix)
            else:
                for layer in branch:
                    x = layer(x)
            in_ch = out_ch
            has_blocks = True
    last_ch = _divisible(1280 * max(1.0, width_multiplier))
    x = _relu6("final_relu")(c.bn("final_bn")(c.conv(last_ch, 1, name="final_conv")(x)))
    stages.append(x)
    default = f"mobilenet_v2_{variant}"
    if width_multiplier != 1.0:
        default += f"_{width_multiplier:g}"
    return c.head_and_model(inputs, stages, num_classes, name or default)
