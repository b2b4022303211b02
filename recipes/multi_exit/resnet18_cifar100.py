"""Multi-exit self-distillation (BYOT / TPAMI): ResNet18 on CIFAR-100.

Papers: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural Networks", TPAMI;
Zhang et al., "Be Your Own Teacher", ICCV 2019.
Row: ResNet18, TPAMI Table 1 and ICCV Table 1.
Published top-1 accuracy (%), baseline / exit1 / exit2 / exit3 / exit4 / ensemble:
    TPAMI: 79.01 / 76.31 / 79.32 / 81.24 / 81.76 / 82.64
    ICCV:  77.09 / 67.85 / 74.57 / 78.23 / 78.64 / 79.67
Schedule (TPAMI section 4.1): batch 128, SGD, learning rate 0.1 divided by 10 at epochs
90, 180 and 270 of 300. Weight decay and momentum type are not
stated: 5e-4 and plain momentum 0.9 are used. The paper trains with AutoAugment on RGB images; the
data pipeline offers the standard "cifar" augmentation instead, so expect somewhat lower numbers.

Method (TPAMI): an exit after every backbone stage (the last is the backbone's head), attention
exits, deepest-teacher path, alpha = 0.6, feature_weight (lambda) = 0.04, T = 3, KL times T^2,
losses averaged over the exits; both weights set to 0 for the last 5 epochs
(`DistillationAnnealing`). ``:iccv`` uses the ICCV form instead: exit terms summed
(``reduction="sum"``) and the official code's alpha = 0.3, lambda = 0.03, no T^2 factor (its
feature hint is an un-squared norm; ours stays squared). ``:baseline`` trains the backbone alone.

Ablations on this row (TPAMI; top-1 % of exits 1-4 and the ensemble):
    :deepest          Table 7 'Best Teacher Distillation' (read as the deepest path): 76.22 / 79.81 / 81.93 / 81.29 / ensemble 82.32
    :ensemble         Table 7 'Ensemble Teacher Distillation': 76.50 / 78.90 / 82.01 / 81.86 / ensemble 83.33
    :transitive       Table 7 'Transitive Distillation': 76.31 / 79.32 / 81.24 / 81.76 / ensemble 82.64
    :dense            Table 7 'Densely Connected Distillation': 77.52 / 79.98 / 81.32 / 81.37 / ensemble 82.42
    :no_distillation  Table 7 'No Distillation' (exits trained by CE only, deep supervision): 75.85 / 78.73 / 81.27 / 81.26 / ensemble 82.65
    :no_attention     Table 8 'No Attention': 74.83 / 78.08 / 81.04 / 81.44 / ensemble 82.20
    :kl_only          Table 10, L_KL only: deepest exit 81.58
    :l2_only          Table 10, L2 only: deepest exit 80.37 (alpha = 0 also gives the exits full CE weight)
TPAMI Table 7's 'Transitive' row repeats Table 1's ResNet18 row although the text says
the deepest path is used throughout; which label is right cannot be told from the paper.
Table 3 'KD + Ours' (82.23 with a ResNet50 teacher) needs a trained teacher model: pass
one in Python as MultiExitDistiller(..., teacher=keras.models.load_model(...)).

Commands:
    keras-sd train recipes/multi_exit/resnet18_cifar100.py
    keras-sd train recipes/multi_exit/resnet18_cifar100.py:baseline
    keras-sd train recipes/multi_exit/resnet18_cifar100.py:iccv
    keras-sd train recipes/multi_exit/resnet18_cifar100.py:deepest
    keras-sd train recipes/multi_exit/resnet18_cifar100.py:ensemble
    keras-sd train recipes/multi_exit/resnet18_cifar100.py:transitive
    keras-sd train recipes/multi_exit/resnet18_cifar100.py:dense
    keras-sd train recipes/multi_exit/resnet18_cifar100.py:no_distillation
    keras-sd train recipes/multi_exit/resnet18_cifar100.py:no_attention
    keras-sd train recipes/multi_exit/resnet18_cifar100.py:kl_only
    keras-sd train recipes/multi_exit/resnet18_cifar100.py:l2_only
    keras-sd train recipes/multi_exit/resnet18_cifar100.py:smoke   # digits, 2 epochs, CPU minutes
"""

