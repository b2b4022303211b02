"""keras_sd.tuning: search spaces, the recipe HyperModel, tuners and `keras-sd tune`."""

import json

import keras_tuner
import pytest
from tiny import tiny_backbone, tiny_multi_exit_recipe

from keras_sd import backbones, cli, recipes, tuning
from keras_sd.recipes import DataConfig, Recipe

BACKBONE = "tiny_tuning_test"


@pytest.fixture(autouse=True)
def tiny_registered(monkeypatch):
    # A registered tiny backbone keeps every trial to seconds; recipes name backbones by key.
    monkeypatch.setitem(
        backbones._REGISTRY,
        BACKBONE,
        lambda num_classes, input_shape: tiny_backbone(input_shape, num_classes, batch_norm=True),
    )


def tiny_recipe(**changes) -> Recipe:
    return tiny_multi_exit_recipe(BACKBONE, **changes)


RECIPE_FILE = '''"""Tiny multi-exit recipe for the tuning tests."""
from keras_sd.recipes import DataConfig, OptimizerConfig, Recipe


def get_config(arg=None):
    return Recipe(
        name="test/tiny_multi_exit",
        method="multi_exit",
        backbone="{backbone}",
        method_args={{"alpha": 0.5, "feature_weight": 0.02, "temperature": 3.0}},
        callbacks={{"DistillationAnnealing": {{"last_epochs": 1}}}},
        data=DataConfig(name="digits", batch_size=32),
        optimizer=OptimizerConfig(learning_rate=0.05, schedule="cosine"),
        epochs=1,
        steps_per_epoch=2,
        strategy="default",
    )
'''


# ---------------------------------------------------------------------------- spaces
def test_space_parse_forms():
    assert tuning.Space.parse("1:5") == tuning.Space(1.0, 5.0)
    assert tuning.Space.parse("1e-4:1e-2:log") == tuning.Space(1e-4, 1e-2, log=True)
    assert tuning.Space.parse("2:8:int") == tuning.Space(2, 8, integer=True)
    assert tuning.Space.parse("0|1e-4|5e-4").values == (0, 1e-4, 5e-4)


@pytest.mark.parametrize(
    "text, word",
    [
        ("5:1", "greater"),
        ("0:1:log", "log scale"),
        ("a:b", "numbers"),
        ("1", "LOW:HIGH"),
        ("1:2:cubic", "LOW:HIGH"),
        ("1|1", "distinct"),
    ],
)
def test_space_parse_rejects(text, word):
    with pytest.raises(ValueError, match=word):
        tuning.Space.parse(text)


def test_space_defines_hyperparameters_within_range():
    hp = keras_tuner.HyperParameters()
    assert tuning.Space(0.1, 0.8).define(hp, "alpha") == 0.1  # keras-tuner's default: low end
    assert tuning.Space(values=(0.0, 1e-4)).define(hp, "mmd") == 0.0
    assert tuning.Space(2, 8, integer=True).define(hp, "n") == 2
    space = hp.space
    assert [type(s).__name__ for s in space] == ["Float", "Choice", "Int"]
    assert (space[0].min_value, space[0].max_value) == (0.1, 0.8)


def test_default_search_per_method_follows_the_papers():
    two_view = tiny_recipe(method="two_view", method_args={}, callbacks={})
    spaces = tuning.resolve_search(two_view)
    assert list(spaces) == ["temperature", "kl_weight", "mmd_weight"]
    assert spaces["temperature"] == ("method_args.temperature", tuning.Space(1.0, 5.0))
    assert spaces["kl_weight"][1] == tuning.Space(0.1, 2.0)
    # DDGSD Table 5's mu grid: 0 (no MMD) and log-spaced values up to 1e-2.
    assert spaces["mmd_weight"][1].values == (0.0, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2)
    me = tuning.resolve_search(tiny_recipe())
    assert {k: v[1] for k, v in me.items()} == {
        "alpha": tuning.Space(0.1, 0.8),
        "feature_weight": tuning.Space(0.01, 0.08),
    }
    sg = tuning.resolve_search(tiny_recipe(method="self_guidance", method_args={}, callbacks={}))
    assert sg["kd_weight"][1].values == (0.0, 0.1, 0.25, 0.5, 1.0, 3.0)
    pskd = tiny_recipe(method="baseline", method_args={"pskd_alpha": 0.8}, callbacks={})
    assert list(tuning.resolve_search(pskd)) == ["pskd_alpha"]


