"""keras-tuner studies over any recipe's fields (``lambda``, ``mu``, ``T``, ``alpha``, ...).

`RecipeHyperModel` is a `keras_tuner.HyperModel` that turns a trial's hyperparameters into
recipe overrides with `keras_sd.recipes.apply_override` (the same path as ``--set``, so types
are checked the same way), then builds, compiles and fits the recipe through
`keras_sd.experiment.Experiment`, as `keras_sd.train.train` does. Any tuner works: `make_tuner`
builds ``RandomSearch``, ``BayesianOptimization`` or ``Hyperband`` (epochs as the budget) and
passes the recipe's distribution strategy to keras-tuner. `run_study` is what ``keras-sd tune`` runs: resumable
(keras-tuner's ``overwrite=False`` in the same directory), a results table, and the best
configuration written as a recipe file that ``keras-sd train`` accepts.

Default search spaces are the papers' sweeps (`DEFAULT_SPACES`):

=============== =============================== ===============================================
argument        space                           source
=============== =============================== ===============================================
temperature     float 1 .. 5                    two-view (DDGSD) hyper-parameter discussion
kl_weight       float 0.1 .. 2                  two-view lambda (1 in the paper)
mmd_weight      {0, 1e-4, 5e-4, 1e-3, 5e-3,     two-view mu, Table 5 (log-spaced, with 0 = off)
                1e-2}
alpha           float 0.1 .. 0.8                multi-exit, TPAMI Fig. 10
feature_weight  float 0.01 .. 0.08              multi-exit lambda, TPAMI Fig. 10
kd_weight       {0, 0.1, 0.25, 0.5, 1, 3}       Self-Guidance lambda, Table 5
pskd_alpha      float 0.1 .. 0.9                PS-KD alpha_T (0.8 in the papers; not swept)
=============== =============================== ===============================================

Reference: the sweeps of Xu & Liu (DDGSD, AAAI 2019) Table 5; Zhang, Bao & Ma (TPAMI) Fig. 10;
Zheng & Peng (Self-Guidance, WACV 2022) Table 5; Kim et al. (PS-KD, ICCV 2021).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import keras_tuner

from keras_sd import recipes as recipes_lib
from keras_sd.recipes import Recipe

TUNERS = ("random", "bayesian", "hyperband")
STUDY_FILE = "study.json"
BEST_RECIPE = "best_recipe.py"
PROJECT = "trials"


# ---------------------------------------------------------------------------- search spaces
@dataclasses.dataclass(frozen=True)
class Space:
    """One hyperparameter's search space: a float/int range or a list of choices.

    Args:
        low: lower bound of a range.
        high: upper bound of a range (> ``low``).
        values: choices (a non-empty tuple) instead of a range.
        log: sample the range on a log scale (needs ``low > 0``).
        integer: the range holds integers.
    """

    low: float | None = None
    high: float | None = None
    values: tuple = ()
    log: bool = False
    integer: bool = False

    def __post_init__(self):
        if self.values:
            if self.low is not None or self.high is not None:
                raise ValueError(
                    f"`Space`: give either `values` or `low`/`high`, got values={self.values!r} "
                    f"and low={self.low!r}, high={self.high!r}."
                )
            if len(set(self.values)) != len(self.values):
                raise ValueError(f"`Space.values` must be distinct, got {self.values!r}.")
            return
        if self.low is None or self.high is None:
            raise ValueError(
                f"`Space` needs `values` or both `low` and `high`, got low={self.low!r}, "
                f"high={self.high!r}."
            )
        if not self.high > self.low:
            raise ValueError(
                f"`Space.high` must be greater than `low`, got low={self.low!r}, high={self.high!r}."
            )
        if self.log and not self.low > 0:
            raise ValueError(f"`Space.low` must be > 0 on a log scale, got {self.low!r}.")

    def define(self, hp: keras_tuner.HyperParameters, name: str):
        """Registers the hyperparameter ``name`` in ``hp`` and returns its current value."""
        if self.values:
            return hp.Choice(name, list(self.values))
        sampling = "log" if self.log else "linear"
        if self.integer:
            return hp.Int(name, int(self.low), int(self.high), sampling=sampling)
        return hp.Float(name, float(self.low), float(self.high), sampling=sampling)

    def describe(self) -> str:
        if self.values:
            return "{" + ", ".join(repr(v) for v in self.values) + "}"
        kind = "int" if self.integer else "float"
        return f"{kind} {self.low:g} .. {self.high:g}" + (" (log)" if self.log else "")

    @classmethod
    def parse(cls, text: str) -> Space:
        """``"1:5"`` (float range), ``"1e-4:1e-2:log"``, ``"2:8:int"``, ``"0|1e-4|5e-4"`` (choices)."""
        text = str(text).strip()
        if "|" in text:
            values = tuple(recipes_lib.parse_value(v.strip()) for v in text.split("|") if v.strip())
            if not values:
                raise ValueError(f"`--search` space {text!r} has no choices.")
            return cls(values=values)
        parts = [p.strip() for p in text.split(":")]
        flags = set(parts[2:])
        if len(parts) < 2 or not flags <= {"log", "int"}:
            raise ValueError(f"`--search` space {text!r} must be LOW:HIGH[:log][:int] or A|B|C.")
        try:
            low, high = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"`--search` space {text!r}: LOW and HIGH must be numbers.") from None
        integer = "int" in flags
        if integer:
            low, high = int(low), int(high)
        return cls(low=low, high=high, log="log" in flags, integer=integer)


DEFAULT_SPACES: dict[str, Space] = {
    "temperature": Space(1.0, 5.0),
    "kl_weight": Space(0.1, 2.0),
    "mmd_weight": Space(values=(0.0, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2)),
    "alpha": Space(0.1, 0.8),
    "feature_weight": Space(0.01, 0.08),
    "kd_weight": Space(values=(0.0, 0.1, 0.25, 0.5, 1.0, 3.0)),
    "pskd_alpha": Space(0.1, 0.9),
}
DEFAULT_SEARCH: dict[str, tuple[str, ...]] = {
    "two_view": ("temperature", "kl_weight", "mmd_weight"),
    "multi_exit": ("alpha", "feature_weight"),
    "self_guidance": ("kd_weight",),
    "baseline": (),
}


def default_search(recipe: Recipe) -> tuple[str, ...]:
    """The fields searched when none are named: the method's paper sweep, plus ``pskd_alpha``
    when the recipe has PS-KD on."""
    names = list(DEFAULT_SEARCH.get(recipe.method, ()))
    if recipe.method_args.get("pskd_alpha") is not None:
        names.append("pskd_alpha")
    return tuple(names)


def recipe_key(recipe: Recipe, name: str) -> str:
    """The recipe key a search name stands for: a method argument's bare name means
    ``method_args.<name>``; dotted keys (``optimizer.learning_rate``) and top-level fields are
    used as they are."""
    if "." in name:
        return name
    defaults = recipes_lib._constructor_defaults(recipe.method)
    if name in defaults:
        return f"method_args.{name}"
    if name in {f.name for f in dataclasses.fields(Recipe)}:
        return name
    raise ValueError(
        f"`search`: {name!r} is neither an argument of method {recipe.method!r} "
        f"({sorted(defaults)}) nor a recipe field; use a dotted key such as "
        "optimizer.learning_rate."
    )


def parse_search(text: str | Sequence[str] | None) -> dict[str, Space | None]:
    """``"kl_weight,temperature=1:3"`` -> ``{"kl_weight": None, "temperature": Space(1, 3)}``
    (None: the default space)."""
    if text is None:
        return {}
    items = text.split(",") if isinstance(text, str) else list(text)
    out: dict[str, Space | None] = {}
    for item in items:
        item = item.strip()
        if not item:
            continue
        name, sep, space = item.partition("=")
        name = name.strip()
        if not name:
            raise ValueError(f"`--search` item {item!r} has no field name.")
        out[name] = Space.parse(space) if sep else None
    if not out:
        raise ValueError(f"`--search` names no field, got {text!r}.")
    return out


def resolve_search(
    recipe: Recipe,
    search: Sequence[str] | Mapping[str, Space | None] | None = None,
    spaces: Mapping[str, Space] | None = None,
) -> dict[str, tuple[str, Space]]:
    """``{hp name: (recipe key, Space)}``, checked against the recipe.

    Args:
        recipe: the recipe to tune.
        search: names to search (a list, or a mapping name -> Space or None for the default);
            None: `default_search`.
        spaces: spaces overriding `DEFAULT_SPACES` by name.

    Raises:
        ValueError: unknown field, no default space for a field, a space whose ends the recipe's
            type checks reject, or nothing to search. Values the method's constructor rejects
            (e.g. ``alpha`` > 1) are found by `RecipeHyperModel.check_space`.
    """
    if search is None:
        search = default_search(recipe)
    if isinstance(search, str) or (not isinstance(search, Mapping) and search):
        search = parse_search(search)  # names, optionally with "=SPACE"
    if not isinstance(search, Mapping):
        search = {}
    table = {**DEFAULT_SPACES, **(spaces or {})}
    resolved: dict[str, tuple[str, Space]] = {}
    for name, space in search.items():
        key = recipe_key(recipe, name)
        space = space or table.get(name) or table.get(key)
        if space is None:
            raise ValueError(
                f"`search`: no default space for {name!r}; give one, e.g. {name}=LOW:HIGH or "
                f"{name}=A|B|C (defaults exist for {sorted(DEFAULT_SPACES)})."
            )
        if not isinstance(space, Space):
            raise ValueError(f"`spaces[{name!r}]` must be a keras_sd.tuning.Space, got {space!r}.")
        # Fail now, not inside a trial: every end of the space must be a valid value.
        probes = space.values or (space.low, space.high)
        for value in probes:
            recipes_lib.apply_override(recipe, key, value)
        resolved[name] = (key, space)
    if not resolved:
        raise ValueError(
            f"`search`: nothing to search for method {recipe.method!r}; name fields with "
            "--search (e.g. optimizer.learning_rate=0.01:0.2:log)."
        )
    return resolved


def apply_hyperparameters(
    recipe: Recipe, search: Mapping[str, tuple[str, Space]], values: Mapping[str, Any]
) -> Recipe:
    """``recipe`` with every searched field set from ``values`` (hp name -> value)."""
    for name, (key, _) in search.items():
        if name in values:
            recipe = recipes_lib.apply_override(recipe, key, values[name])
    return recipe


def _order_key(value):
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


# ---------------------------------------------------------------------------- objective
_MAX_SUFFIXES = ("accuracy", "top5", "auc")
_MIN_SUFFIXES = ("loss", "ece", "nll", "aurc", "error")


def objective_direction(name: str) -> str:
    """``"max"`` for accuracies, ``"min"`` for losses / ECE / NLL / AURC / errors."""
    if name.endswith(_MAX_SUFFIXES):
        return "max"
    if name.endswith(_MIN_SUFFIXES):
        return "min"
    raise ValueError(
        f"`objective` {name!r}: cannot tell whether to maximise or minimise it; write "
        f"{name}:max or {name}:min."
    )


def make_objective(spec: str | keras_tuner.Objective) -> keras_tuner.Objective:
    """``"val_ece"`` or ``"val_exit3_accuracy:max"`` -> `keras_tuner.Objective`."""
    if isinstance(spec, keras_tuner.Objective):
        return spec
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"`objective` must be a metric name such as 'val_accuracy', got {spec!r}.")
    name, _, direction = spec.partition(":")
    direction = direction or objective_direction(name)
    if direction not in ("min", "max"):
        raise ValueError(f"`objective` direction must be 'min' or 'max', got {direction!r}.")
    return keras_tuner.Objective(name, direction)


def default_objective(model) -> str:
    """The final (deployed) output's validation accuracy: ``val_accuracy`` for single-output
    models, ``val_exit{K}_accuracy`` for multi-exit models."""
    primary = getattr(model, "tracked_outputs", ("output",))[0]
    return "val_accuracy" if primary == "output" else f"val_{primary}_accuracy"


# ---------------------------------------------------------------------------- hypermodel
class RecipeHyperModel(keras_tuner.HyperModel):
    """Builds and fits a recipe whose searchable fields come from the trial's hyperparameters.

    ``build(hp)`` applies the hyperparameters to the recipe (`apply_hyperparameters`, via
    `keras_sd.recipes.apply_override`), seeds Keras with the recipe's seed (every trial starts
    from the same initial weights and data order), builds the model and compiles it with the
    recipe's optimizer and schedule. ``fit(hp, model, ...)`` loads the recipe's data (cached per
    data configuration) and fits with the recipe's method callbacks, this package's TensorBoard
    callbacks (`keras_sd.callbacks.inspection_callbacks`, in the trial's log directory when a
    ``keras.callbacks.TensorBoard`` is among the search callbacks) and the tuner's callbacks. The
    epochs default to the recipe's; Hyperband passes its budget.

    Args:
        recipe: the recipe to tune.
        search: fields to search (see `resolve_search`); None: the method's paper sweep.
        spaces: spaces overriding `DEFAULT_SPACES` by name.
        inspect: add the TensorBoard image/calibration callbacks to every trial.
        verbose: Keras ``fit`` verbosity of each trial.
    """

    def __init__(
        self,
        recipe: Recipe,
        search: Sequence[str] | Mapping[str, Space | None] | None = None,
        spaces: Mapping[str, Space] | None = None,
        *,
        inspect: bool = True,
        verbose: int | str = 0,
    ):
        if not isinstance(recipe, Recipe):
            raise ValueError(
                f"`recipe` must be a keras_sd.recipes.Recipe, got {type(recipe).__name__}."
            )
        super().__init__(name=recipe.name.replace("/", "_").replace(":", "_"), tunable=True)
        self.recipe = recipe
        self.search = resolve_search(recipe, search, spaces)
        self.inspect = bool(inspect)
        self.verbose = verbose
        self._bundles: dict[str, Any] = {}

    # -- hyperparameters
    def declare_hyperparameters(self, hp: keras_tuner.HyperParameters) -> None:
        for name, (_, space) in self.search.items():
            space.define(hp, name)

    def recipe_for(self, hp: keras_tuner.HyperParameters) -> Recipe:
        """The recipe of a trial (every searched field defined in ``hp``, then applied)."""
        self.declare_hyperparameters(hp)
        return apply_hyperparameters(self.recipe, self.search, hp.values)

    def check_space(self) -> None:
        """Builds the model with every searched field at its lowest, then at its highest value,
        so a space the method rejects (``alpha`` > 1, a negative weight) fails before any trial
        with the method's own `ValueError`, instead of as failed trials inside keras-tuner."""
        for end in (0, -1):
            values = {}
            for name, (_, space) in self.search.items():
                options = space.values or (space.low, space.high)
                values[name] = sorted(options, key=_order_key)[end]
            recipe = apply_hyperparameters(self.recipe, self.search, values)
            try:
                self.experiment(recipe).build_model()
            except ValueError as err:
                raise ValueError(f"`search`: the method rejects {values}: {err}") from None

    # -- data
    def experiment(self, recipe: Recipe):
        """The `keras_sd.experiment.Experiment` of a trial's recipe; its data (`bundle`) is
        loaded once per data configuration and shared by the trials that have it."""
        from keras_sd.experiment import Experiment

        experiment = Experiment(recipe)
        key = json.dumps(
            [dataclasses.asdict(recipe.data), recipe.seed, experiment.data_args()["augment"]],
            sort_keys=True,
        )
        if key not in self._bundles:
            self._bundles[key] = experiment.bundle
        experiment.bundle = self._bundles[key]
        return experiment

    def data(self, recipe: Recipe):
        """`keras_sd.data.load` of the recipe's data, cached per data configuration."""
        return self.experiment(recipe).bundle

    # -- keras_tuner.HyperModel
    def build(self, hp: keras_tuner.HyperParameters):
        experiment = self.experiment(self.recipe_for(hp))  # loads the data, then seeds
        keras.utils.set_random_seed(experiment.recipe.seed)
        return experiment.compile(experiment.build_model())

    def fit(self, hp, model, *args, callbacks=None, epochs=None, **kwargs):
        from keras_sd import callbacks as cb_lib

        if args:
            raise ValueError(
                "RecipeHyperModel.fit takes no data arguments: the recipe's data is used "
                f"(got {len(args)} positional argument(s))."
            )
        experiment = self.experiment(self.recipe_for(hp))
        recipe, bundle = experiment.recipe, experiment.bundle
        callbacks = list(callbacks or [])
        extra = []
        if self.inspect:
            board = next((c for c in callbacks if isinstance(c, keras.callbacks.TensorBoard)), None)
            if board is not None:  # keras-tuner has pointed it at the trial's directory
                extra = cb_lib.inspection_callbacks(model, board.log_dir, bundle.test)
        kwargs.setdefault("verbose", self.verbose)
        epochs = epochs or recipe.epochs
        steps = experiment.steps_per_epoch
        # Epoch e of every trial is the same seeded batches (Hyperband's continued trials pass
        # initial_epoch), whatever came before in this process.
        start = int(kwargs.get("initial_epoch", 0)) * steps
        return model.fit(
            bundle.batches(start, max(start, epochs * steps)),
            epochs=epochs,
            steps_per_epoch=steps,
            validation_data=bundle.test,
            # Method callbacks and ours first: they add alpha / val_ece ... to the epoch logs that
            # TensorBoard, the tuner and its best-epoch checkpoint then read.
            callbacks=[*experiment.method_callbacks(), *extra, *callbacks],
            shuffle=False,
            **kwargs,
        )


