"""Wrap a keras-hub image backbone into the backbone contract ``{"stages", "features", "logits"}``.

Convolutional backbones (`keras_hub.models.FeaturePyramidBackbone`: ResNet, EfficientNet,
DenseNet, CSPNet, ...) give their stages through keras-hub's public ``pyramid_outputs``; a Vision
Transformer (`keras_hub.models.ViTBackbone`) keeps all its blocks inside one ``ViTEncoder`` layer,
so it is re-traced block by block, with the same layer objects, to expose the token sequence after
chosen blocks. keras-hub is an optional dependency (``pip install keras-sd[hub]``), imported only
when a keras-hub backbone is wrapped.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from typing import Any

import keras

from keras_sd import validation
from keras_sd.backbones import _common as c
from keras_sd.layers.stochastic_depth import StochasticDepth
from keras_sd.layers.tokens import TokenPooling

# Keyword arguments every keras Layer accepts, kept when re-creating a keras-hub layer.
_BASE_LAYER_KWARGS = ("name", "trainable", "dtype")


def _keras_hub():
    try:
        return importlib.import_module("keras_hub")
    except ImportError as err:  # pragma: no cover - the [hub] extra is in [test]
        raise ImportError(
            "from_keras_hub needs keras-hub: pip install 'keras-sd[hub]' (or keras-hub)"
        ) from err


@keras.saving.register_keras_serializable(package="keras_sd")
class KerasHubLayer(keras.layers.Layer):
    """Holds one keras-hub layer so that a model using it alone saves and loads.

    keras-hub 0.32's ViT layers (``ViTPatchingAndEmbedding``, ``ViTEncoderBlock``) put derived
    values in ``get_config`` (``num_patches``, ``key_dim``) that their constructors reject, and
    its ViT ``MLP`` has no ``get_config`` at all, so they only load inside their own backbone. This holder calls the wrapped layer unchanged (same
    object, same weights) and, when loaded, rebuilds it from the config keys its constructor
    accepts.

    Example:
        >>> import keras_hub
        >>> vit = keras_hub.models.ViTBackbone(image_shape=(8, 8, 3), patch_size=4, num_layers=1,
        ...                                    num_heads=1, hidden_dim=8, mlp_dim=8)
        >>> block = KerasHubLayer(vit.get_layer("vit_encoder").encoder_layers[0])
        >>> restored = KerasHubLayer.from_config(block.get_config())
        >>> type(restored.layer).__name__
        'ViTEncoderBlock'

    Args:
        layer: a keras-hub layer instance, or its serialised form (``{"module", "class_name",
            "config"}``, as in `get_config`).
    """

    def __init__(self, layer, **kwargs):
        if isinstance(layer, dict):
            layer = _rebuild_hub_layer(layer)
        elif not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                f"`layer` must be a keras-hub keras.layers.Layer, got {type(layer).__name__}."
            )
        kwargs.setdefault("name", layer.name)
        super().__init__(**kwargs)
        self.layer = layer

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        super().build(input_shape)

    def call(self, x):
        return self.layer(x)

    def get_config(self):
        cls = type(self.layer)
        return {
            **super().get_config(),
            "layer": {
                "module": cls.__module__,
                "class_name": cls.__name__,
                "config": _hub_layer_config(self.layer),
            },
        }


@keras.saving.register_keras_serializable(package="keras_sd")
class SelfAttentionBranch(keras.layers.Layer):
    """The attention residual branch of a transformer block: ``dropout(mha(norm(x), norm(x)))``.

    Holds the block's own layer norm, `keras.layers.MultiHeadAttention` and dropout (shared,
    not copied), so that a `keras_sd.layers.StochasticDepth` gate can skip the branch; the MLP
    branch is a plain ``keras.Sequential([norm, mlp])``.

    Example:
        >>> import numpy as np
        >>> branch = SelfAttentionBranch(keras.layers.LayerNormalization(),
        ...                              keras.layers.MultiHeadAttention(2, 4),
        ...                              keras.layers.Dropout(0.0))
        >>> tuple(branch(np.zeros((1, 5, 8), "float32")).shape)
        (1, 5, 8)

    Args:
        norm: the layer norm before attention.
        attention: the self-attention layer.
        dropout: the dropout after it.
    """

    def __init__(self, norm, attention, dropout, **kwargs):
        super().__init__(**kwargs)
        layers = [norm, attention, dropout]
        for i, layer in enumerate(layers):
            if isinstance(layer, dict):
                layers[i] = keras.saving.deserialize_keras_object(layer)
        self.norm, self.attention, self.dropout = layers

    def build(self, input_shape):
        for layer in (self.norm, self.dropout):
            if not layer.built:
                layer.build(input_shape)
        if not self.attention.built:
            self.attention.build(input_shape, input_shape)
        super().build(input_shape)

    def call(self, x, training=None):
        y = self.norm(x)
        return self.dropout(self.attention(y, y, training=training), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "norm": keras.saving.serialize_keras_object(self.norm),
            "attention": keras.saving.serialize_keras_object(self.attention),
            "dropout": keras.saving.serialize_keras_object(self.dropout),
        }


def _hub_layer_config(layer) -> dict:
    try:
        return layer.get_config()
    except NotImplementedError:
        # keras-hub 0.32's ViT MLP has no get_config: read its constructor's arguments back from
        # the attributes of the same names, as keras-hub's layers store them.
        params = inspect.signature(type(layer).__init__).parameters
        config = {
            k: getattr(layer, k)
            for k in params
            if k not in ("self", "kwargs", *_BASE_LAYER_KWARGS) and hasattr(layer, k)
        }
        return {
            "name": layer.name,
            "trainable": layer.trainable,
            "dtype": keras.saving.serialize_keras_object(layer.dtype_policy),
            **config,
        }


def _rebuild_hub_layer(spec: dict) -> keras.layers.Layer:
    module = spec.get("module", "")
    if not (module == "keras_hub" or module.startswith("keras_hub.")):
        # Only keras-hub classes: a config must not import arbitrary modules.
        raise ValueError(f"`layer`: module must be a keras_hub module, got {module!r}.")
    cls = getattr(importlib.import_module(module), spec["class_name"])
    params = inspect.signature(cls.__init__).parameters
    config = {
        k: v
        for k, v in spec["config"].items()
        if k in _BASE_LAYER_KWARGS or (k in params and k != "self")
    }
    return cls.from_config(config)


def _image_input(backbone) -> Any:
    """The backbone's one NHWC image input, or a ValueError saying why it is not an image model."""
    try:
        inputs = backbone.inputs
    except (AttributeError, ValueError):
        inputs = None
    shapes = [tuple(t.shape) for t in inputs or ()]
    if not inputs or len(inputs) != 1 or len(shapes[0]) != 4:
        raise ValueError(
            f"`backbone_or_name`: {type(backbone).__name__} is not an image backbone; expected one "
            f"4-D image input [batch, height, width, channels], got inputs of shapes {shapes}."
        )
    if getattr(backbone, "data_format", "channels_last") != "channels_last":
        raise ValueError(
            f"`backbone_or_name`: data_format must be 'channels_last' (the contract is NHWC), got "
            f"{backbone.data_format!r}."
        )
    return inputs[0]


