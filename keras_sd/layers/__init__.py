"""Layers: per-sample distortions, stochastic-depth residual gates, exit heads."""

from keras_sd.layers.augment import PadAndRandomCrop, RandomHorizontalFlip, RandomResizedCrop

__all__ = ["PadAndRandomCrop", "RandomHorizontalFlip", "RandomResizedCrop"]
