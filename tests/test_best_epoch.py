"""metrics.json's last-epoch and best-epoch entries, history.json, and their survival of a resume.

Real (short) runs on the embedded digits data. The per-epoch validation logs are captured
independently of keras_sd's own history file by a recorder callback handed to `fit`, and the best
epoch is recomputed from them here.
"""

import json
import pathlib

import keras
import pytest

from keras_sd import experiment, recipes, train

REPO = pathlib.Path(__file__).resolve().parents[1]
MULTI_EXIT = str(REPO / "recipes" / "multi_exit" / "resnet20_digits.py") + ":smoke"
BASELINE = str(REPO / "recipes" / "baseline" / "resnet20_digits.py") + ":smoke"


class Recorder(keras.callbacks.Callback):
    """Keeps a copy of every epoch's logs, keyed by the 1-based epoch number."""

    def __init__(self, store: dict):
        super().__init__()
        self.store = store

    def on_epoch_end(self, epoch, logs=None):
        self.store[epoch + 1] = {k: float(v) for k, v in (logs or {}).items()}


class Crash(RuntimeError):
    pass


class CrashAfter(keras.callbacks.Callback):
    """Raises at the end of epoch ``n`` (1-based), after the backup has committed it."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.n:
            raise Crash(f"simulated kill after epoch {self.n}")


def _with_callbacks(monkeypatch, *extra):
    original = experiment.Experiment.run_callbacks
    # Appended after every callback of the run (AtomicBackupAndRestore included), so a crash
    # raised here happens after that epoch's backup commit, like a kill between epochs, and a
    # Recorder sees the logs as complete as the progress bar shows them.
    monkeypatch.setattr(
        experiment.Experiment,
        "run_callbacks",
        lambda self, *a, **k: [*original(self, *a, **k), *extra],
    )


def _argmax_epoch(logs_by_epoch: dict, key: str) -> int:
    evaluated = {e: logs[key] for e, logs in logs_by_epoch.items() if key in logs}
    best = max(evaluated.values())
    return min(e for e, v in evaluated.items() if v == best)  # earliest on ties


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    yield
    keras.backend.clear_session()


def test_best_epoch_survives_a_resume_and_evaluate(tmp_path, monkeypatch):
    recipe = recipes.load(MULTI_EXIT, ["epochs=4", "steps_per_epoch=6"])
    out = tmp_path / "run"
    seen: dict = {}
    with monkeypatch.context() as m:
        _with_callbacks(m, Recorder(seen), CrashAfter(2))
        with pytest.raises(Crash):
            train.train(recipe, out, verbose=0)
    assert sorted(seen) == [1, 2]
    assert [e["epoch"] for e in train.read_history(out)] == [1, 2]
    assert not (out / "metrics.json").exists()

    resumed: dict = {}
    with monkeypatch.context() as m:
        _with_callbacks(m, Recorder(resumed))
        metrics = train.train(recipe, out, verbose=0)
    # The second process trained only epochs 3 and 4: epochs 1-2 come from history.json.
    assert sorted(resumed) == [3, 4]
    seen.update(resumed)

    history = train.read_history(out)
    assert [e["epoch"] for e in history] == [1, 2, 3, 4]
    key = "val_exit3_accuracy"  # the primary (deployed) output of a multi-exit model: exit3
    for entry in history:
        names = ("val_exit3_accuracy", "val_exit1_accuracy", "val_ensemble_accuracy", "loss")
        # history.json also holds what callbacks add to the logs: every output's calibration.
        names += ("val_ece", "val_nll", "val_exit1_ece", "val_ensemble_nll", "kl_loss_weight")
        for name in names:
            assert entry[name] == pytest.approx(seen[entry["epoch"]][name], abs=1e-7)

    best = metrics["best_epoch"]
    want = _argmax_epoch(seen, key)
    assert best["epoch"] == want
    assert best["selected_by"] == key and best["selected_output"] == "exit3"
    assert best["evaluated_epochs"] == 4 and best["eval_every"] == 1
    assert best["accuracy"]["exit3"]["top1"] == pytest.approx(max(s[key] for s in seen.values()))
    assert set(best["accuracy"]) == {"exit1", "exit2", "exit3", "ensemble"}
    for name in ("exit1", "exit2", "ensemble"):
        assert best["accuracy"][name]["top1"] == pytest.approx(seen[want][f"val_{name}_accuracy"])
        assert best["accuracy"][name]["top5"] == pytest.approx(seen[want][f"val_{name}_top5"])

    last = metrics["last_epoch"]
    assert last["epoch"] == 4 and last["accuracy"] == metrics["accuracy"]
    for name in ("exit1", "exit2", "exit3", "ensemble"):
        # The final evaluate is the same model on the same test split as epoch 4's validation.
        assert last["accuracy"][name]["top1"] == pytest.approx(
            seen[4][f"val_{name}_accuracy"], abs=1e-6
        )
    assert json.loads((out / "metrics.json").read_text())["best_epoch"] == best
    # The last epoch's val_ece (tracked in float32 during fit's validation) is metrics.json's
    # calibration (float64, from a separate predict of the deployed output).
    assert history[-1]["val_ece"] == pytest.approx(metrics["calibration"]["ece"], abs=1e-3)
    assert history[-1]["val_nll"] == pytest.approx(metrics["calibration"]["nll"], abs=1e-4)

    # Rerunning a finished run trains nothing and keeps the full history.
    again = train.train(recipe, out, verbose=0)
    assert again["best_epoch"] == best
    assert [e["epoch"] for e in train.read_history(out)] == [1, 2, 3, 4]

    # evaluate re-evaluates the last epoch and keeps the recorded best epoch.
    evaluated = train.evaluate(out)
    assert evaluated["best_epoch"] == best
    assert evaluated["last_epoch"]["epoch"] == 4
    for name, acc in metrics["last_epoch"]["accuracy"].items():
        assert evaluated["last_epoch"]["accuracy"][name]["top1"] == pytest.approx(
            acc["top1"], abs=1e-6
        )
    # Without a recorded best epoch (metrics.json of an older version), evaluate rebuilds it
    # from history.json.
    old = {k: v for k, v in evaluated.items() if k not in ("best_epoch", "last_epoch")}
    train.write_json_atomic(out / "metrics.json", old)
    assert train.evaluate(out)["best_epoch"] == best


def test_best_epoch_is_over_evaluated_epochs_only(tmp_path, monkeypatch):
    recipe = recipes.load(BASELINE, ["epochs=5", "steps_per_epoch=4", "eval_every=2"])
    assert train.evaluated_epochs(recipe) == [2, 4, 5]
    seen: dict = {}
    with monkeypatch.context() as m:
        _with_callbacks(m, Recorder(seen))
        metrics = train.train(recipe, tmp_path / "run", verbose=0)
    history = train.read_history(tmp_path / "run")
    assert [e["epoch"] for e in history] == [1, 2, 3, 4, 5]
    assert [e["epoch"] for e in history if "val_accuracy" in e] == [2, 4, 5]
    assert [e["epoch"] for e in history if "val_ece" in e] == [2, 4, 5]
    assert [e for e, logs in sorted(seen.items()) if "val_accuracy" in logs] == [2, 4, 5]
    best = metrics["best_epoch"]
    assert best["epoch"] == _argmax_epoch(seen, "val_accuracy")
    assert best["selected_output"] == "output" and best["evaluated_epochs"] == 3
    assert best["eval_every"] == 2
    assert best["accuracy"]["output"]["top1"] == pytest.approx(
        max(logs["val_accuracy"] for logs in seen.values() if "val_accuracy" in logs)
    )
    assert metrics["last_epoch"]["accuracy"]["output"]["top1"] == pytest.approx(
        seen[5]["val_accuracy"], abs=1e-6
    )


def test_best_epoch_of_a_hand_made_history():
    history = [
        {"epoch": 1, "val_accuracy": 0.5, "val_top5": 0.9},
        {"epoch": 2, "loss": 1.0},  # not evaluated
        {"epoch": 3, "val_accuracy": 0.7, "val_top5": 0.95},
        {"epoch": 4, "val_accuracy": 0.7, "val_top5": 0.99},  # tie: the earlier epoch wins
        {"epoch": 5, "val_accuracy": 0.6, "val_top5": 0.97},
    ]
    best = train.best_epoch(history, "output", eval_every=1)
    assert best["epoch"] == 3 and best["evaluated_epochs"] == 4
    assert best["accuracy"] == {"output": {"top1": 0.7, "top5": 0.95}}
    assert train.best_epoch([{"epoch": 1, "loss": 1.0}], "output") is None


@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_bad_eval_every_is_named(value):
    with pytest.raises(ValueError, match="eval_every"):
        recipes.load(BASELINE, [f"eval_every={value}"])


SELF_GUIDANCE = (
    str(REPO / "recipes" / "self_guidance" / "resnet_cifar.py") + ":resnet32,cifar10,smoke"
)


@pytest.mark.parametrize(
    "spec, extra",
    [(BASELINE, []), (MULTI_EXIT, []), (SELF_GUIDANCE, ["backbone_args.depth=8"])],
    ids=["baseline", "multi_exit", "self_guidance"],
)
def test_evaluation_frequency_does_not_change_training(tmp_path, spec, extra):
    """The CIFAR-10 study evaluates some rows every epoch and others every 5th: that must be a
    choice of reporting only. Evaluating must draw nothing from the data order, the augmentation
    or the model's seed generator (Self-Guidance samples its sub-network from one), so the same
    recipe and seed trains the same weights whatever ``eval_every`` is."""
    runs = {}
    for every in (1, 3):
        recipe = recipes.load(
            spec, ["epochs=3", "steps_per_epoch=3", f"eval_every={every}", *extra]
        )
        train.train(recipe, tmp_path / f"every{every}", verbose=0)
        history = train.read_history(tmp_path / f"every{every}")
        model = keras.models.load_model(tmp_path / f"every{every}" / "model.keras")
        runs[every] = (history, model.get_weights())
    (h1, w1), (h3, w3) = runs[1], runs[3]
    assert [e["epoch"] for e in h1 if "val_loss" in e] == [1, 2, 3]
    assert [e["epoch"] for e in h3 if "val_loss" in e] == [3]
    train_keys = sorted(
        k for k in h1[0] if not k.startswith("val_") and k != "epoch" and "seconds" not in k
    )
    assert "loss" in train_keys
    for a, b in zip(h1, h3, strict=True):
        assert {k: a[k] for k in train_keys} == {k: b[k] for k in train_keys}
    assert len(w1) == len(w3)
    for a, b in zip(w1, w3, strict=True):
        assert (a == b).all()
    # and the last evaluation, which both made, gives the same figures
    assert {k: v for k, v in h1[-1].items() if k.startswith("val_")} == {
        k: v for k, v in h3[-1].items() if k.startswith("val_")
    }
