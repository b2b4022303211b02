"""Multi-exit self-distillation (BYOT / TPAMI) on keras-hub's ResNet-18 (ImageNet stem), CIFAR-100.

Follows TPAMI Table 1's ResNet18 row, recipes/multi_exit/resnet18_cifar100.py (whose docstring
cites the papers and gives every value's source), in everything but the network: the same method
(`keras_sd.paper_args.TPAMI`, `keras_sd.paper_args.TPAMI_ANNEALING`), schedule
(`keras_sd.schedules.TPAMI_CIFAR`, 300 epochs, batch 128) and augmentation
(``augment="autoaugment"``), so the two runs compare the keras-hub network with keras_sd's on the
paper's row.

Network (``backbone="hub_resnet18"``): keras-hub's ``ResNetBackbone`` with its ResNet-18 preset
configuration (v1 basic blocks, 2-2-2-2, 64-512 filters), built from config with random
initialisation, nothing downloaded; 11.2M parameters, 37M MACs per 32x32 image (the exits' paths
13M / 22M / 30M / 39M; `keras_sd.inference.count_macs`). Unlike the paper's CIFAR ResNet-18 (3x3
stride-1 stem), it keeps keras-hub's ImageNet stem (7x7 stride-2 convolution and a stride-2 max
pool), so 32x32 images reach the first stage at 8x8 and the last at 1x1; the exits tap keras-hub's
pyramid outputs P2..P5 (`keras_sd.backbones.from_keras_hub`). No paper ran the method on this
network at 32x32, so there is no published number for it; TPAMI's ResNet18 numbers (baseline
79.01, ensemble 82.64) are for the CIFAR-stem network and not comparable.

``:baseline`` trains the network alone, same data and schedule. For CIFAR-10, next to the ViT
recipes: ``--set data.name=cifar10``.

Commands:
    keras-sd train recipes/multi_exit/hub_resnet18_cifar100.py
    keras-sd train recipes/multi_exit/hub_resnet18_cifar100.py:baseline
    keras-sd train recipes/multi_exit/hub_resnet18_cifar100.py:smoke   # digits, 2 epochs, CPU minutes
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.tpami_row(
    "hub_resnet18",
    "cifar100",
    tpami=None,
    backbone_args={},  # keras-hub's ResNet-18 configuration as it is
    unpublished={
        None: "none: no paper ran multi-exit self-distillation on keras-hub's ImageNet-stem "
        "ResNet-18 at 32x32",
        "baseline": "none: TPAMI's ResNet18 baseline (79.01) is the CIFAR-stem network",
    },
)
