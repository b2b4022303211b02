"""Early-exit inference, MAC counting and threshold search (keras_sd.inference)."""

import json
import math
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import confident_multi_exit, staged_backbone

import keras_sd
from keras_sd.inference import (
    EarlyExitModel,
    ExitProbabilities,
    MacReport,
    collect_exit_probabilities,
    count_macs,
    decode,
    encode,
    layer_macs,
    search_thresholds,
    simulate,
    sweep_thresholds,
)
from keras_sd.models.multi_exit import MultiExitDistiller

REPO = pathlib.Path(__file__).resolve().parents[1]
H, W, C, CLASSES = 8, 8, 3, 5


def three_stage_backbone(input_shape=(H, W, C), num_classes=CLASSES, seed=0):
    """3 stages (8x8x4, 4x4x6, 2x2x8, batch norm on the last) and a dense "fc" head."""
    stages = [(4, 1), (6, 2), (8, 2)]
    return staged_backbone(input_shape, stages, num_classes, {2}, seed, name="three", head="fc")


@pytest.fixture(scope="module")
def model():
    return confident_multi_exit(three_stage_backbone)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).normal(size=(40, H, W, C)).astype("float32")


def _softmax(z):
    z = np.asarray(z, "float64")
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _median_thresholds(model, images):
    out = model.call_exits(images)
    return [float(np.median(_softmax(out[n]).max(-1))) for n in model.exit_names]


def naive_early_exit(model, images, thresholds):
    """Algorithm 1 one sample at a time: run stage i on the single image, stop if confident."""
    stages = model.stage_models()
    k = model.num_exits
    preds, exits, logits = [], [], []
    for x in images:
        h = x[None]
        probs = []
        answer = None
        for i in range(k):
            res = stages[i](h, training=False)
            z = np.asarray(res["logits"], "float64")[0]
            p = _softmax(z)
            probs.append(p)
            if p.max() > thresholds[i]:
                answer = (i, z)
                break
            if i < k - 1:
                h = res["stage"]
        if answer is None:
            answer = (k, np.log(np.mean(probs, axis=0)))
        exits.append(answer[0])
        logits.append(answer[1])
        preds.append(int(np.argmax(answer[1])))
    return np.array(preds), np.array(exits), np.array(logits)


def _early_exit_equals_naive(model, images):
    """EarlyExitModel at the median thresholds gives `naive_early_exit`'s exits, predictions and
    logits; returns the model and the reference's exits and logits."""
    thresholds = _median_thresholds(model, images)
    early = EarlyExitModel(model, thresholds)
    out = {k: np.asarray(v) for k, v in early(images).items()}
    preds, exits, logits = naive_early_exit(model, images, thresholds)
    np.testing.assert_array_equal(out["exit"], exits)
    np.testing.assert_array_equal(out["prediction"], preds)
    np.testing.assert_allclose(out["logits"], logits, atol=1e-4)
    return early, exits, logits


# ---------------------------------------------------------------------------- early exit
def test_early_exit_equals_naive_reference(model, images):
    early, exits, logits = _early_exit_equals_naive(model, images)
    # Every path is exercised: some samples at each exit and some by the ensemble.
    assert set(exits.tolist()) == {0, 1, 2, 3}
    # The compiled graph gives the same answers, batch by batch (ragged last batch).
    graph = early.predict_early_exit(images, batch_size=16)
    np.testing.assert_array_equal(graph["exit"], exits)
    np.testing.assert_allclose(graph["logits"], logits, atol=1e-4)


def test_deeper_stages_run_only_on_undecided_samples(model, images):
    thresholds = _median_thresholds(model, images)
    early = EarlyExitModel(model, thresholds)
    seen = []
    originals = list(early._runtime.stages)

    def spy(i):
        def run(h, training=False):
            seen.append((i, int(h.shape[0])))
            return originals[i](h, training=training)

        return run

    early._runtime.stages = [spy(i) for i in range(len(originals))]
    try:
        exits = np.asarray(early(images)["exit"])
    finally:
        early._runtime.stages = originals
    # Stage i + 1 sees exactly the samples no exit <= i answered.
    expected = [(i, int(np.sum(exits >= i))) for i in range(model.num_exits)]
    assert seen == expected
    assert seen[1][1] < len(images) and seen[2][1] < seen[1][1]


def test_all_confident_at_first_exit_skips_deeper_stages(model, images):
    early = EarlyExitModel(model, [1e-6, 1e-6, 1e-6])
    calls = []
    originals = list(early._runtime.stages)
    early._runtime.stages = [
        originals[0],
        *[(lambda h, training=False, i=i: calls.append(i)) for i in (1, 2)],
    ]
    try:
        out = early(images)
    finally:
        early._runtime.stages = originals
    assert calls == []
    np.testing.assert_array_equal(np.asarray(out["exit"]), np.zeros(len(images)))
    z1 = np.asarray(model.call_exits(images)["exit1"])
    np.testing.assert_allclose(np.asarray(out["logits"]), z1, atol=1e-5)


def test_no_confident_exit_gives_ensemble(model, images):
    early = EarlyExitModel(model, [1.0, 1.0, 1.0])
    out = early(images)
    full = model.call_exits(images)
    probs = np.mean([_softmax(full[n]) for n in model.exit_names], axis=0)
    np.testing.assert_array_equal(np.asarray(out["exit"]), np.full(len(images), 3))
    np.testing.assert_allclose(_softmax(np.asarray(out["logits"])), probs, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out["prediction"]), probs.argmax(-1))


