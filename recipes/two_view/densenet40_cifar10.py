"""Two-view self-distillation (DDGSD): DenseNet-40, k = 12 (1.0M) on CIFAR-10.

Paper: Xu & Liu, "Data-Distortion Guided Self-Distillation for Deep Neural Networks", AAAI 2019.
Row: DenseNet-40, k = 12 (1.0M) on CIFAR-10, Tables 2 and 3.
Published top-1 test error (single run, Caffe): baseline 5.47 %, self-distillation 5.20 %.

Schedule (paper, Implementation Details, after Huang et al. 2017): batch 64, SGD with Nesterov
momentum 0.9, weight decay 1e-4, learning rate 0.1 divided by 10 at 50 % and 75 % of training
(epochs 150 and 225), 300 epochs.

Method: T = 2 (the paper's value for CIFAR-10) and the settings of `keras_sd.paper_args.DDGSD`
(lambda = 1, mu = 5e-4, no T^2 factor, both views in one batch-norm batch); the model distorts each
batch twice inside its train step (pad 4, random crop, flip), and ``:baseline`` takes the same
distortion from the data pipeline. recipes/two_view/resnet32_cifar100.py and
docs/methods/two_view.md give the reasons.

The ``:two_branch``, ``:mmd_only`` and ``:kl_only`` variants (the paper's Table 6 ablations) work
here too; the paper reports them for ResNet-32 and WRN-16-8 on CIFAR-100 only.

Commands:
    keras-sd train recipes/two_view/densenet40_cifar10.py
    keras-sd train recipes/two_view/densenet40_cifar10.py:baseline
    keras-sd train recipes/two_view/densenet40_cifar10.py:smoke   # digits, 2 epochs, CPU minutes
"""

from keras_sd import paper_args, schedules
from keras_sd.recipes import DataConfig, Recipe, variant

PUBLISHED = {
    None: "top-1 error 5.20 % (self-distillation)",
    "baseline": "top-1 error 5.47 % (baseline)",
}
VARIANTS = paper_args.DDGSD_ABLATIONS
BASELINE = paper_args.DDGSD_CIFAR_BASELINE  # the model distorts in its step


def get_config(arg: str | None = None) -> Recipe:
    return Recipe(
        method="two_view",
        backbone="densenet40",
        method_args={"temperature": 2.0, **paper_args.DDGSD, **variant(arg, VARIANTS)},
        data=DataConfig(name="cifar10", batch_size=64, augment="none"),
        optimizer=schedules.DDGSD_DENSENET_CIFAR,
        epochs=300,
        paper=paper_args.DDGSD_PAPER,
    )
