"""Multi-exit self-distillation (BYOT / TPAMI): ResNet152 on CIFAR-100.

Row: ResNet152, TPAMI Table 1 and ICCV Table 1.
Settings and sources: `keras_sd.paper_args.tpami_row`; published numbers: its arguments.
``:authors_code`` is the authors' released code, ``train.py --model=resnet152``.

Command: keras-sd train multi_exit/resnet152_cifar100  (or :baseline, :authors_code, :authors_code_baseline, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.tpami_row(
    "resnet152",
    "cifar100",
    # published top-1 (%): baseline / exit1 / exit2 / exit3 / exit4 / ensemble
    tpami="82.92 / 81.25 / 82.94 / 84.37 / 84.52 / 85.41",
    # ICCV Table 1 (same format), the nearest published row to :authors_code
    iccv="79.21 / 68.84 / 78.72 / 81.43 / 81.61 / 82.29",
)
