"""PS-KD as a target transform the base class owns (issue 18 item 2): any method takes
``soft_targets=ProgressiveSelfKD(...)``; `Baseline` is cross-entropy only."""

import keras
import numpy as np
import pytest
from tiny import tiny_backbone

from keras_sd import recipes, testing
from keras_sd.models.base import Baseline
from keras_sd.models.two_view import TwoViewDistiller
from keras_sd.pskd import ProgressiveSelfKD

C = 5
N = 12
RNG = np.random.default_rng(7)
X = RNG.normal(size=(N, 8, 8, 1)).astype("float32")
Y = RNG.integers(0, C, size=N)
INPUTS = {"image": X, "index": np.arange(N)}


def np_softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def np_soft_ce(targets, z):
    log_p = np.log(np_softmax(z))
    return -(targets * log_p).sum(-1)


def frozen_fit(model, epochs=2):
    """Fits with learning rate 0 (the logits never change), one step per epoch."""
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    return model.fit(INPUTS, Y, batch_size=N, epochs=epochs, shuffle=False, verbose=0).history


@pytest.mark.parametrize("method", ["baseline", "two_view"])
def test_any_method_trains_against_the_pskd_targets_of_the_numpy_formula(method):
    alpha = 0.6
    layer = ProgressiveSelfKD(alpha=alpha, num_examples=N)  # the model sets num_classes
    backbone = tiny_backbone(num_classes=C)
    if method == "baseline":
        model, views = Baseline(backbone, soft_targets=layer), 1
    else:
        # An identity distortion: both views are the batch itself, so z_a = z_b = z.
        model, views = TwoViewDistiller(backbone, distortion="none", soft_targets=layer), 2
    assert model.soft_targets is layer and layer.num_classes == C and model.needs_sample_index
    z = np.asarray(backbone(X)["logits"], "float64")
    onehot = np.eye(C)[Y]
    history = frozen_fit(model, epochs=2)
    # alpha_t = alpha * t / T; the first epoch reads a never-written bank (one-hot targets), the
    # second the softmax the first wrote.
    assert history["pskd_alpha_t"] == pytest.approx([alpha / 2, alpha])
    expected = [
        views * np_soft_ce(onehot, z).mean(),
        views * np_soft_ce((1 - alpha) * onehot + alpha * np_softmax(z), z).mean(),
    ]
    np.testing.assert_allclose(history["ce_loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(layer.bank.predictions, np_softmax(z), atol=1e-6)
    # The transform itself, on rows the bank holds.
    got = layer.transform(onehot[:4], np.arange(4))
    np.testing.assert_allclose(got, (1 - alpha) * onehot[:4] + alpha * np_softmax(z[:4]), atol=1e-6)


def test_two_view_with_pskd_passes_the_model_harness():
    testing.run_model_test(
        lambda: TwoViewDistiller(
            tiny_backbone(num_classes=C),
            distortion="pad_crop_flip:1",
            seed=0,
            soft_targets=ProgressiveSelfKD(alpha=0.8, num_examples=N, bank_dtype="float16"),
        ),
        INPUTS,
        Y,
        expected_logs={"ce_loss", "kl_loss", "mmd_loss", "pskd_alpha_t"},
    )


def test_baseline_is_cross_entropy_only_and_the_shorthand_builds_the_layer():
    plain = Baseline(tiny_backbone(num_classes=C))
    assert plain.soft_targets is None and not plain.needs_sample_index
    assert plain.term_names == ("ce_loss",)
    short = Baseline(tiny_backbone(num_classes=C), pskd_alpha=0.8, num_train_examples=N)
    assert isinstance(short.soft_targets, ProgressiveSelfKD)
    assert (short.soft_targets.alpha, short.soft_targets.num_examples) == (0.8, N)
    config = short.get_config()
    assert "pskd_alpha" not in config and config["soft_targets"]["config"]["alpha"] == 0.8
    clone = Baseline.from_config(config)
    assert clone.soft_targets.get_config() == short.soft_targets.get_config()


def test_bad_soft_targets_raise_value_errors_naming_them():
    bb = tiny_backbone(num_classes=C)
    with pytest.raises(
        ValueError, match="`soft_targets` must be a keras_sd.pskd.ProgressiveSelfKD"
    ):
        Baseline(bb, soft_targets=keras.layers.Dense(3))
    with pytest.raises(ValueError, match="not both"):
        Baseline(bb, soft_targets=ProgressiveSelfKD(0.8, N), pskd_alpha=0.8, num_train_examples=N)
    with pytest.raises(ValueError, match=r"`num_classes`=3 of 'pskd' disagrees with the model's 5"):
        Baseline(bb, soft_targets=ProgressiveSelfKD(0.8, N, num_classes=3))
    with pytest.raises(ValueError, match="`num_train_examples` is required"):
        TwoViewDistiller(bb, pskd_alpha=0.8)


def test_every_recipe_method_takes_the_pskd_shorthand():
    recipe = recipes.Recipe(
        name="t", method="two_view", backbone="resnet20", method_args={"kl_weight": 1.0}
    )
    changed = recipes.apply_override(recipe, "method_args.pskd_alpha", 0.5)
    assert changed.method_args["pskd_alpha"] == 0.5
    with pytest.raises(ValueError, match="unknown method argument 'soft_targets'"):
        recipes.apply_override(recipe, "method_args.soft_targets", 1)
