"""Two-view self-distillation (DDGSD) on a ViT-Tiny (DeiT-Tiny, 4-pixel patches), CIFAR-10.

Not a paper row: no paper ran DDGSD's two-view self-distillation on ViT-Tiny or DeiT-Tiny on
CIFAR-10, so there is no published number to compare with. The method is DDGSD's; the network
and the training schedule come from elsewhere, as below.

Network, schedule and augmentation chain (and which of DeiT's regularisers are not applied): as
recipes/multi_exit/vit_tiny_cifar10.py, whose docstring gives them and their sources
(``backbone="hub_vit"``, `keras_sd.paper_args.VIT_TINY_CIFAR`; DeiT's AdamW schedule,
`keras_sd.schedules.deit_adamw`, at batch 512, so each step sees 1024 views), here classified from
the class token alone, without exits.

Method: T = 2 (DDGSD's value for CIFAR-10) and `keras_sd.paper_args.DDGSD` (lambda = 1, mu = 5e-4
on the class-token features, no T^2 factor, both views in one batch). Each view is its own draw of
that augmentation chain (pad-4 crop with grey + flip, then DeiT's RandAugment), made inside the
train step (``method_args.distortion="randaugment"``: `keras_sd.layers.CifarRandAugment`
un-normalises the batch with the data's statistics, distorts the 8-bit values and normalises
again), in place of DDGSD's pad-crop-flip views; the pipeline feeds undistorted batches.

``:baseline`` trains the ViT alone with cross-entropy on one RandAugment view per image, made by
the data pipeline (``augment="randaugment"``, the same chain). The ``:two_branch``, ``:mmd_only``
and ``:kl_only`` variants (DDGSD's Table 6 ablations) work here too.
``:smoke`` runs a 4-block ViT of width 32 on the digits (`keras_sd.paper_args.VIT_SMOKE`).

Commands:
    keras-sd train recipes/two_view/vit_tiny_cifar10.py
    keras-sd train recipes/two_view/vit_tiny_cifar10.py:baseline
    keras-sd train recipes/two_view/vit_tiny_cifar10.py:smoke   # digits, 2 epochs, CPU minutes
"""

from keras_sd import paper_args

PUBLISHED = {
    None: "none: no paper ran two-view self-distillation (DDGSD) on ViT-Tiny/DeiT-Tiny on CIFAR-10",
    "baseline": "none: no paper trained this ViT-Tiny/4 with this schedule on CIFAR-10",
}
VARIANTS = paper_args.DDGSD_ABLATIONS
BASELINE = {"data.augment": "randaugment"}  # the pipeline makes the baseline's one view
SMOKE = paper_args.VIT_SMOKE
get_config = paper_args.vit_tiny_cifar10_row(
    "two_view",
    {"temperature": 2.0, **paper_args.DDGSD, "distortion": "randaugment"},
    paper=paper_args.DDGSD_PAPER,
    variants=VARIANTS,
    augment="none",  # each view is distorted in the train step
)
