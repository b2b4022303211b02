"""Two-view self-distillation (DDGSD): loss against NumPy, gradients, views, arguments, harness."""

import inspect
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import check_model
from keras import ops
from strategies import mirrored
from tiny import tiny_backbone

from keras_sd.experiment import pipeline_augment
from keras_sd.layers import augment
from keras_sd.models.two_view import TwoViewDistiller, build_distortion, default_distortion_spec

RNG = np.random.default_rng(7)
N, CLASSES = 12, 5
X = RNG.normal(size=(N, 4, 4, 1)).astype("float32")
Y = RNG.integers(0, CLASSES, size=N)


@keras.saving.register_keras_serializable(package="test_two_view")
class MirrorSecondView(keras.layers.Layer):
    """A fixed, known distortion: odd calls return the batch unchanged, even calls mirror it.

    `make_views` calls the distortion twice per step, so view a is the input and view b its
    left-right mirror image, which NumPy reproduces with ``x[:, :, ::-1]``.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def call(self, inputs, training=None):
        if not training:
            return inputs
        self.calls += 1
        return inputs if self.calls % 2 else ops.flip(inputs, axis=2)


def dense_backbone(input_shape=(4, 4, 1), width=6, seed=0, batch_norm=False):
    """Flatten -> Dense+ReLU (the global feature h) -> Dense (logits): NumPy can run it."""
    init = keras.initializers.GlorotNormal(seed=seed)
    inp = keras.Input(input_shape)
    a = keras.layers.Flatten()(inp)
    a = keras.layers.Dense(width, kernel_initializer=init, bias_initializer="glorot_normal")(a)
    if batch_norm:
        a = keras.layers.BatchNormalization()(a)
    h = keras.layers.ReLU()(a)
    z = keras.layers.Dense(CLASSES, kernel_initializer=init, bias_initializer="glorot_normal")(h)
    return keras.Model(inp, {"stages": [h], "features": h, "logits": z}, name="dense")


def np_forward(model, x):
    w1, b1, w2, b2 = (v.numpy().astype("float64") for v in model.backbone.trainable_variables)
    h = np.maximum(x.reshape(len(x), -1).astype("float64") @ w1 + b1, 0.0)
    return h @ w2 + b2, h


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_terms(z_a, z_b, h_a, h_b, y, t, kl_scale):
    ce = -np_log_softmax(z_a)[np.arange(len(y)), y] - np_log_softmax(z_b)[np.arange(len(y)), y]
    la, lb = np_log_softmax(z_a / t), np_log_softmax(z_b / t)
    pa, pb = np.exp(la), np.exp(lb)
    kl = (pb * (lb - la)).sum(-1) + (pa * (la - lb)).sum(-1)
    if kl_scale == "t2":
        kl = kl * t * t
    mmd = ((h_a.mean(0) - h_b.mean(0)) ** 2).sum()
    return ce.mean(), kl.mean(), mmd


# Table 6 of the paper: two branches only, MMD only, KL only, both (mmd_weight enlarged so the
# term is visible at this size).
ABLATIONS = {
    "two_branch": dict(kl_weight=0.0, mmd_weight=0.0),
    "mmd_only": dict(kl_weight=0.0, mmd_weight=0.5),
    "kl_only": dict(kl_weight=1.0, mmd_weight=0.0),
    "both": dict(kl_weight=0.7, mmd_weight=0.5),
}


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
@pytest.mark.parametrize("views, kl_scale", [("concat", "t2"), ("separate", "none")])
def test_train_loss_equals_numpy_formula(ablation, views, kl_scale):
    weights, t, wd = ABLATIONS[ablation], 2.5, 1e-3
    model = TwoViewDistiller(
        dense_backbone(),
        distortion=MirrorSecondView(),
        temperature=t,
        kl_scale=kl_scale,
        views=views,
        weight_decay=wd,
        **weights,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0))  # lr 0: the weights stay as NumPy reads them
    logs = model.fit(X, Y, batch_size=N, epochs=1, shuffle=False, verbose=0).history
    logs = {k: v[0] for k, v in logs.items()}
    z_a, h_a = np_forward(model, X)
    z_b, h_b = np_forward(model, X[:, :, ::-1])
    ce, kl, mmd = np_terms(z_a, z_b, h_a, h_b, Y, t, kl_scale)
    l2 = (
        0.5
        * wd
        * sum(float((v.numpy().astype("float64") ** 2).sum()) for v in model.trainable_variables)
    )
    np.testing.assert_allclose(logs["ce_loss"], ce, rtol=1e-5)
    np.testing.assert_allclose(logs["kl_loss"], kl, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(logs["mmd_loss"], mmd, rtol=1e-4, atol=1e-8)
    total = ce + weights["kl_weight"] * kl + weights["mmd_weight"] * mmd + l2
    np.testing.assert_allclose(logs["loss"], total, rtol=1e-5)
    assert kl > 1e-4 and mmd > 1e-5, "the fixed views must differ for this test to mean anything"
    top1 = (z_a.argmax(-1) == Y).mean()  # training accuracy is measured on view a
    np.testing.assert_allclose(logs["accuracy"], top1)


def test_evaluation_and_prediction_use_one_undistorted_view():
    model = TwoViewDistiller(dense_backbone(), distortion=MirrorSecondView(), temperature=2.0)
    model.compile(optimizer="sgd")
    logs = model.evaluate(X, Y, batch_size=N, return_dict=True, verbose=0)
    z, _ = np_forward(model, X)
    ce = -np_log_softmax(z)[np.arange(N), Y]
    np.testing.assert_allclose(logs["ce_loss"], ce.mean(), rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], ce.mean(), rtol=1e-5)
    assert logs["kl_loss"] == 0.0 and logs["mmd_loss"] == 0.0  # not computed at evaluation
    np.testing.assert_allclose(model.predict(X, verbose=0), z, rtol=1e-5, atol=1e-6)
    assert model.distortion.calls == 0, "evaluation and prediction must not distort"


@pytest.mark.parametrize("kl_scale", ["t2", "none"])
def test_each_kl_direction_sends_gradient_only_into_its_learner(kl_scale):
    # d/dz_a of [KL(sg(p_b)||p_a) + KL(sg(p_a)||p_b)] / n must be (p_a - p_b) / (T n) (times T^2
    # with "t2"): only the direction in which a is the learner contributes. Without the
    # stop-gradients the second direction would add a (different, non-zero) term.
    t, n = 3.0, 8
    model = TwoViewDistiller(tiny_backbone(), temperature=t, kl_scale=kl_scale)
    rng = np.random.default_rng(3)
    z_a = tf.Variable(rng.normal(size=(n, CLASSES)) * 3, dtype="float32")
    z_b = tf.Variable(rng.normal(size=(n, CLASSES)) * 3, dtype="float32")
    h = tf.zeros((n, 6))
    targets = tf.one_hot(rng.integers(0, CLASSES, n), CLASSES)
    with tf.GradientTape() as tape:
        kl = ops.mean(model.loss_terms(z_a, z_b, h, h, targets)["kl_loss"])
    g_a, g_b = tape.gradient(kl, [z_a, z_b])
    pa = np.exp(np_log_softmax(z_a.numpy().astype("float64") / t))
    pb = np.exp(np_log_softmax(z_b.numpy().astype("float64") / t))
    scale = t * t if kl_scale == "t2" else 1.0
    np.testing.assert_allclose(g_a.numpy(), scale * (pa - pb) / (t * n), atol=1e-6)
    np.testing.assert_allclose(g_b.numpy(), scale * (pb - pa) / (t * n), atol=1e-6)


def test_mmd_gradient_reaches_both_views_as_in_the_paper():
    # Paper eq. after (1): dMMD/dh_a,i = 2/n^2 (sum h_a - sum h_b), and the negative for view b.
    n, d = 6, 4
    model = TwoViewDistiller(tiny_backbone())
    rng = np.random.default_rng(4)
    h_a = tf.Variable(rng.normal(size=(n, d)), dtype="float32")
    h_b = tf.Variable(rng.normal(size=(n, d)), dtype="float32")
    z = tf.zeros((n, CLASSES))
    with tf.GradientTape() as tape:
        mmd = model.loss_terms(z, z, h_a, h_b, tf.one_hot(np.zeros(n, "int32"), CLASSES))[
            "mmd_loss"
        ]
    g_a, g_b = tape.gradient(mmd, [h_a, h_b])
    diff = (h_a.numpy().sum(0) - h_b.numpy().sum(0)) * 2 / n**2
    np.testing.assert_allclose(g_a.numpy(), np.broadcast_to(diff, (n, d)), atol=1e-6)
    np.testing.assert_allclose(g_b.numpy(), -np.broadcast_to(diff, (n, d)), atol=1e-6)


def _recover_crop_flip(view, image, padding):
    """All (dy, dx, flip) such that pad-crop-flip of ``image`` gives ``view`` exactly."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    found = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[dy : dy + h, dx : dx + w]
            for flip in (0, 1):
                if np.array_equal(crop[:, ::-1] if flip else crop, view):
                    found.append((dy, dx, flip))
    return found


