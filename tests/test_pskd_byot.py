"""PS-KD + BYOT + deep mutual feature learning (Chottananurak et al., "Progressive
Self-Knowledge Distillation with Mutual Learning") on MultiExitDistiller: the mutual feature loss
against NumPy with its gradient routing, the paper's total loss (L_CE + L_Self-KD + L_DMFL) against
NumPy, PS-KD targets on every exit, the bank written from the final exit, 2-replica training,
serialisation, bad input, the paper's parameter counts, and the Table 1 recipes."""

import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import check_model
from strategies import mirrored
from tiny import staged_backbone

from keras_sd import backbones, recipes
from keras_sd.models.base import Baseline
from keras_sd.models.multi_exit import MultiExitDistiller, mutual_feature_loss

C = 5
N = 16
RNG = np.random.default_rng(3)
X = RNG.normal(size=(N, 8, 8, 1)).astype("float32")
Y = RNG.integers(0, C, size=N)
REPO = pathlib.Path(__file__).resolve().parents[1]


def backbone(num_stages=3, seed=0):
    """Contract backbone without batch norm (so the final exit's train-mode logits do not depend
    on the batch), ``num_stages`` conv stages, spatial 8 -> 8 -> 4 -> 2 -> 1."""
    stages = [(4 + 2 * i, 1 if i == 0 else 2) for i in range(num_stages)]
    return staged_backbone((8, 8, 1), stages, C, seed=seed, name="bb")


# ---------------------------------------------------------------- NumPy reference
def log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def softmax(z):
    return np.exp(log_softmax(z))


def kl(log_p, log_q):
    """Per-sample KL(p || q) from log-probabilities."""
    return (np.exp(log_p) * (log_p - log_q)).sum(-1)


def np_dmfl(feats):
    """Eq. 3: 1/(N-1) sum_{i<N} [KL(F_i || F_N) + KL(F_N || F_i)], softmax-normalised."""
    last = log_softmax(feats[-1])
    pairs = [kl(log_softmax(f), last) + kl(last, log_softmax(f)) for f in feats[:-1]]
    return sum(pairs) / (len(feats) - 1)


def np_ce(targets, logits):
    return -(targets * log_softmax(logits)).sum(-1)


def np_byot(logits, feats, targets, alpha, reduction="sum"):
    """Deepest-path BYOT terms (T = 1, kl_scale irrelevant at T = 1) with any targets."""
    k = len(logits)
    n = k if reduction == "mean" else 1
    ce = np_ce(targets, logits[-1]) + sum((1 - alpha) * np_ce(targets, z) for z in logits[:-1])
    kls = sum(kl(log_softmax(logits[-1]), log_softmax(z)) for z in logits[:-1])
    l2 = sum(((f - feats[-1]) ** 2).sum(-1) for f in feats[:-1])
    return {"ce_loss": ce / n, "kl_loss": kls / n, "feature_loss": l2 / n}


def exits_numpy(model, x, training=False):
    logits, feats = model.exit_logits_and_features(x, training=training)
    return [np.asarray(z, np.float64) for z in logits], [np.asarray(f, np.float64) for f in feats]


def paper_model(**kwargs):
    args = dict(alpha=0.1, feature_weight=1e-2, temperature=1.0, reduction="sum")
    args.update(kwargs)
    return MultiExitDistiller(backbone(), **args)


# ---------------------------------------------------------------- the mutual feature loss
@pytest.mark.parametrize("num_exits", [2, 4])
def test_mutual_feature_loss_equals_numpy_and_gradients_go_to_learners_only(num_exits):
    feats = [RNG.normal(size=(6, 7)) * 2 for _ in range(num_exits)]
    variables = [tf.Variable(f, dtype=tf.float32) for f in feats]
    with tf.GradientTape() as tape:
        value = mutual_feature_loss(variables)
        total = tf.reduce_sum(value)
    np.testing.assert_allclose(value, np_dmfl(feats), rtol=1e-5, atol=1e-6)
    grads = [np.asarray(g) for g in tape.gradient(total, variables)]
    # d/dz KL(sg(p) || softmax(z)) = softmax(z) - p. Exit i learns only from KL(sg(F_N) || F_i),
    # the deepest feature only from the terms KL(sg(F_i) || F_N).
    q = [softmax(f) for f in feats]
    m = num_exits - 1
    for i in range(m):
        np.testing.assert_allclose(grads[i], (q[i] - q[-1]) / m, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        grads[-1], sum(q[-1] - q[i] for i in range(m)) / m, rtol=1e-4, atol=1e-6
    )
    # Without the stop-gradients exit i would also get d/dF_i KL(p_i || p_N), which is not 0 here:
    # the assertions above tell the two apart.
    log_p, log_q = log_softmax(feats[0]), log_softmax(feats[-1])
    extra = q[0] * ((log_p - log_q) - kl(log_p, log_q)[:, None])
    assert np.abs(extra / m).max() > 1e-2


