"""`SelfDistillationModel.calibration_state` and `ReliabilityDiagram(validation_data=None)`: the
calibration a model accumulates while ``fit`` validates, checked against `calibration_report` on
the model's own predictions (float64 NumPy), and drawn without a second pass over the data."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from strategies import mirrored
from tiny import tiny_backbone

import keras_sd
from keras_sd import callbacks
from keras_sd.callbacks._summary import _softmax
from keras_sd.metrics import calibration_report
from keras_sd.models.multi_exit import MultiExitDistiller
from keras_sd.plotting import reliability_bins

RNG = np.random.default_rng(0)
X = RNG.normal(size=(96, 8, 8, 1)).astype("float32")
Y = RNG.integers(0, 5, size=96).astype("int32")
XV = RNG.normal(size=(70, 8, 8, 1)).astype("float32")  # 70: a last batch of 6
YV = RNG.integers(0, 5, size=70).astype("int32")


def _multi_exit():
    keras.utils.set_random_seed(1)
    model = MultiExitDistiller(tiny_backbone(seed=1), alpha=0.3, feature_weight=0.01)
    model.compile(optimizer=keras.optimizers.SGD(0.2))
    return model


def _expected(model):
    """calibration_report and reliability_bins of every exit and the ensemble, by prediction."""
    logits = model.predict_exits(XV)
    out = {}
    for name, z in logits.items():
        probs = _softmax(z)
        out[name] = {**calibration_report(probs, YV), **reliability_bins(probs, YV)}
    return out


def _assert_state_matches(state, expected):
    assert sorted(state) == sorted(expected)
    for name, want in expected.items():
        got = state[name]
        assert got["num_examples"] == len(YV)
        np.testing.assert_array_equal(got["count"], want["count"], err_msg=name)
        np.testing.assert_allclose(got["accuracy"], want["accuracy"], atol=1e-6, err_msg=name)
        np.testing.assert_allclose(got["confidence"], want["confidence"], atol=1e-5, err_msg=name)
        assert got["ece"] == pytest.approx(want["ece"], abs=1e-3), name
        assert got["nll"] == pytest.approx(want["nll"], rel=1e-5), name


def test_state_is_the_last_validation_pass_of_every_exit_and_the_ensemble():
    model = _multi_exit()
    model.fit(X, Y, batch_size=32, epochs=2, validation_data=(XV, YV), verbose=0)
    # Validation runs after the epoch's training steps, so the final weights made the state.
    _assert_state_matches(model.calibration_state(), _expected(model))


def test_training_steps_add_nothing_and_each_epoch_starts_empty():
    model = _multi_exit()
    model.evaluate(XV, YV, batch_size=32, verbose=0)
    assert all(v["num_examples"] == 70 for v in model.calibration_state().values())
    model.fit(X, Y, batch_size=32, epochs=1, verbose=0)  # no validation
    state = model.calibration_state()
    assert all(v["num_examples"] == 0 for v in state.values())
    assert all(np.isnan(v["accuracy"]).all() for v in state.values())


def test_evaluate_fills_the_state_and_the_logs_do_not_carry_it():
    model = _multi_exit()
    logs = model.evaluate(XV, YV, batch_size=16, return_dict=True, verbose=0)
    assert not any(k.endswith(("_ece", "_nll")) for k in logs), sorted(logs)
    _assert_state_matches(model.calibration_state(), _expected(model))


def test_single_output_model_tracks_its_output():
    keras.utils.set_random_seed(2)
    model = keras_sd.Baseline(tiny_backbone(seed=2), weight_decay=1e-3)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.evaluate(XV, YV, batch_size=32, verbose=0)
    state = model.calibration_state()
    assert list(state) == ["output"]
    probs = _softmax(model.predict(XV, verbose=0))
    want = calibration_report(probs, YV)
    assert state["output"]["ece"] == pytest.approx(want["ece"], abs=1e-3)
    assert state["output"]["nll"] == pytest.approx(want["nll"], rel=1e-5)


def test_two_replicas_sum_their_samples():
    strategy = mirrored()
    with strategy.scope():
        model = _multi_exit()
    model.evaluate(
        tf.data.Dataset.from_tensor_slices((XV, YV)).batch(16), verbose=0
    )  # 70 = 4 x 16 + 6: the last batch splits 3 / 3
    _assert_state_matches(model.calibration_state(), _expected(model))


def test_calibrated_outputs_must_be_tracked():
    with pytest.raises(ValueError, match="`calibrated_outputs`.*'student'"):
        keras_sd.Baseline(tiny_backbone(), calibrated_outputs=["student"])


# ---------------------------------------------------------------------------- the callback
def test_diagram_from_fit_needs_no_second_pass(tmp_path):
    model = _multi_exit()
    diagram = callbacks.ReliabilityDiagram(tmp_path, None)
    history = model.fit(
        X, Y, batch_size=32, epochs=2, validation_data=(XV, YV), callbacks=[diagram], verbose=0
    ).history
    assert diagram._predict is None  # it never compiled a prediction function of its own
    expected = _expected(model)
    for name in ("exit1", "exit2", "ensemble"):
        assert len(history[f"val_{name}_ece"]) == 2
        assert history[f"val_{name}_ece"][-1] == pytest.approx(expected[name]["ece"], abs=1e-3)
        assert history[f"val_{name}_nll"][-1] == pytest.approx(expected[name]["nll"], rel=1e-5)
    # The deployed output (the deepest exit) is also val_ece / val_nll.
    assert history["val_ece"][-1] == history["val_exit2_ece"][-1]
    assert history["val_nll"][-1] == history["val_exit2_nll"][-1]
    # The same figures as the callback predicting the data itself.
    by_pass = callbacks.ReliabilityDiagram(tmp_path / "pass", (XV, YV))
    by_pass.set_model(model)
    for name, stats in by_pass._from_pass().items():
        assert stats["ece"] == pytest.approx(expected[name]["ece"], abs=1e-5)  # float32 logits
        assert history[f"val_{name}_ece"][-1] == pytest.approx(stats["ece"], abs=1e-3)
    assert (tmp_path / "validation").is_dir()


def test_diagram_from_fit_skips_and_warns_on_epochs_fit_did_not_validate(tmp_path):
    model = _multi_exit()
    diagram = callbacks.ReliabilityDiagram(tmp_path, None)
    with pytest.warns(UserWarning, match="did not validate at epoch 1"):
        history = model.fit(
            X,
            Y,
            batch_size=32,
            epochs=2,
            validation_data=(XV, YV),
            validation_freq=2,
            callbacks=[diagram],
            verbose=0,
        ).history
    assert len(history["val_ece"]) == 1  # epoch 2 only
    assert history["val_ece"][0] == pytest.approx(_expected(model)["exit2"]["ece"], abs=1e-3)


def test_diagram_from_fit_bad_input(tmp_path):
    with pytest.raises(ValueError, match="`max_samples` \\(5\\) needs `validation_data`"):
        callbacks.ReliabilityDiagram(tmp_path, None, max_samples=5)
    with pytest.raises(ValueError, match="`num_bins` must be 10.*got 15"):
        callbacks.ReliabilityDiagram(tmp_path, None, num_bins=15)
    plain = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(5)]
    )
    plain.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    with pytest.raises(ValueError, match="Sequential does not track it: pass `validation_data`"):
        plain.fit(
            X, Y, epochs=1, callbacks=[callbacks.ReliabilityDiagram(tmp_path, None)], verbose=0
        )
    with pytest.raises(ValueError, match="`outputs\\(\\)` predicts `validation_data`"):
        callbacks.ReliabilityDiagram(tmp_path, None).outputs()


def test_inspection_callbacks_reuse_fit_validation_only_when_told(tmp_path):
    model = _multi_exit()
    reuse = callbacks.inspection_callbacks(model, tmp_path, (XV, YV), fit_validation=True)[0]
    assert reuse.validation_data is None
    again = callbacks.inspection_callbacks(model, tmp_path, (XV, YV))[0]
    assert again.validation_data is not None
    limited = callbacks.inspection_callbacks(
        model, tmp_path, (XV, YV), fit_validation=True, max_samples=10
    )[0]
    assert limited.validation_data is not None  # a subset needs its own pass
