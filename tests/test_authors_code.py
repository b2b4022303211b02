"""The exact "authors' code" mode of multi-exit self-distillation (BYOT, official PyTorch code).

The reference loss is written here in NumPy from the official ``train.py`` (see
docs/methods/multi_exit.md, "Exact authors' code mode"), in the code's own order: outputs deepest
first ``[out4, out3, out2, out1]``, features ``[f4, f3, f2, f1]``; for ``index`` 1..3 a soft
cross-entropy at ``T`` towards the detached ``out4`` (weight 0.3) plus CE (weight 0.7); and for
``index != 1`` (every shallow exit except ``out3``) ``0.03 * torch.dist(Linear_{index-1}(f_index),
f4.detach())``, the un-squared L2 norm over the whole batch. Our model's KL term is a true KL, not
that soft cross-entropy: the two differ by the teacher's entropy, a constant with no gradient, which
the comparison adds back exactly.
"""

import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import staged_backbone

from keras_sd import losses, recipes, train
from keras_sd.models.multi_exit import MultiExitDistiller

RECIPES = pathlib.Path(__file__).resolve().parents[1] / "recipes" / "multi_exit"
REPO_RECIPE = str(RECIPES / "resnet18_cifar100.py")
T = 3.0
ALPHA, LAMBDA = 0.3, 0.03
CLASSES = 5
RNG = np.random.default_rng(7)
X = RNG.normal(size=(12, 16, 16, 1)).astype("float32")
Y = RNG.integers(0, CLASSES, size=12)


def four_stage_backbone(seed=0):
    """Contract backbone with 4 stages (16, 8, 4, 2 pixels), so K = 4 exits as in ResNet-18."""
    stages = [(4, 1), (6, 2), (8, 2), (8, 2)]
    return staged_backbone((16, 16, 1), stages, CLASSES, seed=seed, name="four")


def authors_model(**overrides):
    args = dict(
        alpha=ALPHA,
        feature_weight=LAMBDA,
        temperature=T,
        path="deepest",
        reduction="sum",
        kl_scale="none",
        feature_hint="adapted_l2_batch",
        hint_exits="all_but_last",
    )
    args.update(overrides)
    return MultiExitDistiller(four_stage_backbone(), **args)


# ---------------------------------------------------------------- NumPy reference (independent)
def np_log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def np_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_soft_ce(out, target):
    """The official code's ``CrossEntropy``: -mean_b sum_k softmax(t/T)_k log_softmax(out/T)_k."""
    return -(np_softmax(target / T) * np_log_softmax(out / T)).sum(axis=1).mean()


def np_ce(out, labels):
    return -np_log_softmax(out)[np.arange(len(labels)), labels].mean()


def np_authors_loss(outputs, outputs_feature, labels, adaptation_layers):
    """The official training loss, in the code's order (deepest first)."""
    loss = np_ce(outputs[0], labels)
    teacher_output, teacher_feature = outputs[0], outputs_feature[0]
    for index in range(1, len(outputs)):
        loss += np_soft_ce(outputs[index], teacher_output) * ALPHA
        loss += np_ce(outputs[index], labels) * (1 - ALPHA)
        if index != 1:
            w, b = adaptation_layers[index - 1]
            diff = outputs_feature[index] @ w + b - teacher_feature
            loss += np.sqrt((diff**2).sum()) * LAMBDA
    return loss


def np_entropy(target):
    p = np_softmax(target / T)
    return -(p * np_log_softmax(target / T)).sum(axis=1).mean()


def random_adapters(dim):
    return [
        (RNG.normal(scale=0.3, size=(dim, dim)), RNG.normal(scale=0.1, size=dim)) for _ in range(3)
    ]


def set_authors_adapters(model, adaptation_layers):
    """Our adapters belong to exits 1 and 2 (1-based). Exit j is the code's ``outputs[K - j]``,
    whose adaptation layer is ``adaptation_layers[K - j - 1]``."""
    k = model.num_exits
    assert model.hinted_exits == (0, 1) and len(model.feature_adapters) == 2
    for adapter, i in zip(model.feature_adapters, model.hinted_exits):
        w, b = adaptation_layers[k - (i + 1) - 1]
        adapter.kernel.assign(w.astype("float32"))
        adapter.bias.assign(b.astype("float32"))