def test_mutual_feature_loss_needs_two_exits():
    with pytest.raises(ValueError, match="features"):
        mutual_feature_loss([tf.zeros((2, 3))])


def test_model_terms_and_total_equal_numpy_with_dmfl():
    lam, mu = 0.05, 0.7
    model = paper_model(feature_weight=lam, mutual_feature_weight=mu)
    assert float(model.term_weights["mutual_feature_loss"].numpy()) == pytest.approx(mu)
    model.compile(optimizer="sgd")
    logs = model.evaluate(X, Y, batch_size=N, return_dict=True, verbose=0)
    logits, feats = exits_numpy(model, X)
    ref = np_byot(logits, feats, np.eye(C)[Y], 0.1)
    ref["mutual_feature_loss"] = np_dmfl(feats)
    ref = {k: v.mean() for k, v in ref.items()}
    for name, value in ref.items():
        np.testing.assert_allclose(logs[name], value, rtol=2e-5, atol=1e-6, err_msg=name)
    total = ref["ce_loss"] + 0.1 * ref["kl_loss"] + lam * ref["feature_loss"]
    total += mu * ref["mutual_feature_loss"]
    np.testing.assert_allclose(logs["loss"], total, rtol=2e-5)
    # The weight is a variable: a new value reaches the compiled step.
    model.term_weights["mutual_feature_loss"].assign(0.0)
    logs = model.evaluate(X, Y, batch_size=N, return_dict=True, verbose=0)
    np.testing.assert_allclose(logs["loss"], total - mu * ref["mutual_feature_loss"], rtol=2e-5)


def test_dmfl_trains_the_deepest_feature_but_byot_terms_do_not():
    model = paper_model(mutual_feature_weight=1.0)
    final = [v for v in model.trainable_variables if v.path.split("/")[0] == "conv2"]
    assert len(final) == 2
    with tf.GradientTape(persistent=True) as tape:
        _, terms = model.compute_loss_terms(X, tf.one_hot(Y, C), training=True)
        distill = tf.reduce_mean(terms["kl_loss"]) + tf.reduce_mean(terms["feature_loss"])
        mutual = tf.reduce_mean(terms["mutual_feature_loss"])
    for g in tape.gradient(distill, final):
        assert g is None or not np.any(np.asarray(g))
    assert all(np.any(np.asarray(g)) for g in tape.gradient(mutual, final))


def test_exit_losses_false_keeps_only_the_final_cross_entropy():
    model = MultiExitDistiller(
        backbone(), reduction="mean", exit_losses=False, mutual_feature_weight=1.0
    )
    _, terms = model.compute_loss_terms(X, tf.one_hot(Y, C), training=False)
    assert sorted(terms) == ["ce_loss", "mutual_feature_loss"]
    logits, feats = exits_numpy(model, X)
    # The final exit's CE alone, not divided by K although reduction="mean".
    np.testing.assert_allclose(terms["ce_loss"], np_ce(np.eye(C)[Y], logits[-1]), rtol=1e-5)
    np.testing.assert_allclose(terms["mutual_feature_loss"], np_dmfl(feats), rtol=1e-5, atol=1e-6)
    heads = [v for h in model.exit_heads for v in h.trainable_variables if "classifier" in v.path]
    assert heads
    with tf.GradientTape() as tape:
        _, terms = model.compute_loss_terms(X, tf.one_hot(Y, C), training=True)
        loss = sum(tf.reduce_mean(v) for v in terms.values())
    assert all(g is None for g in tape.gradient(loss, heads))  # no loss on the exit classifiers
    plain = MultiExitDistiller(backbone(), exit_losses=False)
    _, terms = plain.compute_loss_terms(X, tf.one_hot(Y, C), training=False)
    assert sorted(terms) == ["ce_loss"]
    assert "mutual_feature_loss" not in plain.term_weights


