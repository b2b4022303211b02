"""LiteRT export of early-exit inference: one flatbuffer per stage plus a JSON manifest.

Why per stage and not one flatbuffer with the control flow inside: both were built and timed
(CIFAR ResNet-20 with the TPAMI exits, batch 1, one thread, ai-edge-litert 2.3). The single
flatbuffer (``EarlyExitModel`` converted whole: ``IF`` ops around the deeper stages, gathers and
scatters of dynamic size) cannot use the XNNPACK delegate (it fails to prepare the dynamically
shaped ``IF`` bodies), so it only runs on the reference kernels: 5.4 ms for an image answered at
exit 1 and 13.5 ms for one going through, against 1.2 and 3.7 ms for the per-stage flatbuffers
driven from NumPy (`keras_sd.litert_runtime.LiteRTEarlyExit`), and 2.9 ms for the plain backbone. Per
stage also keeps the thresholds out of the flatbuffers, so they can be changed at run time.

Conversion uses Keras' public ``Model.export(format="litert")`` (SavedModel, then
``tf.lite.TFLiteConverter``), restricted to LiteRT builtin ops so the artefact runs on the plain
``ai-edge-litert`` runtime without the TensorFlow (Flex) delegate.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from typing import Any

import keras
import tensorflow as tf

import keras_sd.litert_runtime
from keras_sd import validation

QUANTIZE_OPTIONS = (None, "dynamic_int8")


def check_normalization(normalization: Any) -> dict | None:
    """``None`` or ``{"mean": [...], "std": [...], "scale": float}`` (scale defaults to 1)."""
    if normalization is None:
        return None
    if not isinstance(normalization, dict) or not {"mean", "std"} <= set(normalization):
        raise ValueError(
            f"`normalization` must be None or a dict with 'mean' and 'std' (per channel, on the "
            f"[0, 1] scale) and optionally 'scale' (pixel value of 1.0), got {normalization!r}."
        )
    unknown = set(normalization) - {"mean", "std", "scale"}
    if unknown:
        raise ValueError(
            f"`normalization` has unknown keys {sorted(unknown)}; expected mean, std, scale."
        )
    mean = [float(v) for v in normalization["mean"]]
    std = [float(v) for v in normalization["std"]]
    scale = float(normalization.get("scale", 1.0))
    if len(mean) != len(std) or not all(s > 0 for s in std) or not scale > 0:
        raise ValueError(
            f"`normalization` must have as many means as stds, stds > 0 and scale > 0, got "
            f"{normalization!r}."
        )
    return {"mean": mean, "std": std, "scale": scale}


def _convert(model: keras.Model, file: pathlib.Path, quantize: str | None) -> None:
    """Writes ``model`` (one float32 image-batch input of any batch size) as a flatbuffer."""
    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), "float32")
    options: dict[str, Any] = {
        # Builtins only: ai-edge-litert has no TensorFlow (Flex) delegate.
        "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]},
    }
    if quantize == "dynamic_int8":
        # Optimize.DEFAULT without a representative dataset is dynamic-range quantisation:
        # int8 weights, float activations, no calibration data needed.
        options["optimizations"] = [tf.lite.Optimize.DEFAULT]
    model.export(str(file), format="litert", input_signature=[spec], verbose=False, **options)


def export_litert(
    early_exit_model,
    path: str | os.PathLike,
    *,
    quantize: str | None = None,
    normalization: dict | None = None,
    backbone: bool = False,
) -> dict:
    """Writes the LiteRT artefact of an `EarlyExitModel` to the folder ``path``.

    Files: ``stage{i}.tflite`` for each exit ``i`` (images, or the previous stage's feature map,
    to ``{"logits", "stage"}``; the last stage gives ``{"logits"}``), optionally
    ``backbone.tflite`` (the plain backbone, the baseline to time against) and
    ``manifest.json`` (format and version, thresholds, exit order, input shape, normalisation,
    class count, quantisation, each file's SHA-256). The folder is built next to ``path`` and
    renamed into place, so a crash never leaves a partial artefact at ``path``; an existing
    artefact there is replaced.

    Args:
        early_exit_model: the `EarlyExitModel` (its current thresholds go to the manifest).
        path: the folder to write.
        quantize: ``None`` (float32) or ``"dynamic_int8"`` (int8 weights, float activations).
        normalization: how raw pixels become model input, ``{"mean", "std", "scale"}`` (see
            `check_normalization`), recorded for `keras_sd.litert_runtime.LiteRTEarlyExit.normalize`.
        backbone: also write the plain backbone (``export_backbone()``).

    Returns:
        The manifest.
    """
    from keras_sd.inference.early_exit import EarlyExitModel

    if not isinstance(early_exit_model, EarlyExitModel):
        raise ValueError(
            f"`early_exit_model` must be a keras_sd.inference.EarlyExitModel, got "
            f"{type(early_exit_model).__name__}."
        )
    validation.one_of(quantize, "quantize", QUANTIZE_OPTIONS)
    validation.boolean(backbone, "backbone")
    normalization = check_normalization(normalization)
    target = pathlib.Path(path)
    if target.exists() and not (target / keras_sd.litert_runtime.MANIFEST).is_file():
        raise ValueError(
            f"`path` {str(target)!r} exists and is not a LiteRT early-exit export; refusing to "
            f"replace it."
        )
    multi = early_exit_model.multi_exit_model
    stages = multi.exit_graph.stage_models(multi.exit_heads)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(
        tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    )
    try:
        entries = []
        for i, stage in enumerate(stages):
            # Only what Algorithm 1 reads: logits, and the map the next stage starts from.
            inp = keras.Input(tuple(stage.inputs[0].shape[1:]), name="images" if i == 0 else "x")
            res = stage(inp, training=False)
            outputs = {"logits": res["logits"]}
            if i < len(stages) - 1:
                outputs["stage"] = res["stage"]
            file = work / f"stage{i + 1}.tflite"
            _convert(keras.Model(inp, outputs, name=f"stage{i + 1}_litert"), file, quantize)
            entries.append(
                {
                    "file": file.name,
                    "input_shape": [int(v) for v in inp.shape[1:]],
                    "outputs": sorted(outputs),
                    "sha256": keras_sd.litert_runtime.file_sha256(file),
                }
            )
        backbone_entry = None
        if backbone:
            file = work / "backbone.tflite"
            _convert(multi.exit_graph.export_backbone(), file, quantize)
            backbone_entry = {
                "file": file.name,
                "sha256": keras_sd.litert_runtime.file_sha256(file),
            }
        manifest = {
            "format": keras_sd.litert_runtime.FORMAT,
            "format_version": keras_sd.litert_runtime.FORMAT_VERSION,
            "layout": "per_stage",
            "num_exits": early_exit_model.num_exits,
            "exit_names": list(multi.exit_names),
            "thresholds": early_exit_model.thresholds,
            "rule": "exit i answers when its max softmax > thresholds[i] (float32); images no "
            "exit answers get the ensemble, logits = log(mean softmax of all exits), exit = "
            "num_exits",
            "num_classes": early_exit_model.num_classes,
            "input_shape": list(early_exit_model.input_spec_shape),
            "input_dtype": "float32",
            "normalization": normalization,
            "quantize": quantize,
            "stages": entries,
            "backbone": backbone_entry,
        }
        # A plain write is enough: the work folder is published whole by the rename below.
        (work / keras_sd.litert_runtime.MANIFEST).write_text(json.dumps(manifest, indent=2))
        for file in work.iterdir():  # durable before the rename publishes them
            with open(file, "rb") as f:
                os.fsync(f.fileno())
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        work.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def read_thresholds_file(path: str | os.PathLike, num_exits: int) -> list[float]:
    """Thresholds from a ``keras-sd thresholds`` file (its ``"thresholds"``) or a JSON list."""
    from keras_sd.inference.early_exit import check_thresholds

    file = pathlib.Path(path)
    payload = keras_sd.litert_runtime.read_json_file(
        file,
        missing=f"`thresholds` file {str(file)!r} does not exist; run `keras-sd thresholds "
        f"RUN_DIR --beta B` first or pass --thresholds FILE.",
        label=f"`thresholds` file {str(file)!r}",
    )
    values = payload.get("thresholds") if isinstance(payload, dict) else payload
    if values is None:
        raise ValueError(
            f"`thresholds` file {str(file)!r} has no 'thresholds' entry; expected the "
            f"thresholds.json of `keras-sd thresholds` or a JSON list of {num_exits} numbers."
        )
    return check_thresholds(values, num_exits, f"thresholds in {file}")
