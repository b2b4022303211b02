"""Threshold search for early-exit inference: the genetic algorithm of TPAMI Algorithm 2 and a
shared-threshold sweep.

The network runs once over the held-out samples (`collect_exit_probabilities`); every candidate
threshold vector is then scored in NumPy from those cached per-exit probabilities (Algorithm 1
replayed per sample: accuracy, MAC acceleration, share of samples per exit), so a search of
thousands of candidates takes seconds. Only the final trade-off table is timed on the real
early-exit graph (measured acceleration: `measure_acceleration`, the median over alternating
plain-backbone / early-exit rounds).

Fitness (TPAMI eq. 7): ``acceleration + beta * (accuracy - baseline_accuracy)`` with the
acceleration counted in MACs (`keras_sd.inference.count_macs`) and both accuracies in
percentage points (so ``beta = 1`` trades one point of accuracy for 1x of acceleration). The
baseline accuracy defaults to the final exit's accuracy on the same samples (the plain backbone
`MultiExitDistiller.exit_graph.export_backbone()` predicts exactly what the final exit does); pass
``baseline_accuracy`` for a separately trained baseline, as in the paper.

Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural Networks",
TPAMI, section 3.3, Algorithm 2, eq. 7, Tables 5-6.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keras_sd import validation
from keras_sd.inference.early_exit import (
    EarlyExitModel,
    check_multi_exit,
    check_thresholds,
    freeze_function,
)
from keras_sd.inference.macs import MacReport, count_macs

SWEEP_VALUES = tuple(round(0.5 + 0.01 * i, 2) for i in range(50))  # 0.50, 0.51, ..., 0.99


@dataclass(frozen=True)
class ExitProbabilities:
    """Cached softmax probabilities of every exit on a sample set.

    Attributes:
        probs: ``[K, N, classes]`` float32, exit ``i``'s softmax for sample ``n``.
        labels: ``[N]`` int class labels.
        images: the first images (at most ``keep_images``), kept to time the early-exit graph;
            ``None`` when none were kept.
    """

    probs: np.ndarray
    labels: np.ndarray
    images: np.ndarray | None = None

    @property
    def num_exits(self) -> int:
        return int(self.probs.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.probs.shape[1])

    def take(self, indices: Sequence[int]) -> ExitProbabilities:
        """The probabilities and labels of the samples at ``indices`` (no images)."""
        idx = np.asarray(indices, dtype="int64")
        return ExitProbabilities(probs=self.probs[:, idx], labels=self.labels[idx])


@dataclass(frozen=True)
class SearchReportSplit:
    """Which held-out samples the threshold search sees and which the report is computed on.

    Attributes:
        search: sorted indices of the samples the search runs on.
        report: sorted indices of the other samples, on which every reported figure is computed.
        source: the split both parts come from (e.g. ``"test"``).
        seed: seed of the random partition.
        search_fraction: share of the samples in the search part.
    """

    search: np.ndarray
    report: np.ndarray
    source: str
    seed: int
    search_fraction: float

    def describe(self) -> dict[str, Any]:
        """JSON-ready description: which part is which, the seed and the counts."""
        n_search, n_report = len(self.search), len(self.report)
        return {
            "source": self.source,
            "partition": "seeded random permutation of the split's samples (source order)",
            "seed": self.seed,
            "search_fraction": self.search_fraction,
            "search_images": n_search,
            "report_images": n_report,
            "search": f"{n_search} images of the {self.source} split chosen by seed {self.seed}: "
            "the threshold search sees only these",
            "report": f"the other {n_report} images of the {self.source} split: every reported "
            "accuracy, MAC acceleration and measured speedup (fields without a search_ prefix)",
        }


def split_search_report(
    num_samples: int, *, search_fraction: float = 0.5, seed: int = 0, source: str = "test"
) -> SearchReportSplit:
    """Partitions ``num_samples`` held-out samples into a seeded search part and a report part.

    The first ``floor(num_samples * search_fraction)`` positions of
    ``numpy.random.default_rng(seed).permutation(num_samples)`` are the search part, the rest the
    report part (both sorted). The same arguments always give the same parts.

    Raises:
        ValueError: ``num_samples`` is not an int, ``search_fraction`` is not in (0, 1), ``seed``
            is not an int, or a part would be empty.
    """
    seed = validation.integer(seed, "seed")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        raise ValueError(f"`num_samples` must be an int >= 2, got {num_samples!r}.")
    fraction = None
    if not isinstance(search_fraction, bool):
        try:
            fraction = float(search_fraction)
        except (TypeError, ValueError):
            fraction = None
    if fraction is None or not 0.0 < fraction < 1.0:
        raise ValueError(
            f"`search_fraction` must be a number strictly between 0 and 1, got {search_fraction!r}."
        )
    n = int(num_samples)
    n_search = int(np.floor(n * fraction + 1e-9))
    if n_search < 1 or n - n_search < 1:
        raise ValueError(
            f"`num_samples` = {num_samples!r} cannot be split with search_fraction={fraction:g}: "
            f"it gives {n_search} search and {n - n_search} report samples; expected at least one "
            "in each part (more samples or another search_fraction)."
        )
    order = np.random.default_rng(int(seed)).permutation(n)
    return SearchReportSplit(
        search=np.sort(order[:n_search]),
        report=np.sort(order[n_search:]),
        source=str(source),
        seed=int(seed),
        search_fraction=fraction,
    )


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype("float64") - z.max(-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(-1, keepdims=True)).astype("float32")


def _iterate(data: Any, batch_size: int) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """``(images, labels)`` batches from a ``(x, y)`` pair of arrays or an iterable of batches
    (e.g. a ``tf.data.Dataset``) whose inputs may be dicts with ``"image"``."""
    if isinstance(data, tuple) and len(data) == 2 and hasattr(data[0], "shape"):
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if len(x) != len(y):
            raise ValueError(
                f"`data`: {len(x)} images but {len(y)} labels; expected one label per image."
            )
        for s in range(0, len(x), batch_size):
            yield x[s : s + batch_size], y[s : s + batch_size]
        return
    for item in data:
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ValueError(
                "`data` must be an (images, labels) pair of arrays or an iterable of "
                f"(images, labels) batches, got an item of type {type(item).__name__}."
            )
        x, y = item[0], item[1]
        if isinstance(x, dict):
            x = x["image"]
        yield np.asarray(x), np.asarray(y)


def collect_exit_probabilities(
    model,
    data: Any,
    *,
    batch_size: int = 256,
    keep_images: int = 2048,
    keep_indices: Sequence[int] | None = None,
) -> ExitProbabilities:
    """Runs the multi-exit model once over ``data`` and caches every exit's softmax.

    Args:
        model: a `keras_sd.MultiExitDistiller`.
        data: ``(images, labels)`` arrays, or an iterable of ``(images, labels)`` batches.
            Labels may be class indices or one-hot / soft rows (argmax is taken).
        batch_size: batch size when ``data`` is arrays.
        keep_images: how many of the first images to keep (``ExitProbabilities.images``) for
            timing the early-exit graph later (0: none).
        keep_indices: instead of the first ``keep_images``, keep the images at these positions
            of ``data`` (strictly increasing), e.g. some of a report part's samples.
    """
    check_multi_exit(model)
    batch_size = validation.positive_int(batch_size, "batch_size")
    keep_images = validation.integer(keep_images, "keep_images", minimum=0)
    if keep_indices is None:
        wanted = np.arange(keep_images, dtype="int64")
    else:
        wanted = np.asarray(keep_indices)
        if (
            wanted.ndim != 1
            or (wanted.size and not np.issubdtype(wanted.dtype, np.integer))
            or np.any(wanted < 0)
            or np.any(np.diff(wanted) <= 0)
        ):
            raise ValueError(
                "`keep_indices` must be strictly increasing non-negative ints, got "
                f"{keep_indices!r}."
            )
        wanted = wanted.astype("int64")
    probs, labels, images = [], [], []
    seen = 0
    for x, y in _iterate(data, batch_size):
        if len(x) == 0:
            continue
        out = model.call_exits(x.astype("float32"), training=False)
        probs.append(np.stack([_softmax(np.asarray(out[n])) for n in model.exit_names]))
        labels.append(y.argmax(-1) if y.ndim > 1 else y)
        here = wanted[(wanted >= seen) & (wanted < seen + len(x))] - seen
        if len(here):
            images.append(x[here].astype("float32"))
        seen += len(x)
    if not probs:
        raise ValueError("`data` is empty; the threshold search needs at least one sample.")
    if keep_indices is not None and len(wanted) and wanted[-1] >= seen:
        raise ValueError(
            f"`keep_indices` reaches position {int(wanted[-1])}, but `data` has only {seen} "
            "samples; expected positions of its samples."
        )
    return ExitProbabilities(
        probs=np.concatenate(probs, axis=1),
        labels=np.concatenate(labels).astype("int64"),
        images=np.concatenate(images) if images else None,
    )


def simulate(
    probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, path_macs: np.ndarray
) -> dict[str, np.ndarray]:
    """Algorithm 1 replayed from cached probabilities, for many threshold vectors at once.

    Args:
        probs: ``[K, N, C]`` per-exit softmax probabilities.
        labels: ``[N]`` labels.
        thresholds: ``[P, K]`` candidate thresholds (or ``[K]``).
        path_macs: ``[K + 1]`` MACs of answering at exit ``1..K`` and by the ensemble.

    Returns:
        ``{"accuracy": [P] in %, "macs": [P] average MACs per sample, "shares": [P, K + 1],
        "exit": [P, N] answering exit (``K`` = ensemble)}``.
    """
    thresholds = np.atleast_2d(np.asarray(thresholds, dtype="float64"))
    k = probs.shape[0]
    confident = probs.max(-1)[None, :, :] > thresholds[:, :, None]  # [P, K, N]
    # First confident exit per sample, K (ensemble) when none is.
    exit_index = np.where(confident.any(1), confident.argmax(1), k)
    preds = np.concatenate([probs.argmax(-1), probs.mean(0).argmax(-1)[None]])  # [K + 1, N]
    correct = preds == labels[None, :]  # [K + 1, N]
    n = probs.shape[1]
    hit = correct[exit_index, np.arange(n)]  # [P, N]: the answering exit's correctness
    counts = np.stack([(exit_index == j).sum(1) for j in range(k + 1)], axis=1)  # [P, K + 1]
    shares = counts / n
    return {
        "accuracy": 100.0 * hit.mean(1),
        "macs": shares @ np.asarray(path_macs, dtype="float64"),
        "shares": shares,
        "exit": exit_index,
    }


@dataclass
class ThresholdSearchResult:
    """Outcome of `search_thresholds` / `sweep_thresholds`.

    Attributes:
        thresholds: the best thresholds (one per exit).
        fitness: their fitness (eq. 7).
        accuracy: their accuracy (%) on the search samples (on other samples after `rescore`).
        mac_acceleration: backbone MACs / average MACs spent.
        measured_acceleration: measured speedup over the plain backbone (`measure_acceleration`:
            compiled tf.function graphs at the search's batch size, median of alternating
            rounds); None if not timed.
        shares: share of samples answered by each exit, then the ensemble.
        baseline_accuracy: the accuracy fitness compares with (%).
        final_exit_accuracy: accuracy of the final exit alone (%).
        beta: the fitness weight.
        table: the trade-off table, one dict per row (``thresholds``, ``accuracy``,
            ``mac_acceleration``, ``measured_acceleration``, ``shares``, ``fitness``), the
            Pareto front of accuracy vs MAC acceleration over every evaluated candidate, by
            increasing acceleration.
        history: best fitness after each generation (GA only).
        macs: the `MacReport` used.
    """

    thresholds: list[float]
    fitness: float
    accuracy: float
    mac_acceleration: float
    measured_acceleration: float | None
    shares: list[float]
    baseline_accuracy: float
    final_exit_accuracy: float
    beta: float
    table: list[dict] = field(default_factory=list)
    history: list[float] = field(default_factory=list)
    macs: MacReport | None = None

    def to_dict(self) -> dict:
        """JSON-ready form (the MAC report as a dict)."""
        out = {k: v for k, v in self.__dict__.items() if k != "macs"}
        if self.macs is not None:
            out["macs"] = {**self.macs.__dict__}
            out["macs"]["segments"] = list(self.macs.segments)
            out["macs"]["heads"] = list(self.macs.heads)
            out["macs"]["exits"] = list(self.macs.exits)
        return out


def rescore(
    result: ThresholdSearchResult,
    data: ExitProbabilities,
    *,
    baseline_accuracy: float | None = None,
) -> ThresholdSearchResult:
    """``result``'s thresholds (the best and every table row) scored on other samples ``data``.

    Accuracy, MAC acceleration, shares and fitness (eq. 7, the same beta) are recomputed on
    ``data``; the figures ``result`` had (on the samples it was searched on) are kept in each
    row as ``search_accuracy``, ``search_mac_acceleration``, ``search_shares`` and
    ``search_fitness``. The rows keep their order. Measured accelerations are dropped (None):
    they were timed on the search samples.

    Args:
        result: a `search_thresholds` / `sweep_thresholds` result (with its ``macs``).
        data: cached probabilities of the other samples.
        baseline_accuracy: the fitness's baseline (%); default the final exit's accuracy on
            ``data``.
    """
    if not isinstance(result, ThresholdSearchResult) or result.macs is None:
        raise ValueError(
            "`result` must be a ThresholdSearchResult with its MAC report (from "
            f"search_thresholds or sweep_thresholds), got {type(result).__name__}."
        )
    if not isinstance(data, ExitProbabilities):
        raise ValueError(
            "`data` must be an ExitProbabilities (collect_exit_probabilities), got "
            f"{type(data).__name__}."
        )
    if data.num_exits != len(result.thresholds):
        raise ValueError(
            f"`data`: cached probabilities of {data.num_exits} exits for thresholds of "
            f"{len(result.thresholds)} exits."
        )
    report = result.macs
    final_acc = 100.0 * float((data.probs[-1].argmax(-1) == data.labels).mean())
    baseline = final_acc if baseline_accuracy is None else float(baseline_accuracy)
    candidates = np.asarray([result.thresholds] + [r["thresholds"] for r in result.table])
    sim = simulate(data.probs, data.labels, candidates, report.path_macs)
    fitness = _fitness(sim, report, result.beta, baseline)

    def figures(j: int) -> dict:
        return {
            "accuracy": float(sim["accuracy"][j]),
            "mac_acceleration": float(report.backbone / sim["macs"][j]),
            "measured_acceleration": None,
            "shares": [float(v) for v in sim["shares"][j]],
            "fitness": float(fitness[j]),
        }

    table = [
        {
            **r,
            **figures(j + 1),
            **{f"search_{k}": r[k] for k in ("accuracy", "mac_acceleration", "shares", "fitness")},
        }
        for j, r in enumerate(result.table)
    ]
    best = figures(0)
    return ThresholdSearchResult(
        thresholds=list(result.thresholds),
        fitness=best["fitness"],
        accuracy=best["accuracy"],
        mac_acceleration=best["mac_acceleration"],
        measured_acceleration=None,
        shares=best["shares"],
        baseline_accuracy=baseline,
        final_exit_accuracy=final_acc,
        beta=result.beta,
        table=table,
        history=list(result.history),
        macs=report,
    )


# ---------------------------------------------------------------------------- helpers
def _prepare(model, data, batch_size, macs, baseline_accuracy, include_batchnorm):
    num_exits = check_multi_exit(model)
    cached = (
        data
        if isinstance(data, ExitProbabilities)
        else collect_exit_probabilities(model, data, batch_size=batch_size)
    )
    if cached.num_samples == 0:
        raise ValueError("`data` is empty; the threshold search needs at least one sample.")
    if cached.num_exits != num_exits:
        raise ValueError(
            f"`data`: cached probabilities of {cached.num_exits} exits for a model with "
            f"{num_exits} exits."
        )
    report = macs if macs is not None else count_macs(model, include_batchnorm=include_batchnorm)
    final_acc = 100.0 * float((cached.probs[-1].argmax(-1) == cached.labels).mean())
    if baseline_accuracy is None:
        baseline = final_acc
    else:
        try:
            baseline = float(baseline_accuracy)
        except (TypeError, ValueError):
            baseline = float("nan")
        if not 0.0 <= baseline <= 100.0:
            raise ValueError(
                f"`baseline_accuracy` must be a percentage in [0, 100], got {baseline_accuracy!r}."
            )
    return cached, report, baseline, final_acc


def _fitness(sim: dict, report: MacReport, beta: float, baseline: float) -> np.ndarray:
    return report.backbone / sim["macs"] + beta * (sim["accuracy"] - baseline)


def _pareto(candidates: np.ndarray, sim: dict, report: MacReport, rows: int) -> list[int]:
    """Indices of the accuracy / MAC-acceleration Pareto front, thinned to ``rows`` points."""
    acc = sim["accuracy"]
    speed = report.backbone / sim["macs"]
    order = np.lexsort((-acc, -speed))  # fastest first, most accurate first among equals
    front, best_acc = [], -np.inf
    for j in order:
        if acc[j] > best_acc + 1e-12:
            front.append(int(j))
            best_acc = acc[j]
    front = front[::-1]  # increasing acceleration
    if len(front) > rows:
        keep = np.unique(np.round(np.linspace(0, len(front) - 1, rows)).astype(int))
        front = [front[i] for i in keep]
    return front


MEASURE_ROUNDS = 5  # timed rounds of `measure_acceleration` (median of the per-round ratios)
MEASURE_RUNTIME = "tf-graph"  # what `measure_acceleration` times: compiled tf.function graphs


def time_rounds(
    fns: dict[str, Callable], images: np.ndarray, batch_size: int, rounds: int
) -> dict[str, list[float]]:
    """Wall-clock seconds of each function in ``fns`` over ``images`` in batches of
    ``batch_size``, one entry per round.

    One warm-up pass of each function over every batch (which also traces a ``tf.function``),
    then ``rounds`` rounds that each run every function once, in the order of ``fns`` (plain,
    early exit, plain, early exit, ...), so a load change on a shared CPU hits all of them alike
    instead of one function's whole measurement.
    """
    import tensorflow as tf

    batch_size = validation.integer(batch_size, "batch_size", minimum=1)
    rounds = validation.integer(rounds, "rounds", minimum=1)
    batches = [tf.constant(images[s : s + batch_size]) for s in range(0, len(images), batch_size)]
    for fn in fns.values():
        for b in batches:
            _block(fn(b))
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for b in batches:
                out = fn(b)
            _block(out)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def plain_backbone_function(model, frozen: bool = False):
    """The compiled plain backbone (``model.exit_graph.export_backbone()``) for float32 image batches;
    ``frozen`` bakes its weights in as constants (`keras_sd.inference.freeze_function`), the
    like-for-like baseline of a frozen early-exit graph."""
    import tensorflow as tf

    validation.boolean(frozen, "frozen")
    plain_model = model.exit_graph.export_backbone()
    spec = tf.TensorSpec((None, *plain_model.inputs[0].shape[1:]), "float32")
    fn = tf.function(lambda v: plain_model(v, training=False), input_signature=[spec])
    return freeze_function(fn, [spec]) if frozen else fn


def measure_acceleration(
    model,
    thresholds: Sequence[float],
    images: np.ndarray,
    *,
    batch_size: int = 256,
    rounds: int = MEASURE_ROUNDS,
) -> float:
    """Measured speedup of the compiled early-exit graph over the compiled plain backbone
    (runtime ``MEASURE_RUNTIME``, "tf-graph"): the median over ``rounds`` alternating rounds
    (plain backbone, early exit, plain backbone, early exit, ...; `time_rounds`) of
    ``plain seconds / early-exit seconds`` over ``images`` in batches of ``batch_size``.

    Both functions are timed in the same round, so the ratio of each round compares them under the
    same machine load, and the median discards rounds a load spike hit.
    """
    images = np.asarray(images, dtype="float32")
    if images.ndim == 0 or len(images) == 0:
        raise ValueError("`images` is empty; nothing to time.")
    seconds = time_rounds(
        {
            "backbone": plain_backbone_function(model),
            "early_exit": EarlyExitModel(model, thresholds).serving_function(),
        },
        images,
        batch_size,
        rounds,
    )
    ratios = np.asarray(seconds["backbone"]) / np.asarray(seconds["early_exit"])
    return float(np.median(ratios))


def _block(out) -> Any:
    # Values to NumPy, so the timed pass includes the whole computation.
    if isinstance(out, dict):
        return {k: np.asarray(v) for k, v in out.items()}
    return np.asarray(out)


def _row(j: int, *, candidates, sim: dict, fitness, report: MacReport) -> dict:
    """Row ``j`` of a result table (``measured_acceleration`` None: filled in by the caller)."""
    return {
        "thresholds": [float(t) for t in candidates[j]],
        "accuracy": float(sim["accuracy"][j]),
        "mac_acceleration": float(report.backbone / sim["macs"][j]),
        "measured_acceleration": None,
        "shares": [float(s) for s in sim["shares"][j]],
        "fitness": float(fitness[j]),
    }


def _table(candidates, sim, fitness, report, rows, cached, model, measure, batch_size):
    table = []
    for j in _pareto(candidates, sim, report, rows):
        row = _row(j, candidates=candidates, sim=sim, fitness=fitness, report=report)
        if measure and cached.images is not None:
            row["measured_acceleration"] = measure_acceleration(
                model, candidates[j], cached.images, batch_size=batch_size
            )
        table.append(row)
    return table


def _result(
    best, candidates, sim, fitness, report, baseline, final_acc, beta, table, history, meas
):
    return ThresholdSearchResult(
        thresholds=[float(t) for t in candidates[best]],
        fitness=float(fitness[best]),
        accuracy=float(sim["accuracy"][best]),
        mac_acceleration=float(report.backbone / sim["macs"][best]),
        measured_acceleration=meas,
        shares=[float(s) for s in sim["shares"][best]],
        baseline_accuracy=float(baseline),
        final_exit_accuracy=float(final_acc),
        beta=beta,
        table=table,
        history=history,
        macs=report,
    )


# ---------------------------------------------------------------------------- GA
def decode(genes: np.ndarray, bits: int) -> np.ndarray:
    """Binary genes ``[P, K * bits]`` (most significant bit first) to thresholds ``[P, K]``:
    the integer ``g`` of each group of ``bits`` maps to ``(g + 1) / 2**bits`` in ``(0, 1]``."""
    genes = np.asarray(genes)
    p, total = genes.shape
    groups = genes.reshape(p, total // bits, bits).astype("int64")
    weights = 2 ** np.arange(bits - 1, -1, -1, dtype="int64")
    return (groups @ weights + 1) / float(2**bits)


def encode(thresholds: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of `decode` (thresholds rounded to the nearest code)."""
    t = np.atleast_2d(np.asarray(thresholds, dtype="float64"))
    g = np.clip(np.round(t * 2**bits) - 1, 0, 2**bits - 1).astype("int64")
    out = (g[..., None] >> np.arange(bits - 1, -1, -1)) & 1
    return out.reshape(t.shape[0], -1).astype("uint8")