# ---------------------------------------------------------------- PS-KD on every exit
def full_batch_shuffled(x, y):
    ds = tf.data.Dataset.from_tensor_slices(({"image": x, "index": np.arange(len(y))}, y))
    return ds.shuffle(len(y), seed=5, reshuffle_each_iteration=True).batch(len(y))


def test_pskd_targets_on_every_exit_after_a_shuffled_epoch_and_bank_from_final_exit():
    """lr = 0 keeps the model constant and one full (shuffled) batch per epoch keeps the exits'
    batch-norm statistics the same, so train-mode outputs are fixed: epoch 1 trains every exit on
    one-hot targets, epoch 2 on (1 - a) y + a P(x_i) with P the final exit's softmax of sample i."""
    a, alpha = 0.8, 0.3
    model = paper_model(alpha=alpha, pskd_alpha=a, num_train_examples=N, mutual_feature_weight=1.0)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    history = model.fit(full_batch_shuffled(X, Y), epochs=2, verbose=0).history
    assert history["pskd_alpha_t"] == pytest.approx([a / 2, a])
    logits, feats = exits_numpy(model, X, training=True)
    onehot = np.eye(C)[Y]
    p_final = softmax(logits[-1])
    np.testing.assert_allclose(model.soft_targets.bank.predictions, p_final, atol=1e-5)
    for shallow in logits[:-1]:  # written from the final exit, not a shallow one
        assert np.abs(softmax(shallow) - p_final).max() > 1e-2
    first = np_byot(logits, feats, onehot, alpha)["ce_loss"].mean()
    assert history["ce_loss"][0] == pytest.approx(first, rel=1e-4)
    soft = (1 - a) * onehot + a * p_final
    second = np_byot(logits, feats, soft, alpha)["ce_loss"].mean()
    assert history["ce_loss"][1] == pytest.approx(second, rel=1e-4)
    # Soft targets only on the final exit, or keyed by position, would give other values.
    final_only = np_ce(soft, logits[-1]) + sum((1 - alpha) * np_ce(onehot, z) for z in logits[:-1])
    assert abs(final_only.mean() - second) > 1e-3
    by_position = (1 - a) * onehot + a * p_final[::-1]
    assert abs(np_byot(logits, feats, by_position, alpha)["ce_loss"].mean() - second) > 1e-3
    # The other terms do not use the targets.
    kl_ref = np_byot(logits, feats, onehot, alpha)["kl_loss"].mean()
    assert history["kl_loss"][1] == pytest.approx(kl_ref, rel=1e-4)
    assert history["mutual_feature_loss"][1] == pytest.approx(np_dmfl(feats).mean(), rel=1e-4)


def test_evaluation_uses_one_hot_targets_with_pskd():
    model = paper_model(pskd_alpha=0.8, num_train_examples=N)
    model.compile(optimizer="sgd")
    model.soft_targets.alpha_t.assign(0.8)
    model.soft_targets.bank.write(np.arange(N), np.full((N, C), 1.0 / C))
    logs = model.evaluate({"image": X}, Y, batch_size=N, return_dict=True, verbose=0)
    logits, feats = exits_numpy(model, X)
    ref = np_byot(logits, feats, np.eye(C)[Y], 0.1)["ce_loss"].mean()
    assert logs["ce_loss"] == pytest.approx(ref, rel=1e-5)


def test_two_replica_training_fills_the_bank_from_both_replicas():
    strategy = mirrored()
    with strategy.scope():
        model = paper_model(pskd_alpha=0.8, num_train_examples=N, mutual_feature_weight=1.0)
        model.compile(optimizer=keras.optimizers.SGD(0.0))
    ds = tf.data.Dataset.from_tensor_slices(({"image": X, "index": np.arange(N)}, Y))
    logs = model.fit(ds.shuffle(N, seed=1).batch(8), epochs=1, verbose=0).history
    assert all(np.isfinite(v[-1]) for v in logs.values()), logs
    assert logs["mutual_feature_loss"][-1] > 0
    # The final exit is the backbone's head (no batch norm): its train-mode output is per sample.
    p = softmax(model.backbone(X, training=True)["logits"])
    copies = model.soft_targets.bank.predictions.value.values
    assert len(copies) == 2
    for copy in copies:
        np.testing.assert_allclose(copy.numpy(), p, atol=1e-5)


