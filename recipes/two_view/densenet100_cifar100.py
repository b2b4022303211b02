"""Two-view self-distillation (DDGSD): DenseNet-100, k = 12 (7.0M) on CIFAR-100.

Row: DenseNet-100, k = 12 (7.0M) on CIFAR-100, Table 3 (baseline also Table 2).
Settings and sources: `keras_sd.paper_args.ddgsd_cifar_row`; published numbers: its arguments.

Command: keras-sd train two_view/densenet100_cifar100  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "densenet100", "cifar100", "densenet", error="20.50", baseline_error="21.58"
)
