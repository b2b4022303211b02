"""Two-view self-distillation (DDGSD): DenseNet-40, k = 12 (1.0M) on CIFAR-100.

Row: DenseNet-40, k = 12 (1.0M) on CIFAR-100, Tables 2 and 3.
Settings and sources: `keras_sd.paper_args.ddgsd_cifar_row`; published numbers: its arguments.

Command: keras-sd train two_view/densenet40_cifar100  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "densenet40", "cifar100", "densenet", error="23.68", baseline_error="25.20"
)