# ---------------------------------------------------------------- serialisation
def test_harness_pskd_byot_dmfl_and_save_keeps_bank_and_weights(tmp_path):
    model = check_model(
        lambda: paper_model(pskd_alpha=0.8, num_train_examples=N, mutual_feature_weight=1.0),
        {"image": X, "index": np.arange(N)},
        Y,
        expected_logs={
            "loss",
            "ce_loss",
            "kl_loss",
            "feature_loss",
            "mutual_feature_loss",
            "pskd_alpha_t",
            "exit1_accuracy",
            "exit3_accuracy",
            "ensemble_accuracy",
            "val_mutual_feature_loss",
        },
    )
    config = model.get_config()
    assert {k: config[k] for k in ("mutual_feature_weight", "exit_losses")} == {
        "mutual_feature_weight": 1.0,
        "exit_losses": True,
    }
    layer = config["soft_targets"]["config"]
    assert (layer["alpha"], layer["num_examples"], layer["bank_dtype"]) == (0.8, N, "float32")
    model.term_weights["mutual_feature_loss"].assign(0.25)  # e.g. set by a schedule
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert float(loaded.term_weights["mutual_feature_loss"].numpy()) == pytest.approx(0.25)
    assert loaded.get_config()["mutual_feature_weight"] == 1.0
    written = np.asarray(model.soft_targets.bank.predictions)
    assert (written.sum(axis=1) > 0).all()
    np.testing.assert_array_equal(loaded.soft_targets.bank.predictions, written)


def test_harness_dmfl_without_exit_losses_float16_bank():
    check_model(
        lambda: MultiExitDistiller(
            backbone(),
            exit_losses=False,
            mutual_feature_weight=1.0,
            pskd_alpha=0.5,
            num_train_examples=N,
            bank_dtype="float16",
            weight_decay=5e-4,
        ),
        {"image": X, "index": np.arange(N)},
        Y,
        expected_logs={"ce_loss", "mutual_feature_loss", "weight_decay_loss", "pskd_alpha_t"},
    )


# ---------------------------------------------------------------- bad input
def test_bad_arguments_raise_value_errors_naming_them():
    bb = backbone()
    for weight in (-0.5, "x"):
        with pytest.raises(ValueError, match="mutual_feature_weight"):
            MultiExitDistiller(bb, mutual_feature_weight=weight)
    with pytest.raises(ValueError, match="exit_losses"):
        MultiExitDistiller(bb, exit_losses="no")
    for alpha in (1.5, -0.1):
        with pytest.raises(ValueError, match="pskd_alpha"):
            MultiExitDistiller(bb, pskd_alpha=alpha, num_train_examples=N)
    with pytest.raises(ValueError, match="num_train_examples"):
        MultiExitDistiller(bb, pskd_alpha=0.8)
    with pytest.raises(ValueError, match="bank_dtype"):
        MultiExitDistiller(bb, pskd_alpha=0.8, num_train_examples=N, bank_dtype="int8")


def test_pskd_without_index_or_with_a_small_bank():
    model = paper_model(pskd_alpha=0.8, num_train_examples=N)
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="with_index=True"):
        model.fit(X, Y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="with_index=True"):
        model.fit(tf.data.Dataset.from_tensor_slices(({"image": X}, Y)).batch(8), verbose=0)
    with pytest.raises(ValueError, match="with_index=True"):  # inside the step (generators)
        model.train_step((tf.constant(X), tf.constant(Y)))
    small = paper_model(pskd_alpha=0.8, num_train_examples=N - 4)
    small.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="num_train_examples"):
        small.fit({"image": X, "index": np.arange(N)}, Y, epochs=1, verbose=0)


