"""Multi-exit self-distillation (BYOT / TPAMI): ResNet101 on CIFAR-100.

Row: ResNet101, TPAMI Table 1 and ICCV Table 1.
Settings and sources: `keras_sd.paper_args.tpami_row`; published numbers: its arguments.
``:authors_code`` is the authors' released code, ``train.py --model=resnet101``.

Command: keras-sd train multi_exit/resnet101_cifar100  (or :baseline, :authors_code, :authors_code_baseline, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.tpami_row(
    "resnet101",
    "cifar100",
    # published top-1 (%): baseline / exit1 / exit2 / exit3 / exit4 / ensemble
    tpami="82.37 / 81.64 / 82.73 / 84.12 / 84.03 / 85.48",
    # ICCV Table 1 (same format), the nearest published row to :authors_code
    iccv="77.98 / 69.45 / 77.29 / 81.17 / 81.23 / 82.03",
)
