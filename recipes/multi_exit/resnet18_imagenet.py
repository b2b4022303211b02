"""Multi-exit self-distillation (BYOT / TPAMI): ResNet18 on ImageNet-2012 (ILSVRC2012 validation set).

Papers: TPAMI and ICCV 2019, cited in recipes/multi_exit/resnet18_cifar100.py.
Row: ResNet18, TPAMI Table 2 and ICCV Table 2.
Schedule, augmentation and method: as recipes/multi_exit/resnet50_imagenet.py, whose docstring
gives the sources (`keras_sd.schedules.IMAGENET_RESNET`, 100 epochs; the standard "imagenet"
augmentation, since keras_sd has no ImageNet AutoAugment policy; `keras_sd.paper_args.TPAMI`).
``:baseline`` trains the backbone alone; the authors' released code has no ImageNet row to copy.

Command: keras-sd train multi_exit/resnet18_imagenet  (or :baseline, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.tpami_row(
    "resnet18",
    "imagenet",
    # published top-1 (%): baseline / exit1 / exit2 / exit3 / exit4 / ensemble
    tpami="69.21 / 55.03 / 60.94 / 64.70 / 70.51 / 70.63",
)
