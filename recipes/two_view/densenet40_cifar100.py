"""Two-view self-distillation (DDGSD): DenseNet-40, k = 12 (1.0M) on CIFAR-100.

Row: DenseNet-40, k = 12 (1.0M) on CIFAR-100, Tables 2 and 3.
Published top-1 test error (single run, Caffe): baseline 25.20 %, self-distillation 23.68 %.
Settings: `keras_sd.paper_args.ddgsd_cifar_row`: T = 3 on CIFAR-100, the paper's DenseNet schedule
(batch 64, 300 epochs). Sources: `keras_sd.schedules.DDGSD_DENSENET_CIFAR`,
recipes/two_view/resnet32_cifar100.py.
The Table 6 ablations (published for CIFAR-100 ResNet-32 and WRN-16-8 only) run here too.

Command: keras-sd train two_view/densenet40_cifar100  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "densenet40", "cifar100", "densenet", error="23.68", baseline_error="25.20"
)
