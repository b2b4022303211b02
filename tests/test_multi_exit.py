"""MultiExitDistiller (BYOT / TPAMI): loss of each path against NumPy, gradient routing, exit
placement, per-stage API, deployment, annealing callback, bad input, serialisation."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import check_model
from tiny import staged_backbone, tiny_backbone

from keras_sd import backbones
from keras_sd.callbacks import DistillationAnnealing
from keras_sd.models.multi_exit import MultiExitDistiller

RNG = np.random.default_rng(2)
X = RNG.normal(size=(16, 8, 8, 1)).astype("float32")
Y = RNG.integers(0, 5, size=16)
T = 3.0


def three_stage_backbone(batch_norm=False, seed=0, num_classes=5):
    """Contract backbone with 3 stages (8x8x4, 4x4x6, 2x2x8), so that K = 3 exits."""
    stages = [(4, 1), (6, 2), (8, 2)]
    return staged_backbone((8, 8, 1), stages, num_classes, batch_norm, seed, name="three")


# ---------------------------------------------------------------- NumPy reference
def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_kl(p, log_q):
    return (p * (np.log(p) - log_q)).sum(-1)


def np_terms(
    logits,
    feats,
    y,
    path,
    reduction="sum",
    alpha=0.6,
    kl_scale="none",
    teacher=None,
    final_ce_weight=1.0,
):
    """Per-sample ce/kl/feature (and teacher) terms of TPAMI eqs. 3-6, computed independently;
    ``final_ce_weight`` multiplies the final exit's cross-entropy (1 in TPAMI)."""
    k = len(logits)
    n = k if reduction == "mean" else 1
    scale = T * T if kl_scale == "t2" else 1.0
    onehot = np.eye(5)[y]
    ce = [-(onehot * log_softmax(z)).sum(-1) for z in logits]
    soft = [np.exp(log_softmax(z / T)) for z in logits]
    p_ens = np.mean(soft, axis=0)
    f_ens = np.mean(feats, axis=0)
    kl = np.zeros(len(y))
    feat = np.zeros(len(y))
    for i in range(k - 1):
        if path == "deepest":
            refs = [(soft[-1], feats[-1])]
        elif path == "transitive":
            refs = [(soft[i + 1], feats[i + 1])]
        elif path == "dense":
            refs = [(soft[j], feats[j]) for j in range(i + 1, k)]
        else:
            refs = [(p_ens, f_ens)]
        for p, f in refs:
            kl += scale * np_kl(p, log_softmax(logits[i] / T))
            feat += ((feats[i] - f) ** 2).sum(-1)
    final_w = final_ce_weight * (1.0 if teacher is None else 1 - alpha)
    out = {
        "ce_loss": (final_w * ce[-1] + sum((1 - alpha) * c for c in ce[:-1])) / n,
        "kl_loss": kl / n,
        "feature_loss": feat / n,
    }
    if teacher is not None:
        p_t = np.exp(log_softmax(teacher / T))
        out["teacher_kl_loss"] = scale * np_kl(p_t, log_softmax(logits[-1] / T)) / n
    return {name: v.mean() for name, v in out.items()}


def exits_numpy(model, x):
    logits, feats = model.exit_logits_and_features(x, training=False)
    return [np.asarray(z, "float64") for z in logits], [np.asarray(f, "float64") for f in feats]


def mean_terms(model, x, y):
    """The model's loss terms, batch-averaged, computed eagerly (no tracing: fast)."""
    _, terms = model.compute_loss_terms(x, tf.one_hot(y, 5), training=False)
    return {name: float(np.mean(np.asarray(v))) for name, v in terms.items()}


@pytest.mark.parametrize("path", ["deepest", "ensemble", "transitive", "dense"])
@pytest.mark.parametrize("reduction,kl_scale", [("mean", "t2"), ("sum", "none")])
def test_loss_of_each_path_equals_numpy(path, reduction, kl_scale):
    model = MultiExitDistiller(
        three_stage_backbone(),
        path=path,
        reduction=reduction,
        kl_scale=kl_scale,
        alpha=0.6,
        temperature=T,
    )
    logits, feats = exits_numpy(model, X)
    assert len(logits) == 3
    ref = np_terms(logits, feats, Y, path, reduction, 0.6, kl_scale)
    got = mean_terms(model, X, Y)
    assert sorted(got) == sorted(ref)
    for name, value in ref.items():
        np.testing.assert_allclose(got[name], value, rtol=2e-5, atol=1e-6, err_msg=name)
    assert ref["kl_loss"] > 0 and ref["feature_loss"] > 0


