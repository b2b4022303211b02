"""Two-view self-distillation (DDGSD): ResNet-32 (0.5M) on CIFAR-100.

Paper: Xu & Liu, "Data-Distortion Guided Self-Distillation for Deep Neural Networks", AAAI 2019.
Row: ResNet-32 (0.5M) on CIFAR-100, Tables 1, 2, 3, 5 (mu = 5e-4) and 6.
Published top-1 test error (single run, Caffe): baseline 31.01 %, self-distillation 28.22 %.

Schedule (paper, Implementation Details, following Zhang et al. 2018b): batch 64, SGD with Nesterov
momentum 0.9, weight decay 1e-4, learning rate 0.1 multiplied by 0.1 every 60 epochs, 200 epochs.

Method: T = 3 (the paper's value for CIFAR-100), lambda = kl_weight = 1, mu = mmd_weight = 5e-4
(paper default range 1e-4 ... 5e-4; Table 5's best), no T^2 factor on the KL
(kl_scale "none": the paper is silent, its gradient has no T factor and it follows deep mutual
learning, which has none; a validation pilot decided it, see docs/methods/two_view.md), both views in one batch-norm batch ("concat"; not stated in the paper). The model
distorts each batch twice inside its train step (pad 4, random 32x32 crop, horizontal flip, per
sample), so the trainer feeds it undistorted, normalised batches. The baseline (``:baseline``)
trains the same backbone with cross entropy on singly distorted batches (the data pipeline's
"cifar" augmentation: the same pad-4 crop + flip).

Table 6 ablations (CIFAR-100 error %): baseline 31.01, two branches with CE only (``:two_branch``)
31.32, + MMD (``:mmd_only``) 30.62, + KL (``:kl_only``) 29.06, both 28.22.
Table 5 (mu sweep, error %): mu = 0: 29.06, 1e-4: 28.79, 5e-4: 28.22, 1e-3: 28.81, 5e-3: 28.88,
1e-2: 28.54; run one with ``--set method_args.mmd_weight=1e-3``.

Commands:
    keras-sd train recipes/two_view/resnet32_cifar100.py
    keras-sd train recipes/two_view/resnet32_cifar100.py:baseline
    keras-sd train recipes/two_view/resnet32_cifar100.py:two_branch
    keras-sd train recipes/two_view/resnet32_cifar100.py:mmd_only
    keras-sd train recipes/two_view/resnet32_cifar100.py:kl_only
    keras-sd train recipes/two_view/resnet32_cifar100.py:smoke   # digits, 2 epochs, CPU minutes
"""

from keras_sd import paper_args, schedules
from keras_sd.recipes import DataConfig, Recipe, variant

PUBLISHED = {
    None: "top-1 error 28.22 % (self-distillation)",
    "baseline": "top-1 error 31.01 % (baseline)",
    "two_branch": "top-1 error 31.32 % (Table 6, two branches only)",
    "mmd_only": "top-1 error 30.62 % (Table 6, MMD only)",
    "kl_only": "top-1 error 29.06 % (Table 6, KL only)",
}
VARIANTS = paper_args.DDGSD_ABLATIONS
BASELINE = paper_args.DDGSD_CIFAR_BASELINE  # the model distorts in its step


def get_config(arg: str | None = None) -> Recipe:
    return Recipe(
        method="two_view",
        backbone="resnet32",
        method_args={"temperature": 3.0, **paper_args.DDGSD, **variant(arg, VARIANTS)},
        data=DataConfig(name="cifar100", batch_size=64, augment="none"),
        optimizer=schedules.DDGSD_RESNET_CIFAR,
        epochs=200,
        paper=paper_args.DDGSD_PAPER,
    )
