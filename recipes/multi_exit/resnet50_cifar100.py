"""Multi-exit self-distillation (BYOT / TPAMI): ResNet50 on CIFAR-100.

Papers: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural Networks", TPAMI;
Zhang et al., "Be Your Own Teacher", ICCV 2019.
Row: ResNet50, TPAMI Table 1 and ICCV Table 1.
Published top-1 accuracy (%), baseline / exit1 / exit2 / exit3 / exit4 / ensemble:
    TPAMI: 80.88 / 82.60 / 83.55 / 84.42 / 83.66 / 85.42
    ICCV:  77.68 / 68.23 / 74.21 / 75.23 / 80.56 / 81.04
Schedule, augmentation (AutoAugment + Cutout on every row, ``:baseline`` included) and method: as
recipes/multi_exit/resnet18_cifar100.py, whose docstring gives the sources
(`keras_sd.schedules.TPAMI_CIFAR`, `keras_sd.paper_args.TPAMI`). ``:baseline`` trains the backbone
alone. ``:authors_code`` runs the authors' released code (``train.py --model=resnet50``) as
described there; ``:authors_code_baseline`` is the backbone alone on its data and schedule.

Commands:
    keras-sd train recipes/multi_exit/resnet50_cifar100.py
    keras-sd train recipes/multi_exit/resnet50_cifar100.py:baseline
    keras-sd train recipes/multi_exit/resnet50_cifar100.py:authors_code
    keras-sd train recipes/multi_exit/resnet50_cifar100.py:authors_code_baseline
    keras-sd train recipes/multi_exit/resnet50_cifar100.py:smoke   # digits, 2 epochs, CPU minutes
"""

from keras_sd import paper_args, schedules
from keras_sd.recipes import DataConfig, Recipe, baseline, variant

PUBLISHED = {
    None: "TPAMI: 80.88 / 82.60 / 83.55 / 84.42 / 83.66 / 85.42 (baseline / exit1 / exit2 / exit3 / exit4 / ensemble)",
    "baseline": "TPAMI baseline 80.88",
    "authors_code": "none for exactly this configuration; nearest: ICCV Table 1 77.68 / 68.23 / 74.21 / 75.23 / 80.56 / 81.04 (baseline / exit1 / exit2 / exit3 / exit4 / ensemble)",
    "authors_code_baseline": "none for exactly this configuration; nearest: ICCV Table 1 baseline 77.68",
}
VARIANTS = {
    None: {},
    "authors_code": paper_args.BYOT_CODE,
    "authors_code_baseline": None,  # see get_config
}
BASELINE = {}  # `:baseline`: the backbone alone, same data and schedule


def get_config(arg: str | None = None) -> Recipe:
    if arg == "authors_code_baseline":  # the backbone alone on the code's data and schedule
        return baseline(get_config("authors_code"))
    authors = arg == "authors_code"
    return Recipe(
        method="multi_exit",
        backbone="resnet50",
        backbone_args={"variant": "cifar"},
        method_args={**paper_args.TPAMI, **variant(arg, VARIANTS)},
        callbacks={} if authors else paper_args.TPAMI_ANNEALING,
        data=DataConfig(name="cifar100", batch_size=128, augment="autoaugment"),
        optimizer=schedules.BYOT_CODE if authors else schedules.TPAMI_CIFAR,
        epochs=schedules.BYOT_CODE_EPOCHS if authors else 300,
        paper=paper_args.TPAMI_PAPER,
    )
