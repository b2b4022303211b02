"""keras-hub backbones in the backbone contract (`backbones.from_keras_hub`), built from config
with random weights (presets cannot be downloaded here)."""

import doctest

import keras
import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

from keras_sd import backbones  # noqa: E402
from keras_sd.backbones import hub as hub_module  # noqa: E402
from keras_sd.layers import tokens as tokens_module  # noqa: E402
from keras_sd.testing import check_keras_save_load  # noqa: E402


def tiny_vit(num_layers=2, use_class_token=True):
    return keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3),
        patch_size=4,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        use_class_token=use_class_token,
    )


def tiny_resnet():
    # keras-hub's basic-block ResNet needs 64 filters in its first stack and stem.
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 8, 8, 8],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        image_shape=(32, 32, 3),
    )


def images(shape, n=2, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, *shape)).astype("float32")


def _vit_by_hand(vit, x, upto):
    """The token sequence after block ``upto``, running the ViT's own layers one by one."""
    encoder = vit.get_layer("vit_encoder")
    h = vit.get_layer("vit_patching_and_embedding")(x)
    for block in encoder.encoder_layers[:upto]:
        h = block(h)
    return np.asarray(h)


def test_vit_stages_are_the_tokens_after_every_depth_over_4_blocks():
    vit = tiny_vit(num_layers=8)
    net = backbones.from_keras_hub(vit, num_classes=10)
    x = images((16, 16, 3))
    out = net(x)
    assert len(out["stages"]) == 4  # blocks 2, 4, 6, 8
    for stage, block in zip(out["stages"][:-1], (2, 4, 6)):
        np.testing.assert_allclose(stage, _vit_by_hand(vit, x, block), atol=1e-5)
    # The last stage is the encoder output (final layer norm included): the backbone's own.
    np.testing.assert_allclose(out["stages"][-1], vit(x), atol=1e-5)
    np.testing.assert_allclose(out["features"], np.asarray(vit(x))[:, 0], atol=1e-5)
    dense = net.get_layer("sd_logits")
    np.testing.assert_allclose(
        out["logits"], out["features"] @ dense.kernel.numpy() + dense.bias.numpy(), atol=1e-5
    )
    # Shared, not copied: every backbone weight is one of the wrapped model's.
    assert {id(w) for w in vit.weights} <= {id(w) for w in net.weights}


def test_vit_stage_choice_appends_the_encoder_output_and_mean_pooling():
    vit = tiny_vit(num_layers=4, use_class_token=False)
    net = backbones.from_keras_hub(vit, num_classes=3, stages=[1, 3])
    x = images((16, 16, 3))
    out = net(x)
    assert [tuple(s.shape) for s in out["stages"]] == [(2, 16, 16)] * 3  # blocks 1, 3, 4
    np.testing.assert_allclose(out["stages"][1], _vit_by_hand(vit, x, 3), atol=1e-5)
    np.testing.assert_allclose(out["features"], np.asarray(vit(x)).mean(axis=1), atol=1e-5)


def test_vit_round_trips_through_keras_save(tmp_path):
    net = backbones.from_keras_hub(tiny_vit(), num_classes=5)
    assert [tuple(s.shape) for s in net.output["stages"]] == [(None, 17, 16)] * 2
    check_keras_save_load(net, images((16, 16, 3)), tmp_path)


def test_resnet_stages_are_the_pyramid_levels_and_features_the_pooled_output(tmp_path):
    rn = tiny_resnet()
    net = backbones.from_keras_hub(rn, num_classes=10)
    x = images((32, 32, 3))
    out = net(x)
    pyramid = keras.Model(rn.inputs[0], rn.pyramid_outputs)(x)
    assert len(out["stages"]) == 4
    for stage, level in zip(out["stages"], ("P2", "P3", "P4", "P5")):
        np.testing.assert_allclose(stage, pyramid[level], atol=1e-5)
    np.testing.assert_allclose(out["features"], np.asarray(rn(x)).mean(axis=(1, 2)), atol=1e-5)
    chosen = backbones.from_keras_hub(rn, num_classes=10, stages=["P3", "P5"])
    assert [tuple(s.shape) for s in chosen.output["stages"]] == [(None, 4, 4, 8), (None, 1, 1, 8)]
    check_keras_save_load(net, x, tmp_path)


def test_densenet_stages_are_its_pyramid_levels_from_p2():
    dn = keras_hub.models.DenseNetBackbone([1, 1, 1], growth_rate=4, image_shape=(32, 32, 3))
    net = backbones.from_keras_hub(dn, num_classes=3)
    levels = sorted(k for k in dn.pyramid_outputs if int(k[1:]) >= 2)
    x = images((32, 32, 3))
    pyramid = keras.Model(dn.inputs[0], dn.pyramid_outputs)(x)
    out = net(x)
    assert len(out["stages"]) == len(levels) >= 2
    for stage, level in zip(out["stages"], levels):
        np.testing.assert_allclose(stage, pyramid[level], atol=1e-5)


