"""The wheel ships the paper recipes: built from a copy of the source, installed into an empty
folder, it lists the recipes and smoke-trains one by name from outside the repository, and
``keras-sd --help`` imports no TensorFlow."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SOURCES = ("keras_sd", "recipes", "setup.py", "pyproject.toml", "README.md")


def _run(args, cwd, env=None, timeout=600):
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(site, script, env)``: the wheel installed alone into ``site``."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = _run(
        [*pip, "wheel", ".", "-w", str(tmp / "dist"), "--no-deps", "--no-build-isolation"], src
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("keras_sd-*.whl")
    site = tmp / "site"
    done = _run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    # The installed package first; the test interpreter's site-packages give the dependencies.
    env = {**os.environ, "PYTHONPATH": str(site), "TF_CPP_MIN_LOG_LEVEL": "0"}
    env.pop("KERAS_SD_DEBUG", None)
    return site, site / "bin" / "keras-sd", env


def test_wheel_holds_every_recipe(installed):
    site, _, _ = installed
    shipped = sorted(
        p.relative_to(site / "keras_sd" / "paper_recipes").as_posix()
        for p in (site / "keras_sd" / "paper_recipes").rglob("*.py")
    )
    in_repo = sorted(
        p.relative_to(REPO / "recipes").as_posix() for p in (REPO / "recipes").rglob("*.py")
    )
    assert shipped == in_repo and len(shipped) >= 41


def test_installed_cli_lists_and_trains_a_recipe_by_name(installed, tmp_path):
    site, script, env = installed
    where = _run([sys.executable, "-c", "import keras_sd; print(keras_sd.__file__)"], tmp_path, env)
    assert where.stdout.strip() == str(site / "keras_sd" / "__init__.py")
    listing = _run([str(script), "recipes"], tmp_path, env)
    assert listing.returncode == 0, listing.stderr[-2000:]
    assert "44 packaged recipes" in listing.stdout
    assert "multi_exit/resnet18_cifar100   [multi_exit]" in listing.stdout
    assert "79.01 / 76.31" in listing.stdout
    out = tmp_path / "run"
    res = _run(
        [
            str(script),
            "train",
            "two_view/resnet32_cifar10:baseline,smoke",
            "--out",
            str(out),
            "--verbose",
            "0",
            "--set",
            "steps_per_epoch=2",
            "--set",
            "epochs=1",
        ],
        tmp_path,
        env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["name"] == "two_view/resnet32_cifar10:baseline:smoke"
    assert (recipe["method"], recipe["method_args"], recipe["data"]["name"]) == (
        "baseline",
        {},
        "digits",
    )
    assert (out / "metrics.json").exists()
    missing = _run([str(script), "train", "two_view/nope:smoke"], tmp_path, env)
    assert missing.returncode == 2 and "keras-sd recipes" in missing.stderr


def test_help_imports_no_tensorflow(installed, tmp_path):
    _, script, env = installed
    start = time.perf_counter()
    res = _run([str(script), "--help"], tmp_path, env)
    seconds = time.perf_counter() - start
    assert res.returncode == 0 and "recipes" in res.stdout
    assert res.stderr == ""  # no TensorFlow log lines
    assert seconds < 10, seconds  # about 0.3 s; generous for a loaded CI machine
    probe = "import sys, keras_sd.cli, keras_sd.recipes; print('tensorflow' in sys.modules)"
    assert _run([sys.executable, "-c", probe], tmp_path, env).stdout.strip() == "False"