def model_exits(model, x):
    logits, feats = model.exit_logits_and_features(x, training=False)
    return [np.asarray(z, "float64") for z in logits], [np.asarray(f, "float64") for f in feats]


def our_total(model, x, y):
    _, terms = model.compute_loss_terms(x, tf.one_hot(y, CLASSES), training=False)
    return model._weighted_total(model._reduce_terms(terms)), terms


# ---------------------------------------------------------------- tests
def test_batch_feature_distance_is_the_unsquared_norm_over_the_batch():
    a = RNG.normal(size=(6, 4)).astype("float32")
    b = RNG.normal(size=(6, 4)).astype("float32")
    got = float(losses.batch_feature_distance(b, a))
    np.testing.assert_allclose(got, np.sqrt(((a.astype("float64") - b) ** 2).sum()), rtol=1e-6)
    # Not a per-sample mean: doubling the batch with a copy multiplies it by sqrt(2).
    doubled = float(losses.batch_feature_distance(np.concatenate([b, b]), np.concatenate([a, a])))
    np.testing.assert_allclose(doubled, np.sqrt(2.0) * got, rtol=1e-6)
    # Gradient: only into the learner side, (a - b) / norm; and 0 (not NaN) at a zero distance.
    ta, tb = tf.constant(a), tf.constant(b)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([ta, tb])
        value = losses.batch_feature_distance(tb, ta)
        zero = losses.batch_feature_distance(ta, ta)
    np.testing.assert_allclose(tape.gradient(value, ta), (a - b) / got, rtol=1e-5, atol=1e-7)
    assert tape.gradient(value, tb) is None
    assert float(zero) == 0.0
    np.testing.assert_array_equal(tape.gradient(zero, ta), np.zeros_like(a))


def test_total_loss_equals_the_authors_numpy_loss():
    model = authors_model()
    adaptation = random_adapters(model.feature_dim)
    set_authors_adapters(model, adaptation)
    logits, feats = model_exits(model, X)
    outputs, outputs_feature = logits[::-1], feats[::-1]  # the code's order: deepest first
    ref = np_authors_loss(outputs, outputs_feature, Y, adaptation)
    ours, terms = our_total(model, X, Y)
    # Ours is KL(p4 || p_i) = softCE(out_i, out4) - H(p4): add the entropy of the detached final
    # exit back, once per shallow exit, times alpha. Exact, and constant in the trained weights.
    entropy = (model.num_exits - 1) * ALPHA * np_entropy(outputs[0])
    np.testing.assert_allclose(float(ours) + entropy, ref, rtol=1e-5)
    assert np.ndim(terms["feature_loss"]) == 0  # one batch statistic, not per sample
    # The hint covers exits 1 and 2 (the code's index 3 and 2), not exit 3 (index 1).
    hint = sum(
        np.sqrt(
            ((feats[i] @ adaptation[3 - i - 1][0] + adaptation[3 - i - 1][1] - feats[3]) ** 2).sum()
        )
        for i in (0, 1)
    )
    np.testing.assert_allclose(float(terms["feature_loss"]), hint, rtol=1e-5)


