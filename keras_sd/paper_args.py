"""The papers' method arguments and shared recipe pieces, one place for each paper.

The recipe files under ``recipes/`` combine these with what differs per row (backbone, data,
temperature, published number). Each value's source and the reasons for values a paper does not
state are in the recipe docstrings and docs/methods/*.md.
"""

# ---------------------------------------------------------------- multi-exit (TPAMI / BYOT)
TPAMI_PAPER = "Zhang, Bao & Ma, TPAMI (self-distillation); Zhang et al., ICCV 2019 (BYOT)"
# TPAMI: an exit after every stage, attention exits, deepest-teacher path, alpha 0.6, lambda 0.04,
# T = 3; no T^2 factor and the exit losses summed, as the authors' released code.
TPAMI = {
    "exits": "stages",
    "alpha": 0.6,
    "feature_weight": 0.04,
    "temperature": 3.0,
    "path": "deepest",
    "reduction": "sum",
    "kl_scale": "none",
    "attention": True,
}
# Both distillation weights set to 0 for the last 5 epochs.
TPAMI_ANNEALING = {"DistillationAnnealing": {"last_epochs": 5}}
# The training step of the authors' released code (with `schedules.BYOT_CODE`, no annealing).
BYOT_CODE = {
    "alpha": 0.3,
    "feature_weight": 0.03,
    "reduction": "sum",
    "kl_scale": "none",
    "feature_hint": "adapted_l2_batch",
    "hint_exits": "all_but_last",
}

# ---------------------------------------------------------------- two-view (DDGSD)
DDGSD_PAPER = "Xu & Liu, AAAI 2019 (DDGSD)"
# lambda = kl_weight = 1, mu = mmd_weight = 5e-4, no T^2 factor, both views in one batch-norm batch.
# The temperature differs per data set (2 on CIFAR-10, 3 on CIFAR-100 and ImageNet).
DDGSD = {"kl_weight": 1.0, "mmd_weight": 5e-4, "kl_scale": "none", "views": "concat"}
# Table 6 ablations as configurations (weights of the KL and MMD terms).
DDGSD_ABLATIONS = {
    None: {},
    "two_branch": {"kl_weight": 0.0, "mmd_weight": 0.0},
    "mmd_only": {"kl_weight": 0.0},
    "kl_only": {"mmd_weight": 0.0},
}
# The two-view model distorts each batch inside its train step, so its recipes feed undistorted
# batches (augment "none"); the baseline row takes the same pad-4 crop + flip from the pipeline.
DDGSD_CIFAR_BASELINE = {"data.augment": "cifar"}

# ---------------------------------------------------------------- PS-KD + BYOT + DMFL
PSKD_PAPER = (
    "Chottananurak et al., Progressive Self-Knowledge Distillation with Mutual Learning; "
    "Kim et al., ICCV 2021 (PS-KD)"
)
# alpha_T = 0.8. The bank's rows (`num_train_examples`) come from the data: the runner passes the
# training-set size of `DataBundle.info` (`train.build_model`), so no recipe hard-codes 50000.
PSKD = {"pskd_alpha": 0.8, "bank_dtype": "float32"}
DMFL = {"mutual_feature_weight": 1.0}


def pskd_byot(exit_head: str) -> dict:
    """BYOT as Chottananurak et al. run it: exits after every stage with ``exit_head``."""
    return {
        "exits": "stages",
        "exit_head": exit_head,
        "alpha": 0.1,
        "feature_weight": 1e-6,
        "temperature": 3.0,  # paper silent; the unofficial BYOT code's default (train.py)
        "kl_scale": "t2",  # that code multiplies its exit KL terms by temperature**2
        "path": "deepest",
        "reduction": "sum",
        "final_ce_weight": 1.9,  # L_CE + eq. 2 summed over i = 1..N: 1 + (1 - alpha)
    }


def pskd_rows(exit_head: str) -> dict:
    """Table 1's rows other than the baseline: arg -> (method, method_args)."""
    byot = pskd_byot(exit_head)
    # Rows with DMFL but no BYOT keep the exits for their features, without classification loss.
    no_byot = {"exits": "stages", "exit_head": exit_head, "alpha": 0.0, "feature_weight": 0.0}
    no_byot["exit_losses"] = False
    return {
        "byot": ("multi_exit", byot),
        "dmfl": ("multi_exit", {**no_byot, **DMFL}),
        "pskd": ("baseline", dict(PSKD)),
        "pskd_byot": ("multi_exit", {**byot, **PSKD}),
        "pskd_dmfl": ("multi_exit", {**no_byot, **PSKD, **DMFL}),
        "dmfl_byot": ("multi_exit", {**byot, **DMFL}),
        "pskd_byot_dmfl": ("multi_exit", {**byot, **PSKD, **DMFL}),
    }


# ---------------------------------------------------------------- Self-Guidance
SELF_GUIDANCE_PAPER = "Zheng & Peng, Self-Guidance, WACV 2022"
FINAL_SURVIVAL = 0.5  # the one value handed to both the backbone and the distiller


def self_guidance_row(
    depth: int, row: str = "self_guidance", *, drop_mode: str = "per_batch", **method_args
) -> dict:
    """``Recipe`` fields of a Self-Guidance table row on a CIFAR ResNet of ``depth``: ``row`` is
    "self_guidance" (stochastic depth in the backbone, survival 1 -> 0.5, and the distiller with
    tau = 3, lambda = 0.25 unless ``method_args`` say otherwise), "stochastic_depth" (the backbone
    alone, with stochastic depth) or "baseline" (the backbone alone, without)."""
    backbone_args = {"depth": depth}
    if row != "baseline":
        backbone_args.update(stochastic_depth=FINAL_SURVIVAL, drop_mode=drop_mode)
    fields = {"backbone": "resnet_cifar", "backbone_args": backbone_args}
    if row in ("baseline", "stochastic_depth"):
        return {**fields, "method": "baseline", "method_args": {}}
    args = {"kd_weight": 0.25, "temperature": 3.0, "final_survival": FINAL_SURVIVAL}
    return {
        **fields,
        "method": "self_guidance",
        "method_args": {**args, "drop_mode": drop_mode, **method_args},
    }
