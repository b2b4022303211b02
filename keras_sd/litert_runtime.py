"""Early-exit inference (TPAMI Algorithm 1) in LiteRT: NumPy plus ``ai-edge-litert``, no TensorFlow.

Runs an artefact written by ``keras_sd.inference.EarlyExitModel.export_litert``: one LiteRT
flatbuffer per stage (backbone segment plus its exit head) and a ``manifest.json`` with the
thresholds. Stage 1 runs on every image; stage ``i + 1`` runs only on the images exit ``i`` was
not sure of; images no exit is sure of get the ensemble (mean softmax) of all exits, exactly as
``EarlyExitModel`` does.

Why ``keras_sd.litert_runtime`` and not under ``keras_sd.inference``: the package root imports
no TensorFlow and lists this module among its light ones, while ``keras_sd.inference`` is a Keras
part. This module imports only the standard library and NumPy (``ai_edge_litert`` when a model
is opened), so a device can run it with ``pip install --no-deps keras-sd`` plus ``numpy`` and
``ai-edge-litert``, or with this one file copied next to the artefact. ``keras_sd.inference.LiteRTEarlyExit`` is the same class.

Example:
    >>> from keras_sd.litert_runtime import LiteRTEarlyExit
    >>> fast = LiteRTEarlyExit("early_exit_litert")  # the folder export_litert wrote
    >>> out = fast(images)  # {"prediction", "exit", "logits"}, one image or a batch

Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural Networks",
TPAMI, section 3.3, Algorithm 1.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_sd import validation

FORMAT = "keras_sd.litert_early_exit"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INSTALL_HINT = 'pip install "keras-sd[litert]"  (or: pip install ai-edge-litert)'

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "LiteRTEarlyExit", "check_thresholds"]


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as err:
        raise ImportError(
            f"LiteRTEarlyExit needs the LiteRT runtime (the `litert` extra of keras-sd): "
            f"{INSTALL_HINT}. ({err})"
        ) from err
    return Interpreter


def file_sha256(file: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes: the digest the manifest records for each flatbuffer."""
    return hashlib.sha256(pathlib.Path(file).read_bytes()).hexdigest()


def read_json_file(file: str | os.PathLike, *, missing: str, label: str) -> Any:
    """The parsed JSON of ``file``; a ValueError with ``missing`` when it is not a file, or
    ``"{label} is not valid JSON (...)."`` when it does not parse."""
    file = pathlib.Path(file)
    if not file.is_file():
        raise ValueError(missing)
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{label} is not valid JSON ({err}).") from None


def check_thresholds(thresholds: Any, num_exits: int, name: str = "thresholds") -> list[float]:
    """One threshold per exit, each in ``(0, 1]``, as Python floats; otherwise ``ValueError``.

    ``thresholds[i]`` is compared with exit ``i``'s top softmax probability (strictly greater
    answers). A threshold of 1 means the exit never answers; the last threshold decides between
    the final exit and the ensemble of all exits for the samples that reach it. NumPy only, so
    that this module stays TensorFlow-free; ``keras_sd.inference.check_thresholds`` is this
    function.
    """
    try:
        values = np.asarray(thresholds, dtype="float64")
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be a sequence of {num_exits} numbers in (0, 1], got {thresholds!r}."
        ) from None
    if values.ndim != 1 or len(values) != num_exits:
        raise ValueError(
            f"`{name}` must hold exactly one threshold per exit ({num_exits} values, the last "
            f"one for the final exit vs the ensemble), got {np.asarray(thresholds).tolist()!r} "
            f"(shape {values.shape})."
        )
    bad = [float(v) for v in values if not (0.0 < v <= 1.0)]  # also catches NaN
    if bad:
        raise ValueError(f"`{name}` must all lie in (0, 1], got {values.tolist()!r} (bad: {bad}).")
    return [float(v) for v in values]


