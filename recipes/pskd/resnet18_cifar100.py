"""PS-KD, BYOT and deep mutual feature learning: ResNet-18 on CIFAR-100.

Paper: Chottananurak, Jeong, Kabir & Phisannupawong, "Progressive Self-Knowledge Distillation
with Mutual Learning" (KAIST), Table 1 rows 1-8; PS-KD itself is Kim et al., "Self-Knowledge
Distillation with Progressive Refinement of Targets", ICCV 2021; BYOT is Zhang et al., "Be Your
Own Teacher", ICCV 2019.
Published (CIFAR-100) top-1 err % / top-5 err % / NLL / ECE % / AURC x1e3, one ``:arg`` per row:
    #1   ResNet-18                          :baseline        21.41 / 5.57 / 0.87 / 5.14 / 56.92
    #2   ResNet-18+BYOT                     :byot            21.89 / 5.64 / 1.00 / 11.24 / 53.79
    #3   ResNet-18+DMFL                     :dmfl            21.61 / 5.45 / 0.87 / 5.31 / 57.13
    #4   ResNet-18+PS-KD                    :pskd            19.94 / 4.79 / 0.79 / 4.21 / 50.44
    #5   ResNet-18+PS-KD+BYOT               :pskd_byot       20.67 / 4.66 / 0.78 / 7.42 / 50.91
    #6   ResNet-18+PS-KD+DMFL               :pskd_dmfl       20.02 / 4.73 / 0.80 / 4.52 / 50.55
    #7   ResNet-18+DMFL+BYOT                :dmfl_byot       21.18 / 5.47 / 1.02 / 11.74 / 54.89
    #8   ResNet-18+PS-KD+BYOT+DMFL          :pskd_byot_dmfl  20.03 / 4.16 / 0.72 / 4.15 / 49.86
Schedule: the paper gives Nesterov SGD, learning rate 0.1, momentum 0.9, weight decay 5e-4, batch
128, random crop (pad 4) + flip, but no epochs or decay steps; PS-KD's CIFAR-100 schedule is used
(300 epochs, learning rate divided by 10 at epochs 150 and 225). The data pipeline normalises with
CIFAR statistics where the paper uses ImageNet mean/std.

Method arguments: PS-KD alpha_T = 0.8 (``pskd_alpha``; alpha_t = alpha_T * t / T, set each epoch by
`keras_sd.pskd.PSKDAlphaScheduler`, which `fit` adds), a prediction bank with one row per training
example (the runner sizes it from the data) keyed by the pipeline's sample index
(``data.with_index=True``). BYOT:
exits after every stage, alpha = 0.1, lambda (``feature_weight``) = 1e-6 (the paper's values),
exit terms summed over the exits (eq. 2, ``reduction="sum"``), and:

* ``exit_head="bottleneck"``: the paper does not describe its exits, but its parameter counts
  (ResNet-18 13.0M, ResNet-50 50.4M) are those of a CIFAR ResNet with the ``branchBottleNeck``
  exits of the unofficial BYOT code (github.com/luanyunteng/pytorch-be-your-own-teacher,
  ``models/resnet.py``): 13.01M / 50.43M with them, 11.22M / 23.71M bare, 12.28M / 38.43M with
  TPAMI's attention exits. (Its ResNeXt-50 count points the other way: see
  recipes/pskd/resnext50_cifar100.py.)
* ``final_ce_weight=1.9``: L = L_CE + L_Self-KD, where L_Self-KD sums eq. 2 over all N
  classifiers, the final one included; so the final exit's cross-entropy weighs
  1 + (1 - alpha) = 1.9 (its KL and hint terms vanish: their reference is itself).
* ``temperature=3``, ``kl_scale="t2"``: the paper defines tau (eq. 1) but gives no value. Team
  rule: where a paper is silent, follow the code it was built on. Its alpha = 0.1 and
  lambda = 1e-6 are exactly the defaults of that unofficial BYOT code's ``train.py``
  (``--alpha 0.1``, ``--beta 1e-6``), whose default ``--temperature`` is 3 and whose exit KL
  terms are multiplied by ``temperature**2``.
* The hint is a per-sample mean over the batch here; that code sums it over the batch (128 times
  stronger at batch 128). Both are negligible at lambda = 1e-6; not changed.

DMFL: ``mutual_feature_weight`` = 1 (eq. 3, L = L_CE + L_Self-KD + L_DMFL). Rows with DMFL but no
BYOT keep the (same, bottleneck) exits for their features but give them no classification loss
(``exit_losses=False``; no L_Self-KD, so the final exit's cross-entropy weighs 1). PS-KD alone
and the baseline use ``method="baseline"`` (the bare backbone); rows with BYOT or DMFL use
``method="multi_exit"`` (PS-KD there: soft targets on every exit, the bank holds the final exit's
softmax).

Command: keras-sd train pskd/resnet18_cifar100:ROW  (ROW: one of the ``:args`` above; ``:smoke`` trains PS-KD alone)
"""

from keras_sd import paper_args

DEFAULT_ARG = "pskd"  # PS-KD alone
# Exits of the unofficial BYOT code (parameter counts of the paper's Table 1 caption).
get_config, VARIANTS, BASELINE, PUBLISHED = paper_args.pskd_cifar100_row(
    "resnet18",
    exit_head="bottleneck",
    published={
        "pskd": (4, "19.94 / 4.79 / 0.79 / 4.21 / 50.44"),
        "baseline": (1, "21.41 / 5.57 / 0.87 / 5.14 / 56.92"),
        "byot": (2, "21.89 / 5.64 / 1.00 / 11.24 / 53.79"),
        "dmfl": (3, "21.61 / 5.45 / 0.87 / 5.31 / 57.13"),
        "pskd_byot": (5, "20.67 / 4.66 / 0.78 / 7.42 / 50.91"),
        "pskd_dmfl": (6, "20.02 / 4.73 / 0.80 / 4.52 / 50.55"),
        "dmfl_byot": (7, "21.18 / 5.47 / 1.02 / 11.74 / 54.89"),
        "pskd_byot_dmfl": (8, "20.03 / 4.16 / 0.72 / 4.15 / 49.86"),
    },
)
