"""Two-view self-distillation (DDGSD) on a ViT-Tiny (DeiT-Tiny, 4-pixel patches), CIFAR-10.

Not a paper row: no paper ran DDGSD's two-view self-distillation on ViT-Tiny or DeiT-Tiny on
CIFAR-10, so there is no published number to compare with. The method is DDGSD's; the network
and the training schedule come from elsewhere, as below.

Network (``backbone="hub_vit"``, `keras_sd.paper_args.VIT_TINY_CIFAR`): keras-hub's ViTBackbone
built from config (random initialisation, nothing downloaded) with DeiT-Tiny's dimensions (12
blocks, 3 heads, width 192, MLP 768; Touvron et al. 2021, Table 1) on 4-pixel patches, so a 32x32
image is 64 patch tokens plus the class token; 5.4M parameters, 365M MACs per image
(`keras_sd.inference.count_macs`), classified from the class token.
Stochastic depth as DeiT-Tiny (drop 0.1 at the last block, linear over the blocks, per sample).

Method: T = 2 (DDGSD's value for CIFAR-10) and `keras_sd.paper_args.DDGSD` (lambda = 1, mu = 5e-4
on the class-token features, no T^2 factor, both views in one batch). Each view is its own draw of
the RandAugment chain below, made inside the train step (``method_args.distortion="randaugment"``:
`keras_sd.layers.CifarRandAugment` un-normalises the batch with the data's statistics, distorts
the 8-bit values and normalises again), in place of DDGSD's pad-crop-flip views; the pipeline
feeds undistorted batches.

Schedule: DeiT's (Touvron et al., "Training data-efficient image transformers & distillation
through attention", ICML 2021, Table 9), for the schedule only (`keras_sd.schedules.deit_adamw`):
AdamW with decoupled weight decay 0.05 (biases, norms, class token and position embedding
undecayed), learning rate 5e-4 * batch / 512 = 5e-4 at batch 512 (each step sees 1024 views),
5 warm-up epochs, cosine decay, 300 epochs. Augmentation: pad-4 crop with grey + flip, then DeiT's
RandAugment (timm rand-m9-mstd0.5-inc1: 2 operations, magnitude 9 +- 0.5, each with probability
0.5), per sample. Label smoothing is off on every row: keras_sd has no label smoothing, so
``:baseline`` also differs from DeiT there (DeiT used 0.1). Not applied either: DeiT's Mixup,
CutMix, random erasing and repeated augmentation.

``:baseline`` trains the ViT alone with cross-entropy on one RandAugment view per image, made by
the data pipeline (``augment="randaugment"``, the same chain). The ``:two_branch``, ``:mmd_only``
and ``:kl_only`` variants (DDGSD's Table 6 ablations) work here too.
``:smoke`` runs a 4-block ViT of width 32 on the digits (`keras_sd.paper_args.VIT_SMOKE`).

Commands:
    keras-sd train recipes/two_view/vit_tiny_cifar10.py
    keras-sd train recipes/two_view/vit_tiny_cifar10.py:baseline
    keras-sd train recipes/two_view/vit_tiny_cifar10.py:smoke   # digits, 2 epochs, CPU minutes
"""

from keras_sd import paper_args, schedules
from keras_sd.recipes import DataConfig, Recipe, variant

PUBLISHED = {
    None: "none: no paper ran two-view self-distillation (DDGSD) on ViT-Tiny/DeiT-Tiny on CIFAR-10",
    "baseline": "none: no paper trained this ViT-Tiny/4 with this schedule on CIFAR-10",
}
VARIANTS = paper_args.DDGSD_ABLATIONS
BASELINE = {"data.augment": "randaugment"}  # the pipeline makes the baseline's one view
SMOKE = paper_args.VIT_SMOKE


def get_config(arg: str | None = None) -> Recipe:
    return Recipe(
        method="two_view",
        backbone="hub_vit",
        backbone_args=paper_args.VIT_TINY_CIFAR,
        method_args={
            "temperature": 2.0,
            **paper_args.DDGSD,
            "distortion": "randaugment",
            **variant(arg, VARIANTS),
        },
        data=DataConfig(name="cifar10", batch_size=paper_args.VIT_BATCH, augment="none"),
        optimizer=schedules.deit_adamw(paper_args.VIT_BATCH),
        epochs=schedules.DEIT_EPOCHS,
        paper=f"{paper_args.DDGSD_PAPER}; schedule: {paper_args.DEIT_PAPER}",
    )