def _level(key: str) -> float:
    # "P3" -> 3; anything else sorts last, in its given order.
    return float(key[1:]) if key[:1] == "P" and key[1:].isdigit() else float("inf")


def _pyramid_stages(backbone, stages) -> list:
    levels = dict(backbone.pyramid_outputs)
    keys = sorted(levels, key=_level)
    if stages is None:
        # P1 (stride 2, EfficientNet) is too early for an exit and costly for its head.
        chosen = [k for k in keys if _level(k) >= 2] or keys
    else:
        if isinstance(stages, str) or not isinstance(stages, Sequence) or not stages:
            raise ValueError(
                f"`stages` must be a non-empty list of pyramid levels from {keys}, got {stages!r}."
            )
        unknown = [s for s in stages if s not in levels]
        if unknown:
            raise ValueError(
                f"`stages`: {type(backbone).__name__} has no pyramid level {unknown[0]!r}; "
                f"expected levels from {keys}."
            )
        if [keys.index(s) for s in stages] != sorted({keys.index(s) for s in stages}):
            raise ValueError(
                f"`stages` must be distinct pyramid levels ordered shallow to deep, got {stages!r}."
            )
        chosen = list(stages)
    for key in chosen:
        if len(levels[key].shape) != 4:
            raise ValueError(
                f"`stages`: pyramid level {key!r} is not a 4-D map, shape {tuple(levels[key].shape)}."
            )
    return [levels[k] for k in chosen]


