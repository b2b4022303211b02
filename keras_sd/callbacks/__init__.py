"""Keras callbacks of keras_sd, one per module.

Loss-term weight schedules (they write ``<term>_weight`` into the epoch logs; put them before a
``keras.callbacks.TensorBoard``):

- `VariableSchedule` (variable_schedule.py): the base class; `DistillationAnnealing`
  (distillation_annealing.py): TPAMI's alpha and lambda to 0 for the last epochs;
  `PSKDAlphaScheduler` (defined in `keras_sd.pskd`): PS-KD's ``alpha_t``.

A run's reliability (docs/reliability.md):

- `NonFiniteLossGuard` (non_finite_loss_guard.py): raises `NonFiniteLossError` at the first
  NaN/inf loss term, before a backup can save broken weights.
- `AtomicBackupAndRestore` (atomic_backup_and_restore.py): Keras' ``BackupAndRestore`` whose
  states are committed by one atomic rename, resumable mid-epoch.
- `EpochHistory` (epoch_history.py): every epoch's logs in ``history.json``; `RunStats`
  (run_stats.py): seconds per epoch and images per second.

TensorBoard, what `keras.callbacks.TensorBoard` does not already write (docs/tensorboard.md; the
figures are drawn by `keras_sd.plotting`). Keras' own callback writes, per epoch, every entry of
the epoch ``logs`` as a scalar (losses, accuracies, the learning rate and the scheduled weights
above); keras-tuner adds the HParams entry of every trial itself. Added here:

- `ReliabilityDiagram`: per epoch, a reliability diagram image of every output on the validation
  data, and ``val_ece`` / ``val_nll`` (``val_<output>_ece`` ... for multi-output models) added to
  the logs, so TensorBoard plots them and a tuner can optimise them.
- `AttentionMaps`: per epoch, the attention mask of every exit of a `MultiExitDistiller` on a
  fixed set of validation images.
- `EarlyExitPlot`: the early-exit accuracy / acceleration plot when ``thresholds.json`` (written
  by ``keras-sd thresholds``) exists in the run directory.
- `RecipeHParams`: the HParams entry of a plain ``keras-sd train`` run (the recipe's scalar
  fields), so separate runs compare in the HParams dashboard like tuner trials.
- `inspection_callbacks(model, log_dir, validation_data, ...)`: those of them that apply to
  ``model``, in order.

All images go to ``<log_dir>/validation`` (they describe validation data), next to Keras' own
validation scalars; summary steps are epochs, like Keras' ``epoch_*`` scalars. Place these
callbacks *before* ``keras.callbacks.TensorBoard`` so the scalars they add to the logs are written.
"""

from keras_sd.callbacks.atomic_backup_and_restore import (
    AtomicBackupAndRestore,
    read_backup_metadata,
)
from keras_sd.callbacks.attention_maps import AttentionMaps, has_attention_exits
from keras_sd.callbacks.distillation_annealing import DISTILLATION_TERMS, DistillationAnnealing
from keras_sd.callbacks.early_exit_plot import EarlyExitPlot
from keras_sd.callbacks.epoch_history import HISTORY_FILE, EpochHistory, read_history
from keras_sd.callbacks.inspection import inspection_callbacks
from keras_sd.callbacks.non_finite_loss_guard import NonFiniteLossError, NonFiniteLossGuard
from keras_sd.callbacks.recipe_hparams import RecipeHParams, recipe_hparams
from keras_sd.callbacks.reliability_diagram import ReliabilityDiagram
from keras_sd.callbacks.run_stats import RunStats
from keras_sd.callbacks.variable_schedule import VariableSchedule
from keras_sd.pskd import PSKDAlphaScheduler

__all__ = [
    "DISTILLATION_TERMS",
    "HISTORY_FILE",
    "AtomicBackupAndRestore",
    "AttentionMaps",
    "DistillationAnnealing",
    "EarlyExitPlot",
    "EpochHistory",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "PSKDAlphaScheduler",
    "RecipeHParams",
    "ReliabilityDiagram",
    "RunStats",
    "VariableSchedule",
    "has_attention_exits",
    "inspection_callbacks",
    "read_backup_metadata",
    "read_history",
    "recipe_hparams",
]
