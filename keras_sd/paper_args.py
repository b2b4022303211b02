"""The papers' method arguments and shared recipe pieces, one place for each paper.

The recipe files under ``recipes/`` combine these with what differs per row (backbone, data,
temperature, published number). Each value's source and the reasons for values a paper does not
state are in the recipe docstrings and docs/methods/*.md.

A family of table rows that differ only in the backbone and the published numbers is one builder
here (`tpami_row`, `ddgsd_cifar_row`, `pskd_cifar100_row`); its recipe files are a docstring and
one call::

    get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.tpami_row("resnet50", "cifar100", ...)

The loader (`keras_sd.recipes.load`) reads those four names as it reads hand-written ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from keras_sd import schedules
from keras_sd.recipes import DataConfig, Recipe, baseline, variant

RowFile = tuple[
    Callable[..., Recipe], dict, dict, dict
]  # get_config, VARIANTS, BASELINE, PUBLISHED

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

TPAMI_EXITS = "(baseline / exit1 / exit2 / exit3 / exit4 / ensemble)"
TPAMI_ABLATIONS = {  # TPAMI Tables 7, 8 and 10 on the ResNet18 / CIFAR-100 row
    "deepest": {"path": "deepest"},
    "ensemble": {"path": "ensemble"},
    "transitive": {"path": "transitive"},
    "dense": {"path": "dense"},
    "no_distillation": {"alpha": 0.0, "feature_weight": 0.0},
    "no_attention": {"attention": False},
    "kl_only": {"feature_weight": 0.0},
    "l2_only": {"alpha": 0.0},
}


def tpami_row(
    backbone: str,
    dataset: str,
    *,
    tpami: str | None,
    iccv: str | None = None,
    ablations: Mapping[str, str] | None = None,
    backbone_args: Mapping | None = None,
    unpublished: Mapping[str | None, str] | None = None,
) -> RowFile:
    """A TPAMI Table 1 (``dataset="cifar100"``) or Table 2 (``"imagenet"``) row.

    The TPAMI method (`TPAMI`, annealed by `TPAMI_ANNEALING`) on ``backbone`` with the paper's
    schedule: on CIFAR-100 batch 128, AutoAugment + Cutout on every row, `schedules.TPAMI_CIFAR`
    for 300 epochs; on ImageNet batch 256, the standard "imagenet" augmentation,
    `schedules.IMAGENET_RESNET` for 100 epochs. ``tpami`` and ``iccv`` are the published
    accuracies, ``"baseline / exit1 / ... / ensemble"``. A CIFAR-100 row with an ``iccv`` number
    also gets ``:authors_code`` (`BYOT_CODE` with `schedules.BYOT_CODE`, no annealing: the
    authors' released code, which trains on CIFAR only) and ``:authors_code_baseline`` (the
    backbone alone on that data and schedule). ``ablations`` maps names of `TPAMI_ABLATIONS` to
    their published text. ``backbone_args`` replaces the default ``{"variant": "cifar"}`` (or
    ``"imagenet"``) for a backbone without that argument; a configuration no paper ran passes
    ``tpami=None`` and says so in ``unpublished`` (arg -> text, for ``None`` and ``"baseline"``).
    recipes/multi_exit/resnet18_cifar100.py gives every source on CIFAR-100
    (and the papers' full citations), recipes/multi_exit/resnet50_imagenet.py those on ImageNet.
    """
    if dataset not in ("cifar100", "imagenet"):
        raise ValueError(f"`dataset` must be 'cifar100' or 'imagenet', got {dataset!r}.")
    if (tpami is None) == (unpublished is None):
        raise ValueError(
            "Give either `tpami` (the published row) or `unpublished` (a configuration no paper "
            f"ran), exactly one; got tpami={tpami!r}, unpublished={unpublished!r}."
        )
    cifar = dataset == "cifar100"
    if backbone_args is None:
        backbone_args = {"variant": "cifar" if cifar else "imagenet"}
    if unpublished is not None:
        published = dict(unpublished)
    else:
        published = {
            None: f"TPAMI: {tpami} {TPAMI_EXITS}",
            "baseline": f"TPAMI baseline {_first(tpami)}",
        }
    variants: dict = {None: {}}
    if cifar and iccv is not None:
        nearest = "none for exactly this configuration; nearest: ICCV Table 1"
        published["authors_code"] = f"{nearest} {iccv} {TPAMI_EXITS}"
        published["authors_code_baseline"] = f"{nearest} baseline {_first(iccv)}"
        variants.update(authors_code=BYOT_CODE, authors_code_baseline=None)
    for name, text in (ablations or {}).items():
        variants[name] = TPAMI_ABLATIONS[name]
        published[name] = text

    def get_config(arg: str | None = None) -> Recipe:
        if arg == "authors_code_baseline" and "authors_code" in variants:
            return baseline(get_config("authors_code"))  # the backbone alone, the code's run
        authors = arg == "authors_code"
        if cifar:
            data = DataConfig(name="cifar100", batch_size=128, augment="autoaugment")
            optimizer = schedules.BYOT_CODE if authors else schedules.TPAMI_CIFAR
            epochs = schedules.BYOT_CODE_EPOCHS if authors else 300
        else:
            data = DataConfig(name="imagenet2012", batch_size=256, augment="imagenet")
            optimizer, epochs = schedules.IMAGENET_RESNET, 100
        return Recipe(
            method="multi_exit",
            backbone=backbone,
            backbone_args=dict(backbone_args),
            method_args={**TPAMI, **variant(arg, variants)},
            callbacks={} if authors else TPAMI_ANNEALING,
            data=data,
            optimizer=optimizer,
            epochs=epochs,
            paper=TPAMI_PAPER,
        )

    return get_config, variants, {}, published


def _first(row: str) -> str:
    """The first number of ``"a / b / c"``: a row's baseline."""
    return row.split("/")[0].strip()


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
# Schedules of the paper's Implementation Details per network family: (optimizer, batch, epochs).
DDGSD_CIFAR_SCHEDULES = {
    "resnet": (schedules.DDGSD_RESNET_CIFAR, 64, 200),  # ResNet and pre-activation ResNet
    "wrn": (schedules.DDGSD_WRN_CIFAR, 128, 200),
    "densenet": (schedules.DDGSD_DENSENET_CIFAR, 64, 300),
}
DDGSD_TABLE6 = {
    "two_branch": "two branches only",
    "mmd_only": "MMD only",
    "kl_only": "KL only",
}


def ddgsd_cifar_row(
    backbone: str,
    dataset: str,
    family: str,
    *,
    error: str,
    baseline_error: str,
    table6: Mapping[str, str] | None = None,
) -> RowFile:
    """A DDGSD Table 2/3 row on CIFAR-10 or CIFAR-100.

    `DDGSD` with the paper's temperature for ``dataset`` (T = 2 on CIFAR-10, 3 on CIFAR-100) and
    the schedule of ``family`` (`DDGSD_CIFAR_SCHEDULES`); the model distorts each batch twice in
    its step, so the pipeline feeds undistorted batches and ``:baseline`` takes the same pad-4
    crop + flip from the pipeline (`DDGSD_CIFAR_BASELINE`). ``error`` / ``baseline_error``: the
    published top-1 test errors (%); ``table6`` maps ablations of `DDGSD_ABLATIONS` (which every
    row accepts) to their Table 6 error; the paper publishes Table 6 for CIFAR-100 ResNet-32 and
    WRN-16-8 only. ``family`` is the paper's schedule (Implementation Details): "resnet" (ResNet
    and pre-activation ResNet) batch 64, 200 epochs, `schedules.DDGSD_RESNET_CIFAR`; "wrn" batch
    128, 200 epochs, `schedules.DDGSD_WRN_CIFAR`; "densenet" batch 64, 300 epochs,
    `schedules.DDGSD_DENSENET_CIFAR`. The published errors are the paper's single Caffe runs.
    recipes/two_view/resnet32_cifar100.py gives the sources.
    """
    temperature = {"cifar10": 2.0, "cifar100": 3.0}
    if dataset not in temperature:
        raise ValueError(f"`dataset` must be one of {sorted(temperature)}, got {dataset!r}.")
    if family not in DDGSD_CIFAR_SCHEDULES:
        raise ValueError(
            f"`family` must be one of {sorted(DDGSD_CIFAR_SCHEDULES)}, got {family!r}."
        )
    optimizer, batch_size, epochs = DDGSD_CIFAR_SCHEDULES[family]
    published = {
        None: f"top-1 error {error} % (self-distillation)",
        "baseline": f"top-1 error {baseline_error} % (baseline)",
    }
    for name, err in (table6 or {}).items():
        published[name] = f"top-1 error {err} % (Table 6, {DDGSD_TABLE6[name]})"

    def get_config(arg: str | None = None) -> Recipe:
        return Recipe(
            method="two_view",
            backbone=backbone,
            method_args={
                "temperature": temperature[dataset],
                **DDGSD,
                **variant(arg, DDGSD_ABLATIONS),
            },
            data=DataConfig(name=dataset, batch_size=batch_size, augment="none"),
            optimizer=optimizer,
            epochs=epochs,
            paper=DDGSD_PAPER,
        )

    return get_config, DDGSD_ABLATIONS, DDGSD_CIFAR_BASELINE, published


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


PSKD_METRICS = "top-1/top-5 err %, NLL, ECE %, AURC"


def pskd_cifar100_row(
    backbone: str, exit_head: str, published: Mapping[str, tuple[int, str]]
) -> RowFile:
    """Chottananurak et al.'s Table 1 rows for one backbone on CIFAR-100: every arg of
    `pskd_rows` with ``exit_head`` plus the generic ``:baseline``, batch 128, the "cifar"
    augmentation, `schedules.PSKD_CIFAR` for 300 epochs. ``published`` maps each arg to its
    Table 1 row number and figures (``PSKD_METRICS``; AURC x1e3). recipes/pskd/resnet18_cifar100.py
    gives the full citations (the paper, PS-KD's and BYOT's), the sources and the reasons for the
    values the paper leaves out. The recipe file sets ``DEFAULT_ARG = "pskd"`` (PS-KD alone)."""
    variants = pskd_rows(exit_head)

    def get_config(arg: str | None = None) -> Recipe:
        method, method_args = variant(arg, variants)
        data = DataConfig(
            name="cifar100", batch_size=128, augment="cifar", with_index="pskd_alpha" in method_args
        )
        return Recipe(
            method=method,
            backbone=backbone,
            backbone_args={"variant": "cifar"},
            method_args=dict(method_args),
            data=data,
            optimizer=schedules.PSKD_CIFAR,
            epochs=300,
            paper=PSKD_PAPER,
        )

    texts = {arg: f"Table 1 row {n}, {PSKD_METRICS}: {row}" for arg, (n, row) in published.items()}
    return get_config, variants, {}, texts


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


SELF_GUIDANCE_DEPTHS = {"resnet32": 32, "resnet50": 50, "resnet110": 110}


def self_guidance_faces(
    tag: str, data_name: str, published: Mapping[str, tuple[float, float]]
) -> Callable[..., Recipe]:
    """``get_config`` of Self-Guidance's Table 3 on a face data set (a 32x32 image folder,
    ``data_name``), as the paper runs it: the CIFAR setting (batch 128, "cifar" augmentation,
    `schedules.SELF_GUIDANCE`, 300 epochs). Its argument is a network of
    `SELF_GUIDANCE_DEPTHS`, optionally with ``,baseline``; ``published`` maps each network to
    its (baseline, Self-Guidance) top-1 error, %; ``tag`` names the runs. The data folder is the
    user's (not downloaded): ``PATH/train/<class>/*.png`` and ``PATH/test/<class>/*.png``, images
    already resized to 32x32 as in the paper (the folder loader keeps the first training image's
    size); select it with ``--set data.name=folder:PATH`` (the default ``folder:data/<tag>`` is
    relative to the working directory). recipes/self_guidance/resnet_cifar.py gives the CIFAR
    setting's sources."""

    def get_config(arg: str | None = None) -> Recipe:
        words = [w for w in (arg or "resnet32").split(",") if w]
        nets = [w for w in words if w in SELF_GUIDANCE_DEPTHS]
        if len(nets) != 1 or any(w not in SELF_GUIDANCE_DEPTHS and w != "baseline" for w in words):
            raise ValueError(
                f"recipe argument {arg!r}: expected one of {sorted(SELF_GUIDANCE_DEPTHS)}, "
                "optionally with ',baseline'."
            )
        net, is_baseline = nets[0], "baseline" in words
        row = "baseline" if is_baseline else "self_guidance"
        return Recipe(
            name=f"self_guidance/{net}_{tag}{'_baseline' if is_baseline else ''}",
            **self_guidance_row(SELF_GUIDANCE_DEPTHS[net], row),
            data=DataConfig(name=data_name, batch_size=128, augment="cifar"),
            optimizer=schedules.SELF_GUIDANCE,
            epochs=300,
            paper=f"{SELF_GUIDANCE_PAPER}, Table 3",
            published=f"top-1 error {published[net][0 if is_baseline else 1]:.2f}%",
        )

    return get_config


# ---------------------------------------------------------------- ViT-Tiny on CIFAR-10 (no paper row)
DEIT_PAPER = "Touvron et al., ICML 2021 (DeiT): the training schedule and augmentation only"
# DeiT-Tiny's dimensions (DeiT Table 1) on 4-pixel patches (64 patches + class token at 32x32),
# with DeiT's stochastic depth 0.1 (drop path per sample; keras_sd gives the last block's survival
# probability, 0.9, decaying linearly over the blocks as in DeiT).
VIT_TINY_CIFAR = {
    "patch_size": 4,
    "num_layers": 12,
    "num_heads": 3,
    "hidden_dim": 192,
    "mlp_dim": 768,
    "stochastic_depth": 0.9,
    "drop_mode": "per_sample",
}
# Smoke runs (digits, 8x8 images): a 4-block ViT of width 32, to keep the smoke test near a CNN
# recipe's cost (the full ViT-Tiny took about 90 s to trace and take two steps on two CPU cores).
VIT_SMOKE = {
    "backbone_args.num_layers": 4,
    "backbone_args.num_heads": 2,
    "backbone_args.hidden_dim": 32,
    "backbone_args.mlp_dim": 64,
}
# DeiT's batch and learning rate pair (5e-4 at batch 512), its 300 epochs and RandAugment.
VIT_BATCH = 512


def vit_tiny_cifar10_row(
    method: str,
    method_args: Mapping,
    *,
    paper: str,
    variants: Mapping | None = None,
    callbacks: Mapping | None = None,
    augment: str = "randaugment",
) -> Callable[[str | None], Recipe]:
    """``get_config`` of a ViT-Tiny/4 CIFAR-10 recipe (no paper row): ``backbone="hub_vit"`` with
    `VIT_TINY_CIFAR`, batch `VIT_BATCH`, DeiT's AdamW schedule (`schedules.deit_adamw`) for
    `schedules.DEIT_EPOCHS`. ``method_args`` are the method's (``variants`` map an arg to more);
    ``augment`` is the pipeline's ("none" where the method distorts each view in its step);
    ``paper`` names the method's paper, and `DEIT_PAPER` is appended as the schedule's."""
    variants = {None: {}} if variants is None else variants

    def get_config(arg: str | None = None) -> Recipe:
        return Recipe(
            method=method,
            backbone="hub_vit",
            backbone_args=VIT_TINY_CIFAR,
            method_args={**method_args, **variant(arg, variants)},
            callbacks=dict(callbacks or {}),
            data=DataConfig(name="cifar10", batch_size=VIT_BATCH, augment=augment),
            optimizer=schedules.deit_adamw(VIT_BATCH),
            epochs=schedules.DEIT_EPOCHS,
            paper=f"{paper}; schedule: {DEIT_PAPER}",
        )

    return get_config
