"""Self-Guidance, Table 5: the trade-off lambda (``kd_weight``), ResNet-50 on CIFAR-10 and
ResNet-110 on CIFAR-100.

Paper: Zheng & Peng, "Self-Guidance: Improve Deep Neural Network Generalization via Knowledge
Distillation", WACV 2022, Table 5 (Sec. 4.3). CIFAR ResNet-(6n+2): ResNet-50 is n = 8, ResNet-110
n = 18. Otherwise the Table 1 setting (`keras_sd.paper_args.self_guidance_row`,
`keras_sd.schedules.SELF_GUIDANCE`; values and sources: recipes/self_guidance/resnet_cifar.py).

``:arg`` is ``<dataset>,<row>``: ``cifar10`` selects ResNet-50, ``cifar100`` ResNet-110; ``row`` is
a lambda value, ``baseline`` or ``stochastic_depth``. Published top-1 error (%):

    ================== ===================== =======================
    row                ResNet-50, CIFAR-10   ResNet-110, CIFAR-100
    ================== ===================== =======================
    baseline           6.06                  25.33
    stochastic_depth   6.05                  22.61
    0                  5.31                  22.63
    0.1                5.29                  21.25
    0.25               5.28                  21.08
    0.5                5.62                  21.97
    1                  5.78                  22.40
    3                  90.00 (loss blow-up)  23.51
    ================== ===================== =======================

Any other lambda >= 0 is accepted. The lambda = 0.25 rows repeat Table 1's setting, where the
paper reports 5.28 and 21.60 (not 21.08).

Commands:
    keras-sd train recipes/self_guidance/resnet_cifar_lambda.py:cifar10,0.5
    keras-sd train recipes/self_guidance/resnet_cifar_lambda.py:cifar100,0.1
    keras-sd train recipes/self_guidance/resnet_cifar_lambda.py:cifar100,stochastic_depth
    keras-sd train recipes/self_guidance/resnet_cifar_lambda.py:cifar10,3,smoke   # CPU, minutes
"""

from keras_sd import paper_args, schedules
from keras_sd.recipes import DataConfig, Recipe

DEPTH = {"cifar10": 50, "cifar100": 110}
PUBLISHED = {  # row -> (ResNet-50 CIFAR-10, ResNet-110 CIFAR-100) top-1 error %
    "baseline": (6.06, 25.33),
    "stochastic_depth": (6.05, 22.61),
    0.0: (5.31, 22.63),
    0.1: (5.29, 21.25),
    0.25: (5.28, 21.08),
    0.5: (5.62, 21.97),
    1.0: (5.78, 22.40),
    3.0: (90.00, 23.51),
}
# The test suite loads and smoke-trains these (one new configuration, lambda = 0).
ARGS = ["cifar10,0", "cifar100,0.25"]


def _row(text):
    if text in ("baseline", "stochastic_depth"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(
            f"recipe row {text!r}: expected a lambda >= 0, 'baseline' or 'stochastic_depth'."
        )
    return value


def get_config(arg=None):
    words = [w for w in (arg or "cifar10,0.25").split(",") if w]
    if len(words) != 2 or words[0] not in DEPTH:
        raise ValueError(
            f"recipe argument {arg!r}: expected '<dataset>,<row>' with dataset cifar10 "
            "(ResNet-50) or cifar100 (ResNet-110) and row a lambda, 'baseline' or "
            "'stochastic_depth'."
        )
    dataset, row = words[0], _row(words[1])
    if isinstance(row, str):
        fields = paper_args.self_guidance_row(DEPTH[dataset], row)
    else:
        fields = paper_args.self_guidance_row(DEPTH[dataset], kd_weight=row)
    published = PUBLISHED.get(row)
    error = None if published is None else published[dataset == "cifar100"]
    tag = row if isinstance(row, str) else f"lambda{row:g}"
    return Recipe(
        name=f"self_guidance/resnet{DEPTH[dataset]}_{dataset}_{tag}",
        **fields,
        data=DataConfig(name=dataset, batch_size=128, augment="cifar"),
        optimizer=schedules.SELF_GUIDANCE,
        epochs=300,
        paper=f"{paper_args.SELF_GUIDANCE_PAPER}, Table 5",
        published="not in the paper" if error is None else f"top-1 error {error:.2f}%",
    )