def test_two_views_are_independent_per_sample_crop_flips_of_each_image():
    n = 32
    images = np.random.default_rng(5).normal(size=(n, 32, 32, 3)).astype("float32")
    model = TwoViewDistiller(tiny_backbone(input_shape=(32, 32, 3)), seed=11)
    assert default_distortion_spec((32, 32, 3)) == "cifar"
    x_a, x_b = (v.numpy() for v in model.make_views(images))
    params_a, params_b = [], []
    for i in range(n):
        found_a = _recover_crop_flip(x_a[i], images[i], 4)
        found_b = _recover_crop_flip(x_b[i], images[i], 4)
        assert len(found_a) == 1 and len(found_b) == 1, "each view is one pad-4 crop (+ flip)"
        params_a.append(found_a[0])
        params_b.append(found_b[0])
    # Per-sample randomness: images of one batch get different offsets and flips.
    assert len(set(params_a)) > n // 2 and len({p[2] for p in params_a}) == 2
    # The two views of one image differ (the same parameters have probability 1/162).
    same = sum(a == b for a, b in zip(params_a, params_b))
    assert same <= 2, f"{same} of {n} images got identical views"
    assert sum(np.array_equal(a, b) for a, b in zip(x_a, x_b)) == same
    # The next step draws new randomness.
    x_c, _ = model.make_views(images)
    assert not np.array_equal(x_c.numpy(), x_a)


