"""Recipes: a training run as a frozen dataclass, loaded from a Python file.

A recipe file defines ``get_config(arg: str | None = None) -> Recipe``; its module docstring names
the paper, the table row, the published number and the exact command. ``RECIPE:arg`` passes ``arg``
to ``get_config``. The loader handles, for every recipe:

* the word ``smoke`` in ``arg``: the run shrinks to minutes on two CPU cores (embedded digits data,
  two epochs), plus the file's ``SMOKE`` overrides when it defines them (``{"a.b": v}``, e.g. a
  smaller ViT: ``{"backbone_args.num_layers": 4}``);
* the word ``baseline``, in files that define ``BASELINE`` (what the baseline row changes beyond
  the generic `baseline`, e.g. ``{"data.augment": "cifar"}``): the backbone alone, with
  cross-entropy, on the method row's data and schedule;
* ``name``, when ``get_config`` leaves it empty: ``<method dir>/<file stem>[:arg]``;
* ``published``, when left empty and the file defines ``PUBLISHED`` (``arg -> text``);
* an empty ``arg`` means the file's ``DEFAULT_ARG`` when it defines one.

``RECIPE`` is a recipe file's path or the name of a recipe shipped with the package
(``multi_exit/resnet18_cifar100``, see `packaged_recipes_dir`). ``--set a.b=v`` overrides any
field; types are checked against the field and unknown keys are rejected (method arguments against
the method's constructor).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import pathlib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from keras_sd import validation

METHODS = {
    "baseline": "keras_sd.models.base:Baseline",
    "two_view": "keras_sd.models.two_view:TwoViewDistiller",
    "multi_exit": "keras_sd.models.multi_exit:MultiExitDistiller",
    "self_guidance": "keras_sd.models.self_guidance:SelfGuidanceDistiller",
}
SCHEDULES = ("constant", "multistep", "cosine")
OPTIMIZERS = ("sgd", "adam", "adamw")
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which data set and how it is batched (see `keras_sd.data.load`)."""

    name: str = "digits"
    batch_size: int = 128
    eval_batch_size: int | None = None
    augment: str = "auto"
    train_per_class: int | None = None
    subset_seed: int | None = None  # seed of the train_per_class subset (None: the run's seed)
    data_dir: str | None = None
    with_index: bool = False
    image_size: int | None = None


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer and learning-rate schedule.

    ``weight_decay`` is the papers' coupled L2 (PyTorch SGD style, applied by the model, see
    `SelfDistillationModel`) for ``"sgd"`` and ``"adam"``; for ``"adamw"`` it is AdamW's
    decoupled decay (PyTorch ``AdamW(weight_decay=...)``), applied by the optimizer instead. ``milestones`` are epochs at which the learning rate is multiplied by
    ``gamma`` (``schedule="multistep"``); ``"cosine"`` decays to 0 over the run. Schedules advance
    per step, so resuming from a checkpoint resumes the schedule where it was.
    """

    name: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "multistep"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: int = 0


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One training run. ``method_args`` are the method's constructor arguments; ``callbacks``
    maps a callback name of `keras_sd.callbacks` to its keyword arguments. ``eval_every``: the
    test split is evaluated every ``eval_every`` epochs and at the last one (the best epoch of
    metrics.json is over those epochs). ``save_freq``: how often the run's backup/ commits,
    ``"epoch"`` or every that many optimizer steps (a killed run then resumes mid-epoch, from
    the last such commit)."""

    name: str = ""  # the loader fills it from the recipe file's path and argument
    method: str = "baseline"
    backbone: str = "resnet20"
    backbone_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    method_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    callbacks: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    data: DataConfig = DataConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    epochs: int = 200
    eval_every: int = 1
    steps_per_epoch: int | None = None
    save_freq: str | int = "epoch"
    seed: int = 0
    strategy: str = "auto"
    precision: str = "float32"
    jit_compile: bool = False
    paper: str = ""
    published: str = ""

    def __post_init__(self):
        validate(self)

    def replace(self, **changes) -> Recipe:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return _to_plain(dataclasses.asdict(self))


