"""Two-view self-distillation (DDGSD): WRN-16-8 (11.0M) on CIFAR-10.

Row: WRN-16-8 (11.0M) on CIFAR-10, Tables 2 and 3.
Settings and sources: `keras_sd.paper_args.ddgsd_cifar_row`; published numbers: its arguments.

Command: keras-sd train two_view/wrn16_8_cifar10  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "wrn16_8", "cifar10", "wrn", error="3.92", baseline_error="4.27"
)
