"""Multi-exit self-distillation (BYOT / TPAMI): ResNet152 on ImageNet-2012 (ILSVRC2012 validation set).

Papers: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural Networks", TPAMI;
Zhang et al., "Be Your Own Teacher", ICCV 2019.
Row: ResNet152, TPAMI Table 2.
Published top-1 accuracy (%), baseline / exit1 / exit2 / exit3 / exit4 / ensemble:
    TPAMI: 77.62 / 71.50 / 75.36 / 80.22 / 80.32 / 80.56
Schedule, augmentation and method: as recipes/multi_exit/resnet50_imagenet.py, whose docstring
gives the sources (`keras_sd.schedules.IMAGENET_RESNET`, 100 epochs; the standard "imagenet"
augmentation, since keras_sd has no ImageNet AutoAugment policy; `keras_sd.paper_args.TPAMI`).
``:baseline`` trains the backbone alone; the authors' released code has no ImageNet row to copy.

Commands:
    keras-sd train recipes/multi_exit/resnet152_imagenet.py
    keras-sd train recipes/multi_exit/resnet152_imagenet.py:baseline
    keras-sd train recipes/multi_exit/resnet152_imagenet.py:smoke   # digits, 2 epochs, CPU minutes
"""

from keras_sd import paper_args, schedules
from keras_sd.recipes import DataConfig, Recipe, variant

PUBLISHED = {
    None: "TPAMI: 77.62 / 71.50 / 75.36 / 80.22 / 80.32 / 80.56 (baseline / exit1 / exit2 / exit3 / exit4 / ensemble)",
    "baseline": "TPAMI baseline 77.62",
}
VARIANTS = {
    None: {},
}
BASELINE = {}  # `:baseline`: the backbone alone, same data and schedule


def get_config(arg: str | None = None) -> Recipe:
    return Recipe(
        method="multi_exit",
        backbone="resnet152",
        backbone_args={"variant": "imagenet"},
        method_args={**paper_args.TPAMI, **variant(arg, VARIANTS)},
        callbacks=paper_args.TPAMI_ANNEALING,
        data=DataConfig(name="imagenet", batch_size=256, augment="imagenet"),
        optimizer=schedules.IMAGENET_RESNET,
        epochs=100,
        paper=paper_args.TPAMI_PAPER,
    )
