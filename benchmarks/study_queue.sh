#!/usr/bin/env bash
# The CIFAR-10 study's whole queue, from its pinned checkouts, resumable on any machine:
#
#   bash benchmarks/study_queue.sh RUNS_ROOT [--dry-run]
#
# 1. protocol B's rows: this tree's benchmarks/protocol_B.sh driving the study script of the code
#    they ran, fd09bde (whose own driver predates evaluating method rows every 5th epoch);
# 2. the ablation rows of two-view, multi-exit, Self-Guidance and PS-KD + BYOT + DMFL, seed 0
#    (b734c48: fd09bde's keras_sd plus the row definitions; which rows, from this tree's
#    cifar10_study.ABLATIONS). Each method's rows follow a rerun, on this machine, of the runs
#    they are read against (the baseline's and the method's seed 0), recorded apart in this
#    CPU's reruns file, benchmarks/results/cifar10_study_reruns/<cpu>.json: another CPU's
#    arithmetic sends the same seed down another training path (docs/results.md measures it),
#    so an ablation is compared with its method and the baseline on the same machine;
# 3. the ViT protocol's pilot, vit_baseline seed 0 (ca76b8c: evaluates in one pass; the pilot
#    begun on ee4e75e, which predicted the test split twice an evaluation, was stopped at epoch 6
#    and is not resumed, so that the pilot and the method row run the same code), whose
#    pre-registered check (docs/results.md; `cifar10_study.py --check-pilot`) must pass before the
#    method row, vit_multi_exit seed 0, runs. The pilot is evaluated every 2nd epoch, so that the
#    check (test top-1 within 1 point over the last 10 % of epochs) sees three evaluations
#    (epochs 56, 58, 60).
# 4. a diagnostic chosen after the method row's result (vit_multi_exit trailed the baseline by
#    12 points): vit_multi_exit_no_distillation seed 0 (4c7eda6: ca76b8c's training code plus the
#    recipe variant and the row; evaluated every 5th epoch like the method row).
#
# Each pinned checkout is a `git worktree` under RUNS_ROOT/wt, created if missing, so work goes on
# in this tree meanwhile. Runs live in RUNS_ROOT/B and RUNS_ROOT/vit (outside the repository) and
# results accumulate in this tree's benchmarks/results/cifar10_study.json. Rerunning the script
# after a kill, or on a new machine, skips every run that JSON already records and resumes an
# unfinished one from its backup if RUNS_ROOT still holds it (a new machine starts it afresh).
# --dry-run prints the steps without running them.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${1:?usage: bash benchmarks/study_queue.sh RUNS_ROOT [--dry-run] (RUNS_ROOT outside the repo)}
DRY=${2:-}
if [[ -n $DRY && $DRY != --dry-run ]]; then
  echo "study_queue.sh: error: second argument '$DRY' is not understood; expected --dry-run." >&2
  exit 2
fi
mkdir -p "$RUNS"
RUNS=$(cd "$RUNS" && pwd)
case "$RUNS/" in
  "$REPO"/*)
    echo "study_queue.sh: error: RUNS_ROOT '$RUNS' is inside the repository; expected a folder outside it." >&2
    exit 2
    ;;
esac
RESULTS=$REPO/benchmarks/results/cifar10_study.json

step() {
  echo "+ $*"
  [[ -n $DRY ]] || "$@"
}
checkout() { # name commit: a detached worktree of the pinned commit, made once
  local dir=$RUNS/wt/$1
  if [[ -d $dir ]]; then
    local at
    at=$(git -C "$dir" rev-parse HEAD)
    if [[ $at != $(git -C "$REPO" rev-parse "$2^{commit}") ]]; then
      echo "study_queue.sh: error: $dir is at $at, expected $2; remove it or point RUNS_ROOT elsewhere." >&2
      exit 2
    fi
  else
    step git -C "$REPO" worktree add --detach "$dir" "$2"
  fi
}
study() { # checkout, then cifar10_study.py arguments
  local dir=$RUNS/wt/$1
  shift
  step env -C "$dir" python benchmarks/cifar10_study.py "$@" --results "$RESULTS"
}

cpu=$(awk -F: '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null |
  tr '[:upper:]' '[:lower:]' | sed 's/([^)]*)//g; s/[^a-z0-9]\{1,\}/-/g; s/^-//; s/-$//')
cpu=${cpu:-$(uname -m)}
rerun() { # row seed: a recorded run again, on this machine, into this CPU's reruns file
  step env -C "$RUNS/wt/study_abl3" python benchmarks/cifar10_study.py --protocol B --row "$1" \
    --seed "$2" --runs "$RUNS/reruns/$cpu" --eval-every 5 \
    --results "$REPO/benchmarks/results/cifar10_study_reruns/$cpu.json"
}

checkout study_fd fd09bde
checkout study_abl3 b734c48
checkout study_vit2 ca76b8c
checkout study_vit3 4c7eda6
step env STUDY_CHECKOUT="$RUNS/wt/study_fd" bash "$REPO/benchmarks/protocol_B.sh" "$RUNS" "$RESULTS"
# One line a method: the method, then its ablation rows (the study script's one list of them).
mapfile -t ablations < <(cd "$REPO/benchmarks" && python -c \
  'import cifar10_study as s; [print(m, *rows) for m, rows in s.ABLATIONS.items()]')
[[ ${#ablations[@]} -gt 0 ]] || { echo "study_queue.sh: error: no ablation rows found." >&2; exit 2; }
rerun baseline 0
for line in "${ablations[@]}"; do
  read -r method rows <<<"$line"
  rerun "$method" 0
  for row in $rows; do
    study study_abl3 --protocol B --row "$row" --seed 0 --runs "$RUNS" --eval-every 5
  done
done
study study_vit2 --protocol vit --row vit_baseline --seed 0 --runs "$RUNS" --eval-every 2
# The pilot's pre-registered check (this tree's script; it reads the results only) decides whether
# the method row runs, on the pilot's code, evaluated every 5th epoch like protocol B's methods.
if step python "$REPO/benchmarks/cifar10_study.py" --protocol vit --check-pilot --results "$RESULTS"; then
  study study_vit2 --protocol vit --row vit_multi_exit --seed 0 --runs "$RUNS" --eval-every 5
  study study_vit3 --protocol vit --row vit_multi_exit_no_distillation --seed 0 --runs "$RUNS" \
    --eval-every 5
else
  echo "study_queue.sh: the ViT pilot's check fails; vit_multi_exit is not run (a longer schedule is defined from the baseline alone first, docs/results.md)." >&2
  exit 1
fi
