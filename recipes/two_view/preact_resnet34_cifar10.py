"""Two-view self-distillation (DDGSD): pre-activation ResNet-34 (21.3M) on CIFAR-10.

Row: pre-activation ResNet-34 (21.3M) on CIFAR-10, Table 3.
Settings and sources: `keras_sd.paper_args.ddgsd_cifar_row`; published numbers: its arguments.

Command: keras-sd train two_view/preact_resnet34_cifar10  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "preact_resnet34", "cifar10", "resnet", error="4.42", baseline_error="4.90"
)
