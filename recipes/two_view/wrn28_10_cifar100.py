"""Two-view self-distillation (DDGSD): WRN-28-10 (36.5M) on CIFAR-100.

Row: WRN-28-10 (36.5M) on CIFAR-100, Table 3 (baseline also Table 2).
Settings and sources: `keras_sd.paper_args.ddgsd_cifar_row`; published numbers: its arguments.

Command: keras-sd train two_view/wrn28_10_cifar100  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "wrn28_10", "cifar100", "wrn", error="18.54", baseline_error="19.25"
)
