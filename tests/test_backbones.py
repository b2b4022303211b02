"""Backbones: parameter counts against the papers, the dict contract, tiny inputs, the
stochastic-depth schedule, the registry and the `from_keras` adapter."""

import keras
import numpy as np
import pytest

from keras_sd import backbones
from keras_sd.layers.stochastic_depth import StochasticDepth


def trainable_params(model: keras.Model) -> int:
    # The papers count learnable parameters (BN running statistics are buffers there).
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


# (builder, kwargs, published parameter count, source)
PAPER_COUNTS = [
    (backbones.resnet32, {}, 0.46e6, "He et al. 2016, CIFAR table"),
    (backbones.resnet110, {}, 1.7e6, "He et al. 2016, CIFAR table"),
    (backbones.resnet_cifar, {"depth": 50}, 0.76e6, "Self-Guidance, ResNet-50 (n = 8)"),
    (backbones.preact_resnet18, {}, 11.2e6, "pre-act ResNet-18, CIFAR"),
    (backbones.wrn16_8, {}, 11.0e6, "Zagoruyko & Komodakis 2016"),
    (backbones.wrn28_10, {}, 36.5e6, "Zagoruyko & Komodakis 2016"),
    (backbones.densenet40, {}, 1.0e6, "Huang et al. 2017"),
    (backbones.densenet100, {}, 7.0e6, "Huang et al. 2017"),
    (backbones.resnet18, {"num_classes": 100}, 11.2e6, "BYOT / PS-KD ResNet-18, CIFAR-100"),
    (backbones.resnet50, {"num_classes": 1000, "variant": "imagenet"}, 25.5e6, "Xie et al."),
    (backbones.resnext50, {"num_classes": 1000, "variant": "imagenet"}, 25.0e6, "Xie et al."),
    (backbones.mobilenet_v2, {"num_classes": 1000, "variant": "imagenet"}, 3.4e6, "Sandler"),
]


@pytest.mark.parametrize(
    "builder,kwargs,target,source",
    PAPER_COUNTS,
    ids=[f"{b.__name__}-{t}" for b, _, t, _ in PAPER_COUNTS],
)
def test_parameter_count_matches_paper(builder, kwargs, target, source):
    kwargs = {"input_shape": (32, 32, 3), **kwargs}
    count = trainable_params(builder(**kwargs))
    assert abs(count - target) / target <= 0.05, (source, count, target)


@pytest.mark.parametrize("depth,num_classes", [(8, 10), (32, 100)])
def test_resnet_cifar_parameter_count_closed_form(depth, num_classes):
    n = (depth - 2) // 6
    expected = 3 * 9 * 16 + 2 * 16  # stem conv + BN (gamma, beta)
    c_in = 16
    for c_out in (16, 32, 64):
        for _ in range(n):
            expected += 9 * c_in * c_out + 9 * c_out * c_out + 2 * 2 * c_out
            if c_in != c_out:
                expected += c_in * c_out + 2 * c_out  # projection 1x1 conv + BN
            c_in = c_out
    expected += 64 * num_classes + num_classes
    model = backbones.resnet_cifar(depth, num_classes)
    assert trainable_params(model) == expected


# name -> (builder, kwargs, input shape, expected number of stages). The CIFAR families are
# checked directly on the 8x8 grayscale digits shape; ImageNet variants need a larger input
# for strictly shrinking stages and get a separate 8x8 run.
CONTRACT_CASES = {
    "resnet_cifar": (backbones.resnet_cifar, {"depth": 8}, (8, 8, 1), 3),
    "preact_resnet18": (backbones.preact_resnet18, {}, (8, 8, 1), 4),
    "wide_resnet": (backbones.wide_resnet, {"depth": 10, "width": 2, "dropout": 0.3}, (8, 8, 1), 3),
    "densenet": (backbones.densenet, {"depth": 10, "growth_rate": 6}, (8, 8, 1), 3),
    "resnet18_cifar": (backbones.resnet18, {}, (8, 8, 1), 4),
    "resnext50_cifar": (backbones.resnext50, {"cardinality": 8}, (8, 8, 1), 4),
    "mobilenet_v2_cifar": (backbones.mobilenet_v2, {"width_multiplier": 0.5}, (8, 8, 1), 4),
    "resnet18_imagenet": (backbones.resnet18, {"variant": "imagenet"}, (64, 64, 3), 4),
    "mobilenet_v2_imagenet": (
        backbones.mobilenet_v2,
        {"width_multiplier": 0.5, "variant": "imagenet"},
        (64, 64, 3),
        5,
    ),
}


