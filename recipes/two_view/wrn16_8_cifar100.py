"""Two-view self-distillation (DDGSD): WRN-16-8 (11.0M) on CIFAR-100.

Paper: Xu & Liu, "Data-Distortion Guided Self-Distillation for Deep Neural Networks", AAAI 2019.
Row: WRN-16-8 (11.0M) on CIFAR-100, Tables 2, 3 and 6.
Published top-1 test error (single run, Caffe): baseline 20.43 %, self-distillation 19.33 %.

Schedule (paper, Implementation Details, after Zagoruyko & Komodakis 2016): batch 128, SGD with
Nesterov momentum 0.9, weight decay 5e-4, learning rate 0.1 multiplied by 0.2 at epochs 60, 120 and
180, 200 epochs.

Method: T = 3 (the paper's value for CIFAR-100) and the settings of `keras_sd.paper_args.DDGSD`
(lambda = 1, mu = 5e-4, no T^2 factor, both views in one batch-norm batch); the model distorts each
batch twice inside its train step (pad 4, random crop, flip), and ``:baseline`` takes the same
distortion from the data pipeline. recipes/two_view/resnet32_cifar100.py and
docs/methods/two_view.md give the reasons.

Table 6 ablations (CIFAR-100 error %): baseline 20.43, two branches with CE only (``:two_branch``)
20.25, + MMD (``:mmd_only``) 19.98, + KL (``:kl_only``) 19.48, both 19.33.

Commands:
    keras-sd train recipes/two_view/wrn16_8_cifar100.py
    keras-sd train recipes/two_view/wrn16_8_cifar100.py:baseline
    keras-sd train recipes/two_view/wrn16_8_cifar100.py:two_branch
    keras-sd train recipes/two_view/wrn16_8_cifar100.py:mmd_only
    keras-sd train recipes/two_view/wrn16_8_cifar100.py:kl_only
    keras-sd train recipes/two_view/wrn16_8_cifar100.py:smoke   # digits, 2 epochs, CPU minutes
"""

from keras_sd import paper_args, schedules
from keras_sd.recipes import DataConfig, Recipe, variant

PUBLISHED = {
    None: "top-1 error 19.33 % (self-distillation)",
    "baseline": "top-1 error 20.43 % (baseline)",
    "two_branch": "top-1 error 20.25 % (Table 6, two branches only)",
    "mmd_only": "top-1 error 19.98 % (Table 6, MMD only)",
    "kl_only": "top-1 error 19.48 % (Table 6, KL only)",
}
VARIANTS = paper_args.DDGSD_ABLATIONS
BASELINE = paper_args.DDGSD_CIFAR_BASELINE  # the model distorts in its step


def get_config(arg: str | None = None) -> Recipe:
    return Recipe(
        method="two_view",
        backbone="wrn16_8",
        method_args={"temperature": 3.0, **paper_args.DDGSD, **variant(arg, VARIANTS)},
        data=DataConfig(name="cifar100", batch_size=128, augment="none"),
        optimizer=schedules.DDGSD_WRN_CIFAR,
        epochs=200,
        paper=paper_args.DDGSD_PAPER,
    )
