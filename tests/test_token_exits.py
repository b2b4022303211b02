"""Token exits: `TokenExitHead` against NumPy, chosen automatically for 3-D exit points, the
feature hint and DMFL on pooled token features, and `count_macs` of a ViT against a hand count."""

import keras
import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

from keras_sd import backbones, losses  # noqa: E402
from keras_sd.inference.macs import count_macs  # noqa: E402
from keras_sd.layers.tokens import TokenExitHead, TokenPooling  # noqa: E402
from keras_sd.models.exit_graph import ExitGraph  # noqa: E402
from keras_sd.models.multi_exit import MultiExitDistiller  # noqa: E402
from keras_sd.testing import run_layer_test  # noqa: E402

# The tiny ViT every test uses, and its dimensions for the hand counts.
IMAGE, PATCH, DEPTH, HEADS, DIM, MLP, CLASSES = 16, 4, 2, 2, 16, 32, 10
PATCHES = (IMAGE // PATCH) ** 2
TOKENS = PATCHES + 1  # + the class token


def tiny_vit_backbone(**kwargs):
    vit = keras_hub.models.ViTBackbone(
        image_shape=(IMAGE, IMAGE, 3),
        patch_size=PATCH,
        num_layers=DEPTH,
        num_heads=HEADS,
        hidden_dim=DIM,
        mlp_dim=MLP,
    )
    return backbones.from_keras_hub(vit, num_classes=CLASSES, **kwargs)


def tokens(n=3, t=TOKENS, d=DIM, seed=0):
    return np.random.default_rng(seed).normal(size=(n, t, d)).astype("float32")


def layer_norm(x, gamma, beta, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("pooling", ["mean", "class_token"])
def test_token_head_is_layer_norm_pool_dense(pooling):
    head = TokenExitHead(CLASSES, feature_dim=DIM, pooling=pooling)
    x = tokens()
    out = head(x)
    normed = layer_norm(x, head.norm.gamma.numpy(), head.norm.beta.numpy())
    pooled = normed.mean(axis=1) if pooling == "mean" else normed[:, 0]
    np.testing.assert_allclose(out["features"], pooled, atol=1e-5)
    w, b = head.classifier.kernel.numpy(), head.classifier.bias.numpy()
    np.testing.assert_allclose(out["logits"], pooled @ w + b, atol=1e-5)
    assert head.projection is None  # same width: no projection


def test_attention_pooling_is_one_learned_query_attending_over_the_tokens():
    head = TokenExitHead(CLASSES, feature_dim=24, pooling="attention", num_heads=1)
    x = tokens()
    out = head(x)
    normed = layer_norm(x, head.norm.gamma.numpy(), head.norm.beta.numpy())
    mha = head.attention

    def project(dense, v):  # EinsumDense kernel [in, heads, width] (+ bias [heads, width])
        return np.einsum("...i,ihw->...hw", v, dense.kernel.numpy()) + dense.bias.numpy()

    q = project(mha.query_dense, head.query.numpy()[0])[:, 0]  # [1, width]: one head
    k = project(mha.key_dense, normed)[:, :, 0]
    v = project(mha.value_dense, normed)[:, :, 0]
    weights = softmax(np.einsum("w,btw->bt", q[0], k) / np.sqrt(k.shape[-1]))
    attended = np.einsum("bt,btw->bw", weights, v)
    o = mha.output_dense
    pooled = np.einsum("bw,hwo->bo", attended, o.kernel.numpy()[:1]) + o.bias.numpy()
    p = head.projection  # 16 -> 24: the exit feature must have the final feature's width
    features = pooled @ p.kernel.numpy() + p.bias.numpy()
    np.testing.assert_allclose(out["features"], features, atol=1e-4)
    assert tuple(out["logits"].shape) == (3, CLASSES)


@pytest.mark.parametrize("pooling", ["mean", "class_token", "attention"])
def test_token_head_serialises(pooling):
    run_layer_test(lambda: TokenExitHead(4, feature_dim=8, pooling=pooling), tokens(d=8))


def test_bad_token_inputs():
    with pytest.raises(ValueError, match=r"`pooling` must be one of .*, got 'max'"):
        TokenExitHead(4, 8, pooling="max")
    with pytest.raises(ValueError, match=r"TokenExitHead expects a 3-D token sequence .*\(2, 4\)"):
        TokenExitHead(4, 8).build((2, 4))
    with pytest.raises(
        ValueError, match=r"`mode` must be 'mean' or 'class_token', got 'attention'"
    ):
        TokenPooling("attention")
    with pytest.raises(ValueError, match=r"`token_pooling` must be one of .*, got 'cls'"):
        MultiExitDistiller(tiny_vit_backbone(), token_pooling="cls")


def test_exit_graph_taps_token_sequences():
    backbone = tiny_vit_backbone()
    graph = ExitGraph(backbone, exits="stages")
    x = np.random.default_rng(1).uniform(size=(2, IMAGE, IMAGE, 3)).astype("float32")
    maps = graph.feature_maps(x)
    np.testing.assert_allclose(maps[0], backbone(x)["stages"][0], atol=1e-6)
    assert tuple(maps[0].shape) == (2, TOKENS, DIM)
    # Chaining the segments is one backbone pass.
    h = x
    for segment in graph.segments():
        h = segment(h)
    np.testing.assert_allclose(h["logits"], backbone(x)["logits"], atol=1e-5)
    with pytest.raises(ValueError, match=r"must be a 4-D feature map .* or a 3-D token sequence"):
        ExitGraph(backbone, exits=["sd_token_pool"])


@pytest.mark.parametrize("token_pooling", ["mean", "attention"])
def test_multi_exit_on_a_vit_hints_and_dmfl_compare_pooled_token_features(token_pooling):
    model = MultiExitDistiller(
        tiny_vit_backbone(),
        token_pooling=token_pooling,
        mutual_feature_weight=1.0,
        alpha=0.5,
        temperature=2.0,
    )
    assert [type(h).__name__ for h in model.exit_heads] == ["TokenExitHead"]
    assert model.exit_heads[0].pooling == token_pooling
    x = np.random.default_rng(2).uniform(size=(4, IMAGE, IMAGE, 3)).astype("float32")
    y = np.array([0, 1, 2, 3])
    _, terms = model.compute_loss_terms(x, keras.ops.one_hot(y, CLASSES), training=False)
    # Independently: the exit's feature is its head on block 1's tokens, the reference the
    # backbone's pooled class token after the final layer norm.
    out = model.backbone(x)
    shallow = np.asarray(model.exit_heads[0](out["stages"][0])["features"])
    final = np.asarray(out["features"])
    np.testing.assert_allclose(terms["feature_loss"], ((shallow - final) ** 2).sum(-1), rtol=1e-4)

    def kl(p, q):
        return (p * (np.log(p) - np.log(q))).sum(-1)

    ps, pf = softmax(shallow), softmax(final)
    np.testing.assert_allclose(
        terms["mutual_feature_loss"], kl(pf, ps) + kl(ps, pf), rtol=1e-4, atol=1e-6
    )
    assert np.all(np.isfinite(np.asarray(losses.log_mean_softmax([shallow, final]))))


def _block_macs(t):
    """One ViT block on ``t`` tokens: q, k, v and output projections, the two attention
    products (heads * t * t * key_dim each, key_dim = DIM / HEADS) and the two MLP layers."""
    key_dim = DIM // HEADS
    projections = 4 * t * DIM * DIM  # q, k, v: t * (heads * key_dim) * DIM; output: same
    attention = 2 * HEADS * t * t * key_dim  # scores Q K^T and the weighted sum of V
    mlp = t * DIM * MLP + t * MLP * DIM
    return projections + attention + mlp


def test_count_macs_of_a_two_block_vit_matches_the_hand_count():
    embedding = PATCHES * (PATCH * PATCH * 3) * DIM  # the patch convolution
    head = DIM * CLASSES
    # 12288 + 2 * 44064 + 160: spelled out so a change in either side shows.
    assert embedding == 12288 and _block_macs(TOKENS) == 44064
    backbone_macs = embedding + DEPTH * _block_macs(TOKENS) + head
    assert backbone_macs == 100576

    report = count_macs(tiny_vit_backbone())
    assert report.backbone == backbone_macs

    model = MultiExitDistiller(tiny_vit_backbone(), token_pooling="mean")
    report = count_macs(model)
    assert report.backbone == backbone_macs
    assert report.segments == (embedding + _block_macs(TOKENS), _block_macs(TOKENS) + head)
    assert report.heads == (DIM * CLASSES,)  # layer norm and mean pooling are not counted

    # Attention pooling, one head of width DIM (DIM // 64 rounds up to 1): the query projection
    # on 1 token, key and value projections on TOKENS tokens, scores and weighted sum (1 query),
    # the output projection on 1 token, then the classifier.
    model = MultiExitDistiller(tiny_vit_backbone(), token_pooling="attention")
    attention_head = (
        DIM * DIM + 2 * TOKENS * DIM * DIM + 2 * TOKENS * DIM + DIM * DIM + DIM * CLASSES
    )
    assert attention_head == 9920
    assert count_macs(model).heads == (attention_head,)
