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

Table 6 ablations (CIFAR-100 error %; published for this row and WRN-16-8 only, every CIFAR
row runs them): baseline 31.01, two branches with CE only (``:two_branch``)
31.32, + MMD (``:mmd_only``) 30.62, + KL (``:kl_only``) 29.06, both 28.22.
Table 5 (mu sweep, error %): mu = 0: 29.06, 1e-4: 28.79, 5e-4: 28.22, 1e-3: 28.81, 5e-3: 28.88,
1e-2: 28.54; run one with ``--set method_args.mmd_weight=1e-3``.

Command: keras-sd train two_view/resnet32_cifar100  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "resnet32",
    "cifar100",
    "resnet",
    error="28.22",
    baseline_error="31.01",
    table6={"two_branch": "31.32", "mmd_only": "30.62", "kl_only": "29.06"},
)
