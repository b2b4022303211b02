"""Two-view self-distillation (DDGSD): pre-activation ResNet-34 (21.3M) on CIFAR-100.

Row: pre-activation ResNet-34 (21.3M) on CIFAR-100, Table 3.
Published top-1 test error (single run, Caffe): baseline 22.68 %, self-distillation 20.75 %.
Settings: `keras_sd.paper_args.ddgsd_cifar_row`: T = 3 on CIFAR-100, the paper's ResNet schedule
(batch 64, 200 epochs). Sources: `keras_sd.schedules.DDGSD_RESNET_CIFAR`,
recipes/two_view/resnet32_cifar100.py.
The Table 6 ablations (published for CIFAR-100 ResNet-32 and WRN-16-8 only) run here too.

Command: keras-sd train two_view/preact_resnet34_cifar100  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "preact_resnet34", "cifar100", "resnet", error="20.75", baseline_error="22.68"
)
