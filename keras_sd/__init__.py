"""keras_sd: self-distillation for Keras 3 / TensorFlow.

Methods: two-view self-distillation (DDGSD), multi-exit self-distillation (BYOT / TPAMI),
PS-KD with BYOT and deep mutual feature learning, and Self-Guidance.
"""

from keras_sd import losses
from keras_sd.models import Baseline, SelfDistillationModel

__version__ = "0.1.0"

__all__ = ["Baseline", "SelfDistillationModel", "losses", "__version__"]