def _to_plain(value):
    if isinstance(value, Mapping):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def validate(recipe: Recipe) -> None:
    """Raises a ValueError naming the first bad field of ``recipe``."""
    validation.one_of(recipe.method, "method", METHODS)
    validation.one_of(recipe.strategy, "strategy", STRATEGIES)
    validation.one_of(recipe.precision, "precision", PRECISIONS)
    validation.one_of(recipe.optimizer.name, "optimizer.name", OPTIMIZERS)
    validation.one_of(recipe.optimizer.schedule, "optimizer.schedule", SCHEDULES)
    if not isinstance(recipe.epochs, int) or recipe.epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer, got {recipe.epochs!r}.")
    if (
        isinstance(recipe.eval_every, bool)
        or not isinstance(recipe.eval_every, int)
        or (recipe.eval_every < 1)
    ):
        raise ValueError(f"`eval_every` must be a positive integer, got {recipe.eval_every!r}.")
    if recipe.steps_per_epoch is not None and recipe.steps_per_epoch < 1:
        raise ValueError(f"`steps_per_epoch` must be None or >= 1, got {recipe.steps_per_epoch!r}.")
    if recipe.save_freq != "epoch" and (
        isinstance(recipe.save_freq, bool)
        or not isinstance(recipe.save_freq, int)
        or recipe.save_freq < 1
    ):
        raise ValueError(
            "`save_freq` must be 'epoch' or a positive int (optimizer steps between backups), "
            f"got {recipe.save_freq!r}."
        )
    if recipe.data.batch_size < 1:
        raise ValueError(f"`data.batch_size` must be >= 1, got {recipe.data.batch_size!r}.")
    if not recipe.optimizer.learning_rate > 0:
        raise ValueError(
            f"`optimizer.learning_rate` must be > 0, got {recipe.optimizer.learning_rate!r}."
        )
    if recipe.optimizer.weight_decay < 0:
        raise ValueError(
            f"`optimizer.weight_decay` must be >= 0, got {recipe.optimizer.weight_decay!r}."
        )
    ms = recipe.optimizer.milestones
    if list(ms) != sorted(ms) or any(m < 1 for m in ms):
        raise ValueError(f"`optimizer.milestones` must be increasing epochs >= 1, got {ms!r}.")


def method_class(method: str):
    """The model class registered for ``method``."""
    validation.one_of(method, "method", METHODS)
    module, name = METHODS[method].split(":")
    return getattr(importlib.import_module(module), name)


# ---------------------------------------------------------------------------- smoke variant
def smoke(recipe: Recipe) -> Recipe:
    """The same method and backbone on the embedded digits data for two short epochs (CPU)."""
    return recipe.replace(
        name=f"{recipe.name}:smoke",
        data=dataclasses.replace(
            recipe.data,
            name="digits",
            batch_size=64,
            eval_batch_size=None,
            augment="auto",
            train_per_class=None,
            data_dir=None,
            image_size=None,
        ),
        optimizer=dataclasses.replace(
            recipe.optimizer,
            learning_rate=min(recipe.optimizer.learning_rate, 0.05),
            milestones=(),
            warmup_epochs=0,
        ),
        epochs=2,
        steps_per_epoch=None,
        strategy="default" if recipe.strategy == "auto" else recipe.strategy,
        callbacks={k: _shrink_callback(v) for k, v in recipe.callbacks.items()},
    )


def _shrink_callback(kwargs: Mapping[str, Any]) -> dict:
    # Schedules phrased in epochs (e.g. "anneal for the last 5 epochs") must fit a 2-epoch run.
    out = dict(kwargs)
    for key in ("last_epochs",):
        if key in out:
            out[key] = min(int(out[key]), 1)
    return out


# ---------------------------------------------------------------------------- baseline variant
def baseline(recipe: Recipe) -> Recipe:
    """The backbone alone with cross-entropy, on the method row's data, schedule and epochs: method
    ``"baseline"``, no method arguments, no callbacks, no sample index (only PS-KD needs one)."""
    return recipe.replace(
        method="baseline",
        method_args={},
        callbacks={},
        data=dataclasses.replace(recipe.data, with_index=False),
    )


