"""Reduced-scale study of every method on the real CIFAR-10 (the evidence we can produce on CPU).

Protocol (fixed; do not tune it to make a method win): real CIFAR-10 from ../shared/data
(image-folder copy), a fixed seeded subset of 10,000 training images (1,000 per class, the same
subset for every run), the full 10,000 test images, CIFAR ResNet-20, batch 128, SGD with Nesterov
momentum 0.9, learning rate 0.1 with cosine decay, weight decay 5e-4 (coupled, PyTorch style),
20 epochs, seeds 0, 1, 2; each method at its paper's default weights.

Each run records the final test top-1, test ECE (10 bins, %) and NLL of the deployed output,
the accuracy of every output, wall-clock seconds, and -- for the baseline and the two-view method --
the mean symmetric KL between the predictions on two independently distorted copies of each test
image (the consistency the two-view method trains for).

Runs accumulate in benchmarks/results/cifar10_study.json (one method/seed at a time is fine: finished
runs are skipped) and the mean +/- std table is rewritten in docs/results.md.

    python benchmarks/cifar10_study.py --method baseline --seeds 0 1 2
    python benchmarks/cifar10_study.py --method two_view --seeds 0
    python benchmarks/cifar10_study.py --table        # only rewrite the table
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import tarfile
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_sd  # noqa: E402
from keras_sd import backbones, data  # noqa: E402
from keras_sd.train import write_json_atomic  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
TARBALL = REPO.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
RESULTS = REPO / "benchmarks" / "results" / "cifar10_study.json"
DOC = REPO / "docs" / "results.md"
EPOCHS, BATCH, LR, WD, PER_CLASS = 20, 128, 0.1, 5e-4, 1000
MODELS = pathlib.Path(tempfile.gettempdir()) / "keras_sd_study_models"  # trained models, not in git


def cifar10_folder() -> pathlib.Path:
    """Unpacks the shared CIFAR-10 folder once into the system temp dir (never into the repo)."""
    if not TARBALL.exists():
        sys.exit(f"real CIFAR-10 not found at {TARBALL}; this study needs it.")
    cache = pathlib.Path(tempfile.gettempdir()) / "keras_sd_cifar10_jpg"
    if not (cache / ".complete").exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tarfile.open(TARBALL) as tar:
            tar.extractall(cache, filter="data")
        (cache / ".complete").touch()
    return cache


# --------------------------------------------------------------------------- methods
def _resnet20(**kw):
    return backbones.resnet20(num_classes=10, input_shape=(32, 32, 3), **kw)


def build(method: str, num_train: int):
    """(model, extra callbacks, needs sample index) for a method at its paper defaults."""
    if method == "baseline":
        return keras_sd.Baseline(_resnet20(), weight_decay=WD), [], False
    if method == "two_view":
        from keras_sd.models.two_view import TwoViewDistiller

        # DDGSD on CIFAR-10: T = 2, lambda = 1, mu = 5e-4 (methods.md section 1).
        model = TwoViewDistiller(
            _resnet20(), temperature=2.0, kl_weight=1.0, mmd_weight=5e-4, weight_decay=WD
        )
        return model, [], False
    if method in ("multi_exit", "multi_exit_sum"):
        from keras_sd.callbacks import DistillationAnnealing
        from keras_sd.models.multi_exit import MultiExitDistiller

        # TPAMI defaults alpha = 0.6, lambda = 0.04, T = 3; the paper switches both off for the
        # last 5 of 200 epochs, which is 1 of our 20 (rounded up). `multi_exit_sum` is a
        # diagnostic row, not a paper default: the same model with the exit losses summed (the
        # ICCV slides' normalisation, without 1/K) instead of averaged, which keeps
        # the final exit's cross-entropy at full weight against the coupled weight decay.
        model = MultiExitDistiller(
            _resnet20(),
            alpha=0.6,
            feature_weight=0.04,
            temperature=3.0,
            weight_decay=WD,
            reduction="sum" if method == "multi_exit_sum" else "mean",
        )
        return model, [DistillationAnnealing(last_epochs=1)], False
    if method == "self_guidance":
        from keras_sd.models.self_guidance import SelfGuidanceDistiller

        model = SelfGuidanceDistiller(
            _resnet20(stochastic_depth=0.5), kd_weight=0.25, temperature=3.0, weight_decay=WD
        )
        return model, [], False
    if method == "pskd":
        from keras_sd.pskd import PSKDAlphaScheduler

        model = keras_sd.Baseline(
            _resnet20(), weight_decay=WD, pskd_alpha=0.8, num_train_examples=num_train
        )
        return model, [PSKDAlphaScheduler(total_epochs=EPOCHS)], True
    if method == "pskd_byot_dmfl":
        from keras_sd.models.multi_exit import MultiExitDistiller
        from keras_sd.pskd import PSKDAlphaScheduler

        # Seed 003's combination: alpha_T = 0.8, BYOT alpha = 0.1, feature weight 1e-6, DMFL.
        model = MultiExitDistiller(
            _resnet20(),
            alpha=0.1,
            feature_weight=1e-6,
            temperature=3.0,
            weight_decay=WD,
            pskd_alpha=0.8,
            num_train_examples=num_train,
            mutual_feature_weight=1.0,
        )
        return model, [PSKDAlphaScheduler(total_epochs=EPOCHS)], True
    raise SystemExit(f"unknown method {method!r}; choose from {METHODS}")


PROTOCOL_METHODS = (
    "baseline",
    "two_view",
    "multi_exit",
    "self_guidance",
    "pskd",
    "pskd_byot_dmfl",
)
DIAGNOSTICS = ("multi_exit_sum",)  # not paper defaults (see build); run only when named
METHODS = PROTOCOL_METHODS + DIAGNOSTICS


# --------------------------------------------------------------------------- measures
def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def calibration(logits: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1 (%) plus keras_sd.metrics.calibration_report (ECE with 10 bins in %, NLL, AURC)."""
    from keras_sd.metrics import calibration_report

    report = calibration_report(_softmax(logits.astype("float64")), labels)
    return {"top1": 100.0 - report["top1_error"], **{k: float(v) for k, v in report.items()}}


