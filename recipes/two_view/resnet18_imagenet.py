"""Two-view self-distillation (DDGSD): ResNet-18 (11.7M) on ImageNet-2012.

Paper: Xu & Liu, "Data-Distortion Guided Self-Distillation for Deep Neural Networks", AAAI 2019.
Row: ResNet-18 on ImageNet, Table 4.
Published single-crop validation error (top-1 / top-5, Caffe): baseline 32.27 / 12.13 %,
self-distillation 31.34 / 11.30 %.

Schedule: the paper keeps "the other detailed configurations the same as the original papers",
i.e. He et al. 2016: batch 256, SGD momentum 0.9 (plain, as in the original), weight decay 1e-4,
learning rate 0.1 divided by 10 "when the error plateaus", up to 60e4 iterations (about 120
epochs). The plateaus are written here as fixed steps at epochs 30, 60 and 90 of 120.

Method: T = 3 (the paper's ImageNet value), lambda = kl_weight = 1, mu = mmd_weight = 5e-4, no
T^2 factor on the KL (see docs/methods/two_view.md), one batch-norm batch for both views.

Distortion (both rows, ``augment="resize256_crop224"``): the paper resizes "all the raw images to
single-scale 256x256" and then randomly crops "a 224x224 region ... or its mirror flip". Every
image is resized to 256x256 (aspect ratio not kept) and each sample gets its own uniform 224
window and flip. The ``:baseline`` row gets that crop from the data pipeline; the method row gets
the 256x256 images from the pipeline (kind "resize256", chosen by ``keras_sd.train`` for two-view
recipes) and ``method_args.distortion="resize256_crop224"`` cuts each of the two views' windows
inside the train step with the same op. Evaluation (both rows): the centre 224 window of the
256x256 image (single crop). ``:smoke`` runs on 8x8 digits, where the 8x8 "crop" of an 8x8
image leaves only the flip; add ``--set method_args.distortion=None`` for the digits' own
default.

Command: keras-sd train two_view/resnet18_imagenet  (or :baseline, :smoke)
"""

from keras_sd import paper_args, schedules
from keras_sd.recipes import DataConfig, Recipe, variant

PUBLISHED = {
    None: "top-1 / top-5 error 31.34 / 11.30 % (self-distillation)",
    "baseline": "top-1 / top-5 error 32.27 / 12.13 % (baseline)",
}
VARIANTS = paper_args.DDGSD_ABLATIONS
BASELINE = {}  # both rows take the same crop (the method row inside its step)


def get_config(arg: str | None = None) -> Recipe:
    return Recipe(
        method="two_view",
        backbone="resnet18",
        backbone_args={"variant": "imagenet"},
        method_args={
            "distortion": "resize256_crop224",
            "temperature": 3.0,
            **paper_args.DDGSD,
            **variant(arg, VARIANTS),
        },
        data=DataConfig(name="imagenet2012", batch_size=256, augment="resize256_crop224"),
        optimizer=schedules.IMAGENET_RESNET,
        epochs=120,
        paper=paper_args.DDGSD_PAPER,
    )