def variant(arg: str | None, variants: Mapping):
    """``variants[arg]``, or a ValueError naming ``arg``, its value and the accepted ones."""
    if arg not in variants:
        named = sorted(k for k in variants if k)
        expected = f"one of {named}" if None not in variants else f"one of {named} or empty"
        raise ValueError(f"`arg` must be {expected if named else 'empty'}, got {arg!r}.")
    return variants[arg]


# ---------------------------------------------------------------------------- loading
def split_spec(spec: str) -> tuple[str, str | None]:
    """``"path.py:arg"`` -> ``("path.py", "arg")``."""
    path, _, arg = str(spec).partition(":")
    return path, arg or None


def packaged_recipes_dir() -> pathlib.Path:
    """The paper recipes shipped with keras_sd: ``keras_sd/paper_recipes`` in an installed wheel
    (the repository's ``recipes/``, mapped by setup.py), else ``recipes/`` next to the package in
    a source checkout."""
    installed = pathlib.Path(__file__).resolve().parent / "paper_recipes"
    if installed.is_dir():
        return installed
    return pathlib.Path(__file__).resolve().parent.parent / "recipes"


def recipe_file(path: str) -> pathlib.Path:
    """A recipe file path, or a packaged recipe's name (``multi_exit/resnet18_cifar100``)."""
    file = pathlib.Path(path)
    if file.is_file():
        return file
    packaged = packaged_recipes_dir() / (path if path.endswith(".py") else f"{path}.py")
    if not file.is_absolute() and packaged.is_file():
        return packaged
    raise ValueError(
        f"recipe file {path!r} does not exist (expected recipes/<method>/<name>.py) and is not "
        "the name of a packaged recipe (<method>/<name>; `keras-sd recipes` lists them)."
    )


def _module(file: pathlib.Path) -> types.ModuleType:
    mod_spec = importlib.util.spec_from_file_location(f"keras_sd_recipe_{file.stem}", file)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"recipe file {str(file)!r} defines no get_config(arg=None) function.")
    return module


def load(spec: str, overrides: Sequence[str] = ()) -> Recipe:
    """Loads ``RECIPE[:arg]`` (a recipe file path or packaged name) and applies ``--set``
    overrides."""
    path, arg = split_spec(spec)
    file = recipe_file(path)
    module = _module(file)
    words = [w for w in (arg or "").split(",") if w]
    want_smoke = "smoke" in words
    words = [w for w in words if w != "smoke"]
    label = ",".join(words) or getattr(module, "DEFAULT_ARG", None)
    want_baseline = hasattr(module, "BASELINE") and "baseline" in words
    if want_baseline:
        words = [w for w in words if w != "baseline"]
    rest = ",".join(words) or getattr(module, "DEFAULT_ARG", None)
    try:
        recipe = module.get_config(rest)
    except TypeError as e:  # e.g. Recipe(...) with a field it does not have
        raise ValueError(f"get_config({rest!r}) in {path!r} failed: {e}") from None
    if not isinstance(recipe, Recipe):
        raise ValueError(
            f"get_config({rest!r}) in {path!r} must return a keras_sd.recipes.Recipe, "
            f"got {type(recipe).__name__}."
        )
    if want_baseline:
        recipe = baseline(recipe)
        for key, value in module.BASELINE.items():
            recipe = apply_override(recipe, key, value)
    if not recipe.name:
        recipe = recipe.replace(
            name=f"{file.parent.name}/{file.stem}{f':{label}' if label else ''}"
        )
    if not recipe.published and hasattr(module, "PUBLISHED"):
        recipe = recipe.replace(
            published=module.PUBLISHED.get(label, "not published for this variant")
        )
    if want_smoke:
        recipe = smoke(recipe)
        for key, value in getattr(module, "SMOKE", {}).items():
            recipe = apply_override(recipe, key, value)
    return apply_overrides(recipe, overrides)


