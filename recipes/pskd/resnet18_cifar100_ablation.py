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

from keras_sd import paper_args, schedules
from keras_sd.recipes import DataConfig, Recipe, variant

DEFAULT_ARG = "blocks_123"
# arg -> (exits, number of backbone stages or None for all four)
VARIANTS = {
    "blocks_123": ([0, 1, 2], None),
    "blocks_23": ([1, 2], None),
    "blocks_3": ([2], None),
    "stages_4": ("stages", 4),
    "stages_3": ("stages", 3),
    "stages_2": ("stages", 2),
}
PUBLISHED = {
    "blocks_123": "Table 3 row 1: 20.23 / 4.56 top-1 / top-5 err %",
    "blocks_23": "Table 3 row 2: 20.57 / 4.93 top-1 / top-5 err %",
    "blocks_3": "Table 3 row 3: 21.21 / 5.20 top-1 / top-5 err %",
    "stages_4": "Table 4 row 1: 21.21 / 5.20 top-1 / top-5 err %",
    "stages_3": "Table 4 row 2: 21.00 / 4.69 top-1 / top-5 err %",
    "stages_2": "Table 4 row 3: 26.33 / 6.30 top-1 / top-5 err %",
}


def get_config(arg: str | None = None) -> Recipe:
    exits, stages = variant(arg, VARIANTS)
    _, method_args = paper_args.pskd_rows(exit_head="bottleneck")["pskd_byot_dmfl"]
    num_stages = {} if stages is None else {"num_stages": stages}
    return Recipe(
        method="multi_exit",
        backbone="resnet18",
        backbone_args={"variant": "cifar", **num_stages},
        method_args={**method_args, "exits": exits},
        data=DataConfig(name="cifar100", batch_size=128, augment="cifar", with_index=True),
        optimizer=schedules.PSKD_CIFAR,
        epochs=300,
        paper=(
            "Chottananurak et al., Progressive Self-Knowledge Distillation with Mutual Learning, "
            "Tables 3-4"
        ),
    )
