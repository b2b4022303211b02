"""PS-KD, BYOT and deep mutual feature learning: ResNet-50 on CIFAR-100.

Paper: Chottananurak, Jeong, Kabir & Phisannupawong, "Progressive Self-Knowledge Distillation
with Mutual Learning" (KAIST), Table 1 rows 9-16; PS-KD itself is Kim et al., "Self-Knowledge
Distillation with Progressive Refinement of Targets", ICCV 2021; BYOT is Zhang et al., "Be Your
Own Teacher", ICCV 2019.
Published (CIFAR-100) top-1 err % / top-5 err % / NLL / ECE % / AURC x1e3, one ``:arg`` per row:
    #9   ResNet-50                          :baseline        21.96 / 5.21 / 0.89 / 8.75 / 57.24
    #10  ResNet-50+BYOT                     :byot            19.03 / 4.38 / 0.94 / 11.51 / 48.32
    #11  ResNet-50+DMFL                     :dmfl            20.13 / 4.96 / 0.85 / 8.63 / 51.20
    #12  ResNet-50+PS-KD                    :pskd            20.19 / 4.50 / 0.77 / 4.03 / 50.76
    #13  ResNet-50+PS-KD+BYOT               :pskd_byot       17.92 / 3.94 / 0.75 / 8.96 / 46.76
    #14  ResNet-50+PS-KD+DMFL               :pskd_dmfl       19.12 / 4.43 / 0.73 / 3.51 / 47.57
    #15  ResNet-50+DMFL+BYOT                :dmfl_byot       19.70 / 4.77 / 0.87 / 9.79 / 48.58
    #16  ResNet-50+PS-KD+BYOT+DMFL          :pskd_byot_dmfl  17.52 / 3.75 / 0.71 / 10.00 / 46.25
Schedule, data and method arguments: as recipes/pskd/resnet18_cifar100.py, whose docstring gives
their sources and the reasons for the values the paper leaves out (`keras_sd.schedules.PSKD_CIFAR`,
`keras_sd.paper_args.pskd_rows`).

Commands:
    keras-sd train recipes/pskd/resnet50_cifar100.py:baseline
    keras-sd train recipes/pskd/resnet50_cifar100.py:byot
    keras-sd train recipes/pskd/resnet50_cifar100.py:dmfl
    keras-sd train recipes/pskd/resnet50_cifar100.py:pskd
    keras-sd train recipes/pskd/resnet50_cifar100.py:pskd_byot
    keras-sd train recipes/pskd/resnet50_cifar100.py:pskd_dmfl
    keras-sd train recipes/pskd/resnet50_cifar100.py:dmfl_byot
    keras-sd train recipes/pskd/resnet50_cifar100.py:pskd_byot_dmfl
    keras-sd train recipes/pskd/resnet50_cifar100.py:smoke   # digits, 2 epochs, CPU minutes (PS-KD alone)
"""

from keras_sd import paper_args, schedules
from keras_sd.recipes import DataConfig, Recipe, variant

DEFAULT_ARG = "pskd"  # PS-KD alone
PUBLISHED = {
    "pskd": "Table 1 row 12, top-1/top-5 err %, NLL, ECE %, AURC: 20.19 / 4.50 / 0.77 / 4.03 / 50.76",
    "baseline": "Table 1 row 9, top-1/top-5 err %, NLL, ECE %, AURC: 21.96 / 5.21 / 0.89 / 8.75 / 57.24",
    "byot": "Table 1 row 10, top-1/top-5 err %, NLL, ECE %, AURC: 19.03 / 4.38 / 0.94 / 11.51 / 48.32",
    "dmfl": "Table 1 row 11, top-1/top-5 err %, NLL, ECE %, AURC: 20.13 / 4.96 / 0.85 / 8.63 / 51.20",
    "pskd_byot": "Table 1 row 13, top-1/top-5 err %, NLL, ECE %, AURC: 17.92 / 3.94 / 0.75 / 8.96 / 46.76",
    "pskd_dmfl": "Table 1 row 14, top-1/top-5 err %, NLL, ECE %, AURC: 19.12 / 4.43 / 0.73 / 3.51 / 47.57",
    "dmfl_byot": "Table 1 row 15, top-1/top-5 err %, NLL, ECE %, AURC: 19.70 / 4.77 / 0.87 / 9.79 / 48.58",
    "pskd_byot_dmfl": "Table 1 row 16, top-1/top-5 err %, NLL, ECE %, AURC: 17.52 / 3.75 / 0.71 / 10.00 / 46.25",
}
# Exits of the unofficial BYOT code (parameter counts of the paper's Table 1 caption).
VARIANTS = paper_args.pskd_rows(exit_head="bottleneck")  # arg -> (method, method_args)
BASELINE = {}


def get_config(arg: str | None = None) -> Recipe:
    method, method_args = variant(arg, VARIANTS)
    return Recipe(
        method=method,
        backbone="resnet50",
        backbone_args={"variant": "cifar"},
        method_args=dict(method_args),
        data=DataConfig(
            name="cifar100", batch_size=128, augment="cifar", with_index="pskd_alpha" in method_args
        ),
        optimizer=schedules.PSKD_CIFAR,
        epochs=300,
        paper=paper_args.PSKD_PAPER,
    )