def test_views_in_the_train_step_differ_and_identity_distortion_gives_no_kl():
    x = RNG.normal(size=(16, 8, 8, 1)).astype("float32")
    y = RNG.integers(0, CLASSES, 16)

    def fit_logs(distortion):
        model = TwoViewDistiller(tiny_backbone(), distortion=distortion, seed=2)
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        return {k: v[0] for k, v in model.fit(x, y, batch_size=16, verbose=0).history.items()}

    plain = fit_logs("none")
    assert plain["kl_loss"] == pytest.approx(0.0, abs=1e-7)
    assert plain["mmd_loss"] == pytest.approx(0.0, abs=1e-10)
    distorted = fit_logs(None)  # default for 8x8x1: pad-1 crop, no flip
    assert distorted["kl_loss"] > 1e-5 and distorted["mmd_loss"] > 1e-8


@pytest.mark.parametrize(
    "shape, spec",
    [
        ((32, 32, 3), "cifar"),
        ((8, 8, 1), "pad_crop:1"),
        ((64, 64, 3), "pad_crop_flip:8"),
        ((224, 224, 3), "pad_crop_flip:28"),
        ((28, 28, 1), "pad_crop:4"),
    ],
)
def test_default_distortion_for_input_size(shape, spec):
    assert default_distortion_spec(shape) == spec
    layer = build_distortion(spec, shape, seed=0)
    assert isinstance(layer, augment.PadAndRandomCrop)
    assert layer.padding == max(1, round(min(shape[:2]) / 8))
    assert layer.horizontal_flip == (shape[-1] == 3)  # no mirrored digits


