"""Multi-exit self-distillation (BYOT / TPAMI): ResNet101 on ImageNet-2012 (ILSVRC2012 validation set).

Papers: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural Networks", TPAMI;
Zhang et al., "Be Your Own Teacher", ICCV 2019.
Row: ResNet101, TPAMI Table 2.
Published top-1 accuracy (%), baseline / exit1 / exit2 / exit3 / exit4 / ensemble:
    TPAMI: 77.03 / 71.75 / 74.39 / 79.47 / 79.70 / 78.87
Schedule (TPAMI section 4.1): batch 256, SGD, learning rate 0.1 divided by 10 at epochs
30, 60 and 90 of 100. Weight decay and momentum type are not
stated: 1e-4 and plain momentum 0.9 are used. The paper trains with AutoAugment on RGB images;
keras_sd implements the CIFAR-10 AutoAugment policy only, not the ImageNet one, so this recipe uses
the standard "imagenet" augmentation (random-resized crop, flip): expect somewhat lower numbers.

Method (TPAMI): an exit after every backbone stage (the last is the backbone's head), attention
exits, deepest-teacher path, alpha = 0.6, feature_weight (lambda) = 0.04, T = 3, no T^2 factor
and the exits' losses summed (both as the authors' released code; TPAMI's eq. 3 writes 1/K,
``--set method_args.reduction=mean``); both weights set to 0 for the last 5 epochs
(`DistillationAnnealing`). ``:baseline`` trains the backbone alone. There is no ``:authors_code``
row here (see recipes/multi_exit/resnet18_cifar100.py): the authors' released code trains on CIFAR
only, not ImageNet. The former ``:iccv`` variant, which mixed the code's weights with TPAMI's
schedule, annealing and squared per-sample hint, is removed.

Commands:
    keras-sd train recipes/multi_exit/resnet101_imagenet.py
    keras-sd train recipes/multi_exit/resnet101_imagenet.py:baseline
    keras-sd train recipes/multi_exit/resnet101_imagenet.py:smoke   # digits, 2 epochs, CPU minutes
"""

from keras_sd.recipes import DataConfig, OptimizerConfig, Recipe

PUBLISHED = {
    None: "TPAMI: 77.03 / 71.75 / 74.39 / 79.47 / 79.70 / 78.87 (baseline / exit1 / exit2 / exit3 / exit4 / ensemble)",
    "baseline": "TPAMI baseline 77.03",
}
TPAMI_ARGS = {
    "exits": "stages",
    "alpha": 0.6,
    "feature_weight": 0.04,
    "temperature": 3.0,
    "path": "deepest",
    "reduction": "sum",
    "kl_scale": "none",
    "attention": True,
}
VARIANTS = {
    None: {},
    "baseline": {},
}


def get_config(arg: str | None = None) -> Recipe:
    if arg not in VARIANTS:
        raise ValueError(
            f"`arg` must be one of {sorted(k for k in VARIANTS if k)} or empty, got {arg!r}."
        )
    baseline = arg == "baseline"
    suffix = f":{arg}" if arg else ""
    return Recipe(
        name=f"multi_exit/resnet101_imagenet{suffix}",
        method="baseline" if baseline else "multi_exit",
        backbone="resnet101",
        backbone_args={"variant": "imagenet"},
        method_args={} if baseline else {**TPAMI_ARGS, **VARIANTS[arg]},
        callbacks={} if baseline else {"DistillationAnnealing": {"last_epochs": 5}},
        data=DataConfig(name="imagenet", batch_size=256, augment="imagenet"),
        optimizer=OptimizerConfig(
            name="sgd",
            learning_rate=0.1,
            momentum=0.9,
            nesterov=False,
            weight_decay=1e-4,
            schedule="multistep",
            milestones=(30, 60, 90),
            gamma=0.1,
        ),
        epochs=100,
        paper="Zhang, Bao & Ma, TPAMI (self-distillation); Zhang et al., ICCV 2019 (BYOT)",
        published=PUBLISHED.get(arg, "not published for this variant"),
    )
