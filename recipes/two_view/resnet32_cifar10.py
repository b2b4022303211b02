"""Two-view self-distillation (DDGSD): ResNet-32 (0.5M) on CIFAR-10.

Row: ResNet-32 (0.5M) on CIFAR-10, Tables 2 and 3.
Settings and sources: `keras_sd.paper_args.ddgsd_cifar_row`; published numbers: its arguments.

Command: keras-sd train two_view/resnet32_cifar10  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "resnet32", "cifar10", "resnet", error="6.32", baseline_error="7.22"
)
