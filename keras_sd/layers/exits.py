"""Shallow exits of multi-exit self-distillation: attention module, align net, exit head.

An exit turns the feature map of an intermediate backbone stage into logits and a feature vector
the size of the backbone's final feature, so that the feature hint ``||F_i - F_K||^2`` is defined:

    stage features --[ExitAttention]--> masked features --[N x SeparableConvBlock]--> GAP --> Dense

Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural Networks",
TPAMI (Fig. 3, section 3.2); Zhang et al., "Be Your Own Teacher", ICCV 2019.
"""

from __future__ import annotations

import keras
from keras import ops

# PyTorch-style BatchNorm statistics, as in the papers' code (momentum 0.1 there == 0.9 here).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
KERNEL_INIT = "he_normal"


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    return value


def _bn(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


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
        self.filters = _positive_int(filters, "filters")
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
    _positive_int(num_blocks, "num_blocks")
    ratio = out_channels / in_channels
    chans = [max(1, round(in_channels * ratio ** (j / num_blocks))) for j in range(1, num_blocks)]
    return [*chans, out_channels]


@keras.saving.register_keras_serializable(package="keras_sd")
class ExitHead(keras.layers.Layer):
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
        super().__init__(**kwargs)
        self.num_classes = _positive_int(num_classes, "num_classes")
        self.feature_dim = _positive_int(feature_dim, "feature_dim")
        self.num_blocks = _positive_int(num_blocks, "num_blocks")
        if not isinstance(attention, bool):
            raise ValueError(f"`attention` must be True or False, got {attention!r}.")
        self.attention = attention

    def build(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 4:
            raise ValueError(
                f"ExitHead expects a 4-D feature map [batch, height, width, channels], got shape "
                f"{shape}."
            )
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
        self.classifier = keras.layers.Dense(
            self.num_classes, kernel_initializer=KERNEL_INIT, name="classifier"
        )
        self.classifier.build((shape[0], self.feature_dim))
        super().build(input_shape)

    def call(self, x, training=None):
        if self.attention_module is not None:
            x = self.attention_module(x, training=training)
        for block in self.blocks:
            x = block(x, training=training)
        features = ops.mean(x, axis=(1, 2))
        return {"logits": self.classifier(features), "features": features}

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        return {"logits": (batch, self.num_classes), "features": (batch, self.feature_dim)}

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "feature_dim": self.feature_dim,
            "num_blocks": self.num_blocks,
            "attention": self.attention,
        }