def test_logged_loss_and_exit_metrics_equal_numpy():
    alpha, lam = 0.4, 0.07
    model = MultiExitDistiller(
        three_stage_backbone(), path="ensemble", alpha=alpha, feature_weight=lam, temperature=T
    )
    model.compile(optimizer="sgd")
    logs = model.evaluate(X, Y, batch_size=16, return_dict=True, verbose=0)
    logits, feats = exits_numpy(model, X)
    ref = np_terms(logits, feats, Y, "ensemble", "sum", alpha)
    for name, value in ref.items():
        np.testing.assert_allclose(logs[name], value, rtol=2e-5, atol=1e-6, err_msg=name)
    total = ref["ce_loss"] + alpha * ref["kl_loss"] + lam * ref["feature_loss"]
    np.testing.assert_allclose(logs["loss"], total, rtol=2e-5)
    # Metrics: every exit's accuracy and the ensemble of softmax probabilities (T = 1).
    for i, z in enumerate(logits, start=1):
        np.testing.assert_allclose(logs[f"exit{i}_accuracy"], (z.argmax(-1) == Y).mean())
    p_mean = np.mean([np.exp(log_softmax(z)) for z in logits], axis=0)
    np.testing.assert_allclose(logs["ensemble_accuracy"], (p_mean.argmax(-1) == Y).mean())
    top5 = np.mean([Y[j] in np.argsort(-p_mean[j])[:5] for j in range(16)])
    np.testing.assert_allclose(logs["ensemble_top5"], top5)


def test_paths_give_different_losses_on_three_exits():
    # Guards the NumPy test against a model that ignores `path`.
    bb = three_stage_backbone()
    values = {
        path: mean_terms(MultiExitDistiller(bb, path=path), X, Y)["kl_loss"]
        for path in ("deepest", "ensemble", "transitive", "dense")
    }
    assert len({round(v, 6) for v in values.values()}) == 4, values


def test_teacher_adds_kd_on_the_final_exit():
    teacher = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(5)]
    )
    model = MultiExitDistiller(three_stage_backbone(), teacher=teacher, alpha=0.3)
    model.compile(optimizer="sgd")
    logs = mean_terms(model, X, Y)
    logits, feats = exits_numpy(model, X)
    ref = np_terms(logits, feats, Y, "deepest", alpha=0.3, teacher=np.asarray(teacher(X)))
    for name, value in ref.items():
        np.testing.assert_allclose(logs[name], value, rtol=2e-5, atol=1e-6, err_msg=name)
    assert not teacher.trainable_variables
    before = [w.copy() for w in teacher.get_weights()]
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)  # frozen


@pytest.mark.parametrize("reduction,with_teacher", [("mean", False), ("sum", True)])
def test_final_ce_weight_scales_the_final_exit_cross_entropy_only(reduction, with_teacher):
    teacher = None
    if with_teacher:
        teacher = keras.Sequential(
            [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(5)]
        )
    bb = three_stage_backbone()
    args = dict(reduction=reduction, teacher=teacher, alpha=0.3, temperature=T)
    model = MultiExitDistiller(bb, final_ce_weight=1.7, **args)
    logits, feats = exits_numpy(model, X)
    t_logits = None if teacher is None else np.asarray(teacher(X), "float64")
    ref = np_terms(
        logits, feats, Y, "deepest", reduction, 0.3, teacher=t_logits, final_ce_weight=1.7
    )
    got = mean_terms(model, X, Y)
    for name, value in ref.items():
        np.testing.assert_allclose(got[name], value, rtol=2e-5, atol=1e-6, err_msg=name)
    # Against the default weight 1: only ce_loss moves, by 0.7 of the final exit's share.
    base_model = MultiExitDistiller(bb, **args)
    base_model.set_weights(model.get_weights())  # the same exit heads
    base = mean_terms(base_model, X, Y)
    n = 3 if reduction == "mean" else 1
    final_ce = -(np.eye(5)[Y] * log_softmax(logits[-1])).sum(-1).mean()
    share = (1 - 0.3) if with_teacher else 1.0
    np.testing.assert_allclose(
        got["ce_loss"] - base["ce_loss"], 0.7 * share * final_ce / n, rtol=1e-4, atol=1e-6
    )
    for name in set(got) - {"ce_loss"}:
        assert got[name] == pytest.approx(base[name], rel=1e-6, abs=1e-7), name