def test_a_preset_directory_loads_by_name(tmp_path):
    rn = tiny_resnet()
    rn.save_to_preset(str(tmp_path / "preset"))
    net = backbones.from_keras_hub(str(tmp_path / "preset"), num_classes=10)
    x = images((32, 32, 3))
    np.testing.assert_allclose(net(x)["stages"][-1], rn(x), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"stages": [3]}, r"`stages`: block 3 is past the last block; the ViT has 2 blocks"),
        ({"stages": [2, 1]}, r"`stages` must be distinct and increasing, got \[2, 1\]"),
        ({"stages": "P2"}, r"`stages` must be a non-empty list of block numbers in 1..2"),
        ({"pooling": "max"}, r"`pooling` must be 'class_token' or 'mean' for a ViT, got 'max'"),
        ({"num_classes": 0}, r"`num_classes` must be a positive int, got 0\."),
    ],
)
def test_bad_vit_arguments(kwargs, match):
    kwargs = {"num_classes": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        backbones.from_keras_hub(tiny_vit(), **kwargs)


def test_bad_arguments_and_backbones():
    rn = tiny_resnet()
    with pytest.raises(ValueError, match=r"has no pyramid level 'P9'; expected levels from"):
        backbones.from_keras_hub(rn, 4, stages=["P9"])
    with pytest.raises(ValueError, match=r"ordered shallow to deep, got \['P4', 'P3'\]"):
        backbones.from_keras_hub(rn, 4, stages=["P4", "P3"])
    with pytest.raises(ValueError, match=r"`pooling` applies to Vision Transformers only"):
        backbones.from_keras_hub(rn, 4, pooling="mean")
    with pytest.raises(ValueError, match=r"keyword arguments \['load_weights'\] .* preset name"):
        backbones.from_keras_hub(rn, 4, load_weights=False)
    with pytest.raises(ValueError, match=r"'class_token' needs a ViT built with use_class_token"):
        backbones.from_keras_hub(tiny_vit(use_class_token=False), 4, pooling="class_token")
    vgg = keras_hub.models.VGGBackbone([1, 1], [4, 8], image_shape=(16, 16, 3))
    with pytest.raises(ValueError, match=r"VGGBackbone has no recognisable stages .*from_keras"):
        backbones.from_keras_hub(vgg, 4)
    bert = keras_hub.models.BertBackbone(
        vocabulary_size=10, num_layers=1, num_heads=1, hidden_dim=4, intermediate_dim=4,
        max_sequence_length=8,
    )  # fmt: skip
    with pytest.raises(
        ValueError, match=r"BertBackbone is not an image backbone; expected one 4-D"
    ):
        backbones.from_keras_hub(bert, 4)
    with pytest.raises(ValueError, match=r"must be a keras-hub backbone or a preset name, got int"):
        backbones.from_keras_hub(3, 4)


def test_keras_hub_layer_only_rebuilds_keras_hub_classes():
    spec = {"module": "os", "class_name": "system", "config": {}}
    with pytest.raises(ValueError, match=r"module must be a keras_hub module, got 'os'"):
        hub_module.KerasHubLayer(spec)
    with pytest.raises(
        ValueError, match=r"`layer` must be a keras-hub keras.layers.Layer, got int"
    ):
        hub_module.KerasHubLayer(3)


@pytest.mark.parametrize("module", [hub_module, tokens_module], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def _trainable(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def test_registry_vit_tiny_is_deit_tiny_on_4_pixel_patches():
    net = backbones.get("hub_vit_tiny", num_classes=10, input_shape=(32, 32, 3))
    # DeiT-Tiny by hand: patch embedding 4*4*3*192 + 192, class token 192, positions 65*192;
    # per block 2 norms (2*192 each), q/k/v/out 4*(192*192 + 192), MLP 192*768 + 768 + 768*192
    # + 192; the final norm 2*192; the head 192*10 + 10.
    block = 2 * 384 + 4 * (192 * 192 + 192) + (192 * 768 + 768 + 768 * 192 + 192)
    expected = (48 * 192 + 192) + 192 + 65 * 192 + 12 * block + 384 + (192 * 10 + 10)
    assert _trainable(net) == expected == 5_362_762
    assert [tuple(s.shape) for s in net.output["stages"]] == [(None, 65, 192)] * 4
    small = backbones.get(
        "hub_vit", num_classes=3, input_shape=(8, 8, 1), num_layers=4, hidden_dim=32, num_heads=2
    )
    assert [tuple(s.shape) for s in small.output["stages"]] == [(None, 5, 32)] * 4


def test_registry_resnet18_is_keras_hubs_imagenet_resnet18():
    net = backbones.get("hub_resnet18", num_classes=10, input_shape=(32, 32, 3))
    # torchvision's resnet18 has 11,689,512 parameters with its 1000-class head (513,000).
    assert _trainable(net) == 11_689_512 - 513_000 + (512 * 10 + 10)
    shapes = [tuple(s.shape) for s in net.output["stages"]]
    assert shapes == [(None, 8, 8, 64), (None, 4, 4, 128), (None, 2, 2, 256), (None, 1, 1, 512)]


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("hub_vit", {"patch_size": 5}, r"`patch_size`=5 must divide .* input_shape=\(32, 32, 3\)"),
        ("hub_vit", {"hidden_dim": 32, "num_heads": 3}, r"`hidden_dim`=32 must be a multiple"),
        ("hub_vit", {"num_layers": 0}, r"`num_layers` must be a positive int, got 0"),
        (
            "hub_vit_tiny",
            {"num_layers": 4},
            r"fixes \['num_layers'\] .* use the backbone 'hub_vit'",
        ),
        (
            "hub_resnet",
            {"depth": 20},
            r"^`depth` must be one of \(18, 34, 50, 101, 152\), got 20\.$",
        ),
    ],
)
def test_registry_hub_builders_reject_bad_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        backbones.get(name, num_classes=10, input_shape=(32, 32, 3), **kwargs)
