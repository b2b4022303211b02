"""SelfGuidanceDistiller: loss against NumPy, teacher determinism, teacher_gradient, bad
arguments, serialisation (Self-Guidance, issue 6 items 3 and 5)."""

import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import check_model
from tiny import tiny_backbone

from keras_sd import backbones
from keras_sd.layers.stochastic_depth import StochasticDepth, full_network
from keras_sd.models.base import Baseline
from keras_sd.models.self_guidance import SelfGuidanceDistiller, stochastic_depth_gates

RNG = np.random.default_rng(4)
N, D, W, C = 12, 6, 5, 4
X = RNG.normal(size=(N, D)).astype("float32")
Y = RNG.integers(0, C, size=N)
P = (0.7, 0.4)  # survival probabilities of the two gates; the smallest is final_survival


def gated_backbone(mode="per_batch", seed=7, p=P):
    """A tiny contract backbone: dense stem and two gated dense residual blocks (post-ReLU)."""
    init = keras.initializers.GlorotNormal(seed=1)
    inp = keras.Input((D,))
    h = keras.layers.Dense(W, kernel_initializer=init, bias_initializer="ones", name="stem")(inp)
    stages = []
    for i, p_i in enumerate(p):
        branch = keras.Sequential(
            [
                keras.layers.Dense(W, activation="relu", kernel_initializer=init, name=f"b{i}a"),
                keras.layers.Dense(W, kernel_initializer=init, name=f"b{i}b"),
            ],
            name=f"branch{i}",
        )
        h = StochasticDepth(branch, p_i, mode=mode, seed=seed + i, name=f"gate{i}")([h, h])
        h = keras.layers.ReLU(name=f"relu{i}")(h)
        stages.append(h)
    z = keras.layers.Dense(C, kernel_initializer=init, name="logits")(h)
    return keras.Model(inp, {"stages": stages, "features": h, "logits": z}, name="gated")


# ---------------------------------------------------------------------------- NumPy reference
def np_forward(weights, x, gates):
    """Backbone logits with gate values ``gates[l]`` (``[batch, 1]`` or scalars)."""
    h = x @ weights["stem"][0] + weights["stem"][1]
    for i, g in enumerate(gates):
        a = np.maximum(h @ weights[f"b{i}a"][0] + weights[f"b{i}a"][1], 0.0)
        f = a @ weights[f"b{i}b"][0] + weights[f"b{i}b"][1]
        h = np.maximum(h + g * f, 0.0)
    return h @ weights["logits"][0] + weights["logits"][1]


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_kl(teacher, student, t):
    log_p, log_q = np_log_softmax(teacher / t), np_log_softmax(student / t)
    return (np.exp(log_p) * (log_p - log_q)).sum(-1) * t * t


def np_ce(z, y):
    return -np_log_softmax(z)[np.arange(len(y)), y]


def layer_weights(backbone):
    out = {}
    for name in ("stem", "logits"):
        out[name] = [v.numpy() for v in backbone.get_layer(name).weights]
    for i in range(len(P)):
        branch = backbone.get_layer(f"gate{i}").branch
        for suffix in ("a", "b"):
            out[f"b{i}{suffix}"] = [v.numpy() for v in branch.get_layer(f"b{i}{suffix}").weights]
    return out


def gate_states(backbone):
    return [g.seed_generator.state.numpy().copy() for g in stochastic_depth_gates(backbone)]


def replay_masks(backbone, states, batch, mode):
    """The student's gate draws, replayed from the generators' saved states."""
    masks = []
    for gate, state in zip(stochastic_depth_gates(backbone), states):
        gate.seed_generator.state.assign(state)
        shape = (batch, 1) if mode == "per_sample" else ()
        u = keras.random.uniform(shape, seed=gate.seed_generator, dtype="float32").numpy()
        masks.append((u < gate.survival_probability).astype("float32"))
    return masks


