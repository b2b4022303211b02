"""PS-KD, BYOT and deep mutual feature learning: ResNet-50 on CIFAR-100.

Paper: Chottananurak et al., "Progressive Self-Knowledge Distillation with Mutual Learning",
Table 1 rows 9-16 (full citations, with PS-KD's and BYOT's: recipes/pskd/resnet18_cifar100.py).
Published (CIFAR-100) top-1 err % / top-5 err % / NLL / ECE % / AURC x1e3, one ``:arg`` per row:
    #9   ResNet-50                          :baseline        21.96 / 5.21 / 0.89 / 8.75 / 57.24
    #10  ResNet-50+BYOT                     :byot            19.03 / 4.38 / 0.94 / 11.51 / 48.32
    #11  ResNet-50+DMFL                     :dmfl            20.13 / 4.96 / 0.85 / 8.63 / 51.20
    #12  ResNet-50+PS-KD                    :pskd            20.19 / 4.50 / 0.77 / 4.03 / 50.76
    #13  ResNet-50+PS-KD+BYOT               :pskd_byot       17.92 / 3.94 / 0.75 / 8.96 / 46.76
    #14  ResNet-50+PS-KD+DMFL               :pskd_dmfl       19.12 / 4.43 / 0.73 / 3.51 / 47.57
    #15  ResNet-50+DMFL+BYOT                :dmfl_byot       19.70 / 4.77 / 0.87 / 9.79 / 48.58
    #16  ResNet-50+PS-KD+BYOT+DMFL          :pskd_byot_dmfl  17.52 / 3.75 / 0.71 / 10.00 / 46.25
Settings and their sources: `keras_sd.paper_args.pskd_cifar100_row`; the reasons for the values
the paper leaves out: recipes/pskd/resnet18_cifar100.py.

Command: keras-sd train pskd/resnet50_cifar100:ROW  (ROW: one of the ``:args`` above; ``:smoke`` trains PS-KD alone)
"""

from keras_sd import paper_args

DEFAULT_ARG = "pskd"  # PS-KD alone
# Exits of the unofficial BYOT code (parameter counts of the paper's Table 1 caption).
get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.pskd_cifar100_row(
    "resnet50",
    exit_head="bottleneck",
    published={
        "pskd": (12, "20.19 / 4.50 / 0.77 / 4.03 / 50.76"),
        "baseline": (9, "21.96 / 5.21 / 0.89 / 8.75 / 57.24"),
        "byot": (10, "19.03 / 4.38 / 0.94 / 11.51 / 48.32"),
        "dmfl": (11, "20.13 / 4.96 / 0.85 / 8.63 / 51.20"),
        "pskd_byot": (13, "17.92 / 3.94 / 0.75 / 8.96 / 46.76"),
        "pskd_dmfl": (14, "19.12 / 4.43 / 0.73 / 3.51 / 47.57"),
        "dmfl_byot": (15, "19.70 / 4.77 / 0.87 / 9.79 / 48.58"),
        "pskd_byot_dmfl": (16, "17.52 / 3.75 / 0.71 / 10.00 / 46.25"),
    },
)