def _top1(r: dict) -> float:
    return r["top1"] if "top1" in r else 100.0 - r["top1_error"]


def consistency(model, test, seed: int) -> float:
    """Mean symmetric KL between predictions on two independently distorted copies of each image."""
    distort = data.distortion("cifar", (32, 32, 3), seed=seed + 1000)
    total, count = 0.0, 0
    for x, _ in test:
        x = x["image"] if isinstance(x, dict) else x
        pa = _softmax(np.asarray(model(distort(x, training=True), training=False), "float64"))
        pb = _softmax(np.asarray(model(distort(x, training=True), training=False), "float64"))
        la, lb = np.log(np.maximum(pa, 1e-12)), np.log(np.maximum(pb, 1e-12))
        total += float((pa * (la - lb) + pb * (lb - la)).sum())
        count += len(pa)
    return total / count


def run(method: str, seed: int, folder: pathlib.Path) -> dict:
    keras.utils.set_random_seed(seed)
    probe = build(method, 1)[2]  # whether the method needs sample indices
    bundle = data.load(
        f"folder:{folder}",
        batch_size=BATCH,
        augment="none" if method == "two_view" else "cifar",
        with_index=probe,
        seed=seed,
        train_per_class=PER_CLASS,
        subset_seed=0,
        eval_batch_size=500,
    )
    model, callbacks, _ = build(method, bundle.info.num_train)
    steps = bundle.info.num_train // BATCH
    schedule = keras.optimizers.schedules.CosineDecay(LR, decay_steps=EPOCHS * steps)
    model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True))
    start = time.perf_counter()
    model.fit(bundle.train, epochs=EPOCHS, callbacks=callbacks, verbose=2, shuffle=False)
    seconds = time.perf_counter() - start
    logs = model.evaluate(bundle.test, return_dict=True, verbose=0)
    outputs = {
        k[: -len("_accuracy")] if k != "accuracy" else "output": 100 * float(v)
        for k, v in logs.items()
        if k.endswith("accuracy")
    }
    labels = np.concatenate([np.asarray(y) for _, y in bundle.test])
    logits = np.asarray(model.predict(bundle.test, verbose=0))
    result = {
        "method": method,
        "seed": seed,
        "epochs": EPOCHS,
        "train_images": bundle.info.num_train,
        "test_images": len(labels),
        **calibration(logits, labels),
        "outputs_top1": outputs,
        "seconds": seconds,
    }
    if method in ("baseline", "two_view"):
        result["consistency_sym_kl"] = consistency(model, bundle.test, seed)
    # Keep the trained model outside the repo for later benchmarks (benchmarks/early_exit.py).
    MODELS.mkdir(parents=True, exist_ok=True)
    model.save(MODELS / f"{method}_seed{seed}.keras")
    return result


