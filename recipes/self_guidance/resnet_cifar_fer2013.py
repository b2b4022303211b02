"""Self-Guidance, Table 3: facial expression recognition on FER-2013 with CIFAR ResNet-32/50/110.

Paper: Zheng & Peng, "Self-Guidance: Improve Deep Neural Network Generalization via Knowledge
Distillation", WACV 2022, Table 3 (Sec. 4.2). FER-2013 (Goodfellow et al. 2013): 7 expressions,
28,709 training and 3,589 test gray-scale faces (48x48). The paper resizes images to 32x32,
duplicates the gray channel to RGB and otherwise uses the CIFAR setting
(`keras_sd.paper_args.self_guidance_faces`; values and sources: recipes/self_guidance/resnet_cifar.py).

Data: YOU supply the folder; it is not downloaded. Lay it out as ``PATH/train/<class>/*.png`` and
``PATH/test/<class>/*.png`` (7 class folders, e.g. angry, disgust, fear, happy, neutral, sad,
surprise; the paper does not say which 3,589-image test set it used, PrivateTest is customary),
with the images already resized to 32x32 as in the paper (the folder loader keeps the size of the
first training image). Gray-scale images are used with one channel: duplicating it to RGB only
rescales the first convolution's initialisation. Point the recipe at it with
``--set data.name=folder:PATH``; the default ``folder:data/fer2013`` is relative to the working
directory.

Published top-1 error (%), baseline -> Self-Guidance: ResNet-32 32.85 -> 31.33, ResNet-50
31.83 -> 30.38, ResNet-110 32.35 -> 30.48 (Table 4 gives 32.19 for the ResNet-32 baseline).

``:arg``: ``resnet32|resnet50|resnet110`` (default resnet32), plus ``baseline`` for the
cross-entropy row.

Commands:
    keras-sd train recipes/self_guidance/resnet_cifar_fer2013.py:resnet50 --set data.name=folder:/data/fer2013_32
    keras-sd train recipes/self_guidance/resnet_cifar_fer2013.py:resnet50,baseline --set data.name=folder:/data/fer2013_32
    keras-sd train recipes/self_guidance/resnet_cifar_fer2013.py:resnet32,smoke   # CPU, digits
"""

from keras_sd import paper_args

ARGS = ["resnet32", "resnet110,baseline"]
get_config = paper_args.self_guidance_faces(
    "fer2013",
    "folder:data/fer2013",  # override with --set data.name=folder:/your/path
    {  # (baseline, Self-Guidance) top-1 error %
        "resnet32": (32.85, 31.33),
        "resnet50": (31.83, 30.38),
        "resnet110": (32.35, 30.48),
    },
)
