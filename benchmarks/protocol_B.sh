#!/usr/bin/env bash
# Runs every protocol-B row of the CIFAR-10 study, one run at a time, in the pre-registered order:
# the baseline's three seeds first, then each method seed by seed, then the AutoAugment pair.
# Each run is resumable and finished runs are skipped, so rerunning this script after a kill (or
# in a later session) continues where it stopped.
#
#   bash benchmarks/protocol_B.sh RUNS_DIR RESULTS_JSON
#
# Run it from a pinned checkout of the code under test (a `git worktree` at the landed commit),
# so that work can go on in the main tree meanwhile; RESULTS_JSON may point into the main tree.
# STUDY_CHECKOUT=DIR runs DIR's study script with this driver instead (a pin older than this
# driver has an older driver, e.g. fd09bde's evaluates method rows every epoch).
set -euo pipefail
cd "${STUDY_CHECKOUT:-$(dirname "$0")/..}"
RUNS=${1:?RUNS_DIR (outside the repo)}
RESULTS=${2:?RESULTS_JSON}
# The baseline was evaluated on the test split every epoch (its curves fix the protocol); method
# rows are evaluated every 5th epoch and at the last one, which saves about a third of their CPU
# time and changes no trained weight (tests/test_best_epoch.py::
# test_evaluation_frequency_does_not_change_training). The tables compare last epochs; best
# epochs are compared over the epochs both runs evaluated.
run() {
  python benchmarks/cifar10_study.py --protocol B --row "$1" --seed "$2" --runs "$RUNS" \
    --results "$RESULTS" --eval-every "${3:-5}"
}
for seed in 0 1 2; do run baseline "$seed" 1; done
for seed in 0 1 2; do
  for row in two_view multi_exit self_guidance pskd pskd_byot_dmfl; do run "$row" "$seed"; done
done
for seed in 0 1 2; do
  for row in baseline_autoaugment multi_exit_autoaugment; do run "$row" "$seed"; done
done
# The ablation rows (seed 0, after each method's same-machine reference runs) and the ViT pilot
# are run by benchmarks/study_queue.sh, which drives this script first.
