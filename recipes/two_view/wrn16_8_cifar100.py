"""Two-view self-distillation (DDGSD): WRN-16-8 (11.0M) on CIFAR-100.

Row: WRN-16-8 (11.0M) on CIFAR-100, Tables 2, 3 and 6.
Settings and sources: `keras_sd.paper_args.ddgsd_cifar_row`; published numbers: its arguments.

Command: keras-sd train two_view/wrn16_8_cifar100  (or :baseline, :two_branch, :mmd_only, :kl_only, :smoke)
"""

from keras_sd import paper_args

get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.ddgsd_cifar_row(
    "wrn16_8",
    "cifar100",
    "wrn",
    # published top-1 test error (%): self-distillation, baseline (Table 6: its ablation rows)
    error="19.33",
    baseline_error="20.43",
    table6={"two_branch": "20.25", "mmd_only": "19.98", "kl_only": "19.48"},
)