# ---------------------------------------------------------------------------- tuners
def make_tuner(
    hypermodel: RecipeHyperModel,
    tuner: str = "random",
    *,
    objective: str | keras_tuner.Objective | None = None,
    max_trials: int = 10,
    directory: str | os.PathLike = "tuning",
    project_name: str = PROJECT,
    overwrite: bool = False,
    seed: int | None = None,
    distribution_strategy=None,
    **kwargs,
) -> keras_tuner.Tuner:
    """A keras-tuner tuner over ``hypermodel``.

    ``"random"`` (`keras_tuner.RandomSearch`), ``"bayesian"`` (`keras_tuner.BayesianOptimization`)
    or ``"hyperband"`` (`keras_tuner.Hyperband` with ``max_epochs`` = the recipe's epochs, so
    epochs are the budget; ``max_trials`` caps its trial count too). ``overwrite=False`` (default)
    reloads a study found in ``directory/project_name`` and continues it. ``objective`` defaults
    to `default_objective` of the recipe's model. Extra ``kwargs`` go to the tuner.
    """
    if tuner not in TUNERS:
        raise ValueError(f"`tuner` must be one of {TUNERS}, got {tuner!r}.")
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ValueError(f"`max_trials` must be a positive int, got {max_trials!r}.")
    if objective is None:
        objective = default_objective(_probe_model(hypermodel))
    common = dict(
        objective=make_objective(objective),
        directory=str(directory),
        project_name=project_name,
        overwrite=overwrite,
        seed=hypermodel.recipe.seed if seed is None else seed,
        distribution_strategy=distribution_strategy,
        **kwargs,
    )
    if tuner == "random":
        return keras_tuner.RandomSearch(hypermodel, max_trials=max_trials, **common)
    if tuner == "bayesian":
        return keras_tuner.BayesianOptimization(hypermodel, max_trials=max_trials, **common)
    result = keras_tuner.Hyperband(
        hypermodel, max_epochs=hypermodel.recipe.epochs, factor=3, **common
    )
    result.oracle.max_trials = max_trials  # the base Oracle stops creating trials at this count
    return result


