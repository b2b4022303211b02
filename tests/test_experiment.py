"""keras_sd.experiment.Experiment: the runner's one object, and the callbacks package's shape."""

import ast
import doctest
import pathlib

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds
from tiny import tiny_backbone

from keras_sd import callbacks, data, experiment, train
from keras_sd.atomic import write_json_atomic
from keras_sd.experiment import Experiment
from keras_sd.models import MultiExitDistiller
from keras_sd.recipes import DataConfig, OptimizerConfig, Recipe

PACKAGE = pathlib.Path(experiment.__file__).resolve().parent


def _recipe(**changes):
    base = Recipe(
        name="test/experiment",
        method="multi_exit",
        backbone="resnet_cifar",
        backbone_args={"depth": 8},
        data=DataConfig(name="digits", batch_size=32, augment="cifar", with_index=True),
        optimizer=OptimizerConfig(learning_rate=0.05, schedule="cosine"),
        callbacks={"DistillationAnnealing": {"last_epochs": 1}},
        epochs=3,
    )
    return base.replace(**changes)


def test_the_data_is_the_recipes_one_load():
    recipe = _recipe()
    exp = Experiment(recipe)
    assert exp.data_args() == dict(
        batch_size=32,
        eval_batch_size=recipe.data.eval_batch_size,
        augment="cifar",
        seed=recipe.seed,
        data_dir=None,
        train_per_class=recipe.data.train_per_class,
        subset_seed=recipe.data.subset_seed,
        image_size=recipe.data.image_size,
        with_index=True,
    )
    assert exp.bundle is exp.bundle  # loaded once
    direct = data.load("digits", **exp.data_args())
    for field in ("num_classes", "num_train", "num_test", "image_shape", "mean", "std"):
        assert getattr(exp.bundle.info, field) == getattr(direct.info, field), field
    assert exp.steps_per_epoch == direct.batches_per_epoch == direct.info.num_train // 32
    assert Experiment(_recipe(steps_per_epoch=2)).steps_per_epoch == 2
    # Evaluation (a finished run's data): no sample index; the data kind stays the recipe's,
    # since it decides the test split's transform (see the ImageNet test below).
    evaluation = Experiment(recipe, evaluation=True).data_args()
    assert evaluation["augment"] == "cifar" and "with_index" not in evaluation
    # A two-view model distorts inside its step: its batches come undistorted.
    assert Experiment(_recipe(method="two_view", method_args={})).data_args()["augment"] == "none"


def test_model_optimizer_and_callbacks_are_the_builders():
    recipe = _recipe()
    exp = Experiment(recipe)
    info = exp.bundle.info
    model = exp.compile(exp.build_model())
    assert isinstance(model, MultiExitDistiller)
    assert model.backbone.output["logits"].shape[-1] == info.num_classes
    assert tuple(model.backbone.input.shape[1:]) == tuple(info.image_shape)
    # The cosine schedule runs over the recipe's epochs of the data's batches.
    schedule = model.optimizer.get_config()["learning_rate"]
    expected = train.learning_rate(recipe.optimizer, recipe.epochs, exp.steps_per_epoch)
    assert schedule["class_name"] == "CosineDecay"
    assert schedule["config"] == expected.get_config()
    assert schedule["config"]["decay_steps"] == recipe.epochs * exp.steps_per_epoch
    (annealing,) = exp.method_callbacks()
    assert isinstance(annealing, callbacks.DistillationAnnealing) and annealing.last_epochs == 1


def test_from_run_reopens_a_finished_run(tmp_path):
    recipe = _recipe()
    run = tmp_path / "run"
    write_json_atomic(run / "recipe.json", recipe.to_dict())
    model = MultiExitDistiller(tiny_backbone(num_classes=10))
    x = np.random.default_rng(0).random((2, 8, 8, 1)).astype("float32")
    expected = [np.asarray(v) for v in keras.tree.flatten(model(x, training=False))]
    model.save(run / "model.keras")
    exp = Experiment.from_run(run)
    assert exp.recipe == recipe and exp.out_dir == run and exp.evaluation
    got = [np.asarray(v) for v in keras.tree.flatten(exp.load_model()(x, training=False))]
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert exp.data_args()["augment"] == "cifar"


