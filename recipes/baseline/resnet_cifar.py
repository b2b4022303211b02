"""Baselines: the CIFAR backbones of the papers trained with cross-entropy only.

One file, one recipe per backbone and data set, selected by ``:arg``
(``<backbone>`` or ``<backbone>,<dataset>``; dataset ``cifar10`` or ``cifar100``, default cifar100).
Schedules are the papers' own:

- ``ddgsd`` schedule (Xu & Liu, AAAI 2019, Sec. 4.1): SGD with Nesterov momentum 0.9, batch 128,
  weight decay 5e-4, learning rate 0.1 divided by 10 at epochs 150 and 225, 300 epochs.
  Published baseline top-1 error (CIFAR-100, Table 3): ResNet-32 30.21, ResNet-110 28.46
  (CIFAR-10, Table 2: ResNet-32 6.87, ResNet-110 6.17) -- see recipes/two_view for the full table.
- ``byot`` schedule (Zhang et al., ICCV 2019 / TPAMI): SGD momentum 0.9, batch 128, weight decay
  5e-4, learning rate 0.1 divided by 10 at epochs 100 and 150, 200 epochs. Published baseline top-1
  accuracy (CIFAR-100, ICCV Table 1): ResNet-18 77.09, ResNet-50 77.68.

Commands:
    keras-sd train recipes/baseline/resnet_cifar.py:resnet32,cifar100
    keras-sd train recipes/baseline/resnet_cifar.py:resnet18,cifar100
    keras-sd train recipes/baseline/resnet_cifar.py:resnet32,cifar100,smoke   # CPU, minutes
"""

from keras_sd.recipes import DataConfig, OptimizerConfig, Recipe

DDGSD = OptimizerConfig(
    learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
    schedule="multistep", milestones=(150, 225), gamma=0.1,
)
BYOT = OptimizerConfig(
    learning_rate=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4,
    schedule="multistep", milestones=(100, 150), gamma=0.1,
)
# backbone name -> (schedule, epochs)
BACKBONES = {
    "resnet20": (DDGSD, 300),
    "resnet32": (DDGSD, 300),
    "resnet56": (DDGSD, 300),
    "resnet110": (DDGSD, 300),
    "preact_resnet18": (DDGSD, 300),
    "preact_resnet34": (DDGSD, 300),
    "wrn16_8": (DDGSD, 300),
    "wrn28_10": (DDGSD, 300),
    "wrn40_4": (DDGSD, 300),
    "densenet40": (DDGSD, 300),
    "densenet100": (DDGSD, 300),
    "resnet18": (BYOT, 200),
    "resnet50": (BYOT, 200),
}


def get_config(arg=None):
    words = (arg or "resnet32").split(",")
    backbone = words[0]
    dataset = words[1] if len(words) > 1 else "cifar100"
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r} for this recipe; known: {sorted(BACKBONES)}.")
    if dataset not in ("cifar10", "cifar100"):
        raise ValueError(f"dataset must be cifar10 or cifar100, got {dataset!r}.")
    optimizer, epochs = BACKBONES[backbone]
    return Recipe(
        name=f"baseline/{backbone}_{dataset}",
        method="baseline",
        backbone=backbone,
        backbone_args={"variant": "cifar"} if backbone in ("resnet18", "resnet50") else {},
        data=DataConfig(name=dataset, batch_size=128, augment="cifar"),
        optimizer=optimizer,
        epochs=epochs,
        paper="Baselines of Xu & Liu (AAAI 2019) and Zhang et al. (ICCV 2019)",
    )
