"""Multi-exit self-distillation (BYOT / TPAMI): ResNeXt50-4 on CIFAR-100.

Row: ResNeXt50-4, TPAMI Table 1.
Settings and sources: `keras_sd.paper_args.tpami_row`; published numbers: its arguments.

Command: keras-sd train multi_exit/resnext50_cifar100  (or :baseline, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.tpami_row(
    "resnext50",
    "cifar100",
    # published top-1 (%): baseline / exit1 / exit2 / exit3 / exit4 / ensemble
    tpami="82.65 / 82.03 / 83.50 / 83.78 / 83.42 / 85.12",
)
