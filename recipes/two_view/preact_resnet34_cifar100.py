"""Two-view self-distillation (DDGSD): pre-activation ResNet-34 (21.3M) on CIFAR-100.

Row: pre-activation ResNet-34 (21.3M) on CIFAR-100, Table 3.
Settings and sources: `keras_sd.paper_args.ddgsd_cifar_row`; published numbers: its arguments.

Command: keras-sd train two_view/preact_resnet34_cifar100  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "preact_resnet34", "cifar100", "resnet", error="20.75", baseline_error="22.68"
)