def test_gradients_equal_the_authors_soft_cross_entropy_form():
    """d loss / d (classifier and adapter weights) = the NumPy gradient of the authors' loss. The
    classifier of exit i maps F_i to c_i, so its kernel gradient is F_i^T dL/dc_i: this checks
    dL/dc_i of every exit (the entropy we leave out has no gradient)."""
    model = authors_model()
    adaptation = random_adapters(model.feature_dim)
    set_authors_adapters(model, adaptation)
    logits, feats = model_exits(model, X)
    n, onehot = len(Y), np.eye(CLASSES)[Y]
    p4 = np_softmax(logits[-1] / T)
    # dL/dc: shallow exits: alpha/T (softmax(c/T) - p4) / n + (1 - alpha)(softmax(c) - y) / n;
    # final exit: CE only (the teacher logits and feature are detached).
    d_logits = [
        ALPHA / T * (np_softmax(z / T) - p4) / n + (1 - ALPHA) * (np_softmax(z) - onehot) / n
        for z in logits[:-1]
    ] + [(np_softmax(logits[-1]) - onehot) / n]
    kernels = [h.classifier.kernel for h in model.exit_heads] + [
        model.backbone.get_layer("head").kernel
    ]
    adapters = [a.kernel for a in model.feature_adapters]
    with tf.GradientTape() as tape:
        total, _ = our_total(model, X, Y)
    grads = tape.gradient(total, kernels + adapters)
    for i, (g, d) in enumerate(zip(grads[: len(kernels)], d_logits)):
        np.testing.assert_allclose(g, feats[i].T @ d, rtol=1e-4, atol=1e-6, err_msg=f"exit{i + 1}")
    for g, i in zip(grads[len(kernels) :], model.hinted_exits):
        w, b = adaptation[3 - i - 1]
        diff = feats[i] @ w + b - feats[-1]
        want = LAMBDA * feats[i].T @ (diff / np.sqrt((diff**2).sum()))
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-6, err_msg=f"adapter of exit{i + 1}")


def test_defaults_are_unchanged_and_hint_exits_selects_exits():
    plain = MultiExitDistiller(four_stage_backbone())
    assert (plain.feature_hint, plain.hint_exits, plain.hinted_exits) == (
        "squared_l2",
        "all",
        (0, 1, 2),
    )
    assert plain.feature_adapters == []
    assert not any("adapt" in v.path for v in plain.weights)
    only = MultiExitDistiller(four_stage_backbone(), hint_exits=[2], reduction="sum")
    logits, feats = model_exits(only, X)
    _, terms = only.compute_loss_terms(X, tf.one_hot(Y, CLASSES), training=False)
    want = ((feats[1] - feats[-1]) ** 2).sum(axis=1)  # exit 2 only, per sample, squared
    np.testing.assert_allclose(np.asarray(terms["feature_loss"]), want, rtol=1e-5)


def test_bad_hint_arguments_raise():
    for kwargs, match in [
        ({"feature_hint": "l2"}, "feature_hint"),
        ({"hint_exits": "shallowest"}, "hint_exits"),
        ({"hint_exits": [4]}, "hint_exits"),  # the final exit is the reference
        ({"hint_exits": [0]}, "hint_exits"),  # 1-based
        ({"hint_exits": [1, 1]}, "twice"),
        ({"hint_exits": [True]}, "hint_exits"),
    ]:
        with pytest.raises(ValueError, match=match):
            MultiExitDistiller(four_stage_backbone(), **kwargs)


def test_adapters_train_save_load_and_stay_out_of_deployment(tmp_path):
    model = authors_model(weight_decay=5e-4)
    before = [np.array(a.kernel) for a in model.feature_adapters]
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.fit(X, Y, batch_size=6, epochs=1, verbose=0)
    assert all(
        not np.allclose(b, np.array(a.kernel)) for b, a in zip(before, model.feature_adapters)
    )
    # Deployment: the exported backbone and the early-exit stage models hold no adapter weight.
    adapter_params = sum(a.count_params() for a in model.feature_adapters)
    assert adapter_params == 2 * (8 * 8 + 8)
    heads = sum(h.count_params() for h in model.exit_heads)
    # One non-trainable weight variable per loss term (`model.term_weights`).
    assert sorted(model.term_weights) == ["ce_loss", "feature_loss", "kl_loss"]
    scalars = 3
    assert model.count_params() == model.backbone.count_params() + heads + adapter_params + scalars
    assert model.export_backbone().count_params() == model.backbone.count_params()
    adapter_ids = {id(v) for a in model.feature_adapters for v in a.weights}
    for stage in model.stage_models():
        assert not adapter_ids & {id(v) for v in stage.weights}
    # .keras round trip: config, adapter weights and the loss itself.
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.get_config()["feature_hint"] == "adapted_l2_batch"
    assert loaded.get_config()["hint_exits"] == "all_but_last"
    for a, b in zip(model.feature_adapters, loaded.feature_adapters):
        np.testing.assert_array_equal(np.array(a.kernel), np.array(b.kernel))
        np.testing.assert_array_equal(np.array(a.bias), np.array(b.bias))
    np.testing.assert_allclose(
        float(our_total(loaded, X, Y)[0]), float(our_total(model, X, Y)[0]), rtol=1e-6
    )
    listed = MultiExitDistiller.from_config(authors_model(hint_exits=[1]).get_config())
    assert listed.hinted_exits == (0,) and len(listed.feature_adapters) == 1