def search_thresholds(
    model,
    data: Any,
    *,
    beta: float,
    generations: int = 60,
    population: int = 64,
    seed: int | None = 0,
    bits: int = 10,
    crossover_rate: float = 0.9,
    mutation_rate: float | None = None,
    tournament: int = 3,
    elite: int = 2,
    baseline_accuracy: float | None = None,
    include_batchnorm: bool = False,
    macs: MacReport | None = None,
    table_rows: int = 8,
    measure: bool = True,
    batch_size: int = 256,
    progress: bool = True,
) -> ThresholdSearchResult:
    """Genetic search for early-exit thresholds (TPAMI Algorithm 2).

    Each individual is a binary string of ``bits`` bits per exit (see `decode`). Per
    generation: fitness (eq. 7) of every individual from cached probabilities; selection by
    tournaments of ``tournament`` individuals ("sample genes with high fitness"); single-point
    crossover of consecutive parents with probability ``crossover_rate``; independent bit-flip
    mutation with probability ``mutation_rate`` (default ``1 / genome length``); the ``elite``
    best individuals pass unchanged (elitism, so the best fitness never decreases). The best
    individual over all generations is returned.

    Args:
        model: a `keras_sd.MultiExitDistiller`.
        data: held-out ``(images, labels)`` arrays, an iterable of batches, or an
            `ExitProbabilities` computed before (the network then does not run again).
        beta: accuracy weight of the fitness (>= 0; accuracy in percentage points).
        generations: number of generations ``g`` (>= 1).
        population: individuals per generation (>= 2).
        seed: seeds the initial genes and every random choice; the same seed gives the same
            result.
        bits: bits per threshold (1..24).
        crossover_rate, mutation_rate: probabilities in [0, 1].
        tournament: tournament size (>= 1).
        elite: individuals copied unchanged to the next generation (0 .. population - 1).
        baseline_accuracy: accuracy (%) the fitness compares with; default: the final exit's.
        include_batchnorm: count batch normalisation in the MACs.
        macs: a precomputed `MacReport` (skips counting).
        table_rows: maximum rows of the trade-off table.
        measure: time the best thresholds and the table's rows on the real early-exit graph
            against the plain backbone (`measure_acceleration`), on the images kept in the
            cached probabilities.
        batch_size: batch size of the forward pass and of the timing.
        progress: show a tqdm progress bar.

    Returns:
        A `ThresholdSearchResult` (best thresholds, fitness, trade-off table, history).

    Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural
    Networks", TPAMI, Algorithm 2 and eq. 7.
    """
    beta = validation.non_negative(beta, "beta", finite=True)
    generations = validation.integer(generations, "generations", minimum=1)
    population = validation.integer(population, "population", minimum=2)
    bits = validation.integer(bits, "bits", minimum=1)
    if bits > 24:
        raise ValueError(f"`bits` must be an int in 1..24, got {bits!r}.")
    tournament = validation.integer(tournament, "tournament", minimum=1)
    elite = validation.integer(elite, "elite", minimum=0)
    if elite >= population:
        raise ValueError(f"`elite` must be smaller than `population` ({population}), got {elite}.")
    crossover_rate = validation.unit_interval(crossover_rate, "crossover_rate")
    seed = validation.integer(seed, "seed", allow_none=True)
    table_rows = validation.integer(table_rows, "table_rows", minimum=1)
    cached, report, baseline, final_acc = _prepare(
        model, data, batch_size, macs, baseline_accuracy, include_batchnorm
    )
    k = cached.num_exits
    length = k * bits
    mutation_rate = (
        1.0 / length
        if mutation_rate is None
        else validation.unit_interval(mutation_rate, "mutation_rate")
    )
    rng = np.random.default_rng(seed)
    path_macs = report.path_macs

    def score(genes):
        cand = decode(genes, bits)
        sim = simulate(cached.probs, cached.labels, cand, path_macs)
        return cand, sim, _fitness(sim, report, beta, baseline)

    genes = rng.integers(0, 2, size=(population, length), dtype="uint8")
    seen_genes, history = [], []
    best_genes, best_fit = None, -np.inf
    from tqdm.auto import tqdm

    bar = tqdm(range(generations), desc="threshold GA", disable=not progress, leave=False)
    for _ in bar:
        _, _, fit = score(genes)
        seen_genes.append(genes.copy())
        j = int(np.argmax(fit))
        if fit[j] > best_fit:
            best_fit, best_genes = float(fit[j]), genes[j].copy()
        history.append(best_fit)
        bar.set_postfix(best_fitness=f"{best_fit:.4f}")
        # Selection: tournaments among random individuals; the fittest of each wins.
        contenders = rng.integers(0, population, size=(population, tournament))
        winners = contenders[np.arange(population), np.argmax(fit[contenders], axis=1)]
        parents = genes[winners]
        # Crossover: single point, pairs (0, 1), (2, 3), ...
        children = parents.copy()
        for a in range(0, population - 1, 2):
            if rng.random() < crossover_rate:
                point = int(rng.integers(1, length)) if length > 1 else 0
                children[a, point:], children[a + 1, point:] = (
                    parents[a + 1, point:].copy(),
                    parents[a, point:].copy(),
                )
        # Mutation: independent bit flips.
        flips = rng.random(children.shape) < mutation_rate
        children = np.where(flips, 1 - children, children).astype("uint8")
        if elite:
            children[:elite] = genes[np.argsort(-fit, kind="stable")[:elite]]
        genes = children
    bar.close()
    # Score the last generation too, then gather every evaluated candidate for the table.
    _, _, fit = score(genes)
    seen_genes.append(genes.copy())
    j = int(np.argmax(fit))
    if fit[j] > best_fit:
        best_fit, best_genes = float(fit[j]), genes[j].copy()
        history[-1] = best_fit
    all_genes = np.unique(np.concatenate([best_genes[None], *seen_genes]), axis=0)
    candidates, sim, fitness = score(all_genes)
    best = int(np.flatnonzero(np.all(all_genes == best_genes, axis=1))[0])
    table = _table(candidates, sim, fitness, report, table_rows, cached, model, measure, batch_size)
    meas = None
    if measure and cached.images is not None:
        meas = measure_acceleration(model, candidates[best], cached.images, batch_size=batch_size)
    return _result(
        best, candidates, sim, fitness, report, baseline, final_acc, beta, table, history, meas
    )