@pytest.mark.parametrize("path", ["deepest", "ensemble", "transitive", "dense"])
def test_final_exit_gets_no_kl_or_feature_gradient(path):
    model = MultiExitDistiller(three_stage_backbone(), path=path)
    targets = tf.one_hot(Y, 5)
    final = [v for v in model.trainable_variables if v.path.split("/")[0] in ("conv2", "head")]
    heads = [v for h in model.exit_heads for v in h.trainable_variables]
    assert len(final) == 4
    with tf.GradientTape(persistent=True) as tape:
        _, terms = model.compute_loss_terms(X, targets, training=True)
        distill = tf.reduce_mean(terms["kl_loss"]) + tf.reduce_mean(terms["feature_loss"])
        ce = tf.reduce_mean(terms["ce_loss"])
    for g in tape.gradient(distill, final):
        assert g is None or not np.any(np.asarray(g))
    assert any(np.any(np.asarray(g)) for g in tape.gradient(ce, final))
    assert all(np.any(np.asarray(g)) for g in tape.gradient(distill, heads) if g is not None)


def test_exit_features_have_the_final_feature_shape():
    model = MultiExitDistiller(three_stage_backbone())
    logits, feats = model.exit_logits_and_features(X)
    assert [tuple(f.shape) for f in feats] == [(16, 8)] * 3
    assert [tuple(z.shape) for z in logits] == [(16, 5)] * 3
    # N_i = K - i align blocks.
    assert [len(h.blocks) for h in model.exit_heads] == [2, 1]


def test_exits_by_indices_names_and_tensors_are_the_same_points():
    bb = three_stage_backbone(seed=1)
    by_stage = MultiExitDistiller(bb)
    by_index = MultiExitDistiller(bb, exits=[0, 1])
    by_name = MultiExitDistiller(bb, exits=["relu0", "relu1"])
    by_tensor = MultiExitDistiller(bb, exits=[bb.output["stages"][0], bb.get_layer("conv1").output])
    assert by_stage.get_config()["exits"] == "stages"
    assert by_index.get_config()["exits"] == [0, 1]
    assert by_tensor.get_config()["exits"] == [0, "conv1"]
    for a, b in zip(by_index.exit_graph.exit_points, by_name.exit_graph.exit_points):
        assert a is b
    one = MultiExitDistiller(bb, exits=[1])  # K = 2: one shallow exit with 1 align block
    assert one.exit_names == ("exit1", "exit2") and len(one.exit_heads[0].blocks) == 1


def test_stage_models_chain_equals_one_pass_and_allow_subsets():
    model = MultiExitDistiller(three_stage_backbone(batch_norm=True))
    model.compile(optimizer="sgd")
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0)  # non-trivial BN statistics
    full = {k: np.asarray(v) for k, v in model.call_exits(X).items()}
    stages = model.stage_models()
    assert len(stages) == 3
    h = X
    for i, stage in enumerate(stages[:-1], start=1):
        out = stage(h, training=False)
        np.testing.assert_allclose(out["logits"], full[f"exit{i}"], rtol=1e-5, atol=1e-5)
        h = np.asarray(out["stage"])[::2]  # continue with a subset, as early exit does
        full = {k: v[::2] if k != "ensemble" else v for k, v in full.items()}
    last = stages[-1](h, training=False)
    np.testing.assert_allclose(last["logits"], full["exit3"], rtol=1e-5, atol=1e-5)
    # The segments alone reproduce the backbone.
    h = X
    for seg in model.backbone_segments()[:-1]:
        h = seg(h, training=False)
    np.testing.assert_allclose(
        model.backbone_segments()[-1](h)["logits"], model(X), rtol=1e-5, atol=1e-5
    )
    pred = model.predict_exits(X, batch_size=5)
    assert sorted(pred) == ["ensemble", "exit1", "exit2", "exit3"]
    np.testing.assert_allclose(pred["exit3"], model.predict(X, verbose=0), rtol=1e-5, atol=1e-5)


