"""Two-view self-distillation (DDGSD): ResNet-110 (1.7M) on CIFAR-10.

Row: ResNet-110 (1.7M) on CIFAR-10, Table 3 (baseline also Table 2).
Settings and sources: `keras_sd.paper_args.ddgsd_cifar_row`; published numbers: its arguments.

Command: keras-sd train two_view/resnet110_cifar10  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "resnet110", "cifar10", "resnet", error="5.57", baseline_error="6.00"
)
