"""Thin shim: the metadata lives in pyproject.toml; this file only says which packages ship.

The paper recipes stay in the repository's top-level ``recipes/`` (where the README, the docs and
the commands name them) and ship in the wheel as ``keras_sd/paper_recipes/`` (package data), so
that ``keras-sd train multi_exit/resnet18_cifar100`` works after ``pip install``.
"""

import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).resolve().parent
RECIPE_DIRS = sorted(
    d.name for d in (HERE / "recipes").iterdir() if d.is_dir() and d.name.isidentifier()
)

setup(
    packages=find_packages(include=["keras_sd", "keras_sd.*"])
    + ["keras_sd.paper_recipes"]
    + [f"keras_sd.paper_recipes.{name}" for name in RECIPE_DIRS],
    package_dir={"keras_sd.paper_recipes": "recipes"},
)
