"""Token features: pooling a ``[batch, tokens, dim]`` sequence and the exit head of a transformer.

A Vision Transformer's blocks output token sequences, not feature maps, so the convolutional exit
heads (`ExitHead`, `BottleneckExitHead`) do not apply. `TokenExitHead` is the transformer's own
classifier head placed after an intermediate block:

    tokens --LayerNorm--> pool (class token | mean | attention) --[Dense to D]--> Dense(classes)

Its pooled vector is the exit feature ``F_i`` that the feature hint and the deep mutual feature
loss compare with the backbone's final pooled feature, so those losses read pooled token features
exactly as they read pooled maps on a CNN.

Reference: Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021 (class token, layer norm
before the head); attention pooling with one learned query as in Zhai et al., "Scaling Vision
Transformers", CVPR 2022 (the "MAP" head).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_sd import validation
from keras_sd.layers.exits import ExitHeadBase

TOKEN_POOLINGS = ("mean", "class_token", "attention")
KERNEL_INIT = "he_normal"
LN_EPSILON = 1e-6  # the ViT's own layer-norm epsilon


def check_token_pooling(value, name: str = "token_pooling") -> str:
    """Returns a valid token pooling or raises a ValueError naming the allowed values."""
    return validation.one_of(value, name, TOKEN_POOLINGS)


def _check_tokens(shape, owner: str) -> tuple:
    shape = tuple(shape)
    if len(shape) != 3:
        raise ValueError(
            f"{owner} expects a 3-D token sequence [batch, tokens, dim], got shape {shape}."
        )
    return shape


@keras.saving.register_keras_serializable(package="keras_sd")
class TokenPooling(keras.layers.Layer):
    """``[batch, tokens, dim] -> [batch, dim]``: the class token (token 0) or the token mean.

    Example:
        >>> import numpy as np
        >>> x = np.arange(12, dtype="float32").reshape(1, 3, 4)
        >>> TokenPooling("class_token")(x).numpy().tolist()
        [[0.0, 1.0, 2.0, 3.0]]
        >>> TokenPooling("mean")(x).numpy().tolist()
        [[4.0, 5.0, 6.0, 7.0]]

    Args:
        mode: ``"class_token"`` (the first token, a ViT's ``[CLS]``) or ``"mean"`` (every token).
    """

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("mean", "class_token"):
            raise ValueError(f"`mode` must be 'mean' or 'class_token', got {mode!r}.")
        self.mode = mode

    def build(self, input_shape):
        _check_tokens(input_shape, "TokenPooling")
        super().build(input_shape)

    def call(self, x):
        return x[:, 0, :] if self.mode == "class_token" else ops.mean(x, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="keras_sd")
class TokenExitHead(ExitHeadBase):
    """One shallow exit on a token sequence: layer norm, pooling, dense classifier.

    ``LayerNorm -> pool -> [Dense(feature_dim)] -> Dense(num_classes)``. Pooling is the class
    token, the token mean, or attention pooling: one learned query attends over the normalised
    tokens through `keras.layers.MultiHeadAttention` (``num_heads`` heads of width
    ``dim // num_heads``). The projection to ``feature_dim`` exists only when the token width
    differs from it (on a ViT every block has the final width, so there is none); its output, or
    the pooled vector, is the exit feature.

    Example:
        >>> import numpy as np
        >>> head = TokenExitHead(num_classes=10, feature_dim=16, pooling="attention")
        >>> out = head(np.zeros((2, 17, 16), "float32"))
        >>> tuple(out["logits"].shape), tuple(out["features"].shape)
        ((2, 10), (2, 16))

    Args:
        num_classes: classes of the dense classifier.
        feature_dim: width of the exit feature (the backbone's final feature width).
        pooling: ``"mean"``, ``"class_token"`` or ``"attention"``.
        num_heads: heads of attention pooling; None: ``max(1, dim // 64)`` (ViT heads are 64
            wide). Unused by the other poolings.

    Call returns ``{"logits": [batch, num_classes], "features": [batch, feature_dim]}``.
    """

    def __init__(
        self,
        num_classes: int,
        feature_dim: int,
        pooling: str = "mean",
        num_heads: int | None = None,
        **kwargs,
    ):
        super().__init__(num_classes, feature_dim, **kwargs)
        self.pooling = check_token_pooling(pooling, "pooling")
        self.num_heads = (
            None if num_heads is None else validation.positive_int(num_heads, "num_heads")
        )

    def build(self, input_shape):
        shape = _check_tokens(input_shape, "TokenExitHead")
        dim = int(shape[-1])
        self.norm = keras.layers.LayerNormalization(epsilon=LN_EPSILON, name="norm")
        self.norm.build(shape)
        self.pool = None
        self.query = None
        self.attention = None
        if self.pooling == "attention":
            heads = self.num_heads or max(1, dim // 64)
            self.query = self.add_weight(
                shape=(1, 1, dim),
                initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                name="query",
            )
            self.attention = keras.layers.MultiHeadAttention(
                heads, key_dim=max(1, dim // heads), name="attention"
            )
            self.attention.build((shape[0], 1, dim), shape)
        else:
            self.pool = TokenPooling(self.pooling, name="pool")
            self.pool.build(shape)
        self.projection = None
        if dim != self.feature_dim:
            self.projection = keras.layers.Dense(
                self.feature_dim, kernel_initializer=KERNEL_INIT, name="projection"
            )
            self.projection.build((shape[0], dim))
        self.build_classifier(batch=shape[0])
        super().build(input_shape)

    def call(self, x, training=None):
        x = self.norm(x)
        if self.attention is not None:
            query = ops.broadcast_to(
                ops.cast(self.query, x.dtype), (ops.shape(x)[0], 1, ops.shape(x)[-1])
            )
            pooled = self.attention(query, x, training=training)[:, 0, :]
        else:
            pooled = self.pool(x)
        features = pooled if self.projection is None else self.projection(pooled)
        return self.head_outputs(features)

    def get_config(self):
        return {
            **super().get_config(),
            "pooling": self.pooling,
            "num_heads": self.num_heads,
        }
