"""Layers: per-sample distortions, stochastic-depth residual gates, exit heads (maps and tokens)."""

from keras_sd.layers.augment import (
    PadAndRandomCrop,
    RandomCropFlip,
    RandomHorizontalFlip,
    RandomResizedCrop,
)
from keras_sd.layers.autoaugment import CifarAutoAugment
from keras_sd.layers.exits import (
    BottleneckExitHead,
    ExitAttention,
    ExitHead,
    SeparableConvBlock,
    align_channels,
)
from keras_sd.layers.randaugment import CifarRandAugment
from keras_sd.layers.stochastic_depth import StochasticDepth, full_network, is_full_network
from keras_sd.layers.tokens import TokenExitHead, TokenPooling

__all__ = [
    "BottleneckExitHead",
    "CifarAutoAugment",
    "CifarRandAugment",
    "ExitAttention",
    "ExitHead",
    "SeparableConvBlock",
    "align_channels",
    "PadAndRandomCrop",
    "RandomCropFlip",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "StochasticDepth",
    "TokenExitHead",
    "TokenPooling",
    "full_network",
    "is_full_network",
]