def test_export_backbone_is_plain_and_equals_final_exit(tmp_path):
    model = MultiExitDistiller(three_stage_backbone(batch_norm=True))
    model.compile(optimizer="sgd")
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    plain = model.export_backbone()
    assert plain.count_params() == model.backbone.count_params()
    assert model.count_params() > plain.count_params()
    np.testing.assert_allclose(plain(X), model(X), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(plain(X), model.call_exits(X)["exit3"], rtol=1e-6, atol=1e-6)
    plain.save(tmp_path / "plain.keras")
    loaded = keras.models.load_model(tmp_path / "plain.keras")
    np.testing.assert_allclose(loaded(X), model(X), rtol=1e-6, atol=1e-6)


def test_keras_save_load_keeps_every_exit_and_the_weights(tmp_path):
    model = MultiExitDistiller(three_stage_backbone(batch_norm=True), path="dense", alpha=0.3)
    model.compile(optimizer="sgd")
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    model.term_weights["kl_loss"].assign(0.0)  # e.g. saved during the annealed last epochs
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, MultiExitDistiller)
    a, b = model.call_exits(X), loaded.call_exits(X)
    for name in ("exit1", "exit2", "exit3", "ensemble"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-6)
    assert float(loaded.term_weights["kl_loss"].numpy()) == 0.0
    assert loaded.get_config()["alpha"] == 0.3


def test_bad_arguments_raise_value_errors_naming_them():
    bb = three_stage_backbone()
    with pytest.raises(ValueError, match="path"):
        MultiExitDistiller(bb, path="deep")
    for alpha in (-0.1, 1.5, "a"):
        with pytest.raises(ValueError, match="alpha"):
            MultiExitDistiller(bb, alpha=alpha)
    with pytest.raises(ValueError, match="feature_weight"):
        MultiExitDistiller(bb, feature_weight=-1e-3)
    with pytest.raises(ValueError, match="weight_decay"):
        MultiExitDistiller(bb, weight_decay=-1)
    with pytest.raises(ValueError, match="temperature"):
        MultiExitDistiller(bb, temperature=0)
    with pytest.raises(ValueError, match="reduction"):
        MultiExitDistiller(bb, reduction="avg")
    with pytest.raises(ValueError, match="kl_scale"):
        MultiExitDistiller(bb, kl_scale="T^2")
    with pytest.raises(ValueError, match="attention"):
        MultiExitDistiller(bb, attention="yes")
    with pytest.raises(ValueError, match="teacher"):
        MultiExitDistiller(bb, teacher="resnet50")
    with pytest.raises(ValueError, match="backbone"):
        MultiExitDistiller("resnet20")
    inp = keras.Input((8, 8, 1))
    s = keras.layers.Conv2D(3, 3)(inp)
    h = keras.layers.GlobalAveragePooling2D()(s)
    one_stage = keras.Model(inp, {"stages": [s], "features": h, "logits": keras.layers.Dense(5)(h)})
    with pytest.raises(ValueError, match="`backbone` must expose at least 2 stages"):
        MultiExitDistiller(one_stage)
    with pytest.raises(ValueError, match="stage index 2"):
        MultiExitDistiller(bb, exits=[0, 2])  # the last stage's exit is the backbone head
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        MultiExitDistiller(bb, exits=["nope"])
    with pytest.raises(ValueError, match="ordered shallow to deep"):
        MultiExitDistiller(bb, exits=[1, 0])
    with pytest.raises(ValueError, match="ordered shallow to deep"):
        MultiExitDistiller(bb, exits=["relu2"])
    with pytest.raises(ValueError, match="exits"):
        MultiExitDistiller(bb, exits=[])
    with pytest.raises(ValueError, match="exits"):
        MultiExitDistiller(bb, exits="blocks")
    with pytest.raises(ValueError, match="4-D"):
        MultiExitDistiller(bb, exits=["pool"])
    with pytest.raises(ValueError, match="batch_size"):
        MultiExitDistiller(bb).predict_exits(X, batch_size=0)
    for head in ("tpami", "Bottleneck", None):
        with pytest.raises(ValueError) as err:
            MultiExitDistiller(bb, exit_head=head)
        assert "`exit_head` must be one of ('attention', 'bottleneck')" in str(err.value)
        assert f"got {head!r}" in str(err.value)
    for weight in (-0.5, "x", None):
        with pytest.raises(ValueError, match="final_ce_weight"):
            MultiExitDistiller(bb, final_ce_weight=weight)


class CountingDistiller(MultiExitDistiller):
    traces = 0

    def compute_loss_terms(self, images, targets, training, index=None):
        if training:
            CountingDistiller.traces += 1  # Python side effect: runs once per trace
        return super().compute_loss_terms(images, targets, training, index)


