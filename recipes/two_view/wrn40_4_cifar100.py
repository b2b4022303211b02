"""Two-view self-distillation (DDGSD): WRN-40-4 (8.9M) on CIFAR-100.

Row: WRN-40-4 (8.9M) on CIFAR-100, Table 3.
Settings and sources: `keras_sd.paper_args.ddgsd_cifar_row`; published numbers: its arguments.

Command: keras-sd train two_view/wrn40_4_cifar100  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "wrn40_4", "cifar100", "wrn", error="19.93", baseline_error="21.18"
)
