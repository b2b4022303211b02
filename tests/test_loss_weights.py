"""One loss-weight mechanism (issue 18 item 3): every term's weight is a non-trainable variable
named after its term, declared to the base class, so one callback schedules any term of any
method."""

import keras
import numpy as np
import pytest
from tiny import tiny_backbone

from keras_sd import losses, testing
from keras_sd.callbacks import DistillationAnnealing
from keras_sd.models.base import OUTPUT, SelfDistillationModel
from keras_sd.models.two_view import TwoViewDistiller

RNG = np.random.default_rng(3)
N = 16
X = RNG.normal(size=(N, 8, 8, 1)).astype("float32")
Y = RNG.integers(0, 5, size=N)


@keras.saving.register_keras_serializable(package="keras_sd_tests")
class TwoTerms(SelfDistillationModel):
    """CE plus a confidence penalty (mean squared logit), weighted 1 and ``penalty``."""

    def __init__(self, backbone, *, penalty=0.5, **kwargs):
        super().__init__(backbone, loss_weights={"ce_loss": 1.0, "penalty_loss": penalty}, **kwargs)
        self.penalty = penalty

    def compute_loss_terms(self, images, targets, training, index=None):
        logits = self.backbone(images, training=training)["logits"]
        ce = losses.soft_target_cross_entropy(targets, logits)
        return {OUTPUT: logits}, {
            "ce_loss": ce,
            "penalty_loss": keras.ops.mean(keras.ops.square(logits), axis=-1),
        }

    def get_config(self):
        return {**super().get_config(), "penalty": self.penalty}


def test_declared_weights_are_variables_named_after_their_terms():
    model = TwoTerms(tiny_backbone(), penalty=0.25)
    assert model.loss_weights == {"ce_loss": 1.0, "penalty_loss": 0.25}
    assert model.term_names == ("ce_loss", "penalty_loss")
    assert [v.name for v in model.term_weights.values()] == [
        "ce_loss_weight",
        "penalty_loss_weight",
    ]
    assert all(not v.trainable for v in model.term_weights.values())
    assert {v.path for v in model.non_trainable_weights} >= {
        "ce_loss_weight",
        "penalty_loss_weight",
    }
    testing.run_model_test(
        lambda: TwoTerms(tiny_backbone(), penalty=0.25), X, Y, expected_logs={"penalty_loss"}
    )


def test_the_weighted_total_reads_the_variables():
    model = TwoTerms(tiny_backbone(), penalty=0.25)
    model.compile(optimizer="sgd")
    logits = np.asarray(model.backbone(X)["logits"], "float64")
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    ce = -log_p[np.arange(N), Y].mean()
    penalty = (logits**2).mean()
    for weight in (0.25, 0.0, 2.0):
        model.term_weights["penalty_loss"].assign(weight)
        logs = model.evaluate(X, Y, batch_size=N, verbose=0, return_dict=True)
        np.testing.assert_allclose(logs["ce_loss"], ce, rtol=1e-5)
        np.testing.assert_allclose(logs["penalty_loss"], penalty, rtol=1e-5)
        np.testing.assert_allclose(logs["loss"], ce + weight * penalty, rtol=1e-5)


def test_annealing_a_two_view_kl_weight_changes_the_loss():
    # Annealing raised on two-view's kl_weight before (a float); now any term is schedulable.
    kl_weight, mmd_weight = 0.7, 0.01
    model = TwoViewDistiller(
        tiny_backbone(),
        distortion="pad_crop_flip:1",
        seed=2,
        kl_weight=kl_weight,
        mmd_weight=mmd_weight,
        temperature=2.0,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    history = model.fit(
        X,
        Y,
        batch_size=N,  # one step per epoch: each log is that step's value
        epochs=3,
        verbose=0,
        callbacks=[DistillationAnnealing(last_epochs=1, terms=("kl_loss",))],
    ).history
    assert history["kl_loss_weight"] == pytest.approx([kl_weight, kl_weight, 0.0])
    ce, kl, mmd = (np.array(history[k]) for k in ("ce_loss", "kl_loss", "mmd_loss"))
    assert np.all(kl > 1e-4)  # still computed and logged at weight 0
    expected = ce + np.array([kl_weight, kl_weight, 0.0]) * kl + mmd_weight * mmd
    np.testing.assert_allclose(history["loss"], expected, rtol=1e-6)
    # The configured value is kept, so a new fit starts from it again.
    assert model.loss_weights["kl_loss"] == kl_weight
    assert float(model.term_weights["kl_loss"].numpy()) == 0.0
    assert model.get_config()["kl_weight"] == kl_weight


def test_bad_loss_weights_raise_value_errors_naming_them():
    bb = tiny_backbone()
    with pytest.raises(ValueError, match=r"`loss_weights\['kl_loss'\]` must be >= 0, got -1"):
        SelfDistillationModel(bb, loss_weights={"ce_loss": 1.0, "kl_loss": -1})
    with pytest.raises(ValueError, match="`loss_weights` must be a non-empty dict"):
        SelfDistillationModel(bb, loss_weights={})
    with pytest.raises(ValueError, match="not both"):
        SelfDistillationModel(bb, loss_weights={"ce_loss": 1.0}, term_names=("ce_loss",))
    with pytest.raises(ValueError, match="must be term names"):
        SelfDistillationModel(bb, loss_weights={3: 1.0})
    # The deprecated spelling still works, every weight 1.
    model = SelfDistillationModel(bb, term_names=("ce_loss", "kl_loss"))
    assert model.loss_weights == {"ce_loss": 1.0, "kl_loss": 1.0}
    with pytest.raises(ValueError, match="`terms` must be a non-empty list"):
        DistillationAnnealing(terms=[])
