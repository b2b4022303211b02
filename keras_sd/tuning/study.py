"""Studies: `make_tuner` over a `RecipeHyperModel`, and `run_study` (``keras-sd tune``)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from collections.abc import Mapping, Sequence

import keras
import keras_tuner

from keras_sd import recipes as recipes_lib
from keras_sd import validation
from keras_sd.recipes import Recipe
from keras_sd.tuning.hypermodel import RecipeHyperModel
from keras_sd.tuning.objective import default_objective, make_objective
from keras_sd.tuning.spaces import Space, apply_hyperparameters

TUNERS = ("random", "bayesian", "hyperband")
STUDY_FILE = "study.json"
BEST_RECIPE = "best_recipe.py"
PROJECT = "trials"


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
    validation.one_of(tuner, "tuner", TUNERS)
    validation.positive_int(max_trials, "max_trials")
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
    "BEST_RECIPE",
    "PROJECT",
    "STUDY_FILE",
    "TUNERS",
    "StudyResult",
    "format_table",
    "make_tuner",
    "run_study",
    "trial_rows",
]
