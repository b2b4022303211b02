"""Two-view self-distillation (DDGSD): WRN-40-4 (8.9M) on CIFAR-100.

Paper: Xu & Liu, "Data-Distortion Guided Self-Distillation for Deep Neural Networks", AAAI 2019.
Row: WRN-40-4 (8.9M) on CIFAR-100, Table 3.
Published top-1 test error (single run, Caffe): baseline 21.18 %, self-distillation 19.93 %.

Schedule (paper, Implementation Details, after Zagoruyko & Komodakis 2016): batch 128, SGD with
Nesterov momentum 0.9, weight decay 5e-4, learning rate 0.1 multiplied by 0.2 at epochs 60, 120 and
180, 200 epochs.

Method: T = 3 (the paper's value for CIFAR-100) and the settings of `keras_sd.paper_args.DDGSD`
(lambda = 1, mu = 5e-4, no T^2 factor, both views in one batch-norm batch); the model distorts each
batch twice inside its train step (pad 4, random crop, flip), and ``:baseline`` takes the same
distortion from the data pipeline. recipes/two_view/resnet32_cifar100.py and
docs/methods/two_view.md give the reasons.

The ``:two_branch``, ``:mmd_only`` and ``:kl_only`` variants (the paper's Table 6 ablations) work
here too; the paper reports them for ResNet-32 and WRN-16-8 on CIFAR-100 only.

Commands:
    keras-sd train recipes/two_view/wrn40_4_cifar100.py
    keras-sd train recipes/two_view/wrn40_4_cifar100.py:baseline
    keras-sd train recipes/two_view/wrn40_4_cifar100.py:smoke   # digits, 2 epochs, CPU minutes
"""

from keras_sd import paper_args, schedules
from keras_sd.recipes import DataConfig, Recipe, variant

PUBLISHED = {
    None: "top-1 error 19.93 % (self-distillation)",
    "baseline": "top-1 error 21.18 % (baseline)",
}
VARIANTS = paper_args.DDGSD_ABLATIONS
BASELINE = paper_args.DDGSD_CIFAR_BASELINE  # the model distorts in its step


def get_config(arg: str | None = None) -> Recipe:
    return Recipe(
        method="two_view",
        backbone="wrn40_4",
        method_args={"temperature": 3.0, **paper_args.DDGSD, **variant(arg, VARIANTS)},
        data=DataConfig(name="cifar100", batch_size=128, augment="none"),
        optimizer=schedules.DDGSD_WRN_CIFAR,
        epochs=200,
        paper=paper_args.DDGSD_PAPER,
    )
