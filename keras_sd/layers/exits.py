"""Shallow exits of multi-exit self-distillation: attention module, align net, exit head.

An exit turns the feature map of an intermediate backbone stage into logits and a feature vector
the size of the backbone's final feature, so that the feature hint ``||F_i - F_K||^2`` is defined:

    stage features --[ExitAttention]--> masked features --[N x SeparableConvBlock]--> GAP --> Dense

That is the TPAMI exit (`ExitHead`, ``exit_head="attention"`` of `MultiExitDistiller`). The
bottleneck exit (`BottleneckExitHead`, ``exit_head="bottleneck"``) is the head of the widely used
unofficial BYOT re-implementation (github.com/luanyunteng/pytorch-be-your-own-teacher,
``branchBottleNeck`` in ``models/resnet.py``), whose parameter counts are the ones Chottananurak et
al. report for their networks:

    stage features --1x1 conv--> --s x s conv, stride s--> --1x1 conv--> GAP --> Dense

Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural Networks",
TPAMI (Fig. 3, section 3.2); Zhang et al., "Be Your Own Teacher", ICCV 2019.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_sd import validation

# PyTorch-style BatchNorm statistics, as in the papers' code (momentum 0.1 there == 0.9 here).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
KERNEL_INIT = "he_normal"
EXIT_HEADS = ("attention", "bottleneck")


def _bn(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def _check_map(shape, owner: str) -> tuple:
    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(
            f"{owner} expects a 4-D feature map [batch, height, width, channels], got shape "
            f"{shape}."
        )
    return shape


@keras.saving.register_keras_serializable(package="keras_sd")
class SeparableConvBlock(keras.layers.Layer):
    """Two depthwise-pointwise pairs, the first strided: the exits' down-sampling unit.

    ``dw3x3(stride) -> pw1x1(C_in) -> BN -> ReLU -> dw3x3 -> pw1x1(filters) -> BN -> ReLU``, the
    layout of the official BYOT code's separable block. With ``strides=2`` it halves the spatial
    size (``same`` padding, so odd sizes round up).

    Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural
    Networks", TPAMI, Fig. 3(b).

    Args:
        filters: output channels.
        strides: stride of the first depthwise convolution (1 or 2).
    """

    def __init__(self, filters: int, strides: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.filters = validation.positive_int(filters, "filters")
        if strides not in (1, 2):
            raise ValueError(f"`strides` must be 1 or 2, got {strides!r}.")
        self.strides = strides

    def build(self, input_shape):
        channels = int(input_shape[-1])
        kw = dict(use_bias=False, padding="same")
        self.dw1 = keras.layers.DepthwiseConv2D(
            3, strides=self.strides, depthwise_initializer=KERNEL_INIT, name="dw1", **kw
        )
        self.pw1 = keras.layers.Conv2D(
            channels, 1, kernel_initializer=KERNEL_INIT, name="pw1", **kw
        )
        self.bn1 = _bn("bn1")
        self.dw2 = keras.layers.DepthwiseConv2D(
            3, depthwise_initializer=KERNEL_INIT, name="dw2", **kw
        )
        self.pw2 = keras.layers.Conv2D(
            self.filters, 1, kernel_initializer=KERNEL_INIT, name="pw2", **kw
        )
        self.bn2 = _bn("bn2")
        shape = tuple(input_shape)
        for layer in (self.dw1, self.pw1, self.bn1, self.dw2, self.pw2, self.bn2):
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        super().build(input_shape)

    def call(self, x, training=None):
        x = self.pw1(self.dw1(x))
        x = ops.relu(self.bn1(x, training=training))
        x = self.pw2(self.dw2(x))
        return ops.relu(self.bn2(x, training=training))

    def compute_output_shape(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        if self.strides == 2:
            h = None if h is None else (h + 1) // 2
            w = None if w is None else (w + 1) // 2
        return (input_shape[0], h, w, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}


@keras.saving.register_keras_serializable(package="keras_sd")
class ExitAttention(keras.layers.Layer):
    """Spatial-channel attention of a shallow exit: ``x * sigmoid(up2(relu(bn(sepconv_s2(x)))))``.

    A strided depthwise-separable block, batch norm and ReLU give a half-resolution map; bilinear
    upsampling x2 brings it back to the input size (cropped when the size is odd) and a sigmoid
    turns it into a mask that multiplies the input element-wise. Because the ReLU precedes the
    sigmoid, as in the paper's figure and the official code, the mask lies in ``[0.5, 1)``: the
    module can only attenuate features by up to half.

    Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural
    Networks", TPAMI, Fig. 3(a).
    """

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.sep = SeparableConvBlock(channels, strides=2, name="sep")
        self.bn = _bn("bn")
        self.sep.build(tuple(input_shape))
        self.bn.build(self.sep.compute_output_shape(tuple(input_shape)))
        self.up = keras.layers.UpSampling2D(2, interpolation="bilinear", name="up")
        super().build(input_shape)

    def attention_mask(self, x, training=None):
        """The mask, same shape as ``x``, with values in ``[0.5, 1)``."""
        if not self.built:  # called directly, outside `__call__`
            self.build(tuple(x.shape))
        m = ops.relu(self.bn(self.sep(x, training=training), training=training))
        m = self.up(m)
        shape = ops.shape(x)
        return ops.sigmoid(m[:, : shape[1], : shape[2], :])

    def call(self, x, training=None):
        return x * ops.cast(self.attention_mask(x, training=training), x.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


def align_channels(in_channels: int, out_channels: int, num_blocks: int) -> list[int]:
    """Output channels of each align block: geometric from ``in_channels`` to ``out_channels``.

    For a ResNet stage (64 channels, 3 blocks, final width 512) this is ``[128, 256, 512]``: the
    doubling per down-sampling of the official code; any other widths are interpolated
    geometrically and the last block always ends at ``out_channels``.
    """
    validation.positive_int(num_blocks, "num_blocks")
    ratio = out_channels / in_channels
    chans = [max(1, round(in_channels * ratio ** (j / num_blocks))) for j in range(1, num_blocks)]
    return [*chans, out_channels]


class ExitHeadBase(keras.layers.Layer):
    """What every exit head shares: ``num_classes`` and ``feature_dim``, the dense classifier and
    the ``{"logits", "features"}`` output.

    A subclass calls ``super().__init__(num_classes, feature_dim, **kwargs)``, builds its own
    layers, then `build_classifier`, and returns `head_outputs` of its exit feature from ``call``.

    Args:
        num_classes: classes of the dense classifier.
        feature_dim: width of the exit feature (the backbone's final feature width).
    """

    def __init__(self, num_classes: int, feature_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = validation.positive_int(num_classes, "num_classes")
        self.feature_dim = validation.positive_int(feature_dim, "feature_dim")

    def build_classifier(self, *, batch) -> None:
        """Creates and builds ``self.classifier``, the ``feature_dim -> num_classes`` Dense."""
        self.classifier = keras.layers.Dense(
            self.num_classes, kernel_initializer=KERNEL_INIT, name="classifier"
        )
        self.classifier.build((batch, self.feature_dim))

    def head_outputs(self, features) -> dict:
        """The head's output for its exit feature ``[batch, feature_dim]``."""
        return {"logits": self.classifier(features), "features": features}

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        return {"logits": (batch, self.num_classes), "features": (batch, self.feature_dim)}

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "feature_dim": self.feature_dim,
        }


