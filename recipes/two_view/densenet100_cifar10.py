"""Two-view self-distillation (DDGSD): DenseNet-100, k = 12 (7.0M) on CIFAR-10.

Row: DenseNet-100, k = 12 (7.0M) on CIFAR-10, Table 3 (baseline also Table 2).
Settings and sources: `keras_sd.paper_args.ddgsd_cifar_row`; published numbers: its arguments.

Command: keras-sd train two_view/densenet100_cifar10  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "densenet100", "cifar10", "densenet", error="4.34", baseline_error="4.45"
)