# ---------------------------------------------------------------------------- tests
@pytest.mark.parametrize("mode", ["per_sample", "per_batch"])
@pytest.mark.parametrize("teacher_gradient", [False, True])
def test_one_training_step_loss_equals_numpy(mode, teacher_gradient):
    kd, t = 0.3, 2.5
    model = SelfGuidanceDistiller(
        gated_backbone(mode),
        kd_weight=kd,
        temperature=t,
        final_survival=min(P),
        drop_mode=mode,
        teacher_gradient=teacher_gradient,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    model.predict(X[:2], verbose=0)  # build
    w = layer_weights(model.backbone)
    states = gate_states(model.backbone)
    logs = model.fit(X, Y, batch_size=N, epochs=1, shuffle=False, verbose=0).history
    logs = {k: v[0] for k, v in logs.items()}
    masks = replay_masks(model.backbone, states, N, mode)
    if mode == "per_sample":  # the test only means something if samples differ
        assert any(0 < m.sum() < N for m in masks), masks

    z_s = np_forward(w, X, masks)
    z_t = np_forward(w, X, P)
    ce_s, ce_t, kl = np_ce(z_s, Y).mean(), np_ce(z_t, Y).mean(), np_kl(z_t, z_s, t).mean()
    np.testing.assert_allclose(logs["ce_student_loss"], ce_s, rtol=1e-5)
    np.testing.assert_allclose(logs["ce_teacher_loss"], ce_t, rtol=1e-5)
    np.testing.assert_allclose(logs["kl_loss"], kl, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(logs["loss"], ce_s + ce_t + kd * kl, rtol=1e-5)
    np.testing.assert_allclose(logs["accuracy"], (z_t.argmax(-1) == Y).mean())
    np.testing.assert_allclose(logs["student_accuracy"], (z_s.argmax(-1) == Y).mean())


def test_evaluation_is_the_full_network_once_and_deterministic():
    model = SelfGuidanceDistiller(gated_backbone(), final_survival=min(P))
    model.compile(optimizer="sgd")
    model.predict(X[:2], verbose=0)
    w = layer_weights(model.backbone)
    states = gate_states(model.backbone)
    logs = model.evaluate(X, Y, batch_size=N, return_dict=True, verbose=0)
    pred = model.predict(X, verbose=0)
    z = np_forward(w, X, P)
    np.testing.assert_allclose(pred, z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(X, verbose=0), pred)
    np.testing.assert_allclose(logs["ce_teacher_loss"], np_ce(z, Y).mean(), rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], np_ce(z, Y).mean(), rtol=1e-5)
    np.testing.assert_allclose(logs["accuracy"], (z.argmax(-1) == Y).mean())
    # No gate was drawn: evaluation and prediction never touch the generators.
    for before, after in zip(states, gate_states(model.backbone)):
        np.testing.assert_array_equal(before, after)


def test_teacher_pass_is_deterministic_and_student_pass_is_not():
    model = SelfGuidanceDistiller(gated_backbone(), final_survival=min(P))
    model.predict(X[:2], verbose=0)
    w = layer_weights(model.backbone)
    first = model.teacher_logits(X).numpy()
    np.testing.assert_array_equal(model.teacher_logits(X).numpy(), first)
    np.testing.assert_allclose(first, np_forward(w, X, P), rtol=1e-5, atol=1e-6)
    students = [model.student_logits(X).numpy() for _ in range(4)]
    assert any(not np.allclose(students[0], s) for s in students[1:])


def test_final_survival_one_makes_student_equal_teacher_and_kl_zero():
    model = SelfGuidanceDistiller(gated_backbone(p=(1.0, 1.0)), final_survival=1.0)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = model.fit(X, Y, batch_size=N, epochs=1, verbose=0).history
    np.testing.assert_allclose(logs["kl_loss"][0], 0.0, atol=1e-6)
    np.testing.assert_allclose(logs["ce_student_loss"][0], logs["ce_teacher_loss"][0], rtol=1e-6)


def test_distillation_loss_gradient_into_teacher_matches_closed_form():
    t = 3.0
    z_t = tf.constant(RNG.normal(size=(5, C)).astype("float32"))
    z_s = tf.constant(RNG.normal(size=(5, C)).astype("float32"))
    for on in (False, True):
        model = SelfGuidanceDistiller(
            gated_backbone(), final_survival=min(P), temperature=t, teacher_gradient=on
        )
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([z_t, z_s])
            kl = model.distillation_loss(z_t, z_s)
            total = tf.reduce_sum(kl)
        np.testing.assert_allclose(kl.numpy(), np_kl(z_t.numpy(), z_s.numpy(), t), rtol=1e-5)
        # d/dz_t of t^2 KL(p || q), p = softmax(z_t/t), q = softmax(z_s/t): t * p * (log p - log q - KL).
        log_p, log_q = np_log_softmax(z_t.numpy() / t), np_log_softmax(z_s.numpy() / t)
        p = np.exp(log_p)
        kl_raw = (p * (log_p - log_q)).sum(-1, keepdims=True)
        expected_t = t * p * (log_p - log_q - kl_raw) if on else np.zeros_like(p)
        # d/dz_s = t * (q - p), whichever side the teacher is on.
        expected_s = t * (np.exp(log_q) - p)
        zero = tf.UnconnectedGradients.ZERO
        g_t = tape.gradient(total, z_t, unconnected_gradients=zero).numpy()
        np.testing.assert_allclose(g_t, expected_t, atol=1e-5)
        np.testing.assert_allclose(tape.gradient(total, z_s).numpy(), expected_s, atol=1e-5)


def _kl_weight_gradients(model, states):
    for gate, state in zip(stochastic_depth_gates(model.backbone), states):
        gate.seed_generator.state.assign(state)
    targets = tf.one_hot(Y, C)
    with tf.GradientTape() as tape:
        _, terms = model.compute_loss_terms(tf.constant(X), targets, training=True)
        kl = tf.reduce_mean(terms["kl_loss"])
    return _dense_gradients(tape, kl, model.backbone.trainable_variables)


def _dense_gradients(tape, target, variables):
    # Per-batch gates skip a dropped branch entirely: its weights are then unconnected (zero).
    grads = tape.gradient(target, variables)
    return [
        np.zeros(v.shape, "float32") if g is None else g.numpy() for g, v in zip(grads, variables)
    ]


def test_teacher_gradient_switches_the_teacher_side_of_the_kl_gradient():
    # Same weights and the same student masks for both settings: the difference of the two KL
    # gradients must be exactly the gradient through the teacher pass, computed independently.
    backbone = gated_backbone()
    off = SelfGuidanceDistiller(backbone, final_survival=min(P), teacher_gradient=False)
    on = SelfGuidanceDistiller(backbone, final_survival=min(P), teacher_gradient=True)
    off.predict(X[:2], verbose=0)
    states = gate_states(backbone)
    g_off = _kl_weight_gradients(off, states)
    g_on = _kl_weight_gradients(on, states)

    for gate, state in zip(stochastic_depth_gates(backbone), states):
        gate.seed_generator.state.assign(state)
    t = off.temperature
    with tf.GradientTape() as tape:
        z_s = tf.stop_gradient(backbone(X, training=True)["logits"])
        with full_network():
            z_t = backbone(X, training=True)["logits"]
        log_p = tf.nn.log_softmax(z_t / t)
        log_q = tf.nn.log_softmax(z_s / t)
        teacher_side = tf.reduce_mean(tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), -1)) * t * t
    g_teacher = _dense_gradients(tape, teacher_side, backbone.trainable_variables)

    assert max(np.abs(g).max() for g in g_teacher) > 1e-4  # the teacher side is not trivial
    for a, b, c in zip(g_off, g_on, g_teacher):
        np.testing.assert_allclose(b - a, c, atol=1e-5)


