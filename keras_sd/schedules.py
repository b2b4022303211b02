"""The papers' optimizer settings, named after the section that states them.

Each is an `OptimizerConfig` for a recipe's ``optimizer=``; the recipe states its ``epochs`` (given
next to each setting). The self-distillation papers' settings are SGD with momentum 0.9 from
learning rate 0.1, stepped down at fixed epochs, and ``weight_decay`` is their coupled L2 (PyTorch
``SGD(weight_decay=)``); `deit_adamw` is DeiT's AdamW schedule for Vision Transformers, whose
``weight_decay`` is AdamW's decoupled decay.
Where a paper leaves a value out, the recipe docstrings say which value is used and why.
"""

from keras_sd import validation
from keras_sd.recipes import OptimizerConfig


def multistep_sgd(
    *, nesterov: bool, weight_decay: float, milestones: tuple[int, ...], gamma: float = 0.1
) -> OptimizerConfig:
    """SGD, momentum 0.9, learning rate 0.1 multiplied by ``gamma`` at each milestone epoch."""
    return OptimizerConfig(
        name="sgd",
        learning_rate=0.1,
        momentum=0.9,
        nesterov=nesterov,
        weight_decay=weight_decay,
        schedule="multistep",
        milestones=milestones,
        gamma=gamma,
    )


# Quick runs on the embedded digits data (not a paper): 15 epochs, cosine decay.
DIGITS = OptimizerConfig(
    learning_rate=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine"
)

# Zhang, Bao & Ma, TPAMI, section 4.1 (multi-exit, CIFAR): batch 128, 300 epochs, divided by 10 at
# epochs 90, 180 and 270; weight decay and momentum type not stated (5e-4 and plain are used).
TPAMI_CIFAR = multistep_sgd(nesterov=False, weight_decay=5e-4, milestones=(90, 180, 270))

# The BYOT authors' released code (pytorch-self-distillation-final, train.py): BYOT_CODE_EPOCHS =
# 250 epochs, lr /= 10 when epoch in [250 // 3, 250 * 2 // 3, 250 - 10]; keras_sd's milestones are
# the 0-based epochs whose first step has the new rate.
BYOT_CODE_EPOCHS = 250
BYOT_CODE = multistep_sgd(
    nesterov=False,
    weight_decay=5e-4,
    milestones=(BYOT_CODE_EPOCHS // 3, BYOT_CODE_EPOCHS * 2 // 3, BYOT_CODE_EPOCHS - 10),
)

# He et al. 2016, ImageNet (TPAMI's ImageNet rows, 100 epochs; DDGSD's, 120 epochs): batch 256,
# plain momentum, weight decay 1e-4, divided by 10 at epochs 30, 60 and 90.
IMAGENET_RESNET = multistep_sgd(nesterov=False, weight_decay=1e-4, milestones=(30, 60, 90))

# Xu & Liu, AAAI 2019 (DDGSD), Implementation Details, ResNet and pre-activation ResNet on CIFAR:
# Nesterov, weight decay 1e-4, 200 epochs, divided by 10 at epochs 60, 120 and 180.
DDGSD_RESNET_CIFAR = multistep_sgd(nesterov=True, weight_decay=1e-4, milestones=(60, 120, 180))

# DDGSD, Implementation Details, WRN on CIFAR (after Zagoruyko & Komodakis 2016): Nesterov, weight
# decay 5e-4, 200 epochs, multiplied by 0.2 at epochs 60, 120 and 180.
DDGSD_WRN_CIFAR = multistep_sgd(
    nesterov=True, weight_decay=5e-4, milestones=(60, 120, 180), gamma=0.2
)

# Zheng & Peng, Self-Guidance, WACV 2022, section 4.1 (CIFAR and the face data sets): Nesterov,
# weight decay 1e-4, 300 epochs, divided by 10 at 50 % and 75 % (epochs 150 and 225). DDGSD's
# DenseNet rows (after Huang et al. 2017) use the same setting.
SELF_GUIDANCE = multistep_sgd(nesterov=True, weight_decay=1e-4, milestones=(150, 225))
DDGSD_DENSENET_CIFAR = SELF_GUIDANCE

# Kim et al., ICCV 2021 (PS-KD), CIFAR-100, as Chottananurak et al. use it (their paper gives no
# epochs): Nesterov, weight decay 5e-4, 300 epochs, divided by 10 at epochs 150 and 225.
PSKD_CIFAR = multistep_sgd(nesterov=True, weight_decay=5e-4, milestones=(150, 225))

# Touvron et al., "Training data-efficient image transformers & distillation through attention",
# ICML 2021 (DeiT), Table 9 and section 6, the schedule only: AdamW (decoupled weight decay 0.05,
# epsilon 1e-8; biases, norms, class token and position embedding undecayed), learning rate
# 5e-4 * batch / 512, 5 warm-up epochs, cosine decay, 300 epochs. DeiT's cosine ends at 1e-5 and
# its warm-up starts from 1e-6; keras_sd's decays to 0 and warms up from peak / warm-up steps.
DEIT_EPOCHS = 300


def deit_adamw(batch_size: int, warmup_epochs: int = 5) -> OptimizerConfig:
    """DeiT's optimizer for ``batch_size``: AdamW, learning rate 5e-4 * batch_size / 512 (DeiT's
    linear scaling), weight decay 0.05, cosine decay after ``warmup_epochs`` of linear warm-up."""
    validation.positive_int(batch_size, "batch_size")
    return OptimizerConfig(
        name="adamw",
        learning_rate=5e-4 * batch_size / 512,
        weight_decay=0.05,
        schedule="cosine",
        warmup_epochs=warmup_epochs,
    )