def _np(t):
    return keras.ops.convert_to_numpy(t)


@pytest.mark.parametrize("case", sorted(CONTRACT_CASES))
def test_dict_contract(case):
    builder, kwargs, shape, num_stages = CONTRACT_CASES[case]
    model = builder(num_classes=7, input_shape=shape, **kwargs)
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
    out = model(x, training=False)
    assert set(out) == {"stages", "features", "logits"}
    stages = [_np(s) for s in out["stages"]]
    assert len(stages) == num_stages
    sizes = [s.shape[1] for s in stages]
    assert all(b < a for a, b in zip(sizes, sizes[1:])), sizes
    assert all(s.ndim == 4 and s.shape[0] == 2 for s in stages)
    features, logits = _np(out["features"]), _np(out["logits"])
    # features = global average pool of the last stage; logits = its dense classifier.
    np.testing.assert_allclose(features, stages[-1].mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)
    kernel, bias = (_np(w) for w in model.get_layer("logits").weights)
    assert logits.shape == (2, 7)
    np.testing.assert_allclose(logits, features @ kernel + bias, rtol=1e-4, atol=1e-4)
    assert np.isfinite(logits).all()


@pytest.mark.parametrize(
    "builder,kwargs",
    [
        (backbones.resnet18, {"variant": "imagenet"}),
        (backbones.mobilenet_v2, {"variant": "imagenet", "width_multiplier": 0.5}),
    ],
)
def test_imagenet_variants_run_on_8x8_grayscale(builder, kwargs):
    model = builder(num_classes=10, input_shape=(8, 8, 1), **kwargs)
    out = model(np.ones((2, 8, 8, 1), np.float32), training=True)
    sizes = [s.shape[1] for s in out["stages"]]
    assert all(b <= a for a, b in zip(sizes, sizes[1:]))
    assert tuple(out["logits"].shape) == (2, 10)
    assert np.isfinite(_np(out["logits"])).all()


def test_kernels_are_he_normal():
    model = backbones.resnet_cifar(8, stochastic_depth=0.5)
    kernels = []

    def walk(layer):
        for sub in getattr(layer, "layers", []):
            walk(sub)
        if isinstance(layer, StochasticDepth):
            walk(layer.branch)
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernels.append(type(layer.kernel_initializer).__name__)

    walk(model)
    assert len(kernels) == 1 + 3 * 2 + 2 + 1  # stem, 3 blocks x 2 convs, 2 projections, head
    assert set(kernels) == {"HeNormal"}


def _gates(model):
    return [layer for layer in model.layers if isinstance(layer, StochasticDepth)]


# builder, kwargs, number of residual blocks L
SD_CASES = [
    (backbones.resnet_cifar, {"depth": 20}, 9),
    (backbones.preact_resnet18, {}, 8),
    (backbones.wide_resnet, {"depth": 16, "width": 1}, 6),
    (backbones.resnet18, {}, 8),
    (backbones.resnext50, {"cardinality": 4}, 16),
]


@pytest.mark.parametrize(
    "builder,kwargs,num_blocks", SD_CASES, ids=[c[0].__name__ for c in SD_CASES]
)
def test_stochastic_depth_linear_decay(builder, kwargs, num_blocks):
    final = 0.5
    model = builder(input_shape=(8, 8, 3), stochastic_depth=final, drop_mode="per_batch", **kwargs)
    gates = _gates(model)
    assert len(gates) == num_blocks
    expected = [1.0 - i / num_blocks * (1.0 - final) for i in range(1, num_blocks + 1)]
    np.testing.assert_allclose([g.survival_probability for g in gates], expected)
    assert {g.mode for g in gates} == {"per_batch"}


def test_no_stochastic_depth_means_plain_blocks():
    assert not _gates(backbones.resnet_cifar(8, input_shape=(8, 8, 3)))
    assert not _gates(backbones.preact_resnet18(input_shape=(8, 8, 3)))