# ---------------------------------------------------------------- recipe
def authors_lr(epoch, epochs=250, init_lr=0.1):
    """The official loop: at the start of each listed epoch the lr is divided by 10."""
    lr = init_lr
    for e in range(epoch + 1):
        if e in [epochs // 3, epochs * 2 // 3, epochs - 10]:
            lr /= 10
    return lr


@pytest.mark.parametrize("depth", [18, 50, 101, 152])
def test_authors_code_recipe_matches_the_official_settings(depth):
    """train.py --model=resnet{depth}: the same loss, schedule and data for every ResNet."""
    path = str(RECIPES / f"resnet{depth}_cifar100.py")
    r = recipes.load(f"{path}:authors_code")
    assert r.method == "multi_exit" and r.backbone == f"resnet{depth}"
    assert dict(r.method_args) == {
        "exits": "stages",
        "alpha": 0.3,
        "feature_weight": 0.03,
        "temperature": 3.0,
        "path": "deepest",
        "reduction": "sum",
        "kl_scale": "none",
        "attention": True,
        "feature_hint": "adapted_l2_batch",
        "hint_exits": "all_but_last",
    }
    assert dict(r.callbacks) == {}  # no annealing of alpha / lambda
    assert r.epochs == 250 and r.optimizer.milestones == (83, 166, 240)
    o = r.optimizer
    assert (o.name, o.learning_rate, o.momentum, o.nesterov, o.weight_decay, o.gamma) == (
        "sgd",
        0.1,
        0.9,
        False,
        5e-4,
        0.1,
    )
    assert (r.data.name, r.data.batch_size, r.data.augment) == ("cifar100", 128, "autoaugment")
    base = recipes.load(f"{path}:authors_code_baseline")
    assert base.method == "baseline" and dict(base.method_args) == {}
    assert (base.data, base.optimizer, base.epochs) == (r.data, r.optimizer, r.epochs)


@pytest.mark.parametrize("steps_per_epoch", [390, 391])
def test_authors_code_recipe_learning_rate_per_epoch(steps_per_epoch):
    r = recipes.load(f"{REPO_RECIPE}:authors_code")
    schedule = train.learning_rate(r.optimizer, r.epochs, steps_per_epoch)
    first = [float(schedule(e * steps_per_epoch)) for e in range(r.epochs)]
    last = [float(schedule((e + 1) * steps_per_epoch - 1)) for e in range(r.epochs)]
    want = [authors_lr(e) for e in range(r.epochs)]
    np.testing.assert_allclose(first, want, rtol=1e-6)
    np.testing.assert_allclose(last, want, rtol=1e-6)
    assert [authors_lr(e) for e in (0, 82, 83, 165, 166, 239, 240, 249)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001]
    )


def test_authors_code_recipe_builds_resnet18_with_two_adapters():
    """Built without the data pipeline (the recipe's augmentation is not needed to build)."""
    r = recipes.load(f"{REPO_RECIPE}:authors_code")
    model = train.build_model(r, 100, (32, 32, 3))
    assert model.num_exits == 4 and model.hinted_exits == (0, 1)
    assert [a.name for a in model.feature_adapters] == ["exit1_adapt", "exit2_adapt"]
    assert [tuple(a.kernel.shape) for a in model.feature_adapters] == [(512, 512)] * 2
    assert model.export_backbone().count_params() == model.backbone.count_params()
