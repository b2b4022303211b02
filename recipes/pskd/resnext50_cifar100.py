"""PS-KD, BYOT and deep mutual feature learning: ResNeXt-50 (32x4d) on CIFAR-100.

Paper: Chottananurak et al., "Progressive Self-Knowledge Distillation with Mutual Learning",
Table 1 rows 17-24 (full citations, with PS-KD's and BYOT's: recipes/pskd/resnet18_cifar100.py).
Published (CIFAR-100) top-1 err % / top-5 err % / NLL / ECE % / AURC x1e3, one ``:arg`` per row:
    #17  ResNeXt-50 (32x4d)                 :baseline        19.25 / 4.48 / 0.81 / 7.49 / 48.13
    #18  ResNeXt-50 (32x4d)+BYOT            :byot            19.09 / 4.54 / 0.84 / 9.62 / 46.66
    #19  ResNeXt-50 (32x4d)+DMFL            :dmfl            19.41 / 4.43 / 0.82 / 7.45 / 47.72
    #20  ResNeXt-50 (32x4d)+PS-KD           :pskd            18.79 / 4.20 / 0.74 / 4.85 / 48.52
    #21  ResNeXt-50 (32x4d)+PS-KD+BYOT      :pskd_byot       18.36 / 4.34 / 0.80 / 9.99 / 46.50
    #22  ResNeXt-50 (32x4d)+PS-KD+DMFL      :pskd_dmfl       19.25 / 4.14 / 0.75 / 5.18 / 47.46
    #23  ResNeXt-50 (32x4d)+DMFL+BYOT       :dmfl_byot       19.30 / 4.23 / 0.88 / 9.86 / 47.98
    #24  ResNeXt-50 (32x4d)+PS-KD+BYOT+DMFL :pskd_byot_dmfl  18.27 / 4.11 / 0.72 / 10.32 / 45.71
Settings and their sources: `keras_sd.paper_args.pskd_cifar100_row`; the reasons for the values
the paper leaves out: recipes/pskd/resnet18_cifar100.py.

* ``exit_head="attention"`` (TPAMI's exits), unlike the ResNet recipes: the paper does not
  describe its exits, and its parameter counts are the only evidence. For ResNet-18 / ResNet-50
  (13.0M / 50.4M) they are those of a CIFAR ResNet with the ``branchBottleNeck`` exits of the
  unofficial BYOT code (github.com/luanyunteng/pytorch-be-your-own-teacher), hence
  ``exit_head="bottleneck"`` there. For ResNeXt-50 (37.9M) the same reasoning gives the
  attention exits: a CIFAR ResNeXt-50 (32x4d) has 23.18M parameters bare, 37.90M with TPAMI's
  attention exits and 49.90M with the bottleneck exits (tests/test_pskd_byot.py). Use
  ``--set method_args.exit_head=bottleneck`` for the other reading.

Command: keras-sd train pskd/resnext50_cifar100:ROW  (ROW: one of the ``:args`` above; ``:smoke`` trains PS-KD alone)
"""

from keras_sd import paper_args

DEFAULT_ARG = "pskd"  # PS-KD alone
# TPAMI's attention exits: with them a CIFAR ResNeXt-50 has the paper's 37.9M parameters (the
# bottleneck exits of its ResNet networks would give 49.9M).
get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.pskd_cifar100_row(
    "resnext50",
    exit_head="attention",
    published={
        "pskd": (20, "18.79 / 4.20 / 0.74 / 4.85 / 48.52"),
        "baseline": (17, "19.25 / 4.48 / 0.81 / 7.49 / 48.13"),
        "byot": (18, "19.09 / 4.54 / 0.84 / 9.62 / 46.66"),
        "dmfl": (19, "19.41 / 4.43 / 0.82 / 7.45 / 47.72"),
        "pskd_byot": (21, "18.36 / 4.34 / 0.80 / 9.99 / 46.50"),
        "pskd_dmfl": (22, "19.25 / 4.14 / 0.75 / 5.18 / 47.46"),
        "dmfl_byot": (23, "19.30 / 4.23 / 0.88 / 9.86 / 47.98"),
        "pskd_byot_dmfl": (24, "18.27 / 4.11 / 0.72 / 10.32 / 45.71"),
    },
)