@keras.saving.register_keras_serializable(package="keras_sd")
class ExitHead(ExitHeadBase):
    """One shallow exit: optional attention, align net, global average pooling, dense classifier.

    The align net has ``num_blocks`` separable blocks (``K - i`` for exit ``i`` of ``K`` in the
    paper), each halving the spatial size, with channels growing to ``feature_dim`` (the width of
    the backbone's final feature), so that the exit's pooled feature has the final feature's shape.

    Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural
    Networks", TPAMI, Fig. 3 and section 3.2.

    Args:
        num_classes: classes of the dense classifier.
        feature_dim: width of the exit feature (the backbone's final feature width).
        num_blocks: number of align blocks (>= 1).
        attention: use the attention module (False: TPAMI Table 8 "No Attention").

    Call returns ``{"logits": [batch, num_classes], "features": [batch, feature_dim]}``.
    """

    def __init__(
        self,
        num_classes: int,
        feature_dim: int,
        num_blocks: int,
        attention: bool = True,
        **kwargs,
    ):
        super().__init__(num_classes, feature_dim, **kwargs)
        self.num_blocks = validation.positive_int(num_blocks, "num_blocks")
        validation.boolean(attention, "attention")
        self.attention = attention

    def build(self, input_shape):
        shape = _check_map(input_shape, "ExitHead")
        self.attention_module = None
        if self.attention:
            self.attention_module = ExitAttention(name="attention")
            self.attention_module.build(shape)
        self.blocks = []
        for j, filters in enumerate(
            align_channels(int(shape[-1]), self.feature_dim, self.num_blocks)
        ):
            block = SeparableConvBlock(filters, strides=2, name=f"align{j + 1}")
            block.build(shape)
            shape = block.compute_output_shape(shape)
            self.blocks.append(block)
        self.build_classifier(batch=shape[0])
        super().build(input_shape)

    def call(self, x, training=None):
        if self.attention_module is not None:
            x = self.attention_module(x, training=training)
        for block in self.blocks:
            x = block(x, training=training)
        features = ops.mean(x, axis=(1, 2))
        return self.head_outputs(features)

    def get_config(self):
        return {
            **super().get_config(),
            "num_blocks": self.num_blocks,
            "attention": self.attention,
        }


