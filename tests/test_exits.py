"""Exit layers of multi-exit self-distillation: shapes, attention mask range, composition, bad
arguments, serialisation; the bottleneck exit head against a NumPy forward pass."""

import keras
import numpy as np
import pytest
from harness import check_layer

from keras_sd.layers.exits import (
    BottleneckExitHead,
    ExitAttention,
    ExitHead,
    SeparableConvBlock,
    align_channels,
    bottleneck_downsample,
    check_exit_head,
    make_exit_head,
)

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
        lambda: BottleneckExitHead(5, 12, downsample=4),
    ],
    ids=["sepconv", "attention", "head", "head_no_attention", "bottleneck_head"],
)
def test_harness_layers(factory):
    check_layer(factory, X)


# ---------------------------------------------------------------- bottleneck exit head
def _np_bn(x, bn):
    gamma, beta, mean, var = (np.asarray(v, np.float64) for v in bn.weights)
    return (x - mean) / np.sqrt(var + bn.epsilon) * gamma + beta


def _np_patch_conv(x, kernel, bias, s):
    """Non-overlapping s x s convolution with stride s (sizes multiples of s), by reshaping the
    map into patches and one matmul: [b, h, w, c] -> [b, h/s, w/s, c_out]."""
    b, h, w, c = x.shape
    patches = x.reshape(b, h // s, s, w // s, s, c).transpose(0, 1, 3, 2, 4, 5)
    return patches.reshape(b, h // s, w // s, s * s * c) @ kernel.reshape(s * s * c, -1) + bias


def _randomise_batch_norm(layer, rng):
    for bn in (layer.bn1, layer.bn2, layer.bn3):
        gamma, beta, mean, var = bn.weights
        gamma.assign(rng.uniform(0.5, 1.5, gamma.shape).astype("float32"))
        beta.assign(rng.normal(size=beta.shape).astype("float32"))
        mean.assign(rng.normal(size=mean.shape).astype("float32"))
        var.assign(rng.uniform(0.5, 1.5, var.shape).astype("float32"))


def test_bottleneck_head_equals_numpy_forward_pass_of_the_reference_layout():
    """conv1x1(C -> D/4) -> BN -> ReLU -> conv s x s stride s -> BN -> ReLU -> conv1x1(-> D) -> BN ->
    ReLU -> mean over space -> dense, recomputed from the layer's weights with NumPy (inference
    mode, non-trivial batch-norm statistics)."""
    x = RNG.normal(size=(3, 8, 8, 6)).astype("float32")
    head = BottleneckExitHead(num_classes=5, feature_dim=24, downsample=4)
    head.build(x.shape)
    _randomise_batch_norm(head, np.random.default_rng(4))
    out = head(x, training=False)
    feats, logits = np.asarray(out["features"]), np.asarray(out["logits"])
    assert feats.shape == (3, 24) and logits.shape == (3, 5)
    assert head.bottleneck_channels == 6

    def w(layer):
        return [np.asarray(v, np.float64) for v in (layer.kernel, layer.bias)]

    relu = lambda a: np.maximum(a, 0.0)  # noqa: E731
    k, b = w(head.reduce)
    assert k.shape == (1, 1, 6, 6)
    h = relu(_np_bn(x.astype(np.float64) @ k[0, 0] + b, head.bn1))
    k, b = w(head.down)
    assert k.shape == (4, 4, 6, 6)
    h = relu(_np_bn(_np_patch_conv(h, k, b, 4), head.bn2))
    assert h.shape == (3, 2, 2, 6)  # 8 / 4
    k, b = w(head.expand)
    assert k.shape == (1, 1, 6, 24)
    h = relu(_np_bn(h @ k[0, 0] + b, head.bn3))
    expected = h.mean(axis=(1, 2))
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-5)
    k, b = w(head.classifier)
    np.testing.assert_allclose(logits, expected @ k + b, rtol=1e-5, atol=1e-5)


def test_bottleneck_head_parameter_count_is_the_reference_layout():
    """Trainable parameters (PyTorch's count: BN gamma and beta only), by hand: three biased
    convolutions with BN, and the dense classifier."""
    c, d, s, classes = 64, 512, 8, 100
    m = d // 4
    expected = (c * m + m + 2 * m) + (s * s * m * m + m + 2 * m) + (m * d + d + 2 * d)
    expected += d * classes + classes
    head = BottleneckExitHead(classes, d, downsample=s)
    head.build((None, 32, 32, c))
    trainable = sum(int(np.prod(v.shape)) for v in head.trainable_weights)
    assert trainable == expected == 1_175_908
    # Plus the moving mean and variance of the three batch norms.
    assert head.count_params() == expected + 2 * (m + m + d)


def test_bottleneck_head_rounds_up_sizes_that_are_not_multiples_and_ends_with_relu():
    head = BottleneckExitHead(5, 12, downsample=2)
    out = head(X_ODD)  # 7x7 -> 4x4 ("same" padding)
    assert np.asarray(out["features"]).shape == (3, 12)
    assert (np.asarray(out["features"]) >= 0).all()  # mean of a ReLU output
    assert head.compute_output_shape(X_ODD.shape) == {"logits": (3, 5), "features": (3, 12)}


def test_bottleneck_downsample_is_the_size_ratio_to_the_last_stage():
    last = (None, 4, 4, 512)
    assert [bottleneck_downsample((None, h, h, 64), last, 9) for h in (32, 16, 8)] == [8, 4, 2]
    assert bottleneck_downsample((None, 4, 4, 64), last, 1) == 1
    # Unknown sizes: one halving per remaining stage.
    assert bottleneck_downsample((None, None, None, 64), (None, None, None, 512), 3) == 8


def test_make_exit_head_builds_either_kind():
    attention, bottleneck = (
        make_exit_head(
            kind,
            5,
            12,
            num_blocks=2,
            attention=True,
            input_shape=X.shape,
            final_shape=(None, 2, 2, 12),
            name=name,
        )
        for kind, name in (("attention", "a"), ("bottleneck", "b"))
    )
    assert type(attention) is ExitHead and attention.built and attention.num_blocks == 2
    assert type(bottleneck) is BottleneckExitHead and bottleneck.built
    assert bottleneck.downsample == 4 and bottleneck.name == "b"


def test_bottleneck_bad_arguments_name_the_argument_value_and_choices():
    with pytest.raises(ValueError, match="downsample"):
        BottleneckExitHead(5, 8, downsample=0)
    with pytest.raises(ValueError, match="num_classes"):
        BottleneckExitHead(0, 8, 2)
    with pytest.raises(ValueError, match="feature_dim"):
        BottleneckExitHead(5, 0, 2)
    with pytest.raises(ValueError, match="4-D"):
        BottleneckExitHead(5, 8, 2).build((None, 16))
    for bad in ("tpami", "Bottleneck", None, 3):
        with pytest.raises(ValueError) as err:
            check_exit_head(bad)
        message = str(err.value)
        assert "`exit_head`" in message and repr(bad) in message
        assert "'attention'" in message and "'bottleneck'" in message
