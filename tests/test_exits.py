"""Exit layers of multi-exit self-distillation: shapes, attention mask range, composition, bad
arguments, serialisation."""

import keras
import numpy as np
import pytest
from harness import check_layer

from keras_sd.layers.exits import ExitAttention, ExitHead, SeparableConvBlock, align_channels

RNG = np.random.default_rng(0)
X = RNG.normal(size=(4, 8, 8, 6)).astype("float32")
X_ODD = RNG.normal(size=(3, 7, 7, 5)).astype("float32")


def test_align_channels_double_like_resnet_and_end_at_the_final_width():
    assert align_channels(64, 512, 3) == [128, 256, 512]
    assert align_channels(16, 64, 2) == [32, 64]
    assert align_channels(256, 512, 1) == [512]
    chans = align_channels(24, 1280, 3)  # MobileNetV2: geometric, last exactly the final width
    assert chans[-1] == 1280 and chans[0] < chans[1] < chans[2]


@pytest.mark.parametrize("x", [X, X_ODD], ids=["even", "odd"])
def test_separable_block_halves_the_spatial_size(x):
    block = SeparableConvBlock(9, strides=2)
    y = np.asarray(block(x))
    h = (x.shape[1] + 1) // 2
    assert y.shape == (len(x), h, h, 9)
    assert block.compute_output_shape(x.shape) == (len(x), h, h, 9)
    assert (y >= 0).all()  # ends with ReLU
    assert SeparableConvBlock(9, strides=1)(x).shape == (len(x), x.shape[1], x.shape[2], 9)


@pytest.mark.parametrize("x", [X, X_ODD], ids=["even", "odd"])
@pytest.mark.parametrize("training", [False, True])
def test_attention_mask_lies_in_open_unit_interval_and_multiplies_input(x, training):
    layer = ExitAttention()
    mask = np.asarray(layer.attention_mask(x, training=training))
    assert mask.shape == x.shape
    assert (mask > 0).all() and (mask < 1).all()
    # ReLU before the sigmoid (paper figure / official code): the mask never goes below 0.5.
    assert (mask >= 0.5).all()
    assert mask.std() > 0  # not a constant mask
    np.testing.assert_allclose(np.asarray(layer(x, training=training)), x * mask, rtol=1e-6)


def test_attention_mask_is_bilinear_upsampling_of_the_half_resolution_map():
    # For an even size the x2 bilinear upsampling (half-pixel centres) of a constant map is that
    # constant, and of a map varying along one axis keeps the mean of the two neighbours at the
    # border pixels: check against the layer's own half-resolution map through NumPy.
    layer = ExitAttention()
    mask = np.asarray(layer.attention_mask(X))
    half = np.asarray(
        keras.ops.relu(layer.bn(layer.sep(X, training=False), training=False))
    )  # [4, 4, 4, 6]

    def up1d(a, axis):
        # PyTorch align_corners=False / TF half_pixel_centers bilinear x2 along one axis.
        n = a.shape[axis]
        out = []
        for i in range(2 * n):
            src = (i + 0.5) / 2 - 0.5
            lo = int(np.floor(src))
            frac = src - lo
            lo_c, hi_c = min(max(lo, 0), n - 1), min(max(lo + 1, 0), n - 1)
            out.append(
                (1 - frac) * np.take(a, lo_c, axis=axis) + frac * np.take(a, hi_c, axis=axis)
            )
        return np.stack(out, axis=axis)

    expected = 1 / (1 + np.exp(-up1d(up1d(half, 1), 2)))
    np.testing.assert_allclose(mask, expected, rtol=1e-5, atol=1e-6)


def test_exit_head_features_match_final_width_and_logits_are_dense_of_pooled_features():
    head = ExitHead(num_classes=5, feature_dim=24, num_blocks=2)
    out = head(X)
    feats, logits = np.asarray(out["features"]), np.asarray(out["logits"])
    assert feats.shape == (4, 24) and logits.shape == (4, 5)
    assert [b.filters for b in head.blocks] == align_channels(6, 24, 2)
    # Composition, recomputed from the sub-layers with NumPy pooling and matmul.
    h = head.attention_module(X)
    for block in head.blocks:
        h = block(h)
    h = np.asarray(h)
    assert h.shape == (4, 2, 2, 24)  # 8 -> 4 -> 2: each align block halves the size
    np.testing.assert_allclose(feats, h.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    w, b = (np.asarray(v) for v in head.classifier.weights)
    np.testing.assert_allclose(logits, feats @ w + b, rtol=1e-5, atol=1e-5)


def test_exit_head_without_attention_has_no_attention_parameters():
    with_att = ExitHead(5, 24, 2, attention=True)
    without = ExitHead(5, 24, 2, attention=False)
    with_att.build(X.shape)
    without.build(X.shape)
    assert without.attention_module is None
    assert with_att.count_params() - without.count_params() == (
        with_att.attention_module.count_params()
    )
    # Without attention the head is align net + pooling + dense on the raw input.
    h = X
    for block in without.blocks:
        h = block(h)
    np.testing.assert_allclose(
        np.asarray(without(X)["features"]), np.asarray(h).mean(axis=(1, 2)), rtol=1e-5, atol=1e-6
    )


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="filters"):
        SeparableConvBlock(0)
    with pytest.raises(ValueError, match="strides"):
        SeparableConvBlock(4, strides=3)
    with pytest.raises(ValueError, match="num_blocks"):
        ExitHead(5, 8, num_blocks=0)
    with pytest.raises(ValueError, match="num_classes"):
        ExitHead(0, 8, 1)
    with pytest.raises(ValueError, match="feature_dim"):
        ExitHead(5, -1, 1)
    with pytest.raises(ValueError, match="attention"):
        ExitHead(5, 8, 1, attention="yes")
    with pytest.raises(ValueError, match="4-D"):
        ExitHead(5, 8, 1).build((None, 16))
    with pytest.raises(ValueError, match="num_blocks"):
        align_channels(4, 8, 0)


@pytest.mark.parametrize(
    "factory",
    [
        lambda: SeparableConvBlock(7, strides=2),
        lambda: ExitAttention(),
        lambda: ExitHead(5, 12, 2),
        lambda: ExitHead(5, 12, 1, attention=False),
    ],
    ids=["sepconv", "attention", "head", "head_no_attention"],
)
def test_harness_layers(factory):
    check_layer(factory, X)