def test_mobilenet_v2_gates_identity_blocks_only():
    # Identity shortcuts in Table 2: repeats after the first of each group with n > 1.
    model = backbones.mobilenet_v2(input_shape=(8, 8, 3), stochastic_depth=0.8)
    gates = _gates(model)
    assert len(gates) == (2 - 1) + (3 - 1) + (4 - 1) + (3 - 1) + (3 - 1)
    assert gates[-1].survival_probability == pytest.approx(0.8)


def test_stochastic_depth_preserves_inference_with_full_survival():
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype(np.float32)
    plain = backbones.resnet_cifar(8, input_shape=(8, 8, 1))
    gated = backbones.resnet_cifar(8, input_shape=(8, 8, 1), stochastic_depth=1.0)
    # Same weights, p = 1 everywhere: identical to the plain network.
    src, dst = _weights_by_layer(plain), _weights_by_layer(gated)
    assert sorted(src) == sorted(dst)
    for key, value in src.items():
        dst[key].assign(value)
    np.testing.assert_allclose(
        _np(plain(x)["logits"]), _np(gated(x)["logits"]), rtol=1e-5, atol=1e-5
    )


def _weights_by_layer(model):
    # "<layer>/<weight>" whether or not the layer sits inside a gate's branch.
    return {"/".join(w.path.split("/")[-2:]): w for w in model.weights}


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5, "0.5", True])
def test_bad_stochastic_depth_raises(bad):
    with pytest.raises(ValueError, match="stochastic_depth"):
        backbones.resnet_cifar(8, stochastic_depth=bad)


def test_bad_drop_mode_raises():
    with pytest.raises(ValueError, match="drop_mode.*'random'"):
        backbones.resnet18(stochastic_depth=0.5, drop_mode="random")


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: backbones.resnet_cifar(33), "depth.*6n\\+2.*33"),
        (lambda: backbones.resnet_cifar(2), "depth"),
        (lambda: backbones.preact_resnet(50), "depth.*18, 34.*50"),
        (lambda: backbones.wide_resnet(17, 2), "depth.*6n\\+4.*17"),
        (lambda: backbones.wide_resnet(16, 0), "width.*0"),
        (lambda: backbones.wide_resnet(16, 2, dropout=1.0), "dropout"),
        (lambda: backbones.densenet(41), "depth.*3n\\+4.*41"),
        (lambda: backbones.densenet(40, growth_rate=0), "growth_rate"),
        (lambda: backbones.resnet(20), "depth.*18, 34, 50, 101, 152.*20"),
        (lambda: backbones.resnet18(variant="tiny"), "variant.*'tiny'"),
        (lambda: backbones.resnext50(cardinality=0), "cardinality"),
        (lambda: backbones.mobilenet_v2(width_multiplier=0), "width_multiplier"),
        (lambda: backbones.resnet32(num_classes=0), "num_classes.*0"),
        (lambda: backbones.resnet32(input_shape=(32, 32)), "input_shape"),
        (lambda: backbones.densenet40(input_shape=(32, 0, 3)), "input_shape"),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_registry():
    expected = {
        "resnet_cifar", "resnet20", "resnet32", "resnet56", "resnet110", "preact_resnet18",
        "preact_resnet34", "wide_resnet", "wrn16_8", "wrn28_10", "wrn40_4", "densenet",
        "densenet40", "densenet100", "resnet18", "resnet34", "resnet50", "resnet101",
        "resnet152", "resnext50", "mobilenet_v2",
    }  # fmt: skip
    assert expected <= set(backbones.names())
    assert backbones.get("resnet32", num_classes=5).name == "resnet32"
    m = backbones.get("resnet_cifar", depth=14, num_classes=5, input_shape=(8, 8, 1))
    assert m.name == "resnet14" and tuple(m.output["logits"].shape) == (None, 5)
    assert backbones.get("WRN16-8", input_shape=(8, 8, 3)).name == "wrn16_8"
    with pytest.raises(ValueError, match="unknown backbone name 'resnet33'.*resnet110"):
        backbones.get("resnet33")


def test_backbone_config_round_trip():
    model = backbones.resnet_cifar(8, num_classes=3, input_shape=(8, 8, 1), stochastic_depth=0.5)
    clone = keras.Model.from_config(model.get_config())
    assert len(clone.weights) == len(model.weights)
    assert [type(layer).__name__ for layer in clone.layers] == [
        type(layer).__name__ for layer in model.layers
    ]