def test_set_thresholds_changes_answers_and_config(model, images):
    early = EarlyExitModel(model, [1.0, 1.0, 1.0])
    early.set_thresholds([1e-6, 1.0, 1.0])
    assert early.thresholds == [1e-6, 1.0, 1.0]
    assert early.get_config()["thresholds"] == [1e-6, 1.0, 1.0]
    np.testing.assert_array_equal(np.asarray(early(images)["exit"]), np.zeros(len(images)))


def test_frozen_serving_equals_naive_reference_and_reads_no_variables(model, images):
    thresholds = _median_thresholds(model, images)
    early = EarlyExitModel(model, thresholds)
    preds, exits, logits = naive_early_exit(model, images, thresholds)
    frozen = early.predict_early_exit(images, batch_size=16, frozen=True)
    np.testing.assert_array_equal(frozen["exit"], exits)
    np.testing.assert_array_equal(frozen["prediction"], preds)
    np.testing.assert_allclose(frozen["logits"], logits, atol=1e-4)
    graph = early.serving_function(frozen=True).get_concrete_function().graph
    assert not graph.variables  # weights and thresholds are constants
    ops = {op.type for op in graph.get_operations()}
    # The data-dependent early exit survives freezing: the converter lowers the `If`s to
    # Switch/Merge, whose untaken side is never computed.
    assert {"Switch", "Merge"} <= ops, sorted(ops)
    # The frozen plain backbone is the final exit.
    from keras_sd.inference.search import plain_backbone_function

    plain = np.asarray(plain_backbone_function(model, frozen=True)(tf.constant(images)))
    np.testing.assert_allclose(plain, np.asarray(model.call_exits(images)["exit3"]), atol=1e-5)


def test_frozen_serving_is_a_snapshot_that_set_thresholds_discards(model, images):
    early = EarlyExitModel(model, [1.0, 1.0, 1.0])
    first = early.serving_function(frozen=True)
    assert early.serving_function(frozen=True) is first  # built once
    np.testing.assert_array_equal(np.asarray(first(tf.constant(images))["exit"]), 3)
    early.set_thresholds([1e-6, 1.0, 1.0])
    # The old frozen graph keeps the thresholds it was built with; a new one is made.
    np.testing.assert_array_equal(np.asarray(first(tf.constant(images))["exit"]), 3)
    again = early.serving_function(frozen=True)
    assert again is not first
    np.testing.assert_array_equal(np.asarray(again(tf.constant(images))["exit"]), 0)


def test_config_roundtrip(model):
    early = EarlyExitModel(model, [0.5, 0.6, 0.7])
    config = early.get_config()
    clone = EarlyExitModel.from_config(config)
    assert clone.get_config() == config
    assert clone.thresholds == [0.5, 0.6, 0.7]