def test_concat_and_separate_agree_without_batch_norm_and_differ_with_it():
    x = RNG.normal(size=(16, 8, 8, 1)).astype("float32")
    y = RNG.integers(0, CLASSES, 16)

    def fit_logs(views, batch_norm):
        model = TwoViewDistiller(
            tiny_backbone(batch_norm=batch_norm), views=views, seed=4, mmd_weight=0.1
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        hist = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history
        return {k: v[0] for k, v in hist.items()}

    concat, separate = fit_logs("concat", False), fit_logs("separate", False)
    for name in ("loss", "ce_loss", "kl_loss", "mmd_loss"):  # two steps, so updates agree too
        np.testing.assert_allclose(concat[name], separate[name], rtol=1e-5, atol=1e-8)
    bn_concat, bn_separate = fit_logs("concat", True), fit_logs("separate", True)
    assert abs(bn_concat["ce_loss"] - bn_separate["ce_loss"]) > 1e-4  # one BN batch vs two


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=0), "`temperature` must be > 0, got 0"),
        (dict(temperature=-2.0), "`temperature` must be > 0, got -2.0"),
        (dict(temperature="hot"), "`temperature` must be a positive number, got 'hot'"),
        (dict(kl_weight=-1.0), "`kl_weight` must be >= 0, got -1.0"),
        (dict(mmd_weight=-5e-4), "`mmd_weight` must be >= 0, got -0.0005"),
        (dict(weight_decay=-1e-4), "`weight_decay` must be >= 0"),
        (dict(views="both"), "`views` must be one of \\('concat', 'separate'\\), got 'both'"),
        (dict(kl_scale="T2"), "`kl_scale` must be one of \\('t2', 'none'\\), got 'T2'"),
        (dict(distortion="bogus"), "`distortion` must be None, .* got 'bogus'"),
        (dict(distortion="pad_crop:0"), "`distortion` .* got 'pad_crop:0'"),
        (dict(distortion="pad_crop_flip:x"), "`distortion` .* got 'pad_crop_flip:x'"),
        (dict(distortion=3), "`distortion` must be None, a keras.layers.Layer or a string spec"),
        (dict(seed="a"), "`seed` must be an int or None, got 'a'"),
        (dict(distortion=MirrorSecondView(), seed=1), "`seed` must be None when `distortion`"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TwoViewDistiller(tiny_backbone(), **kwargs)


def test_unknown_input_size_needs_an_explicit_distortion_layer():
    inp = keras.Input((None, None, 1))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(3, 3)(inp))
    backbone = keras.Model(inp, {"stages": [h], "features": h, "logits": keras.layers.Dense(2)(h)})
    with pytest.raises(ValueError, match="`distortion` must be a keras.layers.Layer when"):
        TwoViewDistiller(backbone)
    TwoViewDistiller(backbone, distortion=augment.RandomHorizontalFlip(seed=0))


HARNESS_LOGS = {
    "loss",
    "ce_loss",
    "kl_loss",
    "mmd_loss",
    "accuracy",
    "top5",
    "val_loss",
    "val_ce_loss",
    "val_accuracy",
}


@pytest.mark.parametrize(
    "factory",
    [
        lambda: TwoViewDistiller(tiny_backbone(batch_norm=True), weight_decay=5e-4, seed=0),
        lambda: TwoViewDistiller(
            tiny_backbone(batch_norm=True),
            distortion="pad_crop_flip:2",
            views="separate",
            temperature=2.0,
            kl_weight=0.5,
            mmd_weight=1e-4,
            kl_scale="none",
            seed=3,
        ),
        lambda: TwoViewDistiller(tiny_backbone(), distortion=MirrorSecondView(name="mirror")),
    ],
    ids=["default", "string_spec", "layer"],
)
def test_harness(factory):
    x = RNG.normal(size=(8, 8, 8, 1)).astype("float32")
    y = RNG.integers(0, CLASSES, 8)
    check_model(factory, x, y, expected_logs=HARNESS_LOGS)


def test_harness_cifar_shape_and_dict_inputs():
    x = RNG.normal(size=(4, 32, 32, 3)).astype("float32")
    y = RNG.integers(0, CLASSES, 4)
    model = check_model(
        lambda: TwoViewDistiller(tiny_backbone(input_shape=(32, 32, 3), batch_norm=True), seed=0),
        x,
        y,
        expected_logs=HARNESS_LOGS,
    )
    logs = model.fit({"image": x, "index": np.arange(4, dtype="int32")}, y, verbose=0).history
    assert np.isfinite(logs["loss"][0])