def test_search_overrides_and_dotted_keys():
    r = tiny_recipe()
    spaces = tuning.resolve_search(
        r,
        tuning.parse_search("alpha=0.2:0.4,optimizer.learning_rate=0.01:0.1:log,temperature"),
    )
    assert spaces["alpha"] == ("method_args.alpha", tuning.Space(0.2, 0.4))
    assert spaces["optimizer.learning_rate"] == (
        "optimizer.learning_rate",
        tuning.Space(0.01, 0.1, log=True),
    )
    assert spaces["temperature"][1] == tuning.DEFAULT_SPACES["temperature"]
    custom = tuning.resolve_search(r, ["alpha"], {"alpha": tuning.Space(values=(0.3, 0.6))})
    assert custom["alpha"][1].values == (0.3, 0.6)


@pytest.mark.parametrize(
    "search, word",
    [
        (["kd_weight"], "neither an argument"),  # not a multi-exit argument
        (["epochs"], "no default space"),
        (["optimizer.nope=1:2"], "unknown recipe key"),
    ],
)
def test_search_rejects_bad_fields(search, word):
    if isinstance(search, list) and "=" in search[0]:
        search = tuning.parse_search(search[0])
    with pytest.raises(ValueError, match=word):
        tuning.resolve_search(tiny_recipe(), search)


def test_check_space_reports_values_the_method_rejects():
    hm = tuning.RecipeHyperModel(tiny_recipe(), {"alpha": tuning.Space(0.5, 1.5)})
    with pytest.raises(ValueError, match=r"`alpha` must be in \[0, 1\], got 1.5"):
        hm.check_space()
    tuning.RecipeHyperModel(tiny_recipe(), ["alpha", "feature_weight"]).check_space()


def test_nothing_to_search_is_an_error():
    with pytest.raises(ValueError, match="nothing to search"):
        tuning.resolve_search(tiny_recipe(method="baseline", method_args={}, callbacks={}))


def test_hyperparameters_take_the_same_path_as_set_overrides():
    r = tiny_recipe()
    search = tuning.resolve_search(r, ["alpha", "optimizer.learning_rate=0.01:0.1"])
    values = {"alpha": 0.3, "optimizer.learning_rate": 0.02}
    via_set = recipes.apply_overrides(r, ["method_args.alpha=0.3", "optimizer.learning_rate=0.02"])
    assert tuning.apply_hyperparameters(r, search, values) == via_set


def test_objective_directions():
    assert tuning.make_objective("val_exit3_accuracy").direction == "max"
    assert tuning.make_objective("val_ece").direction == "min"
    assert tuning.make_objective("val_nll").direction == "min"
    assert tuning.make_objective("val_custom:max").direction == "max"
    with pytest.raises(ValueError, match="maximise or minimise"):
        tuning.make_objective("val_custom")
    with pytest.raises(ValueError, match="'min' or 'max'"):
        tuning.make_objective("val_accuracy:up")


def test_default_objective_is_the_final_output():
    hm = tuning.RecipeHyperModel(tiny_recipe())
    model = hm.build(keras_tuner.HyperParameters())
    assert model.num_exits == 2  # tiny backbone: one shallow exit + the head
    assert tuning.default_objective(model) == "val_exit2_accuracy"
    single = tiny_recipe(
        method="baseline",
        method_args={"pskd_alpha": 0.5},
        callbacks={},
        data=DataConfig(name="digits", batch_size=32, with_index=True),
    )
    hm = tuning.RecipeHyperModel(single)
    assert tuning.default_objective(hm.build(keras_tuner.HyperParameters())) == "val_accuracy"


def test_make_tuner_kinds(tmp_path):
    hm = tuning.RecipeHyperModel(tiny_recipe(epochs=4))
    kinds = {
        "random": keras_tuner.RandomSearch,
        "bayesian": keras_tuner.BayesianOptimization,
        "hyperband": keras_tuner.Hyperband,
    }
    for name, cls in kinds.items():
        t = tuning.make_tuner(
            hm, name, objective="val_ece", max_trials=3, directory=tmp_path / name
        )
        assert isinstance(t, cls)
        assert t.oracle.objective.name == "val_ece" and t.oracle.objective.direction == "min"
        assert t.oracle.max_trials == 3
    assert t.oracle.max_epochs == 4  # Hyperband's budget is the recipe's epochs
    with pytest.raises(ValueError, match="`tuner`"):
        tuning.make_tuner(hm, "grid", objective="val_ece", directory=tmp_path)
    with pytest.raises(ValueError, match="`max_trials`"):
        tuning.make_tuner(hm, "random", objective="val_ece", max_trials=0, directory=tmp_path)


