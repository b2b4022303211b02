"""Baseline: CIFAR ResNet-20 trained with cross-entropy on the embedded scikit-learn digits.

Not a paper row: the reference run every method's digits recipe is compared with, and a quick
end-to-end check of an installation (about a minute on two CPU cores).

Command: keras-sd train recipes/baseline/resnet20_digits.py
"""

from keras_sd.recipes import DataConfig, OptimizerConfig, Recipe


def get_config(arg=None):
    return Recipe(
        name="baseline/resnet20_digits",
        method="baseline",
        backbone="resnet20",
        data=DataConfig(name="digits", batch_size=64),
        optimizer=OptimizerConfig(
            learning_rate=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine"
        ),
        epochs=15,
    )
