"""Self-distillation models: one training core, one subclass per method."""

from keras_sd.models.base import OUTPUT, Baseline, SelfDistillationModel

__all__ = ["OUTPUT", "Baseline", "SelfDistillationModel"]
