"""Multi-exit self-distillation (BYOT / TPAMI): ResNet50 on CIFAR-100.

Row: ResNet50, TPAMI Table 1 and ICCV Table 1.
Published top-1 accuracy (%), baseline / exit1 / exit2 / exit3 / exit4 / ensemble:
TPAMI 80.88 / 82.60 / 83.55 / 84.42 / 83.66 / 85.42;
ICCV 77.68 / 68.23 / 74.21 / 75.23 / 80.56 / 81.04 (the nearest to ``:authors_code``).
Settings and their sources: `keras_sd.paper_args.tpami_row`.
``:authors_code`` is the authors' released code, ``train.py --model=resnet50``.

Command: keras-sd train multi_exit/resnet50_cifar100  (or :baseline, :authors_code, :authors_code_baseline, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.tpami_row(
    "resnet50",
    "cifar100",
    tpami="80.88 / 82.60 / 83.55 / 84.42 / 83.66 / 85.42",
    iccv="77.68 / 68.23 / 74.21 / 75.23 / 80.56 / 81.04",
)
