"""Two-view self-distillation (DDGSD): DenseNet-100, k = 12 (7.0M) on CIFAR-10.

Row: DenseNet-100, k = 12 (7.0M) on CIFAR-10, Table 3 (baseline also Table 2).
Published top-1 test error (single run, Caffe): baseline 4.45 %, self-distillation 4.34 %.
Settings: `keras_sd.paper_args.ddgsd_cifar_row`: T = 2 on CIFAR-10, the paper's DenseNet schedule
(batch 64, 300 epochs). Sources: `keras_sd.schedules.DDGSD_DENSENET_CIFAR`,
recipes/two_view/resnet32_cifar100.py.
The Table 6 ablations (published for CIFAR-100 ResNet-32 and WRN-16-8 only) run here too.

Command: keras-sd train two_view/densenet100_cifar10  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "densenet100", "cifar10", "densenet", error="4.34", baseline_error="4.45"
)
