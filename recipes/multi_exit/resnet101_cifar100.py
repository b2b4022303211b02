"""Multi-exit self-distillation (BYOT / TPAMI): ResNet101 on CIFAR-100.

Row: ResNet101, TPAMI Table 1 and ICCV Table 1.
Published top-1 accuracy (%), baseline / exit1 / exit2 / exit3 / exit4 / ensemble:
TPAMI 82.37 / 81.64 / 82.73 / 84.12 / 84.03 / 85.48;
ICCV 77.98 / 69.45 / 77.29 / 81.17 / 81.23 / 82.03 (the nearest to ``:authors_code``).
Settings and their sources: `keras_sd.paper_args.tpami_row`.
``:authors_code`` is the authors' released code, ``train.py --model=resnet101``.

Command: keras-sd train multi_exit/resnet101_cifar100  (or :baseline, :authors_code, :authors_code_baseline, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.tpami_row(
    "resnet101",
    "cifar100",
    tpami="82.37 / 81.64 / 82.73 / 84.12 / 84.03 / 85.48",
    iccv="77.98 / 69.45 / 77.29 / 81.17 / 81.23 / 82.03",
)
