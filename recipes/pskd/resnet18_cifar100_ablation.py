"""PS-KD + BYOT + DMFL ablations on ResNet-18, CIFAR-100 (Tables 3 and 4).

Paper: Chottananurak, Jeong, Kabir & Phisannupawong, "Progressive Self-Knowledge Distillation
with Mutual Learning" (KAIST); PS-KD is Kim et al., ICCV 2021.
Same schedule and method arguments as recipes/pskd/resnet18_cifar100.py:pskd_byot_dmfl (PS-KD
alpha_T 0.8, BYOT alpha 0.1, lambda 1e-6, exit terms summed, DMFL weight 1; bottleneck exits of
the unofficial BYOT code, final-exit cross-entropy weight 1 + (1 - alpha) = 1.9 from
L = L_CE + L_Self-KD, T = 3 with T^2 as in that code; the reasons are in that recipe's docstring
and docs/methods/pskd.md, "Fidelity").
Published top-1 / top-5 error (%):

Table 3, BYOT loss blocks (shallow exits after these stages; PS-KD and DML on):
    :blocks_123   exits after stages 1, 2, 3   20.23 / 4.56
    :blocks_23    exits after stages 2, 3      20.57 / 4.93
    :blocks_3     exit after stage 3           21.21 / 5.20
Table 4, number of ResNet-18 backbone blocks (stages) N, PS-KD + DMFL + BYOT:
    :stages_4     N = 4                        21.21 / 5.20
    :stages_3     N = 3                        21.00 / 4.69
    :stages_2     N = 2                        26.33 / 6.30
Note: Table 3 row 1 (20.23 / 4.56) differs from Table 1 row 8 (20.03 / 4.16) for what reads as
the same configuration, and Table 4's N = 4 row repeats Table 3 row 3 (21.21 / 5.20, 625 min).
The Table 4 variants need the backbone to stop after N stages (``backbone_args.num_stages``).

Commands:
    keras-sd train recipes/pskd/resnet18_cifar100_ablation.py:blocks_123
    keras-sd train recipes/pskd/resnet18_cifar100_ablation.py:blocks_23
    keras-sd train recipes/pskd/resnet18_cifar100_ablation.py:blocks_3
    keras-sd train recipes/pskd/resnet18_cifar100_ablation.py:stages_4
    keras-sd train recipes/pskd/resnet18_cifar100_ablation.py:stages_3
    keras-sd train recipes/pskd/resnet18_cifar100_ablation.py:stages_2
    keras-sd train recipes/pskd/resnet18_cifar100_ablation.py:smoke   # digits, 2 epochs, CPU
"""

from keras_sd.recipes import DataConfig, OptimizerConfig, Recipe

METHOD_ARGS = {
    "exit_head": "bottleneck",
    "alpha": 0.1,
    "feature_weight": 1e-6,
    "temperature": 3.0,
    "kl_scale": "t2",
    "path": "deepest",
    "reduction": "sum",
    "final_ce_weight": 1.9,
    "pskd_alpha": 0.8,
    "num_train_examples": 50000,
    "bank_dtype": "float32",
    "mutual_feature_weight": 1.0,
}
# variant -> (exits, number of backbone stages or None for all four, published)
VARIANTS = {
    None: ([0, 1, 2], None, "Table 3 row 1: 20.23 / 4.56 top-1 / top-5 err %"),
    "blocks_123": ([0, 1, 2], None, "Table 3 row 1: 20.23 / 4.56 top-1 / top-5 err %"),
    "blocks_23": ([1, 2], None, "Table 3 row 2: 20.57 / 4.93 top-1 / top-5 err %"),
    "blocks_3": ([2], None, "Table 3 row 3: 21.21 / 5.20 top-1 / top-5 err %"),
    "stages_4": ("stages", 4, "Table 4 row 1: 21.21 / 5.20 top-1 / top-5 err %"),
    "stages_3": ("stages", 3, "Table 4 row 2: 21.00 / 4.69 top-1 / top-5 err %"),
    "stages_2": ("stages", 2, "Table 4 row 3: 26.33 / 6.30 top-1 / top-5 err %"),
}


def get_config(arg: str | None = None) -> Recipe:
    if arg not in VARIANTS:
        raise ValueError(
            f"`arg` must be one of {sorted(k for k in VARIANTS if k)} or empty, got {arg!r}."
        )
    exits, stages, published = VARIANTS[arg]
    backbone_args = {"variant": "cifar"}
    if stages is not None:
        backbone_args["num_stages"] = stages
    return Recipe(
        name=f"pskd/resnet18_cifar100_ablation:{arg or 'blocks_123'}",
        method="multi_exit",
        backbone="resnet18",
        backbone_args=backbone_args,
        method_args={**METHOD_ARGS, "exits": exits},
        data=DataConfig(name="cifar100", batch_size=128, augment="cifar", with_index=True),
        optimizer=OptimizerConfig(
            name="sgd",
            learning_rate=0.1,
            momentum=0.9,
            nesterov=True,
            weight_decay=5e-4,
            schedule="multistep",
            milestones=(150, 225),
            gamma=0.1,
        ),
        epochs=300,
        paper=(
            "Chottananurak et al., Progressive Self-Knowledge Distillation with Mutual Learning, "
            "Tables 3-4"
        ),
        published=published,
    )