def test_keras_and_savedmodel_export_load_in_fresh_process(model, images, tmp_path):
    thresholds = _median_thresholds(model, images)
    early = EarlyExitModel(model, thresholds)
    expected = {k: np.asarray(v) for k, v in early(images).items()}
    early.save(tmp_path / "early.keras")
    early.export_serving(tmp_path / "saved")
    np.save(tmp_path / "x.npy", images)
    script = textwrap.dedent(
        f"""
        import numpy as np, keras, tensorflow as tf
        import keras_sd.inference  # registers EarlyExitModel
        x = np.load({str(tmp_path / "x.npy")!r})
        loaded = keras.models.load_model({str(tmp_path / "early.keras")!r})
        a = {{k: np.asarray(v) for k, v in loaded(x).items()}}
        served = tf.saved_model.load({str(tmp_path / "saved")!r})
        b = {{k: np.asarray(v) for k, v in served.serve(tf.constant(x)).items()}}
        np.savez({str(tmp_path / "out.npz")!r}, **{{"keras_" + k: v for k, v in a.items()}},
                 **{{"saved_" + k: v for k, v in b.items()}}, thresholds=loaded.thresholds)
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_allclose(out["thresholds"], thresholds, rtol=0, atol=0)
    for prefix in ("keras_", "saved_"):
        np.testing.assert_array_equal(out[prefix + "exit"], expected["exit"])
        np.testing.assert_array_equal(out[prefix + "prediction"], expected["prediction"])
        np.testing.assert_allclose(out[prefix + "logits"], expected["logits"], atol=1e-5)


def test_saved_model_graph_has_data_dependent_control_flow(model, tmp_path):
    early = EarlyExitModel(model, [0.5, 0.5, 0.5])
    graph = early.serving_function().get_concrete_function().graph
    ops = {op.type for op in graph.get_operations()}
    assert ops & {"If", "StatelessIf"}, sorted(ops)
    assert "Where" in ops or "GatherV2" in ops  # boolean_mask gathers the undecided samples


# ---------------------------------------------------------------------------- MACs
def _sep_block(h, w, cin, cout):
    """MACs of SeparableConvBlock (dw3x3 s2, pw cin->cin, dw3x3, pw cin->cout) and its BN
    elements, by hand from the documented layout."""
    ho, wo = math.ceil(h / 2), math.ceil(w / 2)
    macs = ho * wo * cin * 9 + ho * wo * cin * cin + ho * wo * cin * 9 + ho * wo * cin * cout
    return macs, ho * wo * cin + ho * wo * cout, (ho, wo)


def _head(h, w, cin, chans, classes, feature_dim):
    att, att_bn, (ah, aw) = _sep_block(h, w, cin, cin)
    macs, bn = att, att_bn + ah * aw * cin  # + the attention's own BN
    c = cin
    for cout in chans:
        m, b, (h, w) = _sep_block(h, w, c, cout)
        macs, bn, c = macs + m, bn + b, cout
    return macs + feature_dim * classes, bn


def test_count_macs_matches_hand_count(model):
    c1 = H * W * 4 * (3 * 3 * C)
    c2 = 4 * 4 * 6 * (3 * 3 * 4)
    c3 = 2 * 2 * 8 * (3 * 3 * 6)
    fc = 8 * CLASSES
    # Exit 1 on the 8x8x4 map: 2 align blocks to width 8 (geometric: 4 -> round(4*sqrt2)=6 -> 8).
    h1, bn1 = _head(8, 8, 4, [6, 8], CLASSES, 8)
    h2, bn2 = _head(4, 4, 6, [8], CLASSES, 8)
    report = count_macs(model)
    assert report.segments == (c1, c2, c3 + fc)
    assert report.backbone == c1 + c2 + c3 + fc
    assert report.heads == (h1, h2)
    assert report.exits == (c1 + h1, c1 + c2 + h1 + h2, c1 + c2 + c3 + fc + h1 + h2)
    assert report.ensemble == report.exits[-1]
    with_bn = count_macs(model, include_batchnorm=True)
    assert with_bn.backbone == report.backbone + 2 * 2 * 8
    assert with_bn.heads == (h1 + bn1, h2 + bn2)
    # The plain backbone exported without exits costs exactly the backbone.
    assert count_macs(model.export_backbone()).backbone == report.backbone
    # Acceleration = backbone / average spent.
    shares = [0.5, 0.25, 0.0, 0.25]
    avg = 0.5 * report.exits[0] + 0.25 * report.exits[1] + 0.25 * report.ensemble
    assert report.acceleration(shares) == pytest.approx(report.backbone / avg)


def _bottleneck_head(h, w, cin, s, classes, feature_dim):
    """MACs and BN elements of BottleneckExitHead by hand: 1x1 conv to D/4, s x s stride-s conv,
    1x1 conv to D (sizes multiples of s here), dense."""
    m, ho, wo = feature_dim // 4, h // s, w // s
    macs = h * w * m * cin + ho * wo * m * (s * s * m) + ho * wo * feature_dim * m
    return macs + feature_dim * classes, h * w * m + ho * wo * m + ho * wo * feature_dim


@pytest.fixture(scope="module")
def bottleneck_model():
    return confident_multi_exit(three_stage_backbone, exit_head="bottleneck")


def test_bottleneck_exits_early_exit_and_macs(bottleneck_model, images):
    """The bottleneck exit head (exit_head="bottleneck") works with stage_models, early-exit
    inference and the MAC count."""
    model = bottleneck_model
    _, exits, _ = _early_exit_equals_naive(model, images)
    assert len(set(exits.tolist())) >= 3  # several paths exercised
    # The stage models' exit outputs are the training-graph exits.
    full = model.call_exits(images)
    stages = model.stage_models()
    first = stages[0](images, training=False)
    np.testing.assert_allclose(first["logits"], full["exit1"], rtol=1e-5, atol=1e-5)
    # MACs: exit 1 on the 8x8x4 map (to the 2x2 last stage: s = 4), exit 2 on 4x4x6 (s = 2).
    c1 = H * W * 4 * (3 * 3 * C)
    c2 = 4 * 4 * 6 * (3 * 3 * 4)
    c3 = 2 * 2 * 8 * (3 * 3 * 6)
    fc = 8 * CLASSES
    h1, bn1 = _bottleneck_head(8, 8, 4, 4, CLASSES, 8)
    h2, bn2 = _bottleneck_head(4, 4, 6, 2, CLASSES, 8)
    report = count_macs(model)
    assert report.segments == (c1, c2, c3 + fc)
    assert report.heads == (h1, h2)
    assert report.exits == (c1 + h1, c1 + c2 + h1 + h2, c1 + c2 + c3 + fc + h1 + h2)
    with_bn = count_macs(model, include_batchnorm=True)
    assert with_bn.heads == (h1 + bn1, h2 + bn2)


def test_layer_macs_hand_counts():
    inp = keras.Input((6, 5, 4))
    g = keras.layers.Conv2D(6, (3, 1), groups=2, padding="valid", name="g")(inp)  # 4x5x6
    s = keras.layers.SeparableConv2D(7, 3, depth_multiplier=2, padding="same", name="s")(g)
    d = keras.layers.Dense(3, name="d")(s)  # applied per position
    m = keras.Model(inp, d)
    assert count_macs(m).backbone == (
        4 * 5 * 6 * (3 * 1 * 2) + (4 * 5 * 6 * 2 * 9 + 4 * 5 * 6 * 2 * 7) + 4 * 5 * 7 * 3
    )
    bn = keras.layers.BatchNormalization()
    assert layer_macs(bn, (1, 4, 5, 7)) == 0
    assert layer_macs(bn, (1, 4, 5, 7), include_batchnorm=True) == 140


def test_count_macs_resnet20_is_about_41_million():
    backbone = keras_sd.backbones.resnet20(num_classes=10, input_shape=(32, 32, 3))
    # Known figure for CIFAR ResNet-20: ~40.8M MACs (convs + fc, BN folded).
    assert count_macs(backbone).backbone == pytest.approx(40.8e6, rel=0.01)


# ---------------------------------------------------------------------------- search
def _synthetic(k=3, n=1500, classes=10, seed=0):
    """Exit probabilities where deeper exits are more accurate and confidence tracks accuracy."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    difficulty = rng.random(n)
    probs = []
    for i in range(k):
        skill = 0.6 + 0.35 * i / (k - 1)
        logits = rng.normal(size=(n, classes))
        margin = 6.0 * (skill - difficulty) + rng.normal(scale=0.5, size=n)
        logits[np.arange(n), labels] += margin
        probs.append(_softmax(logits))
    return ExitProbabilities(np.stack(probs).astype("float32"), labels)


def test_simulate_matches_per_sample_loop():
    data = _synthetic(n=300)
    path = np.array([10.0, 25.0, 40.0, 40.0])
    thresholds = np.array([[0.7, 0.8, 0.9], [0.5, 0.5, 1.0]])
    sim = simulate(data.probs, data.labels, thresholds, path)
    for p, t in enumerate(thresholds):
        exits, correct = [], []
        for j in range(data.num_samples):
            e = next((i for i in range(3) if data.probs[i, j].max() > t[i]), 3)
            p_ans = data.probs[e, j] if e < 3 else data.probs[:, j].mean(0)
            exits.append(e)
            correct.append(p_ans.argmax() == data.labels[j])
        np.testing.assert_array_equal(sim["exit"][p], exits)
        assert sim["accuracy"][p] == pytest.approx(100 * np.mean(correct))
        assert sim["macs"][p] == pytest.approx(np.mean(path[exits]))
        np.testing.assert_allclose(sim["shares"][p], np.bincount(exits, minlength=4) / len(exits))


def test_decode_encode():
    genes = np.array([[0, 0, 0, 1, 1, 1]], dtype="uint8")
    np.testing.assert_allclose(decode(genes, 3), [[1 / 8, 8 / 8]])
    np.testing.assert_array_equal(encode(decode(genes, 3), 3), genes)


def test_ga_reproducible_monotone_and_beats_sweep(model):
    data = _synthetic()
    report = MacReport(100, (40, 30, 30), (5, 5), (45, 80, 110), 110)
    kw = dict(beta=0.5, generations=40, population=40, macs=report, measure=False, progress=False)
    a = search_thresholds(model, data, seed=3, **kw)
    b = search_thresholds(model, data, seed=3, **kw)
    assert a.thresholds == b.thresholds and a.history == b.history
    assert all(x <= y for x, y in zip(a.history, a.history[1:]))
    sweep = sweep_thresholds(model, data, beta=0.5, macs=report, measure=False)
    assert len(sweep.table) == 50 and sweep.table[0]["thresholds"] == [0.5, 0.5, 0.5]
    assert a.fitness >= sweep.fitness - 1e-9
    # The reported fitness is eq. 7 recomputed from the reported numbers.
    sim = simulate(data.probs, data.labels, np.array(a.thresholds), report.path_macs)
    acc = sim["accuracy"][0]
    final = 100 * np.mean(data.probs[-1].argmax(-1) == data.labels)
    assert a.fitness == pytest.approx(100 / sim["macs"][0] + 0.5 * (acc - final))
    assert a.baseline_accuracy == pytest.approx(final)
    # Trade-off table: Pareto front, acceleration increasing and accuracy decreasing.
    speeds = [r["mac_acceleration"] for r in a.table]
    accs = [r["accuracy"] for r in a.table]
    assert speeds == sorted(speeds) and accs == sorted(accs, reverse=True)
    assert all(abs(sum(r["shares"]) - 1) < 1e-9 for r in a.table)


def test_search_on_model_runs_network_and_measures(model, images):
    labels = np.asarray(model.call_exits(images)["exit3"]).argmax(-1)
    result = search_thresholds(
        model,
        (images, labels),
        beta=1.0,
        generations=3,
        population=6,
        table_rows=2,
        batch_size=16,
        progress=False,
    )
    assert result.final_exit_accuracy == pytest.approx(100.0)
    assert len(result.thresholds) == 3 and all(0 < t <= 1 for t in result.thresholds)
    assert result.measured_acceleration is not None and result.measured_acceleration > 0
    assert all(r["measured_acceleration"] > 0 for r in result.table)
    json.dumps(result.to_dict())  # JSON-ready


def test_collect_from_dataset_equals_arrays(model, images):
    labels = np.arange(len(images)) % CLASSES
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(7)
    a = collect_exit_probabilities(model, ds, keep_images=10)
    b = collect_exit_probabilities(model, (images, labels), batch_size=40)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
    np.testing.assert_array_equal(a.labels, labels)
    assert a.images.shape == (10, H, W, C)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "thresholds, match",
    [
        ([0.5, 0.5], "one threshold per exit"),
        ([0.5, 0.5, 0.5, 0.5], "one threshold per exit"),
        ([0.0, 0.5, 0.5], r"\(0, 1\]"),
        ([0.5, 1.5, 0.5], r"\(0, 1\]"),
        ([0.5, -0.1, 0.5], r"\(0, 1\]"),
        ([0.5, float("nan"), 0.5], r"\(0, 1\]"),
        ("abc", "thresholds"),
    ],
)
def test_bad_thresholds(model, thresholds, match):
    with pytest.raises(ValueError, match=match):
        EarlyExitModel(model, thresholds)
    early = EarlyExitModel(model, [0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match=match):
        early.set_thresholds(thresholds)


def test_model_without_exits():
    plain = keras_sd.Baseline(three_stage_backbone())
    for fn in (
        lambda: EarlyExitModel(plain, [0.5]),
        lambda: search_thresholds(plain, _synthetic(), beta=1.0, progress=False),
        lambda: sweep_thresholds(plain, _synthetic(), beta=1.0),
        lambda: collect_exit_probabilities(plain.backbone, (np.zeros((2, H, W, C)), [0, 1])),
    ):
        with pytest.raises(ValueError, match="without exits"):
            fn()


def test_empty_data(model):
    empty = (np.zeros((0, H, W, C), "float32"), np.zeros((0,), "int64"))
    with pytest.raises(ValueError, match="empty"):
        search_thresholds(model, empty, beta=1.0, progress=False)
    with pytest.raises(ValueError, match="empty"):
        sweep_thresholds(model, [], beta=1.0)
    with pytest.raises(ValueError, match="empty"):
        EarlyExitModel(model, [0.5] * 3).predict_early_exit(empty[0])


def test_other_bad_arguments(model):
    data = _synthetic()
    bad = [
        (dict(beta=-1.0), "beta"),
        (dict(beta=float("nan")), "beta"),
        (dict(beta=1.0, population=1), "population"),
        (dict(beta=1.0, generations=0), "generations"),
        (dict(beta=1.0, mutation_rate=2.0), "mutation_rate"),
        (dict(beta=1.0, elite=40, population=40), "elite"),
        (dict(beta=1.0, bits=0), "bits"),
        (dict(beta=1.0, baseline_accuracy=150), "baseline_accuracy"),
    ]
    for kwargs, name in bad:
        with pytest.raises(ValueError, match=f"`{name}`"):
            search_thresholds(model, data, progress=False, measure=False, **kwargs)
    with pytest.raises(ValueError, match="one label per image"):
        collect_exit_probabilities(model, (np.zeros((3, H, W, C)), np.zeros(2)))
    with pytest.raises(ValueError, match="`training`"):
        EarlyExitModel(model, [0.5] * 3)(np.zeros((2, H, W, C), "float32"), training=True)
    with pytest.raises(ValueError, match="`frozen` must be True or False, got 'yes'"):
        EarlyExitModel(model, [0.5] * 3).serving_function(frozen="yes")
    from keras_sd.inference import freeze_function
    from keras_sd.inference.search import plain_backbone_function

    with pytest.raises(ValueError, match="`frozen`"):
        plain_backbone_function(model, frozen=1)
    spec = tf.TensorSpec((None, H, W, C), "float32")
    with pytest.raises(ValueError, match="`input_signature` must hold one tf.TensorSpec"):
        freeze_function(lambda a, b: a, [spec, spec])
    with pytest.raises(ValueError, match="`shares`"):
        count_macs(model).acceleration([0.5, 0.5])
    with pytest.raises(ValueError, match="`model`"):
        count_macs("resnet20")
    with pytest.raises(ValueError, match="`data`: cached probabilities of 2 exits"):
        search_thresholds(
            model, ExitProbabilities(data.probs[:2], data.labels), beta=1.0, progress=False
        )


# ---------------------------------------------------------------------------- CLI
def _fake_run(tmp_path, model_obj):
    """A run directory as `keras-sd train` leaves it (recipe.json + model.keras) on digits."""
    from keras_sd.atomic import write_json_atomic
    from keras_sd.recipes import DataConfig, Recipe

    run = tmp_path / "run"
    run.mkdir()
    recipe = Recipe(name="t", method="multi_exit", data=DataConfig(name="digits", batch_size=32))
    write_json_atomic(run / "recipe.json", recipe.to_dict())
    model_obj.save(run / "model.keras")
    return run


def test_cli_thresholds_searches_on_one_half_and_reports_on_the_other(
    tmp_path, capsys, monkeypatch
):
    from keras_sd import cli, plotting
    from keras_sd import data as data_lib
    from keras_sd.inference import run as run_mod
    from keras_sd.inference.litert import read_thresholds_file

    keras.utils.set_random_seed(0)
    model_obj = MultiExitDistiller(three_stage_backbone(input_shape=(8, 8, 1), num_classes=10))
    run = _fake_run(tmp_path, model_obj)
    seen = {}  # what the search and the sweep were given

    def spy(name, fn):
        def wrapped(model, data, **kwargs):
            seen[name] = data
            return fn(model, data, **kwargs)

        return wrapped

    monkeypatch.setattr(run_mod, "search_thresholds", spy("search", search_thresholds))
    monkeypatch.setattr(run_mod, "sweep_thresholds", spy("sweep", sweep_thresholds))
    argv = ["thresholds", str(run), "--beta", "0.5", "--generations", "3", "--population", "6"]
    code = cli.main([*argv, "--measure-images", "16", "--split-seed", "1"])
    assert code == 0
    payload = json.loads((run / "thresholds.json").read_text())

    # The test split and the halves, computed independently of keras_sd.inference.
    test = data_lib.load("digits", batch_size=32, augment="none", seed=0).test
    x = np.concatenate([np.asarray(a) for a, _ in test])
    y = np.concatenate([np.asarray(b) for _, b in test])
    n = len(y)
    order = np.random.default_rng(1).permutation(n)
    search_idx, report_idx = np.sort(order[: n // 2]), np.sort(order[n // 2 :])
    loaded = keras.models.load_model(run / "model.keras")
    out = loaded.call_exits(x, training=False)
    probs = np.stack([_softmax(out[name]) for name in loaded.exit_names])

    # The search and the sweep saw exactly the search half, nothing of the report half.
    for name in ("search", "sweep"):
        np.testing.assert_array_equal(seen[name].labels, y[search_idx])
        np.testing.assert_allclose(seen[name].probs, probs[:, search_idx], atol=1e-5)
    split = payload["split"]
    assert split["source"] == "test" and split["seed"] == 1 and split["search_fraction"] == 0.5
    assert (split["search_images"], split["report_images"]) == (n // 2, n - n // 2)
    assert (payload["search_images"], payload["report_images"]) == (n // 2, n - n // 2)
    assert "search sees only these" in split["search"] and "reported" in split["report"]

    # Reported figures: the chosen thresholds on the report half, by the early-exit graph.
    early = EarlyExitModel(loaded, payload["thresholds"])
    pred = early.predict_early_exit(x[report_idx])["prediction"]
    assert payload["accuracy"] == pytest.approx(100 * np.mean(pred == y[report_idx]), abs=1e-9)
    pred_s = early.predict_early_exit(x[search_idx])["prediction"]
    assert payload["search_accuracy"] == pytest.approx(
        100 * np.mean(pred_s == y[search_idx]), abs=1e-9
    )
    path_macs = count_macs(loaded).path_macs
    backbone = count_macs(loaded).backbone
    acc, macs, exits = _algorithm1_by_hand(
        probs[:, report_idx], y[report_idx], payload["thresholds"], path_macs
    )
    assert payload["mac_acceleration"] == pytest.approx(backbone / macs)
    assert payload["images_per_exit"] == [exits.count(j) for j in range(4)]
    assert sum(payload["images_per_exit"]) == n - n // 2
    assert payload["final_exit_accuracy"] == pytest.approx(
        100 * np.mean(probs[-1, report_idx].argmax(-1) == y[report_idx])
    )
    assert payload["table"]
    for row in payload["table"]:
        acc, macs, _ = _algorithm1_by_hand(
            probs[:, report_idx], y[report_idx], row["thresholds"], path_macs
        )
        assert row["accuracy"] == pytest.approx(acc, abs=1e-9)
        assert row["mac_acceleration"] == pytest.approx(backbone / macs)
        acc_s, macs_s, _ = _algorithm1_by_hand(
            probs[:, search_idx], y[search_idx], row["thresholds"], path_macs
        )
        assert row["search_accuracy"] == pytest.approx(acc_s, abs=1e-9)
        assert row["search_mac_acceleration"] == pytest.approx(backbone / macs_s)
    # Measured speedup: named by runtime and batch size, on report-half images.
    key = "measured_speedup_tf_graph_batch256"
    assert payload["measurement"]["field"] == key
    assert payload["measurement"]["runtime"] == "tf-graph"
    assert payload["measurement"]["batch_size"] == 256 and payload["measurement"]["rounds"] == 5
    assert payload["measurement"]["part"] == "report" and payload["measurement"]["images"] == 16
    assert payload[key] > 0 and all(r[key] > 0 for r in payload["table"])
    assert payload["sweep"][key] > 0 and payload["measured_on_images"] == 16
    assert "measured_acceleration" not in payload and "measured_acceleration" not in str(
        payload["table"]
    )
    assert len(payload["sweep"]["table"]) == 50
    sweep_row = payload["sweep"]["table"][0]  # shared threshold 0.50, re-scored
    assert sweep_row["accuracy"] == pytest.approx(
        _algorithm1_by_hand(probs[:, report_idx], y[report_idx], [0.5] * 3, path_macs)[0]
    )
    printed = capsys.readouterr().out
    assert f"searched on {n // 2} images of the test split (seed 1)" in printed
    assert f"the other {n - n // 2} (report half)" in printed
    assert "tf-graph b256" in printed and "search acc %" in printed
    assert "tf-graph batch 256, median of 5 alternating rounds on 16 images" in printed

    # Readers of thresholds.json: the LiteRT export and the TensorBoard plot.
    assert read_thresholds_file(run / "thresholds.json", 3) == payload["thresholds"]
    points = plotting.early_exit_points(payload)
    assert points["chosen"] == (payload["mac_acceleration"], payload["accuracy"])
    png = (run / "thresholds.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    events = list((run / "logs" / "thresholds").glob("events.out.tfevents.*"))
    assert events
    tags = {
        v.tag for e in tf.compat.v1.train.summary_iterator(str(events[0])) for v in e.summary.value
    }
    assert "early_exit/beta_0.5" in tags


def test_run_threshold_search_bad_arguments(tmp_path):
    from keras_sd.inference.run import run_threshold_search

    with pytest.raises(ValueError, match=r"`split_seed` must be an int, got 'a'"):
        run_threshold_search(tmp_path, beta=1.0, split_seed="a")
    with pytest.raises(ValueError, match=r"`measure_images` must be a positive int, got 0"):
        run_threshold_search(tmp_path, beta=1.0, measure_images=0)
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive int, got 0"):
        run_threshold_search(tmp_path, beta=1.0, batch_size=0)


def test_cli_thresholds_bad_run_dir(tmp_path, capsys):
    from keras_sd import cli

    assert cli.main(["thresholds", str(tmp_path), "--beta", "1"]) == 2
    assert "no recipe.json" in capsys.readouterr().err
    plain = keras_sd.Baseline(three_stage_backbone((8, 8, 1), 10))
    plain(np.zeros((1, 8, 8, 1), "float32"))  # built, so it saves without a warning
    run = _fake_run(tmp_path, plain)
    assert cli.main(["thresholds", str(run), "--beta", "1"]) == 2
    assert "without exits" in capsys.readouterr().err


# ---------------------------------------------------------------------------- timing
def test_time_rounds_alternates_functions_round_by_round():
    from keras_sd.inference.search import time_rounds

    calls = []

    def fn(name):
        def run(batch):
            calls.append((name, int(batch.shape[0])))
            return np.zeros(1)

        return run

    images = np.zeros((5, H, W, C), "float32")
    seconds = time_rounds({"plain": fn("plain"), "early": fn("early")}, images, 2, 3)
    assert {k: len(v) for k, v in seconds.items()} == {"plain": 3, "early": 3}
    assert all(t > 0 for v in seconds.values() for t in v)
    warm_up = [("plain", 2), ("plain", 2), ("plain", 1), ("early", 2), ("early", 2), ("early", 1)]
    one_round = warm_up  # each round: every batch of plain, then every batch of early exit
    assert calls == warm_up + one_round * 3
    with pytest.raises(ValueError, match="`rounds` must be a positive int, got 0"):
        time_rounds({"plain": fn("plain")}, images, 2, 0)
    with pytest.raises(ValueError, match="`batch_size` must be a positive int, got 0"):
        time_rounds({"plain": fn("plain")}, images, 0, 1)


def test_measure_acceleration_is_the_median_of_per_round_ratios(model, images, monkeypatch):
    from keras_sd.inference import search as search_mod

    # Round 3 of the early exit was hit by a load spike, round 5 ran unusually fast: the best of
    # each side (1.0 / 0.25 = 4x) would mix rounds; the median of the per-round ratios is 2x.
    plain = [1.0, 1.2, 1.0, 0.8, 1.0]
    early = [0.5, 0.6, 10.0, 0.4, 0.25]
    seen = {}

    def fake(fns, imgs, batch_size, rounds):
        seen.update(names=list(fns), n=len(imgs), batch_size=batch_size, rounds=rounds)
        return {"backbone": plain, "early_exit": early}

    monkeypatch.setattr(search_mod, "time_rounds", fake)
    value = search_mod.measure_acceleration(model, [0.5] * 3, images, batch_size=8, rounds=5)
    assert value == pytest.approx(float(np.median(np.divide(plain, early))))
    assert value == pytest.approx(2.0)
    assert seen == {"names": ["backbone", "early_exit"], "n": 40, "batch_size": 8, "rounds": 5}


# ---------------------------------------------------------------------------- search / report
def _algorithm1_by_hand(probs, labels, thresholds, path_macs):
    """Per-sample loop of Algorithm 1: (accuracy %, average MACs, answering exit per sample)."""
    k, n = probs.shape[0], probs.shape[1]
    correct, macs, exits = 0, 0.0, []
    for s in range(n):
        answer = k
        for i in range(k):
            if probs[i, s].max() > thresholds[i]:
                answer = i
                break
        pred = probs[answer, s].argmax() if answer < k else probs[:, s].mean(0).argmax()
        correct += int(pred == labels[s])
        macs += path_macs[answer]
        exits.append(answer)
    return 100.0 * correct / n, macs / n, exits


def test_split_search_report_is_a_seeded_partition():
    from keras_sd.inference import split_search_report

    a = split_search_report(1001, seed=3)
    assert len(a.search) == 500 and len(a.report) == 501  # floor(1001 * 0.5) search samples
    assert not set(a.search) & set(a.report)  # disjoint
    np.testing.assert_array_equal(np.sort(np.r_[a.search, a.report]), np.arange(1001))  # covers
    assert list(a.search) == sorted(a.search) and list(a.report) == sorted(a.report)
    # The documented rule: the first floor(n * fraction) of default_rng(seed).permutation(n).
    order = np.random.default_rng(3).permutation(1001)
    np.testing.assert_array_equal(a.search, np.sort(order[:500]))
    again = split_search_report(1001, seed=3)
    np.testing.assert_array_equal(again.search, a.search)
    np.testing.assert_array_equal(again.report, a.report)
    other = split_search_report(1001, seed=4)
    assert set(other.search) != set(a.search)
    quarter = split_search_report(100, search_fraction=0.25, seed=0, source="validation")
    assert (len(quarter.search), len(quarter.report)) == (25, 75)
    info = quarter.describe()
    assert info["source"] == "validation" and info["seed"] == 0
    assert info["search_images"] == 25 and info["report_images"] == 75
    assert info["search_fraction"] == 0.25
    assert "search sees only these" in info["search"] and "75 images" in info["report"]
    json.dumps(info)


@pytest.mark.parametrize("fraction", [0, 0.0, 1, 1.0, 1.5, -0.1, float("nan"), "half", True, None])
def test_split_search_report_bad_fraction(fraction):
    from keras_sd.inference import split_search_report

    with pytest.raises(
        ValueError,
        match=r"`search_fraction` must be a number strictly between 0 and 1, got "
        + re.escape(repr(fraction)),
    ):
        split_search_report(100, search_fraction=fraction)


def test_split_search_report_too_few_samples_and_bad_seed():
    from keras_sd.inference import split_search_report

    with pytest.raises(
        ValueError, match=r"`num_samples` = 1 cannot be split .* 0 search and 1 report"
    ):
        split_search_report(1)
    with pytest.raises(ValueError, match=r"`num_samples` = 3 cannot be split .*0\.2.* 0 search"):
        split_search_report(3, search_fraction=0.2)
    with pytest.raises(ValueError, match=r"`num_samples` = 4 cannot be split .* 4 search and 0"):
        split_search_report(4, search_fraction=1 - 1e-12)
    assert (len(split_search_report(4, search_fraction=0.99).report)) == 1
    with pytest.raises(ValueError, match=r"`num_samples` must be an int >= 2, got 10\.0"):
        split_search_report(10.0)
    with pytest.raises(ValueError, match=r"`seed` must be an int, got 'a'"):
        split_search_report(10, seed="a")
    assert len(split_search_report(2).search) == 1


def test_rescore_scores_the_same_thresholds_on_other_samples(model):
    from keras_sd.inference import rescore, split_search_report

    data = _synthetic(n=1200)
    report_macs = MacReport(100, (40, 30, 30), (5, 5), (45, 80, 110), 110)
    split = split_search_report(data.num_samples, seed=1)
    search, held = data.take(split.search), data.take(split.report)
    np.testing.assert_array_equal(search.probs, data.probs[:, split.search])
    np.testing.assert_array_equal(held.labels, data.labels[split.report])
    kw = dict(beta=0.5, macs=report_macs, measure=False)
    result = search_thresholds(model, search, generations=10, population=20, progress=False, **kw)
    scored = rescore(result, held)
    acc, macs, exits = _algorithm1_by_hand(
        held.probs, held.labels, result.thresholds, report_macs.path_macs
    )
    final = 100.0 * np.mean(held.probs[-1].argmax(-1) == held.labels)
    assert scored.thresholds == result.thresholds
    assert scored.accuracy == pytest.approx(acc, abs=1e-9)
    assert scored.mac_acceleration == pytest.approx(100.0 / macs)
    assert scored.shares == pytest.approx([exits.count(j) / len(exits) for j in range(4)])
    assert scored.final_exit_accuracy == pytest.approx(final)
    assert scored.fitness == pytest.approx(100.0 / macs + 0.5 * (acc - final))
    assert scored.accuracy != pytest.approx(result.accuracy)  # other samples, other figure
    assert [r["thresholds"] for r in scored.table] == [r["thresholds"] for r in result.table]
    for row, old in zip(scored.table, result.table):
        acc_r, macs_r, _ = _algorithm1_by_hand(
            held.probs, held.labels, row["thresholds"], report_macs.path_macs
        )
        assert row["accuracy"] == pytest.approx(acc_r, abs=1e-9)
        assert row["mac_acceleration"] == pytest.approx(100.0 / macs_r)
        assert row["search_accuracy"] == old["accuracy"]
        assert row["search_mac_acceleration"] == old["mac_acceleration"]
        assert row["search_fitness"] == old["fitness"] and row["search_shares"] == old["shares"]
        assert row["measured_acceleration"] is None
    sweep = sweep_thresholds(model, search, **kw)
    scored_sweep = rescore(sweep, held)
    assert len(scored_sweep.table) == 50
    assert scored_sweep.table[10]["accuracy"] == pytest.approx(
        _algorithm1_by_hand(held.probs, held.labels, [0.6] * 3, report_macs.path_macs)[0]
    )
    with pytest.raises(ValueError, match="`data` must be an ExitProbabilities"):
        rescore(result, (held.probs, held.labels))
    with pytest.raises(ValueError, match="`result` must be a ThresholdSearchResult"):
        rescore(result.to_dict(), held)
    with pytest.raises(ValueError, match="`data`: cached probabilities of 2 exits"):
        rescore(result, ExitProbabilities(held.probs[:2], held.labels))


def test_collect_keeps_the_images_at_keep_indices(model, images):
    labels = np.arange(len(images)) % CLASSES
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(7)
    got = collect_exit_probabilities(model, ds, keep_indices=[1, 6, 7, 8, 39])
    np.testing.assert_array_equal(got.images, images[[1, 6, 7, 8, 39]])
    assert got.num_samples == 40
    for bad in ([3, 3], [5, 2], [-1, 2], [0.5, 1.5]):
        with pytest.raises(ValueError, match=r"`keep_indices` must be strictly increasing"):
            collect_exit_probabilities(model, ds, keep_indices=bad)
    with pytest.raises(ValueError, match=r"`keep_indices` reaches position 40, .* only 40"):
        collect_exit_probabilities(model, ds, keep_indices=[2, 40])
