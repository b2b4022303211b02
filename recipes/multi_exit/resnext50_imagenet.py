"""Multi-exit self-distillation (BYOT / TPAMI): ResNeXt50-4 on ImageNet-2012 (ILSVRC2012 validation set).

Row: ResNeXt50-4, TPAMI Table 2.
Settings: `keras_sd.paper_args.tpami_row` (the published numbers are its arguments); their
sources: recipes/multi_exit/resnet50_imagenet.py.

Command: keras-sd train multi_exit/resnext50_imagenet  (or :baseline, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.tpami_row(
    "resnext50",
    "imagenet",
    # published top-1 (%): baseline / exit1 / exit2 / exit3 / exit4 / ensemble
    tpami="77.29 / 71.95 / 75.76 / 79.02 / 79.96 / 80.32",
)