# ---------------------------------------------------------------- from_keras


def _small_functional(head: bool = True, activation: str | None = "softmax") -> keras.Model:
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.MaxPooling2D(name="p1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.MaxPooling2D(name="p2")(x)
    if head:
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
        x = keras.layers.Dense(5, activation=activation, name="head")(x)
    return keras.Model(inp, x, name="small")


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_from_keras_applications_resnet50_softmax_head():
    base = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)
    names = ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"]
    net = backbones.from_keras(base, names)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    out = net(x)
    assert [tuple(s.shape[1:3]) for s in out["stages"]] == [(8, 8), (4, 4), (2, 2), (1, 1)]
    logits = _np(out["logits"])
    assert logits.shape == (2, 10)
    np.testing.assert_allclose(_softmax(logits), _np(base(x)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        _np(out["features"]), _np(out["stages"][-1]).mean(axis=(1, 2)), rtol=1e-4, atol=1e-5
    )


def test_from_keras_linear_head_and_explicit_layers():
    base = _small_functional(activation=None)
    net = backbones.from_keras(base, ["c1", "c2"])
    x = np.random.default_rng(1).normal(size=(3, 16, 16, 3)).astype(np.float32)
    out = net(x)
    np.testing.assert_allclose(_np(out["logits"]), _np(base(x)), rtol=1e-5, atol=1e-6)
    assert [s.shape[1] for s in out["stages"]] == [16, 8]
    explicit = backbones.from_keras(base, ["p1", "p2"], features_layer="gap", logits_layer="head")
    np.testing.assert_allclose(_np(explicit(x)["logits"]), _np(base(x)), rtol=1e-5, atol=1e-6)


def test_from_keras_headless_adds_pool_and_dense():
    base = _small_functional(head=False)
    net = backbones.from_keras(base, ["c1", "p2"], num_classes=6)
    x = np.random.default_rng(2).normal(size=(2, 16, 16, 3)).astype(np.float32)
    out = net(x)
    features = _np(out["features"])
    np.testing.assert_allclose(features, _np(base(x)).mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    kernel, bias = (_np(w) for w in net.get_layer("sd_logits").weights)
    np.testing.assert_allclose(_np(out["logits"]), features @ kernel + bias, rtol=1e-5, atol=1e-5)
    assert type(net.get_layer("sd_logits").kernel_initializer).__name__ == "HeNormal"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"stage_layers": ["c1", "nope"]}, "no layer named 'nope'"),
        ({"stage_layers": ["c2"]}, "at least 2"),
        ({"stage_layers": ["c2", "c1"]}, "forward order"),
        ({"stage_layers": ["c1", "c1"]}, "forward order"),
        ({"stage_layers": "c1"}, "list of layer names"),
        ({"stage_layers": ["c1", "c2"], "logits_layer": "gap"}, "Dense"),
        ({"stage_layers": ["c1", "c2"], "features_layer": "c2", "num_classes": 3}, "2-D"),
    ],
)
def test_from_keras_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        backbones.from_keras(_small_functional(), **kwargs)


def test_from_keras_headless_without_num_classes_raises():
    with pytest.raises(ValueError, match="num_classes is required"):
        backbones.from_keras(_small_functional(head=False), ["c1", "c2"])


def test_resnet_num_stages_truncates_the_network():
    full = backbones.resnet18(num_classes=10, input_shape=(16, 16, 3))
    short = backbones.get("resnet18", num_classes=10, input_shape=(16, 16, 3), num_stages=3)
    assert len(short.output["stages"]) == 3 and len(full.output["stages"]) == 4
    assert short.output["features"].shape[-1] == 256 and full.output["features"].shape[-1] == 512
    with pytest.raises(ValueError, match="num_stages"):
        backbones.resnet18(num_stages=5)
    with pytest.raises(ValueError, match="does not take"):
        backbones.get("resnet32", num_stages=2)


def test_a_depth_that_is_not_a_number_gets_the_value_error():
    # `depth in dict` raised TypeError for a list before the choices went through
    # `validation.one_of`; a user gets the message naming the argument and its choices.
    with pytest.raises(
        ValueError, match=r"^`depth` must be one of \(18, 34, 50, 101, 152\), got \[18\]\.$"
    ):
        backbones.get("resnet", num_classes=10, depth=[18])
