"""Multi-exit self-distillation (BYOT / TPAMI) on a ViT-Tiny (DeiT-Tiny, 4-pixel patches), CIFAR-10.

Not a paper row: no paper ran BYOT / TPAMI's multi-exit self-distillation on ViT-Tiny or
DeiT-Tiny on CIFAR-10, so there is no published number to compare with. The method is TPAMI's;
the network and the training schedule come from elsewhere, as below.

Network (``backbone="hub_vit"``, `keras_sd.paper_args.VIT_TINY_CIFAR`): keras-hub's ViTBackbone
built from config (random initialisation, nothing downloaded) with DeiT-Tiny's dimensions (12
blocks, 3 heads, width 192, MLP 768; Touvron et al. 2021, Table 1) on 4-pixel patches, so a 32x32
image is 64 patch tokens plus the class token; 5.4M parameters, 365M MACs per image
(`keras_sd.inference.count_macs`; the exits' paths 92M / 183M / 274M / 365M). Stochastic depth as DeiT-Tiny
(drop 0.1 at the last block, linear over the blocks, per sample). Exits: a `TokenExitHead` (layer
norm, mean of the tokens, dense) on the tokens after blocks 3, 6 and 9, and the backbone's own
head (class token) after block 12 (`from_keras_hub`'s default stages, every depth // 4 blocks).

Method: TPAMI's, as recipes/multi_exit/resnet18_cifar100.py gives it (`keras_sd.paper_args.TPAMI`,
`keras_sd.paper_args.TPAMI_ANNEALING`), the feature term on the pooled token features. TPAMI's
attention modules and exit convolutions apply to 4-D feature maps only, not to token exits.

Schedule: DeiT's (Touvron et al., "Training data-efficient image transformers & distillation
through attention", ICML 2021, Table 9), for the schedule only (`keras_sd.schedules.deit_adamw`):
AdamW with decoupled weight decay 0.05 (biases, norms, class token and position embedding
undecayed), learning rate 5e-4 * batch / 512 = 5e-4 at batch 512, 5 warm-up epochs, cosine decay,
300 epochs. Augmentation ``augment="randaugment"``: pad-4 crop with grey + flip, then DeiT's
RandAugment (timm rand-m9-mstd0.5-inc1: 2 operations, magnitude 9 +- 0.5, each with probability
0.5), per sample, on every row, ``:baseline`` included. Label smoothing is off on every row:
keras_sd has no label smoothing, so ``:baseline`` also differs from DeiT there (DeiT used 0.1).
Not applied either: DeiT's Mixup, CutMix, random erasing and repeated augmentation.

``:baseline`` trains the ViT alone (cross-entropy on the class-token head), same data and schedule.
``:no_distillation`` trains every exit by cross entropy alone (alpha 0, feature weight 0: deep
supervision, TPAMI Table 7's 'No Distillation' on this network), to tell the exits' own losses
from the distillation terms.
``:smoke`` runs a 4-block ViT of width 32 on the digits (`keras_sd.paper_args.VIT_SMOKE`).

Commands:
    keras-sd train recipes/multi_exit/vit_tiny_cifar10.py
    keras-sd train recipes/multi_exit/vit_tiny_cifar10.py:baseline
    keras-sd train recipes/multi_exit/vit_tiny_cifar10.py:no_distillation
    keras-sd train recipes/multi_exit/vit_tiny_cifar10.py:smoke   # digits, 2 epochs, CPU minutes
"""

from keras_sd import paper_args

PUBLISHED = {
    None: "none: no paper ran multi-exit self-distillation on ViT-Tiny/DeiT-Tiny on CIFAR-10",
    "baseline": "none: no paper trained this ViT-Tiny/4 with this schedule on CIFAR-10",
    "no_distillation": "none: no paper ran deep supervision on this ViT-Tiny/4 on CIFAR-10",
}
VARIANTS = {None: {}, "no_distillation": paper_args.TPAMI_ABLATIONS["no_distillation"]}
BASELINE = {}  # `:baseline`: the ViT alone, same data and schedule
SMOKE = paper_args.VIT_SMOKE
get_config = paper_args.vit_tiny_cifar10_row(
    "multi_exit",
    paper_args.TPAMI,
    paper=paper_args.TPAMI_PAPER,
    variants=VARIANTS,
    callbacks=paper_args.TPAMI_ANNEALING,
)