def all_recipe_files(root: str | pathlib.Path | None = None) -> list[pathlib.Path]:
    """The recipe files under ``root`` (default: the packaged recipes)."""
    root = packaged_recipes_dir() if root is None else pathlib.Path(root)
    return sorted(
        p
        for p in root.rglob("*.py")
        if not p.name.startswith("_") and p.parent.name != "__pycache__"
    )


def file_args(file: str | pathlib.Path) -> list[str | None]:
    """The arguments a recipe file documents: its ``ARGS`` list, else the keys of its
    ``VARIANTS`` (with ``None``, the default, first and ``baseline`` where the loader adds it)."""
    module = _module(pathlib.Path(file))
    if hasattr(module, "ARGS"):
        return list(module.ARGS)
    args = [None] + [k for k in getattr(module, "VARIANTS", {}) if k]
    if hasattr(module, "BASELINE"):
        args.insert(1, "baseline")
    return args


@dataclasses.dataclass(frozen=True)
class CatalogueEntry:
    """One packaged recipe file, for `keras-sd recipes`."""

    name: str  # what `keras-sd train` accepts, e.g. "multi_exit/resnet18_cifar100"
    method: str
    paper: str
    row: str  # the docstring's "Row:" line, else its title line
    published: str
    args: tuple[str, ...]
    examples_only: bool  # args are examples (the file's ARGS); its docstring gives the rest


def catalogue(root: str | pathlib.Path | None = None) -> list[CatalogueEntry]:
    """Every recipe file under ``root`` (default: the packaged ones) with its default recipe's
    method, paper and published number; imports no TensorFlow."""
    entries = []
    for file in all_recipe_files(root):
        recipe = load(str(file))
        module = _module(file)
        doc = (module.__doc__ or "").strip().splitlines()
        row = next((line for line in doc if line.startswith("Row:")), doc[0] if doc else "")
        entries.append(
            CatalogueEntry(
                name=f"{file.parent.name}/{file.stem}",
                method=recipe.method,
                paper=recipe.paper,
                row=row.removeprefix("Row:").strip(),
                published=recipe.published,
                args=tuple(a for a in file_args(file) if a),
                examples_only=hasattr(module, "ARGS"),
            )
        )
    return entries


# ---------------------------------------------------------------------------- overrides
def parse_value(text: str):
    """Python literal if it parses as one (numbers, bools, None, tuples), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _coerce(value, annotation, key: str):
    """Checks ``value`` against a type annotation (a few shapes are enough for recipes)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _coerce(value, option, key)
            except ValueError:
                continue
        raise ValueError(f"`{key}`: {value!r} matches none of {annotation}.")
    if annotation is type(None):
        if value is None:
            return None
        raise ValueError(f"`{key}` expected None, got {value!r}.")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"`{key}` expects a bool (True/False), got {value!r}.")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"`{key}` expects an int, got {value!r}.")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"`{key}` expects a number, got {value!r}.")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"`{key}` expects a string, got {value!r}.")
    if origin is tuple:
        if isinstance(value, (int, float)):
            value = (value,)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"`{key}` expects a tuple, got {value!r}.")
        return tuple(_coerce(v, args[0], key) for v in value)
    return value