# --------------------------------------------------------------------------- results
def load_results() -> list[dict]:
    return json.loads(RESULTS.read_text())["runs"] if RESULTS.exists() else []


def save_result(result: dict) -> None:
    # Several study processes may run at once (one per method): serialise read-modify-write.
    import fcntl

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = [
            r
            for r in load_results()
            if (r["method"], r["seed"]) != (result["method"], result["seed"])
        ]
        runs.append(result)
        runs.sort(key=lambda r: (METHODS.index(r["method"]), r["seed"]))
        write_json_atomic(RESULTS, {"protocol": __doc__.split("\n\n")[1], "runs": runs})
        write_doc()


def _ms(values):
    if not values:
        return "-"
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return f"{mean:.2f} ± {std:.2f}" if len(values) > 1 else f"{mean:.2f}"


def table() -> str:
    runs = load_results()
    lines = [
        "| method | seeds | test top-1 (%) | ECE (%) | NLL | consistency sym-KL | other outputs top-1 (%) | minutes/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        rs = [r for r in runs if r["method"] == method]
        if not rs:
            continue
        names = [n for n in rs[0]["outputs_top1"] if n not in ("output",)]
        others = ", ".join(
            f"{n} {_ms([r['outputs_top1'].get(n, math.nan) for r in rs])}" for n in names
        )
        cons = [r["consistency_sym_kl"] for r in rs if "consistency_sym_kl" in r]
        lines.append(
            f"| {method}{' (diagnostic)' if method in DIAGNOSTICS else ''} "
            f"| {','.join(str(r['seed']) for r in rs)} | {_ms([_top1(r) for r in rs])} "
            f"| {_ms([r['ece'] for r in rs])} | {_ms([r['nll'] for r in rs])} "
            f"| {_ms(cons) if cons else '-'} | {others or '-'} "
            f"| {np.mean([r['seconds'] for r in rs]) / 60:.1f} |"
        )
    return "\n".join(lines)


def write_doc() -> None:
    start, end = "<!-- cifar10_study:start -->", "<!-- cifar10_study:end -->"
    text = DOC.read_text() if DOC.exists() else "# Results\n\n" + start + "\n" + end + "\n"
    if start not in text:
        text += "\n" + start + "\n" + end + "\n"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    DOC.write_text(head + start + "\n" + table() + "\n" + end + tail)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", choices=METHODS, action="append")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--table", action="store_true", help="only rewrite docs/results.md")
    args = parser.parse_args(argv)
    if not args.table:
        folder = cifar10_folder()
        done = {(r["method"], r["seed"]) for r in load_results()}
        for method in args.method or PROTOCOL_METHODS:
            for seed in args.seeds:
                if (method, seed) in done:
                    print(f"skip {method} seed {seed}: already in {RESULTS.name}")
                    continue
                result = run(method, seed, folder)
                print(json.dumps(result, indent=1))
                save_result(result)
    write_doc()
    print(table())


if __name__ == "__main__":
    main()
