"""Multi-exit self-distillation: CIFAR ResNet-20 on the embedded scikit-learn digits.

Not a paper row: the quick end-to-end run of the multi-exit method (a few minutes on two CPU
cores, no download), compared with ``recipes/baseline/resnet20_digits.py`` (same backbone, data and
schedule). ResNet-20 has three stages, so there are three exits: two attention exits after stages
1 and 2 and the backbone's own head (``exit3``); the run prints the top-1 / top-5 accuracy of every
exit and of their ensemble (``ensemble_accuracy``: mean of the exits' softmax probabilities).

Method: TPAMI's (`keras_sd.paper_args.TPAMI`; recipes/multi_exit/resnet18_cifar100.py gives the
paper, the values and their sources); both weights annealed to 0 for the last 2 of 15 epochs (5 of
300 in the paper).

Command: keras-sd train recipes/multi_exit/resnet20_digits.py
"""

from keras_sd import paper_args, schedules
from keras_sd.recipes import DataConfig, Recipe, variant


def get_config(arg: str | None = None) -> Recipe:
    return Recipe(
        method="multi_exit",
        backbone="resnet20",
        method_args={**paper_args.TPAMI, **variant(arg, {None: {}})},
        callbacks={"DistillationAnnealing": {"last_epochs": 2}},
        data=DataConfig(name="digits", batch_size=64),
        optimizer=schedules.DIGITS,
        epochs=15,
    )
