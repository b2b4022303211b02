"""Multi-exit self-distillation (BYOT / TPAMI): ResNeXt50-4 on CIFAR-100.

Papers: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural Networks", TPAMI;
Zhang et al., "Be Your Own Teacher", ICCV 2019.
Row: ResNeXt50-4, TPAMI Table 1.
Published top-1 accuracy (%), baseline / exit1 / exit2 / exit3 / exit4 / ensemble:
    TPAMI: 82.65 / 82.03 / 83.50 / 83.78 / 83.42 / 85.12
Schedule, augmentation (AutoAugment + Cutout on every row, ``:baseline`` included) and method: as
recipes/multi_exit/resnet18_cifar100.py, whose docstring gives the sources
(`keras_sd.schedules.TPAMI_CIFAR`, `keras_sd.paper_args.TPAMI`). ``:baseline`` trains the backbone
alone. There is no ``:authors_code`` row here (see recipes/multi_exit/resnet18_cifar100.py): the
authors' released code trains CIFAR ResNets only (its ``--model resnext50_32x4d`` builds a
ResNet-18).

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
