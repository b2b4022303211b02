"""keras-tuner studies over any recipe's fields (``lambda``, ``mu``, ``T``, ``alpha``, ...).

`RecipeHyperModel` is a `keras_tuner.HyperModel` that turns a trial's hyperparameters into
recipe overrides with `keras_sd.recipes.apply_override` (the same path as ``--set``, so types
are checked the same way), then builds, compiles and fits the recipe through
`keras_sd.experiment.Experiment`, as `keras_sd.train.train` does. Any tuner works: `make_tuner`
builds ``RandomSearch``, ``BayesianOptimization`` or ``Hyperband`` (epochs as the budget) and
passes the recipe's distribution strategy to keras-tuner. `run_study` is what ``keras-sd tune``
runs: resumable (keras-tuner's ``overwrite=False`` in the same directory), a results table, and
the best configuration written as a recipe file that ``keras-sd train`` accepts.

One job per module: `spaces` (search spaces and a recipe's searched fields), `objective` (the
metric and its direction), `hypermodel` (`RecipeHyperModel`), `study` (tuners and studies); every
name is importable from ``keras_sd.tuning``.

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

from keras_sd.tuning.hypermodel import RecipeHyperModel
from keras_sd.tuning.objective import default_objective, make_objective, objective_direction
from keras_sd.tuning.spaces import (
    DEFAULT_SEARCH,
    DEFAULT_SPACES,
    Space,
    apply_hyperparameters,
    default_search,
    parse_search,
    recipe_key,
    resolve_search,
)
from keras_sd.tuning.study import (
    BEST_RECIPE,
    PROJECT,
    STUDY_FILE,
    TUNERS,
    StudyResult,
    format_table,
    make_tuner,
    run_study,
    trial_rows,
)

__all__ = [
    "BEST_RECIPE",
    "DEFAULT_SEARCH",
    "DEFAULT_SPACES",
    "PROJECT",
    "STUDY_FILE",
    "TUNERS",
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
