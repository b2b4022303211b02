"""Methods on keras-hub backbones: multi-exit (all four paths) and two-view on a tiny keras-hub
ViT and a tiny keras-hub ResNet (multi-exit also on a tiny EfficientNet), each through the
harness (fit before compile raises, a training epoch with finite, logged terms, config and
`.keras` round trips with identical predictions), and early-exit inference on a ViT (Keras and
LiteRT)."""

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

from keras_sd import backbones  # noqa: E402
from keras_sd.inference import EarlyExitModel  # noqa: E402
from keras_sd.layers.stochastic_depth import StochasticDepth  # noqa: E402
from keras_sd.models.multi_exit import MultiExitDistiller  # noqa: E402
from keras_sd.models.self_guidance import SelfGuidanceDistiller  # noqa: E402
from keras_sd.models.two_view import TwoViewDistiller  # noqa: E402
from keras_sd.testing import run_model_test  # noqa: E402

CLASSES = 4
RNG = np.random.default_rng(0)


def hub_vit():
    vit = keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32
    )
    return backbones.from_keras_hub(vit, num_classes=CLASSES)


def hub_resnet():
    rn = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 8, 8],
        stackwise_num_blocks=[1, 1, 1],
        stackwise_num_strides=[1, 2, 2],
        block_type="basic_block",
        image_shape=(16, 16, 3),
    )
    return backbones.from_keras_hub(rn, num_classes=CLASSES)


def hub_efficientnet():
    """A 4-stage keras-hub EfficientNet (MBConv "v1" blocks) small enough for a test."""
    eff = keras_hub.models.EfficientNetBackbone(
        stackwise_width_coefficients=[1.0] * 4,
        stackwise_depth_coefficients=[1.0] * 4,
        stackwise_kernel_sizes=[3, 3, 3, 3],
        stackwise_num_repeats=[1, 1, 1, 1],
        stackwise_input_filters=[8, 8, 16, 16],
        stackwise_output_filters=[8, 16, 16, 24],
        stackwise_expansion_ratios=[1, 2, 2, 2],
        stackwise_squeeze_and_excite_ratios=[0.0, 0.25, 0.25, 0.25],
        stackwise_strides=[1, 2, 2, 2],
        stackwise_block_types=["v1"] * 4,
        stackwise_force_input_filters=[0] * 4,
        stackwise_nores_option=[False] * 4,
        input_shape=(16, 16, 3),
        num_features=32,
    )
    return backbones.from_keras_hub(eff, num_classes=CLASSES)


X = RNG.normal(size=(4, 16, 16, 3)).astype("float32")
Y = np.array([0, 1, 2, 3])
MULTI_EXIT_LOGS = {
    "loss",
    "ce_loss",
    "kl_loss",
    "feature_loss",
    "exit1_accuracy",
    "exit2_accuracy",
    "ensemble_accuracy",
    "val_kl_loss",
    "val_feature_loss",
}
TWO_VIEW_LOGS = {"loss", "ce_loss", "kl_loss", "mmd_loss", "accuracy", "val_loss", "val_kl_loss"}


@pytest.mark.parametrize("path", ["deepest", "ensemble", "transitive", "dense"])
def test_multi_exit_on_a_hub_vit(path):
    # Blocks 1 and 2 are the stages: one token exit plus the ViT's own head.
    run_model_test(
        lambda: MultiExitDistiller(hub_vit(), path=path, token_pooling="attention"),
        X,
        Y,
        expected_logs=MULTI_EXIT_LOGS,
    )


def test_multi_exit_on_a_hub_resnet():
    model = run_model_test(
        lambda: MultiExitDistiller(hub_resnet(), exit_head="bottleneck"),
        X,
        Y,
        expected_logs=MULTI_EXIT_LOGS | {"exit3_accuracy"},
    )
    assert [type(h).__name__ for h in model.exit_heads] == ["BottleneckExitHead"] * 2


def test_multi_exit_on_a_hub_efficientnet():
    # Its pyramid levels from P2 (P1, stride 2, is skipped): P2 and P3 get exits, P4 is the last.
    net = hub_efficientnet()
    stages = net(X)["stages"]
    assert [tuple(s.shape[1:3]) for s in stages] == [(4, 4), (2, 2), (1, 1)]
    run_model_test(
        lambda: MultiExitDistiller(hub_efficientnet()),
        X,
        Y,
        expected_logs=MULTI_EXIT_LOGS,
    )


@pytest.mark.parametrize("factory", [hub_vit, hub_resnet], ids=["vit", "resnet"])
def test_two_view_on_hub_backbones(factory):
    run_model_test(lambda: TwoViewDistiller(factory(), seed=0), X, Y, expected_logs=TWO_VIEW_LOGS)


def test_early_exit_on_a_vit_answers_at_exit_1_or_by_the_ensemble():
    model = MultiExitDistiller(hub_vit(), token_pooling="mean")
    exits = model.predict_exits(X)
    # Any softmax beats a threshold of 1e-6: everything leaves at exit 1 with its logits.
    out = EarlyExitModel(model, [1e-6, 1e-6])(X)
    np.testing.assert_array_equal(out["exit"], 0)
    np.testing.assert_allclose(out["logits"], exits["exit1"], atol=1e-5)
    # None beats 1.0: every sample goes through both exits to the ensemble.
    out = EarlyExitModel(model, [1.0, 1.0])(X)
    np.testing.assert_array_equal(out["exit"], 2)
    np.testing.assert_allclose(out["logits"], exits["ensemble"], atol=1e-5)


