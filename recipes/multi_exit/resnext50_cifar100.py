"""Multi-exit self-distillation (BYOT / TPAMI): ResNeXt50-4 on CIFAR-100.

Papers: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural Networks", TPAMI;
Zhang et al., "Be Your Own Teacher", ICCV 2019.
Row: ResNeXt50-4, TPAMI Table 1.
Published top-1 accuracy (%), baseline / exit1 / exit2 / exit3 / exit4 / ensemble:
    TPAMI: 82.65 / 82.03 / 83.50 / 83.78 / 83.42 / 85.12
Schedule (TPAMI section 4.1): batch 128, SGD, learning rate 0.1 divided by 10 at epochs
90, 180 and 270 of 300. Weight decay and momentum type are not
stated: 5e-4 and plain momentum 0.9 are used. The paper trains with AutoAugment "across all the experiments on RGB
images"; every row here, ``:baseline`` included, uses ``augment="autoaugment"`` (pad-4 crop, flip,
the CIFAR-10 AutoAugment policy of Cubuk et al., then Cutout 16, as the authors' code).

Method (TPAMI): an exit after every backbone stage (the last is the backbone's head), attention
exits, deepest-teacher path, alpha = 0.6, feature_weight (lambda) = 0.04, T = 3, no T^2 factor
and the exits' losses summed (both as the authors' released code; TPAMI's eq. 3 writes 1/K,
``--set method_args.reduction=mean``); both weights set to 0 for the last 5 epochs
(`DistillationAnnealing`). ``:baseline`` trains the backbone alone. There is no ``:authors_code``
row here (see recipes/multi_exit/resnet18_cifar100.py): the authors' released code trains CIFAR
ResNets only (its ``--model resnext50_32x4d`` builds a ResNet-18). The former ``:iccv`` variant,
which mixed the code's weights with TPAMI's schedule, annealing and squared per-sample hint, is
removed.

The paper's 'ResNeXt50-4' is read as keras_sd's ResNeXt-50 (32x4d); the suffix is not
explained in the paper.

Commands:
    keras-sd train recipes/multi_exit/resnext50_cifar100.py
    keras-sd train recipes/multi_exit/resnext50_cifar100.py:baseline
    keras-sd train recipes/multi_exit/resnext50_cifar100.py:smoke   # digits, 2 epochs, CPU minutes
"""

from keras_sd import paper_args, schedules
from keras_sd.recipes import DataConfig, Recipe, variant

PUBLISHED = {
    None: "TPAMI: 82.65 / 82.03 / 83.50 / 83.78 / 83.42 / 85.12 (baseline / exit1 / exit2 / exit3 / exit4 / ensemble)",
    "baseline": "TPAMI baseline 82.65",
}
VARIANTS = {
    None: {},
}
BASELINE = {}  # `:baseline`: the backbone alone, same data and schedule


def get_config(arg: str | None = None) -> Recipe:
    return Recipe(
        method="multi_exit",
        backbone="resnext50",
        backbone_args={"variant": "cifar"},
        method_args={**paper_args.TPAMI, **variant(arg, VARIANTS)},
        callbacks=paper_args.TPAMI_ANNEALING,
        data=DataConfig(name="cifar100", batch_size=128, augment="autoaugment"),
        optimizer=schedules.TPAMI_CIFAR,
        epochs=300,
        paper=paper_args.TPAMI_PAPER,
    )