def test_mirrored_two_replicas_average_terms_and_compute_mmd_per_replica():
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest must split the CPU into two logical devices"
    strategy = mirrored()
    with strategy.scope():
        model = TwoViewDistiller(
            dense_backbone(), distortion=MirrorSecondView(), temperature=2.0, mmd_weight=0.5
        )
        model.compile(optimizer=keras.optimizers.SGD(0.0))
    ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(N)
    logs = {k: v[0] for k, v in model.fit(ds, epochs=1, verbose=0).history.items()}
    z_a, h_a = np_forward(model, X)
    z_b, h_b = np_forward(model, X[:, :, ::-1])
    ce, kl, _ = np_terms(z_a, z_b, h_a, h_b, Y, 2.0, "none")  # the default kl_scale
    half = N // 2  # each replica sees half of the global batch
    mmd = np.mean(
        [
            np_terms(z_a[s], z_b[s], h_a[s], h_b[s], Y[s], 2.0, "none")[2]
            for s in (slice(0, half), slice(half, N))
        ]
    )
    np.testing.assert_allclose(logs["ce_loss"], ce, rtol=1e-5)
    np.testing.assert_allclose(logs["kl_loss"], kl, rtol=1e-4)
    np.testing.assert_allclose(logs["mmd_loss"], mmd, rtol=1e-4)
    np.testing.assert_allclose(logs["loss"], ce + kl + 0.5 * mmd, rtol=1e-5)


RECIPE_DIR = pathlib.Path(__file__).resolve().parents[1] / "recipes" / "two_view"
PAPER_ROWS = [
    f"{b}_{d}"
    for b in (
        "resnet32",
        "resnet110",
        "preact_resnet18",
        "preact_resnet34",
        "wrn40_4",
        "wrn16_8",
        "wrn28_10",
        "densenet40",
        "densenet100",
    )
    for d in ("cifar10", "cifar100")
] + ["resnet18_imagenet"]


@pytest.mark.parametrize("stem", PAPER_ROWS)
def test_recipes_cover_every_paper_row_and_load(stem):
    from keras_sd import recipes

    path = RECIPE_DIR / f"{stem}.py"
    assert path.is_file(), f"missing recipe for the paper row {stem}"
    # The docstring gives the exact command, by packaged name (a path works too).
    assert f"keras-sd train two_view/{path.stem}" in path.read_text()
    accepted = set(inspect.signature(TwoViewDistiller.__init__).parameters)
    paper_t = {"cifar10": 2.0, "cifar100": 3.0, "imagenet": 3.0}[stem.rsplit("_", 1)[1]]
    for arg in ("", ":two_branch", ":mmd_only", ":kl_only"):
        recipe = recipes.load(f"{path}{arg}")
        assert recipe.method == "two_view"
        # The model distorts in its step, so the pipeline must feed it undistorted batches:
        # "none", or the 256x256 squares that Xu & Liu's ImageNet crop cuts (both rows of the
        # ImageNet recipe name that crop, "resize256_crop224").
        imagenet = stem.endswith("imagenet")
        assert recipe.data.augment == ("resize256_crop224" if imagenet else "none")
        assert pipeline_augment(recipe) == ("resize256" if imagenet else "none")
        assert set(recipe.method_args) <= accepted
        assert recipe.method_args["temperature"] == paper_t
        assert recipe.published
    base = recipes.load(f"{path}:baseline")
    assert base.method == "baseline" and base.method_args == {} and base.data.augment != "none"
    if stem.endswith("imagenet"):
        assert base.data == recipe.data and recipe.method_args["distortion"] == base.data.augment
    assert base.optimizer == recipe.optimizer and base.epochs == recipe.epochs
    smoke = recipes.load(f"{path}:smoke")
    assert smoke.data.name == "digits" and smoke.method == "two_view"
    with pytest.raises(ValueError, match="`arg` must be one of"):
        recipes.load(f"{path}:bogus")