class _Stage:
    """One stage flatbuffer behind the raw interpreter API (cheaper per call than a signature
    runner, which matters at batch 1); re-allocates only when the batch size changes."""

    def __init__(self, interpreter_cls, path: pathlib.Path, num_threads: int | None):
        self.interpreter = interpreter_cls(model_path=str(path), num_threads=num_threads)
        runner = self.interpreter.get_signature_runner()
        (self.input_index,) = [d["index"] for d in runner.get_input_details().values()]
        self.outputs = {name: d["index"] for name, d in runner.get_output_details().items()}
        self.batch = None

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Runs the stage; returns every output."""
        self.invoke(x)
        return {name: self.get(name) for name in self.outputs}

    def invoke(self, x: np.ndarray) -> None:
        if x.shape[0] != self.batch:
            self.interpreter.resize_tensor_input(self.input_index, list(x.shape), strict=False)
            self.interpreter.allocate_tensors()
            self.batch = x.shape[0]
        self.interpreter.set_tensor(self.input_index, x)
        self.interpreter.invoke()

    def get(self, name: str) -> np.ndarray:
        """An output of the last `invoke` (a copy: the next invoke cannot overwrite it)."""
        return self.interpreter.get_tensor(self.outputs[name])


def _softmax64(z: np.ndarray) -> np.ndarray:
    z = z.astype("float64")
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class ExitThresholds:
    """The threshold properties both early-exit runtimes share (`LiteRTEarlyExit` and
    `keras_sd.inference.EarlyExitModel`); the class sets ``num_exits`` and ``_thresholds``."""

    num_exits: int
    _thresholds: list[float]

    @property
    def thresholds(self) -> list[float]:
        """The current thresholds, shallow to deep."""
        return list(self._thresholds)

    @property
    def ensemble_index(self) -> int:
        """The value of ``exit`` for images answered by the ensemble (``num_exits``)."""
        return self.num_exits


class LiteRTEarlyExit(ExitThresholds):
    """Early exit (TPAMI Algorithm 1) on the per-stage LiteRT flatbuffers of an export.

    ``fast(images)`` returns ``{"prediction": int32, "exit": int32, "logits": float32}`` like
    ``keras_sd.inference.EarlyExitModel``: ``exit`` is the 0-based exit that answered or
    ``num_exits`` for the ensemble, whose ``logits`` are the log of the mean softmax of all exits.
    A batch ``[N, H, W, C]`` gives ``[N]``, ``[N]`` and ``[N, classes]``; one image ``[H, W, C]``
    gives scalars and ``[classes]``. Exit ``i`` answers when its top softmax probability (float32)
    is strictly greater than ``thresholds[i]``; the deeper stages run only on the rest.

    Images must be preprocessed as in training (`manifest` ``"normalization"``; `normalize`
    applies it to raw pixels).

    Args:
        path: the folder ``EarlyExitModel.export_litert`` wrote (with ``manifest.json``).
        num_threads: LiteRT CPU threads per stage (``None``: LiteRT's default).
        thresholds: override the manifest's thresholds (one per exit, in ``(0, 1]``).
        verify: check every flatbuffer's SHA-256 against the manifest (catches a partial copy).

    Raises:
        ImportError: ``ai-edge-litert`` is not installed (names the extra to install).
        ValueError: the folder is not such an export or an argument is out of range.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        num_threads: int | None = None,
        thresholds: Sequence[float] | None = None,
        verify: bool = True,
    ):
        num_threads = validation.positive_int(num_threads, "num_threads", allow_none=True)
        self.path = pathlib.Path(path)
        self.manifest = read_manifest(self.path)
        m = self.manifest
        self.num_exits = int(m["num_exits"])
        self.num_classes = int(m["num_classes"])
        self.input_shape = tuple(int(v) for v in m["input_shape"])
        self.exit_names = list(m["exit_names"])
        self._thresholds = check_thresholds(m["thresholds"], self.num_exits, "manifest thresholds")
        if thresholds is not None:
            self.set_thresholds(thresholds)
        if verify:
            for stage in m["stages"]:
                digest = file_sha256(self.path / stage["file"])
                if digest != stage["sha256"]:
                    raise ValueError(
                        f"`path` {str(self.path)!r}: {stage['file']} does not match the manifest "
                        f"(sha256 {digest[:12]}..., expected {stage['sha256'][:12]}...); "
                        f"re-export or re-copy the folder."
                    )
        interpreter_cls = _interpreter_class()
        self._stages = [
            _Stage(interpreter_cls, self.path / s["file"], num_threads) for s in m["stages"]
        ]
        self._num_threads = num_threads
        self._backbone = None

    # ------------------------------------------------------------------ thresholds
    def set_thresholds(self, thresholds: Sequence[float]) -> None:
        """Replaces the thresholds (the flatbuffers do not hold them, so nothing is rebuilt)."""
        self._thresholds = check_thresholds(thresholds, self.num_exits)

    # ------------------------------------------------------------------ inference
    def normalize(self, pixels) -> np.ndarray:
        """Raw pixels to model input with the manifest's ``(x / scale - mean) / std``."""
        norm = self.manifest.get("normalization")
        if not norm:
            raise ValueError(
                f"`path` {str(self.path)!r}: the manifest records no normalization; feed "
                f"preprocessed images."
            )
        x = np.asarray(pixels, dtype="float32")
        mean = np.asarray(norm["mean"], "float32")
        std = np.asarray(norm["std"], "float32")
        return ((x / np.float32(norm.get("scale", 1.0)) - mean) / std).astype("float32")

    def _check_images(self, images) -> tuple[np.ndarray, bool]:
        x = np.asarray(images, dtype="float32")
        single = x.ndim == len(self.input_shape)
        if single:
            x = x[None]
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"`images` must be one image of shape {self.input_shape} or a batch "
                f"[N, {', '.join(map(str, self.input_shape))}], got shape {np.shape(images)}."
            )
        if len(x) == 0:
            raise ValueError("`images` is an empty batch; pass at least one image.")
        return np.ascontiguousarray(x), single

    def __call__(self, images) -> dict[str, np.ndarray]:
        """Algorithm 1 on ``images`` (see the class docstring)."""
        x, single = self._check_images(images)
        if len(x) == 1:
            result = self._one(x)
            return {key: v[0] for key, v in result.items()} if single else result
        n = len(x)
        k = self.num_exits
        out_logits = np.zeros((n, self.num_classes), "float32")
        out_exit = np.full(n, k, "int32")
        index = np.arange(n)
        h = x
        log_prob_sum = None  # running log of the sum of every exit's softmax, for the ensemble
        for i, stage in enumerate(self._stages):
            stage.invoke(h)
            z = stage.get("logits").astype("float32")
            p = _softmax64(z)
            with np.errstate(divide="ignore"):
                log_p = np.log(p)
            log_prob_sum = log_p if log_prob_sum is None else np.logaddexp(log_prob_sum, log_p)
            # float32 comparison, as the TensorFlow graph does.
            confident = p.max(-1).astype("float32") > np.float32(self._thresholds[i])
            if i == k - 1:
                ensemble = (log_prob_sum - np.log(k)).astype("float32")
                out_logits[index] = np.where(confident[:, None], z, ensemble)
                out_exit[index] = np.where(confident, i, k)
                break
            out_logits[index[confident]] = z[confident]
            out_exit[index[confident]] = i
            undecided = ~confident
            if not undecided.any():
                break  # no image left: the deeper stages never run
            index = index[undecided]
            # Fetched only now: an image answered here never pays for copying the feature map.
            h = np.ascontiguousarray(stage.get("stage")[undecided])
            log_prob_sum = log_prob_sum[undecided]
        result = {
            "prediction": out_logits.argmax(-1).astype("int32"),
            "exit": out_exit,
            "logits": out_logits,
        }
        return {key: v[0] for key, v in result.items()} if single else result

    def _one(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Algorithm 1 for a batch of one image, the per-request case.

        The same rule as the batched path, in plain Python floats instead of a dozen NumPy
        calls per stage: at batch 1 those calls (microseconds each) were a measurable share of
        a stage's invoke time.
        """
        probs = []
        h = x
        k = self.num_exits
        for i, stage in enumerate(self._stages):
            stage.invoke(h)
            z = stage.get("logits").astype("float32")
            values = z[0].tolist()
            top = max(values)
            e = [math.exp(v - top) for v in values]
            total = sum(e)
            # max softmax = exp(0) / total; compared in float32 like the batched path.
            if np.float32(1.0 / total) > np.float32(self._thresholds[i]):
                return self._answer(z, i)
            probs.append([v / total for v in e])
            if i < k - 1:
                h = stage.get("stage")
        ensemble = np.log(np.mean(np.asarray(probs, "float64"), axis=0))[None]
        return self._answer(ensemble.astype("float32"), k)

    @staticmethod
    def _answer(z: np.ndarray, exit_index: int) -> dict[str, np.ndarray]:
        return {
            "prediction": z.argmax(-1).astype("int32"),
            "exit": np.full(1, exit_index, "int32"),
            "logits": z,
        }

    def predict(self, images, batch_size: int = 256) -> dict[str, np.ndarray]:
        """``self(images)`` batch by batch (bounded memory for a large array)."""
        batch_size = validation.positive_int(batch_size, "batch_size")
        x, _ = self._check_images(images)
        parts = [self(x[s : s + batch_size]) for s in range(0, len(x), batch_size)]
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def backbone(self, images) -> np.ndarray:
        """Logits of the plain backbone flatbuffer (exported with ``backbone=True``): the
        baseline to time early exit against. ``[N, classes]`` (``[classes]`` for one image)."""
        entry = self.manifest.get("backbone")
        if not entry:
            raise ValueError(
                f"`path` {str(self.path)!r} holds no plain backbone; export with backbone=True."
            )
        if self._backbone is None:
            self._backbone = _Stage(
                _interpreter_class(), self.path / entry["file"], self._num_threads
            )
        x, single = self._check_images(images)
        (logits,) = self._backbone(x).values()
        return logits[0] if single else logits


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of an export folder, checked for format, version and listed files."""
    folder = pathlib.Path(path)
    manifest = read_json_file(
        folder / MANIFEST,
        missing=f"`path` {str(folder)!r} has no {MANIFEST}; expected a folder written by "
        f"EarlyExitModel.export_litert or `keras-sd export --litert`.",
        label=f"`path` {str(folder)!r}: {MANIFEST}",
    )
    if manifest.get("format") != FORMAT:
        raise ValueError(
            f"`path` {str(folder)!r}: {MANIFEST} has format {manifest.get('format')!r}, "
            f"expected {FORMAT!r}."
        )
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"`path` {str(folder)!r}: format_version {manifest.get('format_version')!r}, this "
            f"runtime reads version {FORMAT_VERSION}; use the keras_sd that wrote it."
        )
    stages = manifest.get("stages") or []
    if len(stages) != manifest.get("num_exits"):
        raise ValueError(
            f"`path` {str(folder)!r}: {len(stages)} stage files for "
            f"{manifest.get('num_exits')!r} exits."
        )
    for stage in stages:
        if not (folder / stage["file"]).is_file():
            raise ValueError(f"`path` {str(folder)!r}: {stage['file']} is missing.")
    return manifest