# ---------------------------------------------------------------- the paper's total loss
def np_paper_total(logits, feats, y_soft, alpha, lam, tau):
    """Chottananurak et al.'s objective, per sample, as its equations read:

        L = L_CE + L_Self-KD + L_DMFL,   L_CE = CE(P_N, y_soft),
        L_Self-KD = sum_{i=1}^{N} [ (1 - alpha) CE(P_i, y_soft) + alpha D_KL(P_i, P_N)
                                    + lambda ||F_i - F_N||_2^2 ]          (eq. 2)
        L_DMFL = 1/(N-1) sum_{i<N} [ KL(F_i || F_N) + KL(F_N || F_i) ]    (eq. 3)

    The sum of eq. 2 runs over all N classifiers, i = N included (written out below; its KL and
    hint terms are 0). The KL distils the deepest classifier into classifier i, softened by tau
    and scaled by tau^2: the paper defines tau (eq. 1) without a value; tau = 3 and the tau^2 are
    those of the unofficial BYOT code whose alpha and lambda it uses.
    """
    n = len(logits)
    total = np_ce(y_soft, logits[-1])  # L_CE
    teacher = log_softmax(logits[-1] / tau)
    for i in range(n):  # i = 1..N
        total = total + (1 - alpha) * np_ce(y_soft, logits[i])
        total = total + alpha * tau**2 * kl(teacher, log_softmax(logits[i] / tau))
        total = total + lam * ((feats[i] - feats[-1]) ** 2).sum(-1)
    return total + np_dmfl(feats)


def model_total(model, logits, feats, y_soft):
    """Batch mean of sum_name weight(name) * term(name) from compute_loss_terms, with the exits'
    logits and features fixed to the given arrays."""
    fixed = (
        [tf.constant(z, tf.float32) for z in logits],
        [tf.constant(f, tf.float32) for f in feats],
    )
    model.exit_logits_and_features = lambda images, training=False: fixed
    _, terms = model.compute_loss_terms(
        np.zeros((len(y_soft), 8, 8, 1), "float32"), tf.constant(y_soft, tf.float32), False
    )
    return sum(
        float(np.asarray(model.term_weight(name))) * np.asarray(v, np.float64).mean()
        for name, v in terms.items()
    )


@pytest.mark.parametrize("alpha,lam", [(None, None), (0.3, 0.05)], ids=["recipe", "strong"])
def test_total_loss_equals_the_papers_equations(alpha, lam):
    """Fixed logits, features and soft targets of N = 4 classifiers: the recipe's
    ``pskd_byot_dmfl`` arguments (and the same with a larger alpha and lambda, so that every term
    matters, final_ce_weight = 1 + (1 - alpha)) give the paper's total to 1e-5."""
    rng = np.random.default_rng(11)
    b, d = 6, 7
    logits = [rng.normal(size=(b, C)) * 2 for _ in range(4)]
    feats = [np.abs(rng.normal(size=(b, d))) * 3 for _ in range(4)]
    y_soft = rng.dirichlet(np.ones(C), size=b)
    r = recipes.load(f"{REPO / 'recipes' / 'pskd' / 'resnet18_cifar100.py'}:pskd_byot_dmfl")
    args = {**r.method_args, "num_train_examples": N}  # the runner sizes the bank from the data
    if alpha is not None:
        args.update(alpha=alpha, feature_weight=lam, final_ce_weight=1 + (1 - alpha))
    model = MultiExitDistiller(backbone(num_stages=4), **args)
    a, l_, tau = args["alpha"], args["feature_weight"], args["temperature"]
    assert (a, l_, tau) == ((0.1, 1e-6, 3.0) if alpha is None else (alpha, lam, 3.0))
    ref = np_paper_total(logits, feats, y_soft, a, l_, tau).mean()
    np.testing.assert_allclose(model_total(model, logits, feats, y_soft), ref, rtol=1e-5)
    # TPAMI's weighting (final_ce_weight = 1) falls short by exactly (1 - alpha) CE(P_N, y_soft).
    args["final_ce_weight"] = 1.0
    tpami = model_total(MultiExitDistiller(backbone(num_stages=4), **args), logits, feats, y_soft)
    final_ce = np_ce(y_soft, logits[-1]).mean()
    np.testing.assert_allclose(ref - tpami, (1 - a) * final_ce, rtol=1e-5)
    assert (1 - a) * final_ce > 0.1


# ---------------------------------------------------------------- the paper's parameter counts
def _params(weights) -> int:
    return sum(int(np.prod(v.shape)) for v in weights)


