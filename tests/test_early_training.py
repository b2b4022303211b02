"""benchmarks/early_training.py: a study run's first steps, rebuilt exactly as the study trains.

Checked against an independent `Experiment.train` of the same smoke-protocol row on a small
real-CIFAR-10 folder: the probe's logs after the first epoch equal the run's history.json, its
kernel norms at init equal a freshly built model's, and after the epoch the run's epoch-1
backup's.
"""

import dataclasses
import json

import keras
import numpy as np
import pytest
from harness import load_benchmark, mini_cifar10


def _kernel_norms(model) -> dict:
    return {
        v.path: float(np.linalg.norm(v.numpy()))
        for v in model.trainable_variables
        if v.path.endswith("kernel")
    }


def test_step_values_recover_each_step_from_running_means():
    probe = load_benchmark("early_training")
    values = [3.0, 1.0, 2.0, 6.0]
    running = list(np.cumsum(values) / np.arange(1, 5))
    np.testing.assert_allclose(probe.step_values(running), values, rtol=1e-12)


@pytest.mark.parametrize(
    "row, terms",
    [
        # the prediction bank and its per-sample index; the step-scheduled alpha_t
        ("pskd_byot_dmfl", ("loss", "ce_loss", "kl_loss", "mutual_feature_loss", "exit3_accuracy")),
        # DistillationAnnealing schedules alpha and the hint weight by fit's epochs
        ("multi_exit", ("loss", "ce_loss", "kl_loss", "feature_loss", "exit3_accuracy")),
    ],
)
def test_probe_reproduces_the_study_runs_first_epoch(row, terms, cifar10_dir, tmp_path):
    from keras_sd.experiment import Experiment

    study = load_benchmark("cifar10_study")
    probe = load_benchmark("early_training")
    data = mini_cifar10(cifar10_dir, tmp_path / "mini", train=40, test=10)
    # The smoke protocol with 40 images per class and 2 epochs: 3 steps an epoch.
    protocol = dataclasses.replace(study.PROTOCOLS["smoke"], train_per_class=40, epochs=2)
    recipe, _ = study.study_recipe(row, protocol, 1, data, 1)
    Experiment(recipe, tmp_path / "run").train(verbose=0)
    history = json.loads((tmp_path / "run" / "history.json").read_text())["epochs"][0]
    # The run's weights after its first epoch: its epoch-1 backup (both epochs' are kept).
    (first,) = (tmp_path / "run" / "backup").glob("ckpt-e1-*.weights.h5")
    after_one = Experiment(recipe).build_model()
    after_one(keras.ops.zeros((2, 32, 32, 3)), training=False)
    after_one.load_weights(first)
    trained = _kernel_norms(after_one)

    result = probe.probe(recipe, init_seed=1)
    assert result["steps"] == 3  # 400 images, batch 128, the last partial batch dropped
    for name in terms:
        assert result["running"][name][-1] == pytest.approx(history[name], rel=1e-5), name
        # each step's own value averages back to the epoch's log
        assert np.mean(result["terms"][name]) == pytest.approx(history[name], rel=1e-5), name
    keras.utils.set_random_seed(1)
    fresh = _kernel_norms(Experiment(recipe).build_model())
    assert set(result["kernels"]) == set(fresh) == set(trained)
    for path, norms in result["kernels"].items():
        assert len(norms) == 4  # at init and after each of the 3 steps
        assert norms[0] == pytest.approx(fresh[path], rel=1e-6), path
        assert norms[-1] == pytest.approx(trained[path], rel=1e-5), path
    assert any(n[-1] != n[0] for n in result["kernels"].values())

    # Another initialisation with the same data: other weights at init, the same batches.
    other = probe.probe(recipe, init_seed=2, steps=1)
    keras.utils.set_random_seed(2)
    fresh2 = _kernel_norms(Experiment(recipe).build_model())
    for path, norms in other["kernels"].items():
        assert norms[0] == pytest.approx(fresh2[path], rel=1e-6), path
    assert other["terms"]["loss"][0] != pytest.approx(result["terms"]["loss"][0], rel=1e-3)
    text = probe.report(result, top=3)
    assert text.count("x  ") == 3 and "loss" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--row", "nope"], "--row 'nope' must be one of"),
        (["--row", "baseline", "--seed", "-1"], "--seed -1 must be an integer >= 0"),
        (["--row", "baseline", "--method-args", "{x"], "not JSON"),
        (["--row", "baseline", "--optimizer", "[1]"], "expected a JSON object"),
        (["--row", "baseline", "--protocol", "C"], "--protocol 'C' must be one of"),
        (["--row", "baseline", "--checkout", "/nonexistent"], "is not a keras_sd checkout"),
    ],
)
def test_cli_rejects_bad_arguments(args, message, capsys):
    probe = load_benchmark("early_training")
    with pytest.raises(SystemExit) as err:
        probe.main(args)
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_steps_beyond_one_epoch_are_rejected(cifar10_dir, tmp_path):
    study = load_benchmark("cifar10_study")
    probe = load_benchmark("early_training")
    data = mini_cifar10(cifar10_dir, tmp_path / "mini", train=20, test=10)
    recipe, _ = study.study_recipe("baseline", study.PROTOCOLS["smoke"], 0, data, 1)
    with pytest.raises(ValueError, match=r"^`steps` must be an int in \[1, 1\] .*got 2\.$"):
        probe.probe(recipe, init_seed=0, steps=2)
