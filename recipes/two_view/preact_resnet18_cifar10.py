"""Two-view self-distillation (DDGSD): pre-activation ResNet-18 (11.2M) on CIFAR-10.

Row: pre-activation ResNet-18 (11.2M) on CIFAR-10, Table 3.
Published top-1 test error (single run, Caffe): baseline 5.15 %, self-distillation 4.83 %.
Settings: `keras_sd.paper_args.ddgsd_cifar_row`: T = 2 on CIFAR-10, the paper's ResNet schedule
(batch 64, 200 epochs). Sources: `keras_sd.schedules.DDGSD_RESNET_CIFAR`,
recipes/two_view/resnet32_cifar100.py.
The Table 6 ablations (published for CIFAR-100 ResNet-32 and WRN-16-8 only) run here too.

Command: keras-sd train two_view/preact_resnet18_cifar10  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "preact_resnet18", "cifar10", "resnet", error="4.83", baseline_error="5.15"
)