@pytest.mark.parametrize(
    "name,head,other,paper",
    [
        ("resnet18", "bottleneck", "attention", 13.0e6),
        ("resnet50", "bottleneck", "attention", 50.4e6),
        ("resnext50", "attention", "bottleneck", 37.9e6),
    ],
)
def test_paper_parameter_counts_identify_the_exit_heads(name, head, other, paper):
    """Table 1's caption: ResNet-18 13.0M, ResNet-50 50.4M, ResNeXt-50 37.9M (CIFAR-100). The
    CIFAR ResNets reach them with the bottleneck exits, the ResNeXt-50 with the attention exits;
    the bare backbones and the other head are far off. Counted both as trainable parameters (the
    PyTorch count) and as all Keras weights (plus batch-norm statistics)."""
    bare = backbones.get(name, num_classes=100, variant="cifar")
    bare_trainable = _params(bare.trainable_weights)
    model = MultiExitDistiller(bare, exit_head=head)
    trainable = _params(model.trainable_weights)
    heads = sum(_params(h.trainable_weights) for h in model.exit_heads)
    assert trainable == bare_trainable + heads  # the difference is the three exit heads
    assert abs(trainable / paper - 1) < 0.02, trainable
    assert abs(model.count_params() / paper - 1) < 0.02, model.count_params()
    assert bare_trainable / paper < 0.9, bare_trainable
    alt = MultiExitDistiller(backbones.get(name, num_classes=100, variant="cifar"), exit_head=other)
    assert abs(_params(alt.trainable_weights) / paper - 1) > 0.05


# ---------------------------------------------------------------- recipes (Table 1)
TABLE1 = ["resnet18_cifar100.py", "resnet50_cifar100.py", "resnext50_cifar100.py"]
# By the parameter counts (test_paper_parameter_counts_identify_the_exit_heads).
EXIT_HEADS = {
    "resnet18_cifar100.py": "bottleneck",
    "resnet50_cifar100.py": "bottleneck",
    "resnext50_cifar100.py": "attention",
}
ROWS = ["baseline", "byot", "dmfl", "pskd", "pskd_byot", "pskd_dmfl", "dmfl_byot", "pskd_byot_dmfl"]


@pytest.mark.parametrize("file", TABLE1)
def test_table1_recipes_express_all_eight_combinations(file):
    """Each row's method arguments, built on a tiny 4-stage backbone, switch on exactly the
    techniques in the row's name."""
    for row in ROWS:
        r = recipes.load(f"{REPO / 'recipes' / 'pskd' / file}:{row}")
        # The bank size comes from the data (train.build_model); recipes do not hard-code it.
        assert "num_train_examples" not in r.method_args, row
        args = dict(r.method_args)
        if "pskd_alpha" in args:
            args["num_train_examples"] = N
        model = recipes.method_class(r.method)(backbone(num_stages=4), **args)
        names = set(model.term_names)
        assert (model.soft_targets is not None) == ("pskd" in row), row
        assert r.data.with_index == ("pskd" in row), row
        byot = "kl_loss" in names and model.alpha > 0
        assert byot == ("byot" in row), row
        assert ("mutual_feature_loss" in names) == ("dmfl" in row), row
        if "byot" in row or "dmfl" in row:
            assert isinstance(model, MultiExitDistiller) and model.num_exits == 4, row
            assert names - {"ce_loss"} <= {"kl_loss", "feature_loss", "mutual_feature_loss"}
        else:
            assert type(model) is Baseline, row
        if "byot" in row or "dmfl" in row:
            assert model.exit_head == EXIT_HEADS[file], row
        if "byot" in row:
            assert (model.alpha, model.feature_weight) == (0.1, 1e-6), row
            assert (model.reduction, model.temperature, model.kl_scale) == ("sum", 3.0, "t2"), row
            assert model.final_ce_weight == pytest.approx(1 + (1 - 0.1)), row
        elif "dmfl" in row:  # L = L_CE + L_DMFL: no L_Self-KD, the final CE weighs 1
            assert model.final_ce_weight == 1.0, row


def test_ablation_recipes_place_the_exits():
    path = REPO / "recipes" / "pskd" / "resnet18_cifar100_ablation.py"
    for arg, exits in [("blocks_123", 3), ("blocks_23", 2), ("blocks_3", 1)]:
        r = recipes.load(f"{path}:{arg}")
        model = MultiExitDistiller(
            backbone(num_stages=4), **{**r.method_args, "num_train_examples": N}
        )
        assert model.num_exits == exits + 1, arg
        assert model.soft_targets is not None and "mutual_feature_loss" in model.term_names, arg
        assert model.exit_head == "bottleneck", arg
        assert (model.reduction, model.temperature, model.kl_scale) == ("sum", 3.0, "t2"), arg
        assert model.final_ce_weight == pytest.approx(1.9), arg
