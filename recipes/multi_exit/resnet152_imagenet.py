"""Multi-exit self-distillation (BYOT / TPAMI): ResNet152 on ImageNet-2012 (ILSVRC2012 validation set).

Row: ResNet152, TPAMI Table 2.
Settings: `keras_sd.paper_args.tpami_row` (the published numbers are its arguments); their
sources: recipes/multi_exit/resnet50_imagenet.py.

Command: keras-sd train multi_exit/resnet152_imagenet  (or :baseline, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.tpami_row(
    "resnet152",
    "imagenet",
    # published top-1 (%): baseline / exit1 / exit2 / exit3 / exit4 / ensemble
    tpami="77.62 / 71.50 / 75.36 / 80.22 / 80.32 / 80.56",
)
