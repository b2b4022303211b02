"""Multi-exit self-distillation (BYOT / TPAMI): ResNet50 on ImageNet-2012 (ILSVRC2012 validation set).

Papers: TPAMI and ICCV 2019, cited in recipes/multi_exit/resnet18_cifar100.py.
Row: ResNet50, TPAMI Table 2 and ICCV Table 2.
Schedule (TPAMI section 4.1): batch 256, SGD, learning rate 0.1 divided by 10 at epochs
30, 60 and 90 of 100. Weight decay and momentum type are not
stated: 1e-4 and plain momentum 0.9 are used. The paper trains with AutoAugment on RGB images;
keras_sd implements the CIFAR-10 AutoAugment policy only, not the ImageNet one, so this recipe uses
the standard "imagenet" augmentation (random-resized crop, flip): expect somewhat lower numbers.

Method: TPAMI's, as recipes/multi_exit/resnet18_cifar100.py gives it (`keras_sd.paper_args.TPAMI`,
`keras_sd.paper_args.TPAMI_ANNEALING`). ``:baseline`` trains the backbone alone. There is no
``:authors_code`` row here (see recipes/multi_exit/resnet18_cifar100.py): the authors' released
code trains on CIFAR only, not ImageNet. The former ``:iccv`` variant, which mixed the code's weights with TPAMI's
schedule, annealing and squared per-sample hint, is removed.

Command: keras-sd train multi_exit/resnet50_imagenet  (or :baseline, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.tpami_row(
    "resnet50",
    "imagenet",
    # published top-1 (%): baseline / exit1 / exit2 / exit3 / exit4 / ensemble
    tpami="76.30 / 71.72 / 74.58 / 77.45 / 77.89 / 78.28",
)
