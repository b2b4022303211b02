"""Self-Guidance, Table 1: CIFAR ResNet-32 / 50 / 110 on CIFAR-10 and CIFAR-100.

Paper: Zheng & Peng, "Self-Guidance: Improve Deep Neural Network Generalization via Knowledge
Distillation", WACV 2022, Table 1 (Sec. 4.1). Backbones are the CIFAR ResNet-(6n+2) family; the
paper's ResNet-50 is n = 8 (0.76M parameters). Stochastic depth as Huang et al.: survival decays
linearly from 1 to 0.5 at the last block, one sub-network sampled per mini-batch (the paper's
Fig. 1 and Algorithm 1). SGD with Nesterov momentum
0.9, weight decay 1e-4, batch 128, 300 epochs, learning rate 0.1 divided by 10 at 50 % and 75 %
(epochs 150, 225); tau = 3, lambda = 0.25; standard CIFAR augmentation (pad 4, crop, flip).

Published top-1 error (%), baseline -> Self-Guidance:

    =========== ======================= =======================
    network     CIFAR-10                CIFAR-100
    =========== ======================= =======================
    ResNet-32   6.34 -> 5.73            30.14 -> 27.65
    ResNet-50   6.07 -> 5.28            28.37 -> 25.33
    ResNet-110  5.43 -> 4.65            26.18 -> 21.60
    =========== ======================= =======================

The paper lists 0.47M / 0.76M / 1.15M parameters; our ResNet-32/50/110 have 0.47M / 0.76M /
1.74M (the standard ResNet-110 size; the paper's 1.15M does not match a 110-layer 6n+2 ResNet).

Arguments (``:arg``): ``resnet32|resnet50|resnet110`` and ``cifar10|cifar100`` (default
``resnet32,cifar100``, also the network of the paper's Table 2); add ``baseline`` for the plain
cross-entropy row with the same schedule; add ``per_sample`` to let each sample drop blocks
independently (drop-path style) instead of the paper's one sub-network per mini-batch (Fig. 1:
"Student: sampled sub-network for each mini-batch"; Algorithm 1 samples once per mini-batch).

Commands:
    keras-sd train recipes/self_guidance/resnet_cifar.py:resnet110,cifar100
    keras-sd train recipes/self_guidance/resnet_cifar.py:resnet32,cifar10
    keras-sd train recipes/self_guidance/resnet_cifar.py:resnet32,cifar10,baseline
    keras-sd train recipes/self_guidance/resnet_cifar.py:resnet110,cifar100,smoke   # CPU, minutes
"""

from keras_sd import paper_args, schedules
from keras_sd.recipes import DataConfig, Recipe

DEPTHS = {"resnet32": 32, "resnet50": 50, "resnet110": 110}
DATASETS = ("cifar10", "cifar100")
ARGS = ["resnet32,cifar10", "resnet50,cifar100", "resnet110,cifar100", "resnet32,cifar100,baseline"]
PUBLISHED = {  # (network, dataset) -> (baseline error, Self-Guidance error), %
    ("resnet32", "cifar10"): (6.34, 5.73),
    ("resnet32", "cifar100"): (30.14, 27.65),
    ("resnet50", "cifar10"): (6.07, 5.28),
    ("resnet50", "cifar100"): (28.37, 25.33),
    ("resnet110", "cifar10"): (5.43, 4.65),
    ("resnet110", "cifar100"): (26.18, 21.60),
}


def get_config(arg=None):
    words = [w for w in (arg or "resnet32,cifar100").split(",") if w]
    nets = [w for w in words if w in DEPTHS]
    sets = [w for w in words if w in DATASETS]
    unknown = [w for w in words if w not in DEPTHS and w not in DATASETS]
    unknown = [w for w in unknown if w not in ("baseline", "per_sample")]
    if unknown or len(nets) > 1 or len(sets) > 1:
        raise ValueError(
            f"recipe argument {arg!r}: expected one of {sorted(DEPTHS)}, one of {DATASETS}, and "
            "optionally 'baseline' and/or 'per_sample'."
        )
    net = nets[0] if nets else "resnet32"
    dataset = sets[0] if sets else "cifar100"
    baseline = "baseline" in words
    drop_mode = "per_sample" if "per_sample" in words else "per_batch"
    base_err, sg_err = PUBLISHED[(net, dataset)]
    suffix = "_baseline" if baseline else ("_per_sample" if drop_mode == "per_sample" else "")
    return Recipe(
        name=f"self_guidance/{net}_{dataset}{suffix}",
        **paper_args.self_guidance_row(
            DEPTHS[net], "baseline" if baseline else "self_guidance", drop_mode=drop_mode
        ),
        data=DataConfig(name=dataset, batch_size=128, augment="cifar"),
        optimizer=schedules.SELF_GUIDANCE,
        epochs=300,
        paper=f"{paper_args.SELF_GUIDANCE_PAPER}, Table 1",
        published=f"top-1 error {base_err if baseline else sg_err:.2f}%",
    )