def test_litert_early_exit_on_a_vit_answers_as_the_keras_early_exit(tmp_path):
    pytest.importorskip("ai_edge_litert", reason="the [litert] extra is not installed")
    from keras_sd.inference import LiteRTEarlyExit

    model = MultiExitDistiller(hub_vit(), token_pooling="mean")
    images = RNG.normal(size=(200, 16, 16, 3)).astype("float32") * 3.0
    exits = model.predict_exits(images)
    # Exit 1's median confidence: half the images leave there, the rest go on.
    z = np.asarray(exits["exit1"], "float64")
    p = np.exp(z - z.max(-1, keepdims=True))
    conf = (p / p.sum(-1, keepdims=True)).max(-1)
    thresholds = [float(np.median(conf)), 1.0]
    keras_out = EarlyExitModel(model, thresholds).predict_early_exit(images)
    EarlyExitModel(model, thresholds).export_litert(tmp_path / "vit")
    out = LiteRTEarlyExit(tmp_path / "vit", num_threads=1)(images)
    assert set(keras_out["exit"].tolist()) == {0, 2}  # exit 1 and the ensemble both answer
    same = out["exit"] == keras_out["exit"]
    assert same.mean() >= 0.99  # (the rest sit within float rounding of the threshold)
    for j in np.flatnonzero(~same):
        assert abs(conf[j] - thresholds[0]) < 1e-4
    np.testing.assert_array_equal(out["prediction"][same], keras_out["prediction"][same])
    np.testing.assert_allclose(out["logits"][same], keras_out["logits"][same], atol=1e-4)


@pytest.mark.parametrize("factory", [hub_vit, hub_resnet], ids=["vit", "resnet"])
def test_pskd_byot_dmfl_on_hub_backbones(factory):
    # Chottananurak et al.'s combination: PS-KD targets on every exit, BYOT, the mutual loss.
    run_model_test(
        lambda: MultiExitDistiller(
            factory(), pskd_alpha=0.8, num_train_examples=len(Y), mutual_feature_weight=1.0
        ),
        {"image": X, "index": np.arange(len(Y))},
        Y,
        expected_logs=MULTI_EXIT_LOGS | {"mutual_feature_loss", "pskd_alpha_t"},
    )


def gated_vit(survival=0.5, mode="per_batch"):
    vit = keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32
    )
    return vit, backbones.from_keras_hub(
        vit, num_classes=CLASSES, stochastic_depth=survival, drop_mode=mode, seed=1
    )


def test_vit_stochastic_depth_gates_both_residual_branches_of_each_block():
    vit, net = gated_vit(survival=0.5)
    gates = [layer for layer in net.layers if isinstance(layer, StochasticDepth)]
    # Linear decay over 2 blocks to 0.5: 0.75 then 0.5, the same for a block's two branches.
    assert [g.survival_probability for g in gates] == [0.75, 0.75, 0.5, 0.5]
    assert [g.mode for g in gates] == ["per_batch"] * 4
    # Inference scales each branch by its probability (Huang et al.): with p = 1 the gated ViT
    # is the keras-hub ViT itself.
    vit_1, full = gated_vit(survival=1.0)
    x = X[:2]
    np.testing.assert_allclose(full(x)["stages"][-1], vit_1(x), atol=1e-5)
    # With p < 1, inference is x + p * attn(.), then + p * mlp(.), per block, by hand:
    h = vit.get_layer("vit_patching_and_embedding")(x)
    for block, p in zip(vit.get_layer("vit_encoder").encoder_layers, (0.75, 0.5)):
        y = block.layer_norm_1(h)
        h = h + p * block.mha(y, y)
        h = h + p * block.mlp(block.layer_norm_2(h))
    h = vit.get_layer("vit_encoder").layer_norm(h)
    np.testing.assert_allclose(net(x)["stages"][-1], h, atol=1e-5)
    assert len(net.output["stages"]) == 2
    with pytest.raises(ValueError, match=r"`stochastic_depth` applies to Vision Transformers only"):
        backbones.from_keras_hub(hub_resnet_raw(), num_classes=CLASSES, stochastic_depth=0.5)
    with pytest.raises(
        ValueError, match=r"`stochastic_depth` must be None or a number in \(0, 1\]"
    ):
        backbones.from_keras_hub(vit, num_classes=CLASSES, stochastic_depth=1.5)


def hub_resnet_raw():
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 8],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=(16, 16, 3),
    )


def test_self_guidance_on_a_gated_vit():
    run_model_test(
        lambda: SelfGuidanceDistiller(gated_vit()[1], final_survival=0.5, drop_mode="per_batch"),
        X,
        Y,
        expected_logs={"loss", "ce_student_loss", "ce_teacher_loss", "kl_loss", "val_kl_loss"},
    )
