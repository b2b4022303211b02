"""Two-view self-distillation (DDGSD): WRN-16-8 (11.0M) on CIFAR-100.

Row: WRN-16-8 (11.0M) on CIFAR-100, Tables 2, 3 and 6.
Published top-1 test error: baseline 20.43 %, self-distillation 19.33 %.
Settings and their sources: `keras_sd.paper_args.ddgsd_cifar_row`.
Table 6 ablations (error %): ``:two_branch`` 20.25, ``:mmd_only`` 19.98, ``:kl_only`` 19.48.

Command: keras-sd train two_view/wrn16_8_cifar100  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "wrn16_8",
    "cifar100",
    "wrn",
    error="19.33",
    baseline_error="20.43",
    table6={"two_branch": "20.25", "mmd_only": "19.98", "kl_only": "19.48"},
)