from keras_sd.recipes import DataConfig, OptimizerConfig, Recipe

PUBLISHED = {
    None: "TPAMI: 79.01 / 76.31 / 79.32 / 81.24 / 81.76 / 82.64 (baseline / exit1 / exit2 / exit3 / exit4 / ensemble)",
    "baseline": "TPAMI baseline 79.01",
    "iccv": "ICCV: 77.09 / 67.85 / 74.57 / 78.23 / 78.64 / 79.67 (baseline / exit1 / exit2 / exit3 / exit4 / ensemble)",
    "deepest": "Table 7 'Best Teacher Distillation' (read as the deepest path): 76.22 / 79.81 / 81.93 / 81.29 / ensemble 82.32",
    "ensemble": "Table 7 'Ensemble Teacher Distillation': 76.50 / 78.90 / 82.01 / 81.86 / ensemble 83.33",
    "transitive": "Table 7 'Transitive Distillation': 76.31 / 79.32 / 81.24 / 81.76 / ensemble 82.64",
    "dense": "Table 7 'Densely Connected Distillation': 77.52 / 79.98 / 81.32 / 81.37 / ensemble 82.42",
    "no_distillation": "Table 7 'No Distillation' (exits trained by CE only, deep supervision): 75.85 / 78.73 / 81.27 / 81.26 / ensemble 82.65",
    "no_attention": "Table 8 'No Attention': 74.83 / 78.08 / 81.04 / 81.44 / ensemble 82.20",
    "kl_only": "Table 10, L_KL only: deepest exit 81.58",
    "l2_only": "Table 10, L2 only: deepest exit 80.37 (alpha = 0 also gives the exits full CE weight)",
}
TPAMI_ARGS = {
    "exits": "stages",
    "alpha": 0.6,
    "feature_weight": 0.04,
    "temperature": 3.0,
    "path": "deepest",
    "reduction": "sum",
    "kl_scale": "none",
    "attention": True,
}
VARIANTS = {
    None: {},
    "baseline": {},
    "iccv": {"alpha": 0.3, "feature_weight": 0.03, "reduction": "sum", "kl_scale": "none"},
    "deepest": {"path": "deepest"},
    "ensemble": {"path": "ensemble"},
    "transitive": {"path": "transitive"},
    "dense": {"path": "dense"},
    "no_distillation": {"alpha": 0.0, "feature_weight": 0.0},
    "no_attention": {"attention": False},
    "kl_only": {"feature_weight": 0.0},
    "l2_only": {"alpha": 0.0},
}


def get_config(arg: str | None = None) -> Recipe:
    if arg not in VARIANTS:
        raise ValueError(
            f"`arg` must be one of {sorted(k for k in VARIANTS if k)} or empty, got {arg!r}."
        )
    baseline = arg == "baseline"
    suffix = f":{arg}" if arg else ""
    return Recipe(
        name=f"multi_exit/resnet18_cifar100{suffix}",
        method="baseline" if baseline else "multi_exit",
        backbone="resnet18",
        backbone_args={"variant": "cifar"},
        method_args={} if baseline else {**TPAMI_ARGS, **VARIANTS[arg]},
        callbacks={} if baseline else {"DistillationAnnealing": {"last_epochs": 5}},
        data=DataConfig(name="cifar100", batch_size=128, augment="cifar"),
        optimizer=OptimizerConfig(
            name="sgd",
            learning_rate=0.1,
            momentum=0.9,
            nesterov=False,
            weight_decay=5e-4,
            schedule="multistep",
            milestones=(90, 180, 270),
            gamma=0.1,
        ),
        epochs=300,
        paper="Zhang, Bao & Ma, TPAMI (self-distillation); Zhang et al., ICCV 2019 (BYOT)",
        published=PUBLISHED.get(arg, "not published for this variant"),
    )
