"""Self-Guidance, Table 3: facial expression recognition on RAF with CIFAR ResNet-32/50/110.

Paper: Zheng & Peng, "Self-Guidance: Improve Deep Neural Network Generalization via Knowledge
Distillation", WACV 2022, Table 3 (Sec. 4.2). RAF-DB (Li et al., CVPR 2017), basic set: 7 expressions,
12,271 training and 3,068 test RGB faces (aligned: 100x100). The paper resizes images to 32x32
and otherwise uses the CIFAR setting (`keras_sd.paper_args.self_guidance_faces`; values and
sources: recipes/self_guidance/resnet_cifar.py).

Data: YOU supply the folder, laid out and resized to 32x32 as
recipes/self_guidance/resnet_cifar_fer2013.py describes (at 100x100 the "cifar" augmentation would
crop 100x100 images), with 7 class folders from the basic set's labels 1-7: surprise, fear,
disgust, happiness, sadness, anger, neutral. The default ``folder:data/raf`` is relative to the
working directory.

Published top-1 error (%), baseline -> Self-Guidance: ResNet-32 18.55 -> 17.80, ResNet-50
17.67 -> 16.43, ResNet-110 19.62 -> 16.53.

``:arg``: ``resnet32|resnet50|resnet110`` (default resnet32), plus ``baseline`` for the
cross-entropy row.

Commands:
    keras-sd train recipes/self_guidance/resnet_cifar_raf.py:resnet50 --set data.name=folder:/data/raf_32
    keras-sd train recipes/self_guidance/resnet_cifar_raf.py:resnet50,baseline --set data.name=folder:/data/raf_32
    keras-sd train recipes/self_guidance/resnet_cifar_raf.py:resnet32,smoke   # CPU, digits
"""

from keras_sd import paper_args

ARGS = ["resnet50"]
get_config = paper_args.self_guidance_faces(
    "raf",
    "folder:data/raf",  # override with --set data.name=folder:/your/path
    {  # (baseline, Self-Guidance) top-1 error %
        "resnet32": (18.55, 17.80),
        "resnet50": (17.67, 16.43),
        "resnet110": (19.62, 16.53),
    },
)