def _test_split(exp):
    batches = [(np.asarray(x), np.asarray(y)) for x, y in exp.bundle.test]
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])


@pytest.mark.parametrize(
    "method, augment",
    [
        ("multi_exit", "imagenet"),
        ("multi_exit", "resize256_crop224"),
        ("two_view", "resize256_crop224"),  # trains on "resize256" squares
    ],
)
def test_evaluation_sees_the_test_split_training_saw(method, augment):
    # ImageNet's images come in many sizes; its kinds resize and centre-crop the test split to
    # 224x224. A finished run's evaluation (keras-sd evaluate / thresholds / export) must feed
    # its model those same images: with augment="none" it fed the raw images (or refused the
    # variable-size set), so no ImageNet run could be re-evaluated.
    recipe = _recipe(
        method=method,
        method_args={},
        data=DataConfig(name="imagenet2012", batch_size=3, augment=augment),
    )
    with tfds.testing.mock_data(num_examples=5):
        x_train, y_train = _test_split(Experiment(recipe))
        x_eval, y_eval = _test_split(Experiment(recipe, evaluation=True))
    assert x_train.shape == x_eval.shape == (5, 224, 224, 3)
    np.testing.assert_array_equal(y_eval, y_train)
    np.testing.assert_array_equal(x_eval, x_train)


def test_the_docstring_example_runs():
    result = doctest.testmod(experiment)
    assert result.attempted > 0 and result.failed == 0


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"`recipe` must be a keras_sd.recipes.Recipe, got dict"):
        Experiment({"name": "x"})
    with pytest.raises(ValueError, match=r"`run_dir` .* has no recipe.json"):
        Experiment.from_run(tmp_path)
    write_json_atomic(tmp_path / "recipe.json", _recipe().to_dict())
    with pytest.raises(ValueError, match=r"`run_dir` .* has no model.keras"):
        Experiment.from_run(tmp_path)
    with pytest.raises(ValueError, match=r"`out_dir` is None .* expected a run directory"):
        Experiment(_recipe()).train()
    for name in ("NoSuchCallback", "inspection_callbacks", "DISTILLATION_TERMS"):
        with pytest.raises(ValueError, match=rf"unknown callback '{name}' .* callback class"):
            experiment.build_callbacks(_recipe(callbacks={name: {}}))


def test_train_and_evaluate_are_experiment_users():
    # keras-sd train / evaluate are one call each on an Experiment; the old names still import.
    tree = ast.parse((PACKAGE / "train.py").read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert sorted(functions) == ["evaluate", "train"]
    for fn in functions.values():
        assert "Experiment" in ast.unparse(fn.body[-1])
    assert train.build_model is experiment.build_model
    assert train.EpochHistory is callbacks.EpochHistory


def _callback_classes(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and any(
            ast.unparse(b).endswith(("Callback", "BackupAndRestore", "VariableSchedule"))
            for b in node.bases
        )
    ]


def test_callbacks_are_one_per_module_and_importable_as_before():
    modules = sorted((PACKAGE / "callbacks").glob("*.py"))
    per_module = {m.stem: _callback_classes(m) for m in modules}
    assert all(len(names) <= 1 for names in per_module.values()), per_module
    found = sorted(n for names in per_module.values() for n in names)
    assert found == [
        "AtomicBackupAndRestore",
        "AttentionMaps",
        "DistillationAnnealing",
        "EarlyExitPlot",
        "EpochHistory",
        "NonFiniteLossGuard",
        "RecipeHParams",
        "ReliabilityDiagram",
        "RunStats",
        "VariableSchedule",
        "_SummaryCallback",
    ]
    for name in [n for n in found if not n.startswith("_")] + ["PSKDAlphaScheduler"]:
        assert issubclass(getattr(callbacks, name), keras.callbacks.Callback), name