def test_annealing_callback_zeroes_weights_for_last_epochs_without_retracing():
    model = CountingDistiller(three_stage_backbone(), alpha=0.6, feature_weight=0.04)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    CountingDistiller.traces = 0
    history = model.fit(
        X, Y, batch_size=8, epochs=4, verbose=0, callbacks=[DistillationAnnealing(last_epochs=2)]
    ).history
    np.testing.assert_allclose(history["kl_loss_weight"], [0.6, 0.6, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(history["feature_loss_weight"], [0.04, 0.04, 0.0, 0.0], rtol=1e-6)
    assert CountingDistiller.traces == 1
    # The compiled step used the new values: with both weights 0 the loss is the CE part alone.
    loss, ce = np.array(history["loss"]), np.array(history["ce_loss"])
    np.testing.assert_allclose(loss[2:], ce[2:], rtol=1e-6)
    assert np.all(loss[:2] > ce[:2] + 1e-4)
    # Resuming (here: extending) from a state with alpha = 0 restores the configured values
    # before the last epochs; the epoch index is absolute.
    assert float(model.term_weights["kl_loss"].numpy()) == 0.0
    more = model.fit(
        X,
        Y,
        batch_size=8,
        epochs=6,
        initial_epoch=3,
        verbose=0,
        callbacks=[DistillationAnnealing(last_epochs=1)],
    ).history
    np.testing.assert_allclose(more["kl_loss_weight"], [0.6, 0.6, 0.0], rtol=1e-6)


def test_annealing_callback_bad_arguments():
    with pytest.raises(ValueError, match="last_epochs"):
        DistillationAnnealing(last_epochs=-1)
    with pytest.raises(ValueError, match="terms"):
        DistillationAnnealing(terms="kl_loss")
    model = keras_baseline()
    with pytest.raises(ValueError, match="default distillation terms"):
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[DistillationAnnealing()])
    with pytest.raises(ValueError, match="no loss term 'kl_loss'.*'ce_loss'"):
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[DistillationAnnealing(terms=["kl_loss"])])


def keras_baseline():
    import keras_sd

    model = keras_sd.Baseline(tiny_backbone())
    model.compile(optimizer="sgd")
    return model


def test_harness_multi_exit():
    check_model(
        lambda: MultiExitDistiller(
            three_stage_backbone(batch_norm=True), path="ensemble", weight_decay=5e-4
        ),
        X,
        Y,
        expected_logs={
            "loss",
            "ce_loss",
            "kl_loss",
            "feature_loss",
            "weight_decay_loss",
            "exit1_accuracy",
            "exit1_top5",
            "exit2_accuracy",
            "exit3_accuracy",
            "exit3_top5",
            "ensemble_accuracy",
            "ensemble_top5",
            "val_exit1_accuracy",
            "val_ensemble_accuracy",
            "val_kl_loss",
        },
    )


def test_harness_with_teacher_and_no_attention():
    teacher = three_stage_backbone(seed=4)
    check_model(
        lambda: MultiExitDistiller(tiny_backbone(), teacher=teacher, attention=False),
        X,
        Y,
        expected_logs={"teacher_kl_loss", "exit1_accuracy", "exit2_accuracy"},
    )


def test_resnet20_backbone_one_step():
    bb = backbones.get("resnet20", num_classes=10, input_shape=(16, 16, 3))
    model = MultiExitDistiller(bb)
    assert model.num_exits == 3
    model.compile(optimizer="sgd")
    x = RNG.normal(size=(4, 16, 16, 3)).astype("float32")
    logs = model.train_on_batch(x, np.arange(4), return_dict=True)
    assert np.isfinite(logs["loss"]) and "exit3_accuracy" in logs


@pytest.mark.parametrize(
    "app,stage_layers",
    [
        (
            lambda: keras.applications.MobileNetV2(
                weights=None, input_shape=(32, 32, 3), classes=10
            ),
            ["block_2_add", "block_5_add", "block_12_add", "out_relu"],
        ),
        (
            lambda: keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10),
            ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"],
        ),
    ],
    ids=["MobileNetV2", "ResNet50"],
)
@pytest.mark.slow
def test_keras_applications_through_from_keras_one_step(app, stage_layers):
    bb = backbones.from_keras(app(), stage_layers)
    model = MultiExitDistiller(bb)
    assert model.num_exits == 4
    width = int(bb.output["features"].shape[-1])
    model.compile(optimizer="sgd", run_eagerly=True)  # tracing these graphs costs ~30 s each
    x = RNG.normal(size=(2, 32, 32, 3)).astype("float32")
    logs = model.train_on_batch(x, np.array([1, 7]), return_dict=True)
    assert np.isfinite(logs["loss"])
    _, feats = model.exit_logits_and_features(x)
    assert [tuple(f.shape) for f in feats] == [(2, width)] * 4