@keras.saving.register_keras_serializable(package="keras_sd")
class BottleneckExitHead(ExitHeadBase):
    """One shallow exit as a single bottleneck: 1x1 conv, strided ``s x s`` conv, 1x1 conv.

    ``conv1x1(C_in -> D/4) -> BN -> ReLU -> conv(s x s, stride s)(D/4 -> D/4) -> BN -> ReLU ->
    conv1x1(D/4 -> D) -> BN -> ReLU -> global average pooling -> Dense``, with ``D`` the width
    of the backbone's final feature (``feature_dim``) and ``s`` the down-sampling factor from the
    exit's stage to the last stage (8, 4, 2 for the first three stages of a CIFAR ResNet). The
    three convolutions carry biases and the middle one is a non-overlapping ``s x s`` patch
    convolution, as in the reference code; ``same`` padding only matters when the size is not a
    multiple of ``s`` (then it rounds up). The pooled ``D``-wide feature is the exit feature
    ``F_i`` of the feature hint and the mutual feature loss.

    This is the ``branchBottleNeck`` head (plus its ``middle_fc``) of the unofficial BYOT
    re-implementation github.com/luanyunteng/pytorch-be-your-own-teacher (``models/resnet.py``;
    that file also defines ``downsample*_1`` modules that its forward pass never uses, they are
    not part of this head). A CIFAR ResNet-18 / ResNet-50 with these heads after its first three
    stages has 13.0M / 50.4M parameters, the counts Chottananurak et al., "Progressive
    Self-Knowledge Distillation with Mutual Learning", give for their networks.

    Args:
        num_classes: classes of the dense classifier.
        feature_dim: width ``D`` of the exit feature (the backbone's final feature width).
        downsample: ``s``, kernel size and stride of the middle convolution (>= 1).

    Call returns ``{"logits": [batch, num_classes], "features": [batch, feature_dim]}``.
    """

    def __init__(self, num_classes: int, feature_dim: int, downsample: int, **kwargs):
        super().__init__(num_classes, feature_dim, **kwargs)
        self.downsample = validation.positive_int(downsample, "downsample")

    @property
    def bottleneck_channels(self) -> int:
        """``D // 4`` (at least 1): the width of the first two convolutions."""
        return max(1, self.feature_dim // 4)

    def build(self, input_shape):
        shape = _check_map(input_shape, "BottleneckExitHead")
        mid, s = self.bottleneck_channels, self.downsample
        kw = dict(use_bias=True, padding="same", kernel_initializer=KERNEL_INIT)
        self.reduce = keras.layers.Conv2D(mid, 1, name="reduce", **kw)
        self.bn1 = _bn("bn1")
        self.down = keras.layers.Conv2D(mid, s, strides=s, name="down", **kw)
        self.bn2 = _bn("bn2")
        self.expand = keras.layers.Conv2D(self.feature_dim, 1, name="expand", **kw)
        self.bn3 = _bn("bn3")
        for layer in (self.reduce, self.bn1, self.down, self.bn2, self.expand, self.bn3):
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.build_classifier(batch=shape[0])
        super().build(input_shape)

    def call(self, x, training=None):
        x = ops.relu(self.bn1(self.reduce(x), training=training))
        x = ops.relu(self.bn2(self.down(x), training=training))
        x = ops.relu(self.bn3(self.expand(x), training=training))
        features = ops.mean(x, axis=(1, 2))
        return self.head_outputs(features)

    def get_config(self):
        return {
            **super().get_config(),
            "downsample": self.downsample,
        }


def check_exit_head(value) -> str:
    """Returns a valid ``exit_head`` kind or raises a ValueError naming the allowed values."""
    return validation.one_of(value, "exit_head", EXIT_HEADS)


def bottleneck_downsample(input_shape, final_shape, num_blocks: int) -> int:
    """Down-sampling factor of a bottleneck exit: the exit map's height over the last stage's
    (rounded, at least 1) when both are known, else ``2 ** num_blocks`` (one halving per
    remaining stage, the rule `ExitHead` uses)."""
    h, final_h = input_shape[1], final_shape[1]
    if h is None or final_h is None:
        return 2 ** validation.positive_int(num_blocks, "num_blocks")
    return max(1, int(math.floor(int(h) / int(final_h) + 0.5)))


def make_exit_head(
    kind: str,
    num_classes: int,
    feature_dim: int,
    *,
    num_blocks: int,
    attention: bool,
    input_shape,
    final_shape,
    name: str,
    token_pooling: str = "mean",
) -> keras.layers.Layer:
    """A built exit head of the given kind for a feature map of ``input_shape``.

    ``"attention"``: `ExitHead` with ``num_blocks`` align blocks (and ``attention``);
    ``"bottleneck"``: `BottleneckExitHead` down-sampling to the last stage's resolution
    ``final_shape`` (``attention`` is unused). A 3-D ``input_shape`` (a transformer's token
    sequence) gets a `keras_sd.layers.tokens.TokenExitHead` with ``token_pooling`` whatever the
    kind: the convolutional heads need a map.
    """
    kind = check_exit_head(kind)
    if len(tuple(input_shape)) == 3:
        from keras_sd.layers.tokens import TokenExitHead  # tokens imports this module

        head = TokenExitHead(num_classes, feature_dim, pooling=token_pooling, name=name)
        head.build(tuple(input_shape))
        return head
    if kind == "attention":
        head = ExitHead(
            num_classes, feature_dim, num_blocks=num_blocks, attention=attention, name=name
        )
    else:
        head = BottleneckExitHead(
            num_classes,
            feature_dim,
            downsample=bottleneck_downsample(input_shape, final_shape, num_blocks),
            name=name,
        )
    head.build(tuple(input_shape))
    return head
