"""Multi-exit self-distillation (BYOT / TPAMI): ResNet50 on CIFAR-100.

Row: ResNet50, TPAMI Table 1 and ICCV Table 1.
Settings and sources: `keras_sd.paper_args.tpami_row`; published numbers: its arguments.
``:authors_code`` is the authors' released code, ``train.py --model=resnet50``.

Command: keras-sd train multi_exit/resnet50_cifar100  (or :baseline, :authors_code, :authors_code_baseline, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.tpami_row(
    "resnet50",
    "cifar100",
    # published top-1 (%): baseline / exit1 / exit2 / exit3 / exit4 / ensemble
    tpami="80.88 / 82.60 / 83.55 / 84.42 / 83.66 / 85.42",
    # ICCV Table 1 (same format), the nearest published row to :authors_code
    iccv="77.68 / 68.23 / 74.21 / 75.23 / 80.56 / 81.04",
)