def test_pskd_and_dmfl_options_are_off_by_default_and_in_the_config():
    """PS-KD, the mutual feature loss and exit_losses=False (Chottananurak et al.; tested in
    tests/test_pskd_byot.py) add nothing when off: same terms, no bank, no extra variable."""
    model = MultiExitDistiller(three_stage_backbone())
    assert model.term_names == ("ce_loss", "kl_loss", "feature_loss")
    assert model.soft_targets is None and model.mutual_feature_weight == 0.0
    names = {v.path.split("/")[-1] for v in model.non_trainable_variables}
    assert not names & {"predictions", "alpha_t", "mutual_feature_loss_weight"}
    config = model.get_config()
    assert {k: config[k] for k in ("soft_targets", "mutual_feature_weight", "exit_losses")} == {
        "soft_targets": None,
        "mutual_feature_weight": 0.0,
        "exit_losses": True,
    }
    on = MultiExitDistiller(
        three_stage_backbone(), pskd_alpha=0.8, num_train_examples=16, mutual_feature_weight=0.5
    )
    names = {v.path.split("/")[-1] for v in on.non_trainable_variables}
    assert {"predictions", "alpha_t", "mutual_feature_loss_weight"} <= names
    assert on.term_names == ("ce_loss", "kl_loss", "feature_loss", "mutual_feature_loss")


def test_defaults_sum_over_exits_without_t2_as_the_authors_code():
    # The authors' released BYOT code sums the exits' losses (no 1/K) with weight decay on the
    # undivided loss, and its soft cross-entropy at T = 3 has no T^2 factor.
    model = MultiExitDistiller(three_stage_backbone())
    assert (model.reduction, model.kl_scale, model.temperature) == ("sum", "none", 3.0)
    logits, feats = exits_numpy(model, X)
    ref = np_terms(logits, feats, Y, "deepest", "sum", 0.6, "none")
    mean_ref = np_terms(logits, feats, Y, "deepest", "mean", 0.6, "none")
    got = mean_terms(model, X, Y)
    for name, value in ref.items():
        np.testing.assert_allclose(got[name], value, rtol=2e-5, atol=1e-6, err_msg=name)
        # "mean" is the same objective divided by K = 3.
        np.testing.assert_allclose(mean_ref[name] * 3, value, rtol=1e-12)


def test_bottleneck_exits_train_save_load_and_keep_their_config(tmp_path):
    from keras_sd.layers.exits import BottleneckExitHead

    def build():
        return MultiExitDistiller(
            three_stage_backbone(batch_norm=True), exit_head="bottleneck", final_ce_weight=1.9
        )

    model = check_model(
        build,
        X,
        Y,
        expected_logs={"ce_loss", "kl_loss", "feature_loss", "exit1_accuracy", "exit2_accuracy"},
    )
    # Taps 8x8 and 4x4, last stage 2x2: patch convolutions of 4 and 2; features of width 8.
    assert [type(h) for h in model.exit_heads] == [BottleneckExitHead] * 2
    assert [h.downsample for h in model.exit_heads] == [4, 2]
    _, feats = model.exit_logits_and_features(X)
    assert [tuple(f.shape) for f in feats] == [(16, 8)] * 3
    config = model.get_config()
    assert (config["exit_head"], config["final_ce_weight"]) == ("bottleneck", 1.9)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert [type(h) for h in loaded.exit_heads] == [BottleneckExitHead] * 2
    assert (loaded.exit_head, loaded.final_ce_weight) == ("bottleneck", 1.9)
    a, b = model.call_exits(X), loaded.call_exits(X)
    for name in ("exit1", "exit2", "exit3", "ensemble"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-6)
    # The default stays the TPAMI head, and the config says so.
    default = MultiExitDistiller(three_stage_backbone())
    assert default.get_config()["exit_head"] == "attention"
    assert default.get_config()["final_ce_weight"] == 1.0
    assert all(h.attention_module is not None for h in default.exit_heads)