def test_teacher_ce_weight_zero_sends_no_gradient_into_the_teacher_pass():
    # W/O backward full network: the teacher pass is only a target. Its cross entropy is still
    # logged but, unlike the default, it has no gradient path to the weights.
    backbone = gated_backbone()
    targets = tf.one_hot(Y, C)
    for weight, expect_gradient in ((1.0, True), (0.0, False)):
        model = SelfGuidanceDistiller(backbone, final_survival=min(P), teacher_ce_weight=weight)
        with tf.GradientTape() as tape:
            _, terms = model.compute_loss_terms(tf.constant(X), targets, training=True)
            ce_teacher = tf.reduce_mean(terms["ce_teacher_loss"])
        grads = tape.gradient(ce_teacher, backbone.trainable_variables)
        has_gradient = any(g is not None and np.any(g.numpy()) for g in grads)
        assert has_gradient == expect_gradient
        assert float(model.term_weight("ce_teacher_loss")) == weight
        assert model.loss_weights["ce_teacher_loss"] == weight


def test_bad_arguments_raise_value_errors_naming_them():
    bb = gated_backbone()
    for bad in (0.0, -0.1, 1.5, float("nan"), "half", None, True):
        with pytest.raises(ValueError, match="final_survival"):
            SelfGuidanceDistiller(bb, final_survival=bad)
    with pytest.raises(ValueError, match="drop_mode"):
        SelfGuidanceDistiller(bb, final_survival=min(P), drop_mode="per_layer")
    with pytest.raises(ValueError, match="kd_weight"):
        SelfGuidanceDistiller(bb, final_survival=min(P), kd_weight=-0.1)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            SelfGuidanceDistiller(bb, final_survival=min(P), temperature=bad)
    with pytest.raises(ValueError, match="kl_scale"):
        SelfGuidanceDistiller(bb, final_survival=min(P), kl_scale="t")
    with pytest.raises(ValueError, match="teacher_gradient"):
        SelfGuidanceDistiller(bb, final_survival=min(P), teacher_gradient="yes")
    with pytest.raises(ValueError, match="teacher_ce_weight"):
        SelfGuidanceDistiller(bb, final_survival=min(P), teacher_ce_weight=-1)
    with pytest.raises(ValueError, match="weight_decay"):
        SelfGuidanceDistiller(bb, final_survival=min(P), weight_decay=-1)


