"""Two-view self-distillation (DDGSD): pre-activation ResNet-18 (11.2M) on CIFAR-10.

Row: pre-activation ResNet-18 (11.2M) on CIFAR-10, Table 3.
Settings and sources: `keras_sd.paper_args.ddgsd_cifar_row`; published numbers: its arguments.

Command: keras-sd train two_view/preact_resnet18_cifar10  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "preact_resnet18", "cifar10", "resnet", error="4.83", baseline_error="5.15"
)
