"""Self-distillation models: one training core, one subclass per method."""

from keras_sd.models.base import OUTPUT, Baseline, SelfDistillationModel
from keras_sd.models.exit_graph import ExitGraph
from keras_sd.models.multi_exit import MultiExitDistiller
from keras_sd.models.self_guidance import SelfGuidanceDistiller
from keras_sd.models.two_view import TwoViewDistiller

__all__ = [
    "OUTPUT",
    "Baseline",
    "ExitGraph",
    "MultiExitDistiller",
    "SelfDistillationModel",
    "SelfGuidanceDistiller",
    "TwoViewDistiller",
]
