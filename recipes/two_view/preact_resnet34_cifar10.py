"""Two-view self-distillation (DDGSD): pre-activation ResNet-34 (21.3M) on CIFAR-10.

Row: pre-activation ResNet-34 (21.3M) on CIFAR-10, Table 3.
Published top-1 test error (single run, Caffe): baseline 4.90 %, self-distillation 4.42 %.
Settings: `keras_sd.paper_args.ddgsd_cifar_row`: T = 2 on CIFAR-10, the paper's ResNet schedule
(batch 64, 200 epochs). Sources: `keras_sd.schedules.DDGSD_RESNET_CIFAR`,
recipes/two_view/resnet32_cifar100.py.
The Table 6 ablations (published for CIFAR-100 ResNet-32 and WRN-16-8 only) run here too.

Command: keras-sd train two_view/preact_resnet34_cifar10  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "preact_resnet34", "cifar10", "resnet", error="4.42", baseline_error="4.90"
)