def _coerce_like(value, current, key):
    """For free-form dicts (method_args): the type of the current/default value decides."""
    if current is None or value is None:
        return value
    if isinstance(current, bool):
        return _coerce(value, bool, key)
    if isinstance(current, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(current, (int, float)):
        return _coerce(value, float, key)
    if isinstance(current, str):
        return _coerce(value, str, key)
    if isinstance(current, (list, tuple)):
        return tuple(value) if isinstance(value, (list, tuple)) else (value,)
    return value


# Constructor arguments a recipe cannot set: objects, or the base class's plumbing.
_NOT_METHOD_ARGS = (
    "self",
    "backbone",
    "kwargs",
    "args",
    "soft_targets",
    "loss_weights",
    "tracked_outputs",
    "term_names",
)


def method_arguments(method: str) -> dict:
    """Argument -> default of the method class's constructor and its keras_sd base classes (the
    base class takes the PS-KD shorthand ``pskd_alpha`` for every method)."""
    defaults = {}
    for klass in reversed(method_class(method).__mro__):
        init = klass.__dict__.get("__init__")
        if init is None or not klass.__module__.startswith("keras_sd."):
            continue
        for name, p in inspect.signature(init).parameters.items():
            if name not in _NOT_METHOD_ARGS:
                defaults[name] = None if p.default is inspect.Parameter.empty else p.default
    return defaults


def apply_override(recipe: Recipe, key: str, value) -> Recipe:
    """One ``a.b=v`` override, type-checked; unknown keys raise a ValueError naming them."""
    parts = key.split(".")
    fields = {f.name: f for f in dataclasses.fields(Recipe)}
    head = parts[0]
    if head not in fields:
        raise ValueError(f"unknown recipe key {key!r}; known: {sorted(fields)}.")
    hints = typing.get_type_hints(Recipe)
    if head in ("data", "optimizer"):
        sub = getattr(recipe, head)
        sub_fields = {f.name for f in dataclasses.fields(sub)}
        if len(parts) != 2 or parts[1] not in sub_fields:
            raise ValueError(f"unknown recipe key {key!r}; known {head}.*: {sorted(sub_fields)}.")
        sub_hints = typing.get_type_hints(type(sub))
        new = _coerce(value, sub_hints[parts[1]], key)
        return recipe.replace(**{head: dataclasses.replace(sub, **{parts[1]: new})})
    if head == "method_args":
        if len(parts) != 2:
            raise ValueError(f"`{key}`: use method_args.<argument>=value.")
        defaults = method_arguments(recipe.method)
        if parts[1] not in defaults:
            raise ValueError(
                f"unknown method argument {parts[1]!r} for method {recipe.method!r}; "
                f"known: {sorted(defaults)}."
            )
        current = recipe.method_args.get(parts[1], defaults[parts[1]])
        new = _coerce_like(value, current, key)
        return recipe.replace(method_args={**recipe.method_args, parts[1]: new})
    if head == "backbone_args":
        if len(parts) != 2:
            raise ValueError(f"`{key}`: use backbone_args.<argument>=value.")
        return recipe.replace(backbone_args={**recipe.backbone_args, parts[1]: value})
    if head == "callbacks":
        if len(parts) != 3:
            raise ValueError(f"`{key}`: use callbacks.<name>.<argument>=value.")
        cb = dict(recipe.callbacks.get(parts[1], {}))
        cb[parts[2]] = _coerce_like(value, cb.get(parts[2]), key)
        return recipe.replace(callbacks={**recipe.callbacks, parts[1]: cb})
    if len(parts) != 1:
        raise ValueError(f"unknown recipe key {key!r}: {head!r} has no sub-fields.")
    return recipe.replace(**{head: _coerce(value, hints[head], key)})


def apply_overrides(recipe: Recipe, overrides: Sequence[str]) -> Recipe:
    """Applies ``["a.b=v", ...]``; each must contain ``=``."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"`--set` expects key=value, got {item!r}.")
        recipe = apply_override(recipe, key.strip(), parse_value(text.strip()))
    return recipe


def to_source(recipe: Recipe, docstring: str = "") -> str:
    """A recipe file (Python source) that reproduces ``recipe`` exactly; used by `keras-sd tune`."""
    d = recipe.to_dict()
    data = ", ".join(f"{k}={v!r}" for k, v in d.pop("data").items())
    opt = d.pop("optimizer")
    opt["milestones"] = tuple(opt["milestones"])
    opt_s = ", ".join(f"{k}={v!r}" for k, v in opt.items())
    rest = ",\n        ".join(f"{k}={v!r}" for k, v in d.items())
    return (
        f'"""{docstring or recipe.name}"""\n\n'
        "from keras_sd.recipes import DataConfig, OptimizerConfig, Recipe\n\n\n"
        "def get_config(arg=None):\n"
        "    return Recipe(\n"
        f"        {rest},\n"
        f"        data=DataConfig({data}),\n"
        f"        optimizer=OptimizerConfig({opt_s}),\n"
        "    )\n"
    )
