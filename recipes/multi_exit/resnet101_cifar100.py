"""Multi-exit self-distillation (BYOT / TPAMI): ResNet101 on CIFAR-100.

Papers: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural Networks", TPAMI;
Zhang et al., "Be Your Own Teacher", ICCV 2019.
Row: ResNet101, TPAMI Table 1 and ICCV Table 1.
Published top-1 accuracy (%), baseline / exit1 / exit2 / exit3 / exit4 / ensemble:
    TPAMI: 82.37 / 81.64 / 82.73 / 84.12 / 84.03 / 85.48
    ICCV:  77.98 / 69.45 / 77.29 / 81.17 / 81.23 / 82.03
Schedule (TPAMI section 4.1): batch 128, SGD, learning rate 0.1 divided by 10 at epochs
90, 180 and 270 of 300. Weight decay and momentum type are not
stated: 5e-4 and plain momentum 0.9 are used. The paper trains with AutoAugment "across all the experiments on RGB
images"; every row here, ``:baseline`` included, uses ``augment="autoaugment"`` (pad-4 crop, flip,
the CIFAR-10 AutoAugment policy of Cubuk et al., then Cutout 16, as the authors' code).

Method (TPAMI): an exit after every backbone stage (the last is the backbone's head), attention
exits, deepest-teacher path, alpha = 0.6, feature_weight (lambda) = 0.04, T = 3, no T^2 factor
and the exits' losses summed (both as the authors' released code; TPAMI's eq. 3 writes 1/K,
``--set method_args.reduction=mean``); both weights set to 0 for the last 5 epochs
(`DistillationAnnealing`). ``:baseline`` trains the backbone alone.

``:authors_code`` runs the training step and schedule of the authors' released code (``train.py
--model=resnet101``), exactly as in recipes/multi_exit/resnet18_cifar100.py (whose docstring lists
them): summed exits, alpha 0.3, T 3 without T^2, the feature hint 0.03 * ||Linear_i(F_i) -
sg(F_4)||_2 over the whole batch on exits 1 and 2, no annealing, 250 epochs with the learning rate
divided by 10 at epochs 83, 166 and 240, AutoAugment + Cutout data. ``:authors_code_baseline`` is
the backbone alone on that data and schedule. They replace the former ``:iccv``, which mixed the
code's weights with TPAMI's schedule, annealing and squared per-sample hint.

Commands:
    keras-sd train recipes/multi_exit/resnet101_cifar100.py
    keras-sd train recipes/multi_exit/resnet101_cifar100.py:baseline
    keras-sd train recipes/multi_exit/resnet101_cifar100.py:authors_code
    keras-sd train recipes/multi_exit/resnet101_cifar100.py:authors_code_baseline
    keras-sd train recipes/multi_exit/resnet101_cifar100.py:smoke   # digits, 2 epochs, CPU minutes
"""

from keras_sd import paper_args, schedules
from keras_sd.recipes import DataConfig, Recipe, baseline, variant

PUBLISHED = {
    None: "TPAMI: 82.37 / 81.64 / 82.73 / 84.12 / 84.03 / 85.48 (baseline / exit1 / exit2 / exit3 / exit4 / ensemble)",
    "baseline": "TPAMI baseline 82.37",
    "authors_code": "none for exactly this configuration; nearest: ICCV Table 1 77.98 / 69.45 / 77.29 / 81.17 / 81.23 / 82.03 (baseline / exit1 / exit2 / exit3 / exit4 / ensemble)",
    "authors_code_baseline": "none for exactly this configuration; nearest: ICCV Table 1 baseline 77.98",
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
        backbone="resnet101",
        backbone_args={"variant": "cifar"},
        method_args={**paper_args.TPAMI, **variant(arg, VARIANTS)},
        callbacks={} if authors else paper_args.TPAMI_ANNEALING,
        data=DataConfig(name="cifar100", batch_size=128, augment="autoaugment"),
        optimizer=schedules.BYOT_CODE if authors else schedules.TPAMI_CIFAR,
        epochs=schedules.BYOT_CODE_EPOCHS if authors else 300,
        paper=paper_args.TPAMI_PAPER,
    )