def _vit_stage_blocks(depth: int, stages) -> list[int]:
    if stages is None:
        step = max(1, depth // 4)
        blocks = list(range(step, depth + 1, step))
    else:
        if isinstance(stages, str) or not isinstance(stages, Sequence) or not stages:
            raise ValueError(
                f"`stages` must be a non-empty list of block numbers in 1..{depth}, got {stages!r}."
            )
        for b in stages:
            if isinstance(b, bool) or not isinstance(b, int):
                raise ValueError(f"`stages` items must be block numbers (int), got {b!r}.")
            if not 1 <= b <= depth:
                raise ValueError(
                    f"`stages`: block {b} is past the last block; the ViT has {depth} blocks, "
                    f"expected block numbers in 1..{depth}."
                )
        if list(stages) != sorted(set(stages)):
            raise ValueError(f"`stages` must be distinct and increasing, got {stages!r}.")
        blocks = list(stages)
    if blocks[-1] != depth:
        blocks.append(depth)  # the encoder output is always the last stage
    return blocks


def from_keras_hub(
    backbone_or_name,
    num_classes: int,
    *,
    stages: Sequence[str] | Sequence[int] | None = None,
    pooling: str | None = None,
    stochastic_depth: float | None = None,
    drop_mode: str = "per_batch",
    seed: int | None = None,
    **config,
) -> keras.Model:
    """Wrap a keras-hub image backbone so it returns ``{"stages", "features", "logits"}``.

    * Convolutional (`keras_hub.models.FeaturePyramidBackbone`): ``stages`` are pyramid levels
      (keys of ``backbone.pyramid_outputs``), by default every level from ``"P2"`` (stride 4)
      on, ``["P2", "P3", "P4", "P5"]`` for a ResNet; ``features`` is the backbone output
      globally average-pooled.
    * Vision Transformer (`keras_hub.models.ViTBackbone`): ``stages`` are 1-based block numbers,
      by default every ``depth // 4`` blocks (3, 6, 9, 12 for ViT-B); a stage is the token
      sequence ``[batch, tokens, dim]`` after that block, and the last stage is always the
      encoder output (after the last block and the final layer norm), appended when not listed.
      ``features`` pools the encoder output: ``pooling="class_token"`` (the default when the ViT
      has a class token) or ``"mean"``.

    ``logits`` is a new ``Dense(num_classes)`` (He-normal) on ``features``. The returned model
    shares the backbone's layers and weights (a ViT's embedding and blocks through
    `KerasHubLayer` holders). Preprocessing stays outside, as in keras-hub: the model takes the
    images its backbone takes, already rescaled and normalised (for a preset, the way its
    ``ImageConverter`` does, e.g. ``keras_hub.layers.ResNetImageConverter.from_preset(name)``);
    keras_sd's data pipeline normalises with the dataset's channel statistics instead, which
    suits a backbone trained from scratch.

    Example:
        >>> import keras_hub
        >>> vit = keras_hub.models.ViTBackbone(image_shape=(16, 16, 3), patch_size=4,
        ...                                    num_layers=2, num_heads=2, hidden_dim=16,
        ...                                    mlp_dim=32)
        >>> net = from_keras_hub(vit, num_classes=10)
        >>> [tuple(s.shape) for s in net.output["stages"]]
        [(None, 17, 16), (None, 17, 16)]

        With downloads: ``from_keras_hub("resnet_50_imagenet", num_classes=100)`` loads the
        preset through ``keras_hub.models.Backbone.from_preset``.

    Args:
        backbone_or_name: a keras-hub image backbone, or a preset name or directory for
            ``keras_hub.models.Backbone.from_preset``.
        num_classes: classes of the new classifier head.
        stages: pyramid levels (convolutional) or block numbers (ViT); None: the default above.
        pooling: ViT only: ``"class_token"`` or ``"mean"``; None: the class token when there is
            one, else the mean.
        stochastic_depth: ViT only: the last block's survival probability (linear decay over
            the blocks, Huang et al. 2016); each block's attention and MLP residual branches get
            a `keras_sd.layers.StochasticDepth` gate with its block's probability, so
            Self-Guidance can sample sub-networks. None: no gates.
        drop_mode: ``"per_batch"`` or ``"per_sample"`` draws of the gates.
        seed: base seed of the gates.
        **config: passed to ``Backbone.from_preset`` with a name (e.g. ``load_weights=False``).

    Returns:
        A functional `keras.Model` with the contract's dict output, named like the backbone.

    Raises:
        ValueError: a non-image backbone (text, audio), one with no recognisable stages, a stage
            past the last block or not in the pyramid, a bad ``pooling``, or ``config`` with a
            backbone instance.
    """
    hub = _keras_hub()
    if isinstance(backbone_or_name, str):
        backbone = hub.models.Backbone.from_preset(backbone_or_name, **config)
    else:
        if config:
            raise ValueError(
                f"keyword arguments {sorted(config)} are passed to Backbone.from_preset and need "
                f"a preset name as `backbone_or_name`, got a {type(backbone_or_name).__name__}."
            )
        backbone = backbone_or_name
    if not isinstance(backbone, keras.Model):
        raise ValueError(
            f"`backbone_or_name` must be a keras-hub backbone or a preset name, got "
            f"{type(backbone).__name__}."
        )
    num_classes = c.check_num_classes(num_classes)
    image = _image_input(backbone)
    schedule = c.DepthSchedule(stochastic_depth, 1, drop_mode, seed)  # checks the arguments
    if isinstance(backbone, hub.models.ViTBackbone):
        return _wrap_vit(backbone, image, num_classes, stages, pooling, schedule)
    if schedule.enabled:
        raise ValueError(
            f"`stochastic_depth` applies to Vision Transformers only (a keras-hub CNN's residual "
            f"blocks are not separate layers to gate), got stochastic_depth={stochastic_depth!r}."
        )
    if pooling is not None:
        raise ValueError(
            f"`pooling` applies to Vision Transformers only; a convolutional backbone's features "
            f"are globally average-pooled, got pooling={pooling!r}."
        )
    if isinstance(backbone, hub.models.FeaturePyramidBackbone) and backbone.pyramid_outputs:
        stage_tensors = _pyramid_stages(backbone, stages)
        out = backbone.output
        if isinstance(out, (list, tuple, dict)) or len(out.shape) != 4:
            raise ValueError(
                f"`backbone_or_name`: expected a single 4-D feature map output, got {out!r}."
            )
        features = keras.layers.GlobalAveragePooling2D(name="sd_avg_pool")(out)
        logits = keras.layers.Dense(
            num_classes, kernel_initializer=c.KERNEL_INIT, name="sd_logits"
        )(features)
        return keras.Model(
            image,
            {"stages": stage_tensors, "features": features, "logits": logits},
            name=backbone.name,
        )
    raise ValueError(
        f"`backbone_or_name`: {type(backbone).__name__} has no recognisable stages (no "
        f"pyramid_outputs and not a ViTBackbone); name its stage layers with "
        f"keras_sd.backbones.from_keras(model, stage_layers=[...], num_classes=...)."
    )


def _wrap_vit(backbone, image, num_classes: int, stages, pooling, schedule) -> keras.Model:
    encoder = backbone.get_layer("vit_encoder")
    embedding = backbone.get_layer("vit_patching_and_embedding")
    depth = len(encoder.encoder_layers)
    blocks = _vit_stage_blocks(depth, stages)
    if pooling is None:
        pooling = "class_token" if backbone.use_class_token else "mean"
    if pooling not in ("class_token", "mean"):
        raise ValueError(f"`pooling` must be 'class_token' or 'mean' for a ViT, got {pooling!r}.")
    if pooling == "class_token" and not backbone.use_class_token:
        raise ValueError(
            "`pooling`: 'class_token' needs a ViT built with use_class_token=True; use 'mean'."
        )
    inp = keras.Input(tuple(image.shape[1:]), dtype=image.dtype, name=image.name)
    # The same operations as ViTEncoder.call: dropout, the blocks, then the final layer norm.
    x = encoder.dropout(KerasHubLayer(embedding)(inp))
    taps = {}
    schedule = c.DepthSchedule(schedule.final, depth, schedule.drop_mode, schedule.seed)
    for i, block in enumerate(encoder.encoder_layers, start=1):
        p, seed = schedule.next_block()
        if p is None:
            x = KerasHubLayer(block)(x)
        else:
            # ViTEncoderBlock.call as two gated residual branches (DeiT's drop path), reusing the
            # block's layers: x + attn(ln_1(x)), then + mlp(ln_2(.)); one probability per block.
            attention = SelfAttentionBranch(
                block.layer_norm_1, block.mha, block.dropout, name=f"{block.name}_attention"
            )
            mlp = keras.Sequential(
                [block.layer_norm_2, KerasHubLayer(block.mlp)], name=f"{block.name}_mlp"
            )
            seeds = (None, None) if seed is None else (2 * seed, 2 * seed + 1)
            for branch, branch_seed in zip((attention, mlp), seeds):
                gate = StochasticDepth(
                    branch, p, mode=schedule.drop_mode, seed=branch_seed, name=f"{branch.name}_sd"
                )
                x = gate([x, x])
        taps[i] = x
    x = encoder.layer_norm(x)
    taps[depth] = x
    features = TokenPooling(pooling, name="sd_token_pool")(x)
    logits = keras.layers.Dense(num_classes, kernel_initializer=c.KERNEL_INIT, name="sd_logits")(
        features
    )
    return keras.Model(
        inp,
        {"stages": [taps[b] for b in blocks], "features": features, "logits": logits},
        name=backbone.name,
    )


# ------------------------------------------------------------------ registry builders (no download)
# DeiT-Tiny (Touvron et al., ICML 2021, Table 1): 12 blocks, 3 heads, width 192, MLP 768.
DEIT_TINY = {"num_layers": 12, "num_heads": 3, "hidden_dim": 192, "mlp_dim": 768}
# keras-hub's ResNet presets (v1, ImageNet stem: 7x7 stride-2 convolution and 3x3 stride-2 max
# pool): block type and blocks per stage, by depth.
HUB_RESNETS = {
    18: ("basic_block", (2, 2, 2, 2)),
    34: ("basic_block", (3, 4, 6, 3)),
    50: ("bottleneck_block", (3, 4, 6, 3)),
    101: ("bottleneck_block", (3, 4, 23, 3)),
    152: ("bottleneck_block", (3, 8, 36, 3)),
}


def hub_vit(
    num_classes: int = 10,
    input_shape: tuple[int, int, int] | None = None,
    *,
    patch_size: int = 4,
    num_layers: int = DEIT_TINY["num_layers"],
    num_heads: int = DEIT_TINY["num_heads"],
    hidden_dim: int = DEIT_TINY["hidden_dim"],
    mlp_dim: int = DEIT_TINY["mlp_dim"],
    dropout_rate: float = 0.0,
    attention_dropout: float = 0.0,
    stages: Sequence[int] | None = None,
    pooling: str | None = None,
    stochastic_depth: float | None = None,
    drop_mode: str = "per_batch",
    seed: int | None = None,
) -> keras.Model:
    """keras-hub's ``ViTBackbone`` built from its config (random weights, nothing downloaded),
    wrapped by `from_keras_hub` (``stages``, ``pooling``, ``stochastic_depth``, ``drop_mode``,
    ``seed`` as there). The defaults are DeiT-Tiny's dimensions with 4-pixel patches, which on
    32x32 images give 64 patches plus the class token. keras-hub's ViT has layer-norm epsilon
    1e-6 (as DeiT) and a class token; ``dropout_rate`` / ``attention_dropout`` are keras-hub's.

    Raises:
        ValueError: ``patch_size`` that does not divide the image, or bad dimensions.
    """
    hub = _keras_hub()
    shape = c.check_input_shape((32, 32, 3) if input_shape is None else input_shape)
    for name, value in (
        ("patch_size", patch_size),
        ("num_layers", num_layers),
        ("num_heads", num_heads),
        ("hidden_dim", hidden_dim),
        ("mlp_dim", mlp_dim),
    ):
        validation.positive_int(value, name)
    if shape[0] % patch_size or shape[1] % patch_size:
        raise ValueError(
            f"`patch_size`={patch_size} must divide the image height and width, got "
            f"input_shape={shape}."
        )
    if hidden_dim % num_heads:
        raise ValueError(
            f"`hidden_dim`={hidden_dim} must be a multiple of `num_heads`={num_heads}."
        )
    vit = hub.models.ViTBackbone(
        image_shape=shape,
        patch_size=patch_size,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        mlp_dim=mlp_dim,
        dropout_rate=dropout_rate,
        attention_dropout=attention_dropout,
    )
    return from_keras_hub(
        vit,
        num_classes,
        stages=stages,
        pooling=pooling,
        stochastic_depth=stochastic_depth,
        drop_mode=drop_mode,
        seed=seed,
    )


def hub_vit_tiny(num_classes: int = 10, input_shape=None, **kwargs) -> keras.Model:
    """`hub_vit` with DeiT-Tiny's dimensions (12 blocks, 3 heads, width 192, MLP 768; 5.4M
    parameters with 4-pixel patches on 32x32 images). ``kwargs``: `hub_vit`'s other arguments
    (``patch_size`` 4 by default); the dimensions are fixed (use ``"hub_vit"`` to change them)."""
    fixed = sorted(set(kwargs) & set(DEIT_TINY))
    if fixed:
        raise ValueError(
            f"hub_vit_tiny fixes {fixed} to DeiT-Tiny's {[DEIT_TINY[k] for k in fixed]}; "
            f"use the backbone 'hub_vit' for other dimensions."
        )
    return hub_vit(num_classes, input_shape, **DEIT_TINY, **kwargs)


def hub_resnet(
    depth: int = 18,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] | None = None,
    *,
    stages: Sequence[str] | None = None,
) -> keras.Model:
    """keras-hub's ``ResNetBackbone`` of ``depth`` (18, 34, 50, 101 or 152) built from the config of
    its ImageNet presets (v1, 64-128-256-512 filters, 7x7 stride-2 stem and max pool; random
    weights, nothing downloaded), wrapped by `from_keras_hub`: stages are the pyramid levels P2..P5
    (strides 4..32: 8x8 down to 1x1 on 32x32 images), or ``stages``.

    Raises:
        ValueError: a depth keras-hub has no preset configuration for.
    """
    hub = _keras_hub()
    validation.one_of(depth, "depth", sorted(HUB_RESNETS))
    shape = c.check_input_shape((32, 32, 3) if input_shape is None else input_shape)
    block_type, blocks = HUB_RESNETS[depth]
    net = hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=list(blocks),
        stackwise_num_strides=[1, 2, 2, 2],
        block_type=block_type,
        use_pre_activation=False,
        image_shape=shape,
    )
    return from_keras_hub(net, num_classes, stages=stages)


def hub_resnet18(num_classes: int = 10, **kwargs) -> keras.Model:
    """keras-hub's ResNet-18 (11.2M parameters with 10 classes). See `hub_resnet`."""
    return hub_resnet(18, num_classes, **kwargs)


def hub_resnet50(num_classes: int = 10, **kwargs) -> keras.Model:
    """keras-hub's ResNet-50 (23.5M parameters with 10 classes). See `hub_resnet`."""
    return hub_resnet(50, num_classes, **kwargs)