# ---------------------------------------------------------------------------- end to end
def test_two_trial_study_resumes_and_writes_a_loadable_best_recipe(tmp_path, capsys):
    spec = tmp_path / "tiny_multi_exit.py"
    spec.write_text(RECIPE_FILE.format(backbone=BACKBONE))
    out = tmp_path / "study"
    args = ["tune", str(spec), "--search", "alpha,feature_weight", "--out", str(out)]
    assert cli.main([*args, "--trials", "1"]) == 0
    first = json.loads((out / "results.json").read_text())
    assert [r["trial"] for r in first["trials"]] == ["0"]
    trial0 = out / "trials" / "trial_0" / "trial.json"
    stamp = trial0.stat().st_mtime_ns

    # Rerunning with more trials continues the study: trial 0 is not run again.
    assert cli.main([*args, "--trials", "2"]) == 0
    printed = capsys.readouterr().out
    assert "val_exit2_accuracy" in printed and "best_recipe.py" in printed
    assert trial0.stat().st_mtime_ns == stamp
    results = json.loads((out / "results.json").read_text())
    rows = results["trials"]
    assert sorted(r["trial"] for r in rows) == ["0", "1"]
    assert all(r["status"] == "COMPLETED" for r in rows)
    assert rows[0]["score"] == max(r["score"] for r in rows)  # best first, maximised

    # The trial scores are the best epoch's val_exit2_accuracy that keras-tuner recorded.
    for r in rows:
        trial = json.loads((out / "trials" / f"trial_{r['trial']}" / "trial.json").read_text())
        assert trial["score"] == pytest.approx(r["score"])
        assert trial["hyperparameters"]["values"]["alpha"] == pytest.approx(r["alpha"])
        assert 0.1 <= r["alpha"] <= 0.8 and 0.01 <= r["feature_weight"] <= 0.08

    # The best recipe file loads with the same loader `keras-sd train` uses and equals the
    # base recipe with the best trial's values set through --set.
    best_file = out / "best_recipe.py"
    loaded = recipes.load(str(best_file))
    expected = recipes.apply_overrides(
        recipes.load(str(spec)),
        [
            f"method_args.alpha={rows[0]['alpha']!r}",
            f"method_args.feature_weight={rows[0]['feature_weight']!r}",
        ],
    ).replace(name="test/tiny_multi_exit/tuned")
    assert loaded == expected
    assert "keras-sd train" in best_file.read_text()

    # Per-trial TensorBoard directories with the HParams entry keras-tuner adds.
    for trial in ("0", "1"):
        logdir = out / "logs" / trial / "execution0"
        assert list((logdir / "train").glob("events.out.tfevents.*"))
        assert list((logdir / "validation").glob("events.out.tfevents.*"))
        assert list(logdir.glob("events.out.tfevents.*"))  # hparams session

    # Another search space in the same directory is refused, naming what changed.
    assert cli.main(["tune", str(spec), "--search", "alpha", "--out", str(out)]) == 2
    assert "different search" in capsys.readouterr().err


def test_hyperband_with_epochs_budget_and_a_minimised_logged_metric(tmp_path):
    # A single-output model (cheaper trials) and a dotted recipe key as the searched field.
    r = tiny_recipe(method="baseline", method_args={}, callbacks={}, epochs=2, steps_per_epoch=1)
    result = tuning.run_study(
        r,
        tmp_path / "hb",
        search=["optimizer.learning_rate=0.01:0.1:log"],
        tuner="hyperband",
        trials=2,
        objective="val_ece",
    )
    assert result.objective == "val_ece"
    rows = result.rows
    assert len(rows) == 2
    assert all(1 <= r["epochs"] <= 2 for r in rows)  # Hyperband's per-trial budget
    scores = [r["score"] for r in rows]
    assert result.best_score == min(scores)
    assert result.best_recipe.optimizer.learning_rate == pytest.approx(
        rows[0]["optimizer.learning_rate"]
    )
    assert all(0.0 <= s <= 100.0 for s in scores)  # ECE in %


def test_cli_tune_bad_input_exits_2(tmp_path, capsys):
    spec = tmp_path / "tiny_multi_exit.py"
    spec.write_text(RECIPE_FILE.format(backbone=BACKBONE))
    assert cli.main(["tune", str(spec), "--search", "alpha=0.9:0.1", "--out", str(tmp_path)]) == 2
    assert "greater" in capsys.readouterr().err
    assert cli.main(["tune", str(tmp_path / "missing.py")]) == 2
    assert "does not exist" in capsys.readouterr().err
