"""keras_sd: self-distillation for Keras 3 / TensorFlow.

Methods: two-view self-distillation (DDGSD), multi-exit self-distillation (BYOT / TPAMI),
PS-KD with BYOT and deep mutual feature learning, and Self-Guidance.
"""

from keras_sd import backbones, callbacks, data, layers, losses, metrics, pskd
from keras_sd.models import (
    Baseline,
    MultiExitDistiller,
    SelfDistillationModel,
    SelfGuidanceDistiller,
    TwoViewDistiller,
)

__version__ = "0.1.0"

__all__ = [
    "Baseline",
    "MultiExitDistiller",
    "SelfDistillationModel",
    "SelfGuidanceDistiller",
    "TwoViewDistiller",
    "__version__",
    "backbones",
    "callbacks",
    "data",
    "layers",
    "losses",
    "metrics",
    "pskd",
]