def sweep_thresholds(
    model,
    data: Any,
    *,
    beta: float,
    values: Sequence[float] = SWEEP_VALUES,
    baseline_accuracy: float | None = None,
    include_batchnorm: bool = False,
    macs: MacReport | None = None,
    table_rows: int = 8,
    measure: bool = True,
    batch_size: int = 256,
) -> ThresholdSearchResult:
    """One threshold shared by every exit, swept over ``values`` (default 0.50, 0.51, ...,
    0.99); the best by the same fitness as `search_thresholds` (eq. 7).

    Arguments as `search_thresholds`. Its ``table`` lists every swept value (not only the
    Pareto front), in the order of ``values``.
    """
    beta = validation.non_negative(beta, "beta", finite=True)
    table_rows = validation.integer(table_rows, "table_rows", minimum=1)
    values = list(values)
    if not values:
        raise ValueError("`values` is empty; give at least one threshold to sweep.")
    num_exits = check_multi_exit(model)
    for v in values:
        check_thresholds([v] * num_exits, num_exits, "values")
    cached, report, baseline, final_acc = _prepare(
        model, data, batch_size, macs, baseline_accuracy, include_batchnorm
    )
    candidates = np.repeat(np.asarray(values, dtype="float64")[:, None], cached.num_exits, axis=1)
    sim = simulate(cached.probs, cached.labels, candidates, report.path_macs)
    fitness = _fitness(sim, report, beta, baseline)
    best = int(np.argmax(fitness))
    table = [
        _row(j, candidates=candidates, sim=sim, fitness=fitness, report=report)
        for j in range(len(values))
    ]
    meas = None
    if measure and cached.images is not None:
        meas = measure_acceleration(model, candidates[best], cached.images, batch_size=batch_size)
        table[best]["measured_acceleration"] = meas
    return _result(
        best, candidates, sim, fitness, report, baseline, final_acc, beta, table, [], meas
    )
