"""Multi-exit self-distillation (BYOT / TPAMI): MobileNetV2 on CIFAR-100.

Row: MobileNetV2, TPAMI Table 1.
Settings and sources: `keras_sd.paper_args.tpami_row`; published numbers: its arguments.

Command: keras-sd train multi_exit/mobilenet_v2_cifar100  (or :baseline, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.tpami_row(
    "mobilenet_v2",
    "cifar100",
    # published top-1 (%): baseline / exit1 / exit2 / exit3 / exit4 / ensemble
    tpami="65.49 / 62.93 / 66.03 / 67.95 / 67.17 / 68.87",
)