def _probe_model(hypermodel: RecipeHyperModel):
    hp = keras_tuner.HyperParameters()
    return hypermodel.build(hp)


# ---------------------------------------------------------------------------- studies
@dataclasses.dataclass
class StudyResult:
    """What `run_study` leaves: the best recipe, its file, the per-trial rows, the tuner."""

    best_recipe: Recipe
    best_recipe_path: pathlib.Path
    best_score: float
    objective: str
    rows: list[dict]
    tuner: keras_tuner.Tuner


def trial_rows(tuner: keras_tuner.Tuner, names: Sequence[str]) -> list[dict]:
    """One dict per trial (``trial``, ``status``, ``score``, every searched value), best first."""
    direction = tuner.oracle.objective.direction
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        row = {"trial": trial_id, "status": str(trial.status), "score": trial.score}
        for name in names:
            row[name] = trial.hyperparameters.values.get(name)
        if "tuner/epochs" in trial.hyperparameters.values:
            row["epochs"] = trial.hyperparameters.values["tuner/epochs"]
        rows.append(row)

    def order(row):
        score = row["score"]
        if score is None or (isinstance(score, float) and math.isnan(score)):
            return (1, 0.0)
        return (0, -score if direction == "max" else score)

    return sorted(rows, key=order)


def format_table(rows: Sequence[Mapping], objective: str) -> str:
    """The results table ``keras-sd tune`` prints."""
    if not rows:
        return "(no trials)"
    columns = [
        "trial",
        "status",
        "score",
        *[k for k in rows[0] if k not in ("trial", "status", "score")],
    ]

    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "-" if v is None else str(v)

    header = {**{c: c for c in columns}, "score": objective}
    widths = {c: max(len(header[c]), *(len(cell(r.get(c))) for r in rows)) for c in columns}
    lines = ["  ".join(header[c].ljust(widths[c]) for c in columns)]
    lines.append("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        lines.append("  ".join(cell(r.get(c)).ljust(widths[c]) for c in columns))
    return "\n".join(lines)


def _study_record(recipe: Recipe, search, tuner: str, objective: str) -> dict:
    return {
        "recipe": recipe.to_dict(),
        "search": {n: [k, dataclasses.asdict(s)] for n, (k, s) in search.items()},
        "tuner": tuner,
        "objective": objective,
    }


def _json_roundtrip(payload):
    return json.loads(json.dumps(payload))


def run_study(
    recipe: Recipe,
    out_dir: str | os.PathLike,
    *,
    search: Sequence[str] | Mapping[str, Space | None] | str | None = None,
    spaces: Mapping[str, Space] | None = None,
    tuner: str = "random",
    trials: int = 10,
    objective: str | None = None,
    verbose: int | str = 0,
    source: str | None = None,
) -> StudyResult:
    """Runs (or continues) a study and writes ``out_dir``.

    ``out_dir`` holds ``study.json`` (recipe, spaces, tuner, objective: rerunning with other ones
    in the same directory is refused), ``trials/`` (keras-tuner's state: rerunning continues up to
    ``trials`` trials in all), ``logs/<trial>/execution0/`` (TensorBoard: Keras scalars, this
    package's images, the HParams entry of each trial), ``results.json`` and ``best_recipe.py``
    (the best trial's recipe, loadable by ``keras-sd train``).

    Args:
        recipe: the recipe to tune.
        out_dir: study directory.
        search: fields to search (see `resolve_search`, or ``"a,b=LOW:HIGH"``).
        spaces: spaces overriding the defaults by name.
        tuner: ``"random"``, ``"bayesian"`` or ``"hyperband"``.
        trials: total number of trials of the study.
        objective: metric to optimise (``name`` or ``name:min|max``); default: the final
            output's validation accuracy.
        verbose: Keras fit verbosity per trial.
        source: the recipe spec it came from (``RECIPE[:arg]``), for the best recipe's docstring.
    """
    from keras_sd import distribute
    from keras_sd.atomic import write_json_atomic

    out = pathlib.Path(out_dir)
    hypermodel = RecipeHyperModel(recipe, search, spaces, verbose=verbose)
    hypermodel.check_space()
    if objective is None:
        objective = default_objective(_probe_model(hypermodel))
    objective_spec = make_objective(objective)
    record = _json_roundtrip(_study_record(recipe, hypermodel.search, tuner, objective_spec.name))
    study_file = out / STUDY_FILE
    if study_file.exists():
        previous = json.loads(study_file.read_text())
        if previous != record:
            changed = sorted(k for k in record if previous.get(k) != record[k])
            raise ValueError(
                f"`--out` {str(out)!r} holds a study with a different {', '.join(changed)}; "
                "use another --out directory to start a new study."
            )
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(study_file, record)

    strategy = distribute.get_strategy(recipe.strategy)
    tuner_obj = make_tuner(
        hypermodel,
        tuner,
        objective=objective_spec,
        max_trials=trials,
        directory=out,
        project_name=PROJECT,
        overwrite=False,
        distribution_strategy=strategy if strategy.num_replicas_in_sync > 1 else None,
    )
    tuner_obj.search(callbacks=[keras.callbacks.TensorBoard(str(out / "logs"))], verbose=verbose)

    names = list(hypermodel.search)
    rows = trial_rows(tuner_obj, names)
    done = [r for r in rows if r["score"] is not None and not math.isnan(r["score"])]
    if not done:
        raise ValueError(
            f"no trial of the study in {str(out)!r} produced {objective_spec.name!r}; check that "
            "the objective is a logged metric (e.g. val_accuracy, val_exit3_accuracy, val_ece)."
        )
    best_hp = tuner_obj.get_best_hyperparameters(1)[0]
    best = apply_hyperparameters(recipe, hypermodel.search, best_hp.values)
    best = best.replace(name=f"{recipe.name}/tuned")
    best_score = float(done[0]["score"])
    values = ", ".join(f"{n}={best_hp.values[n]!r}" for n in names)
    path = out / BEST_RECIPE
    doc = (
        f"Best configuration of the keras-tuner study in {out}.\n\n"
        f"Base recipe: {source or recipe.name}; tuner: {tuner}; "
        f"{len(done)} finished trial(s).\n"
        f"Searched: {values}.\n"
        f"Best {objective_spec.name} ({objective_spec.direction}): {best_score:.6g}.\n\n"
        f"Command: keras-sd train {path}\n"
    )
    tmp = path.with_suffix(".py.tmp")
    tmp.write_text(recipes_lib.to_source(best, doc))
    os.replace(tmp, path)
    write_json_atomic(
        out / "results.json",
        {
            "objective": objective_spec.name,
            "direction": objective_spec.direction,
            "best": {"score": best_score, "values": {n: best_hp.values[n] for n in names}},
            "trials": rows,
        },
    )
    return StudyResult(best, path, best_score, objective_spec.name, rows, tuner_obj)


__all__ = [
    "DEFAULT_SEARCH",
    "DEFAULT_SPACES",
    "RecipeHyperModel",
    "Space",
    "StudyResult",
    "apply_hyperparameters",
    "default_objective",
    "default_search",
    "format_table",
    "make_objective",
    "make_tuner",
    "objective_direction",
    "parse_search",
    "recipe_key",
    "resolve_search",
    "run_study",
    "trial_rows",
]
