"""ExitGraph: exit points and the backbone cut at them, checked against the backbone itself;
and the multi-exit model that holds one keeps the weights list it had before the split."""

import doctest

import keras
import numpy as np
import pytest
from tiny import tiny_backbone

from keras_sd.models import exit_graph as exit_graph_module
from keras_sd.models import multi_exit as multi_exit_module
from keras_sd.models.exit_graph import ExitGraph
from keras_sd.models.multi_exit import MultiExitDistiller

RNG = np.random.default_rng(5)
X = RNG.normal(size=(6, 8, 8, 1)).astype("float32")


def three_stage_backbone(seed=0):
    """Contract backbone with stages 8x8x4, 4x4x6, 2x2x8 (batch norm, so inference mode matters)."""
    init = keras.initializers.HeNormal(seed=seed)
    inp = keras.Input((8, 8, 1))
    x, stages = inp, []
    for i, (filters, stride) in enumerate([(4, 1), (6, 2), (8, 2)]):
        x = keras.layers.Conv2D(
            filters, 3, strides=stride, padding="same", kernel_initializer=init
        )(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        stages.append(x)
    h = keras.layers.GlobalAveragePooling2D()(x)
    z = keras.layers.Dense(5, kernel_initializer=init)(h)
    return keras.Model(inp, {"stages": stages, "features": h, "logits": z}, name="three")


class PoolHead(keras.layers.Layer):
    """A minimal exit head: feature map -> {"logits", "features"} (pooled map, then a dense)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.dense = keras.layers.Dense(5)

    def call(self, x):
        features = self.pool(x)
        return {"logits": self.dense(features), "features": features}


def test_feature_maps_and_call_equal_the_backbone_outputs():
    bb = three_stage_backbone()
    graph = ExitGraph(bb)
    reference = bb(X, training=False)
    maps = graph.feature_maps(X)
    assert graph.num_exits == 3 and graph.exits == "stages" and graph.feature_dim == 8
    assert len(maps) == 2
    for got, want in zip(maps, reference["stages"][:-1]):
        np.testing.assert_array_equal(got, want)
    out = graph(X)
    np.testing.assert_array_equal(out["logits"], reference["logits"])
    np.testing.assert_array_equal(out["features"], reference["features"])


def test_segments_chained_reproduce_the_backbone_and_cut_at_the_stages():
    bb = three_stage_backbone()
    graph = ExitGraph(bb, exits=["relu0", 1])
    segments = graph.segments()
    assert len(segments) == 3 and graph.exits == ["relu0", 1]
    reference = bb(X, training=False)
    h = X
    for i, segment in enumerate(segments[:-1]):
        h = segment(h, training=False)
        np.testing.assert_allclose(h, reference["stages"][i], rtol=1e-6, atol=1e-6)
    last = segments[-1](h, training=False)
    np.testing.assert_allclose(last["logits"], reference["logits"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(last["features"], reference["features"], rtol=1e-6, atol=1e-6)
    # Shared, not copied: the segments hold the backbone's own weights.
    ids = {id(w) for s in segments for w in s.weights}
    assert ids == {id(w) for w in bb.weights}


def test_stage_models_are_segment_then_head_and_built_once_per_heads():
    bb = three_stage_backbone()
    graph = ExitGraph(bb)
    heads = [PoolHead(name="h1"), PoolHead(name="h2")]
    stages = graph.stage_models(heads)
    reference = bb(X, training=False)
    h = X
    for i, stage in enumerate(stages):
        out = stage(h, training=False)
        if i < 2:
            np.testing.assert_allclose(out["stage"], reference["stages"][i], rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(
                out["logits"], heads[i](reference["stages"][i])["logits"], rtol=1e-5, atol=1e-6
            )
            h = out["stage"]
        else:
            np.testing.assert_allclose(out["logits"], reference["logits"], rtol=1e-6, atol=1e-6)
    assert [a is b for a, b in zip(graph.stage_models(heads), stages)] == [True] * 3
    other = graph.stage_models([PoolHead(), PoolHead()])
    assert other[0] is not stages[0]
    with pytest.raises(ValueError, match="one head per shallow exit"):
        graph.stage_models(heads[:1])


def test_export_backbone_is_an_independent_copy():
    bb = three_stage_backbone()
    plain = ExitGraph(bb).export_backbone()
    assert plain.count_params() == bb.count_params()
    np.testing.assert_allclose(plain(X), bb(X)["logits"], rtol=1e-6, atol=1e-6)
    assert not {id(w) for w in plain.weights} & {id(w) for w in bb.weights}


def test_an_exit_inside_a_residual_block_cannot_be_cut():
    inp = keras.Input((8, 8, 1))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(a)
    c = keras.layers.Add(name="add")([a, b])  # reads `a`, skipping over an exit at `b`
    h = keras.layers.GlobalAveragePooling2D()(c)
    z = keras.layers.Dense(3)(h)
    bb = keras.Model(inp, {"stages": [a, c], "features": h, "logits": z})
    graph = ExitGraph(bb, exits=["b"])
    with pytest.raises(ValueError, match="cannot be cut"):
        graph.segments()


@pytest.mark.parametrize(
    "exits, match",
    [
        ("blocks", "'stages' or a list"),
        ([], "non-empty"),
        ([1, 0], "ordered"),
        (["nope"], "no layer"),
    ],
)
def test_bad_exits(exits, match):
    with pytest.raises(ValueError, match=match):
        ExitGraph(three_stage_backbone(), exits=exits)


def test_backbone_contract_is_checked():
    with pytest.raises(ValueError, match="keras.Model"):
        ExitGraph("resnet20")


@pytest.mark.parametrize("module", [exit_graph_module, multi_exit_module])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# Exit head weights of a K = 2 model on `tiny_backbone`, as listed before ExitGraph existed.
_EXIT1_HEAD = [
    f"exit1_head/{block}/{v}"
    for block, layers in (
        ("attention/sep", ("dw1", "pw1", "bn1", "dw2", "pw2", "bn2")),
        ("attention", ("bn",)),
        ("align1", ("dw1", "pw1", "bn1", "dw2", "pw2", "bn2")),
    )
    for layer in layers
    for v in (
        [f"{layer}/kernel"]
        if layer[:2] in ("dw", "pw")
        else [f"{layer}/{w}" for w in ("gamma", "beta", "moving_mean", "moving_variance")]
    )
] + ["exit1_head/classifier/kernel", "exit1_head/classifier/bias"]


@pytest.mark.parametrize(
    "kwargs, before, bank, after",
    [
        ({}, ["ce_loss_weight", "kl_loss_weight", "feature_loss_weight"], [], []),
        (
            dict(
                feature_hint="adapted_l2_batch",
                mutual_feature_weight=1.0,
                pskd_alpha=0.8,
                num_train_examples=4,
            ),
            [
                "ce_loss_weight",
                "kl_loss_weight",
                "feature_loss_weight",
                "mutual_feature_loss_weight",
            ],
            ["pskd/alpha_t", "pskd/predictions"],  # the base class's soft_targets layer
            ["exit1_adapt/kernel", "exit1_adapt/bias"],
        ),
    ],
)
def test_weights_list_is_fixed_and_survives_keras_save_load(tmp_path, kwargs, before, bank, after):
    backbone = tiny_backbone()
    model = MultiExitDistiller(backbone, **kwargs)
    assert isinstance(model.exit_graph, ExitGraph) and model.exit_graph.backbone is backbone
    paths = [w.path for w in model.weights]
    assert paths == [*before, *(w.path for w in backbone.weights), *bank, *_EXIT1_HEAD, *after]
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert [w.path for w in loaded.weights] == paths
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(loaded.call_exits(X)["exit2"], model.call_exits(X)["exit2"])
