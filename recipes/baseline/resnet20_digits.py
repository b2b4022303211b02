"""Baseline: CIFAR ResNet-20 trained with cross-entropy on the embedded scikit-learn digits.

Not a paper row: the reference run every method's digits recipe is compared with, and a quick
end-to-end check of an installation (about a minute on two CPU cores).

Command: keras-sd train recipes/baseline/resnet20_digits.py
"""

from keras_sd import schedules
from keras_sd.recipes import DataConfig, Recipe, variant


def get_config(arg=None):
    variant(arg, {None: None})
    return Recipe(
        method="baseline",
        backbone="resnet20",
        data=DataConfig(name="digits", batch_size=64),
        optimizer=schedules.DIGITS,
        epochs=15,
    )
