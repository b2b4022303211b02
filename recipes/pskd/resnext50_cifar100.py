"""PS-KD, BYOT and deep mutual feature learning: ResNeXt-50 (32x4d) on CIFAR-100.

Paper: Chottananurak, Jeong, Kabir & Phisannupawong, "Progressive Self-Knowledge Distillation
with Mutual Learning" (KAIST), Table 1 rows 17-24; PS-KD itself is Kim et al., "Self-Knowledge
Distillation with Progressive Refinement of Targets", ICCV 2021; BYOT is Zhang et al., "Be Your
Own Teacher", ICCV 2019.
Published (CIFAR-100) top-1 err % / top-5 err % / NLL / ECE % / AURC x1e3, one ``:arg`` per row:
    #17  ResNeXt-50 (32x4d)                 :baseline        19.25 / 4.48 / 0.81 / 7.49 / 48.13
    #18  ResNeXt-50 (32x4d)+BYOT            :byot            19.09 / 4.54 / 0.84 / 9.62 / 46.66
    #19  ResNeXt-50 (32x4d)+DMFL            :dmfl            19.41 / 4.43 / 0.82 / 7.45 / 47.72
    #20  ResNeXt-50 (32x4d)+PS-KD           :pskd            18.79 / 4.20 / 0.74 / 4.85 / 48.52
    #21  ResNeXt-50 (32x4d)+PS-KD+BYOT      :pskd_byot       18.36 / 4.34 / 0.80 / 9.99 / 46.50
    #22  ResNeXt-50 (32x4d)+PS-KD+DMFL      :pskd_dmfl       19.25 / 4.14 / 0.75 / 5.18 / 47.46
    #23  ResNeXt-50 (32x4d)+DMFL+BYOT       :dmfl_byot       19.30 / 4.23 / 0.88 / 9.86 / 47.98
    #24  ResNeXt-50 (32x4d)+PS-KD+BYOT+DMFL :pskd_byot_dmfl  18.27 / 4.11 / 0.72 / 10.32 / 45.71
Schedule, data and method arguments: as recipes/pskd/resnet18_cifar100.py, whose docstring gives
their sources and the reasons for the values the paper leaves out (`keras_sd.schedules.PSKD_CIFAR`,
`keras_sd.paper_args.pskd_rows`).

* ``exit_head="attention"`` (TPAMI's exits), unlike the ResNet recipes: the paper does not
  describe its exits, and its parameter counts are the only evidence. For ResNet-18 / ResNet-50
  (13.0M / 50.4M) they are those of a CIFAR ResNet with the ``branchBottleNeck`` exits of the
  unofficial BYOT code (github.com/luanyunteng/pytorch-be-your-own-teacher), hence
  ``exit_head="bottleneck"`` there. For ResNeXt-50 (37.9M) the same reasoning gives the
  attention exits: a CIFAR ResNeXt-50 (32x4d) has 23.18M parameters bare, 37.90M with TPAMI's
  attention exits and 49.90M with the bottleneck exits (tests/test_pskd_byot.py). Use
  ``--set method_args.exit_head=bottleneck`` for the other reading.

Commands:
    keras-sd train recipes/pskd/resnext50_cifar100.py:baseline
    keras-sd train recipes/pskd/resnext50_cifar100.py:byot
    keras-sd train recipes/pskd/resnext50_cifar100.py:dmfl
    keras-sd train recipes/pskd/resnext50_cifar100.py:pskd
    keras-sd train recipes/pskd/resnext50_cifar100.py:pskd_byot
    keras-sd train recipes/pskd/resnext50_cifar100.py:pskd_dmfl
    keras-sd train recipes/pskd/resnext50_cifar100.py:dmfl_byot
    keras-sd train recipes/pskd/resnext50_cifar100.py:pskd_byot_dmfl
    keras-sd train recipes/pskd/resnext50_cifar100.py:smoke   # digits, 2 epochs, CPU minutes (PS-KD alone)
"""

from keras_sd import paper_args, schedules
from keras_sd.recipes import DataConfig, Recipe, variant

DEFAULT_ARG = "pskd"  # PS-KD alone
PUBLISHED = {
    "pskd": "Table 1 row 20, top-1/top-5 err %, NLL, ECE %, AURC: 18.79 / 4.20 / 0.74 / 4.85 / 48.52",
    "baseline": "Table 1 row 17, top-1/top-5 err %, NLL, ECE %, AURC: 19.25 / 4.48 / 0.81 / 7.49 / 48.13",
    "byot": "Table 1 row 18, top-1/top-5 err %, NLL, ECE %, AURC: 19.09 / 4.54 / 0.84 / 9.62 / 46.66",
    "dmfl": "Table 1 row 19, top-1/top-5 err %, NLL, ECE %, AURC: 19.41 / 4.43 / 0.82 / 7.45 / 47.72",
    "pskd_byot": "Table 1 row 21, top-1/top-5 err %, NLL, ECE %, AURC: 18.36 / 4.34 / 0.80 / 9.99 / 46.50",
    "pskd_dmfl": "Table 1 row 22, top-1/top-5 err %, NLL, ECE %, AURC: 19.25 / 4.14 / 0.75 / 5.18 / 47.46",
    "dmfl_byot": "Table 1 row 23, top-1/top-5 err %, NLL, ECE %, AURC: 19.30 / 4.23 / 0.88 / 9.86 / 47.98",
    "pskd_byot_dmfl": "Table 1 row 24, top-1/top-5 err %, NLL, ECE %, AURC: 18.27 / 4.11 / 0.72 / 10.32 / 45.71",
}
# TPAMI's attention exits: with them a CIFAR ResNeXt-50 has the paper's 37.9M parameters (the
# bottleneck exits of its ResNet networks would give 49.9M).
VARIANTS = paper_args.pskd_rows(exit_head="attention")  # arg -> (method, method_args)
BASELINE = {}


def get_config(arg: str | None = None) -> Recipe:
    method, method_args = variant(arg, VARIANTS)
    return Recipe(
        method=method,
        backbone="resnext50",
        backbone_args={"variant": "cifar"},
        method_args=dict(method_args),
        data=DataConfig(
            name="cifar100", batch_size=128, augment="cifar", with_index="pskd_alpha" in method_args
        ),
        optimizer=schedules.PSKD_CIFAR,
        epochs=300,
        paper=paper_args.PSKD_PAPER,
    )
