"""Two-view self-distillation (DDGSD): WRN-40-4 (8.9M) on CIFAR-10.

Row: WRN-40-4 (8.9M) on CIFAR-10, Table 3.
Settings and sources: `keras_sd.paper_args.ddgsd_cifar_row`; published numbers: its arguments.

Command: keras-sd train two_view/wrn40_4_cifar10  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "wrn40_4", "cifar10", "wrn", error="4.30", baseline_error="4.53"
)