def test_backbone_must_have_gates_that_agree_with_the_arguments():
    with pytest.raises(ValueError, match=r"no StochasticDepth gates.*stochastic_depth=0.5"):
        SelfGuidanceDistiller(tiny_backbone())
    with pytest.raises(ValueError, match=r"final_survival`=0.5 disagrees.*0.4"):
        SelfGuidanceDistiller(gated_backbone(), final_survival=0.5)
    with pytest.raises(ValueError, match=r"drop_mode`='per_batch' disagrees"):
        SelfGuidanceDistiller(
            gated_backbone("per_sample"), final_survival=0.4, drop_mode="per_batch"
        )
    # A real backbone built as the error message says is accepted.
    net = backbones.get("resnet_cifar", depth=8, input_shape=(8, 8, 1), stochastic_depth=0.5)
    model = SelfGuidanceDistiller(net)
    probs = sorted(g.survival_probability for g in stochastic_depth_gates(net))
    np.testing.assert_allclose(probs, [0.5, 2 / 3, 5 / 6])
    assert model.final_survival == 0.5


def test_kd_weight_zero_is_the_no_distillation_ablation():
    model = SelfGuidanceDistiller(gated_backbone(), final_survival=min(P), kd_weight=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = model.fit(X, Y, batch_size=N, epochs=1, verbose=0).history
    # The KL is still computed and logged, but it does not enter the loss.
    assert logs["kl_loss"][0] > 0
    np.testing.assert_allclose(
        logs["loss"][0], logs["ce_student_loss"][0] + logs["ce_teacher_loss"][0], rtol=1e-6
    )


def test_harness_real_backbone():
    # per_batch: the saved model must restore the conditional (skipped-branch) execution too.
    mode = "per_batch"
    xs = RNG.normal(size=(8, 8, 8, 1)).astype("float32")
    ys = RNG.integers(0, 5, size=8)

    def make():
        net = backbones.resnet_cifar(
            8, num_classes=5, input_shape=(8, 8, 1), stochastic_depth=0.5, drop_mode=mode, seed=3
        )
        return SelfGuidanceDistiller(
            net, drop_mode=mode, teacher_gradient=True, kl_scale="none", weight_decay=1e-4
        )

    model = check_model(
        make,
        xs,
        ys,
        expected_logs={
            "loss",
            "ce_student_loss",
            "ce_teacher_loss",
            "kl_loss",
            "weight_decay_loss",
            "accuracy",
            "student_accuracy",
            "val_accuracy",
        },
    )
    config = model.get_config()
    assert {k: config[k] for k in ("drop_mode", "teacher_gradient", "kl_scale")} == {
        "drop_mode": mode,
        "teacher_gradient": True,
        "kl_scale": "none",
    }


def test_harness_tiny_gated_backbone():
    check_model(  # per_sample gates
        lambda: SelfGuidanceDistiller(gated_backbone(), final_survival=min(P), kd_weight=0.1),
        X,
        Y,
        expected_logs={"loss", "kl_loss", "student_top5", "val_loss"},
    )


def test_baseline_on_the_same_backbone_is_stochastic_depth():
    # Table 6's "Stochastic Depth" row: plain CE on the gated backbone trains the sub-network and
    # deploys the p-scaled full network, the same network Self-Guidance deploys.
    net = gated_backbone()
    sd = Baseline(net)
    sg = SelfGuidanceDistiller(net, final_survival=min(P))
    np.testing.assert_allclose(sd.predict(X, verbose=0), sg.predict(X, verbose=0))


def test_default_samples_one_sub_network_per_mini_batch():
    # The paper's Fig. 1 ("Student: sampled sub-network for each mini-batch") and Algorithm 1
    # sample once per mini-batch: the class, the backbones and the recipes default to it.
    from keras_sd import backbones, recipes

    net = backbones.get("resnet20", num_classes=10, input_shape=(8, 8, 3), stochastic_depth=0.5)
    gates = stochastic_depth_gates(net)
    assert gates and {g.mode for g in gates} == {"per_batch"}
    model = SelfGuidanceDistiller(net, final_survival=0.5)
    assert model.drop_mode == "per_batch"
    # A per-batch student: every sample of a batch goes through the same sub-network, so two
    # identical images in one batch get identical student logits.
    x = np.repeat(np.random.default_rng(0).normal(size=(1, 8, 8, 3)).astype("float32"), 6, 0)
    for _ in range(3):
        z = model.student_logits(x).numpy()
        np.testing.assert_allclose(z, np.repeat(z[:1], 6, 0), rtol=1e-5, atol=1e-6)
    path = pathlib.Path(__file__).resolve().parents[1] / "recipes/self_guidance/resnet_cifar.py"
    recipe = recipes.load(str(path))
    assert recipe.backbone_args["drop_mode"] == recipe.method_args["drop_mode"] == "per_batch"
    other = recipes.load(f"{path}:resnet32,cifar10,per_sample")
    assert other.method_args["drop_mode"] == "per_sample"
