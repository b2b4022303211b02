"""Where the shallow exits of a multi-exit model tap a backbone, and the backbone cut there.

An `ExitGraph` reads a backbone that follows the package's contract (a functional `keras.Model`
returning ``{"stages", "features", "logits"}``) and holds the functional models that share its
layers: one that returns the feature map at every exit point in one pass, the backbone cut into
segments at those points, and the per-stage models of early-exit inference. It holds no weights of
its own and is a plain Python object, so a Keras model that keeps one as an attribute tracks and
saves every backbone weight exactly once.

Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural Networks",
TPAMI, section 3.3 (dynamic inference runs the stages one after another).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_sd import _keras_compat
from keras_sd.models.base import check_backbone


class ExitGraph:
    """The exit points of a contract backbone and the backbone cut at them.

    Exit ``i`` (1-based, ``i < K``) reads the feature map at the ``i``-th exit point (or, on a
    transformer, the token sequence ``[batch, tokens, dim]`` there); exit ``K`` is the backbone's
    own head. Every model this object builds shares the backbone's layers
    (no copy, no new weight), except `export_backbone`, which is a copy.

    Example:
        >>> from keras_sd import backbones
        >>> backbone = backbones.get("resnet20", input_shape=(8, 8, 1), num_classes=10)
        >>> graph = ExitGraph(backbone, exits="stages")
        >>> graph.num_exits
        3
        >>> maps = graph.feature_maps(np.zeros((2, 8, 8, 1), "float32"))
        >>> [tuple(m.shape) for m in maps]
        [(2, 8, 8, 16), (2, 4, 4, 32)]

    Args:
        backbone: a keras_sd backbone (functional, ``{"stages", "features", "logits"}``) whose
            ``features`` are pooled, ``[batch, dim]``.
        exits: where the shallow exits attach: ``"stages"`` (after every stage but the last,
            whose exit is the backbone's head), or a list, shallow to deep, of stage indices
            (0-based into ``out["stages"]``, the last stage excluded), layer names of the
            backbone, or tensors of the functional backbone.

    Attributes:
        backbone: the backbone (shared, not copied).
        exits: ``exits`` in config form: ``"stages"``, or the list with tensors replaced by stage
            indices or layer names.
        exit_points: the backbone's symbolic tensors at the ``K - 1`` shallow exits.
        feature_dim: width of the backbone's pooled ``features``.

    Raises:
        ValueError: when the backbone breaks the contract, its features are not 2-D or ``exits``
            does not name distinct 4-D maps or 3-D token sequences (a transformer's blocks),
            ordered shallow to deep, before the last stage.
    """

    def __init__(self, backbone: keras.Model, exits: str | Sequence[int | str | Any] = "stages"):
        check_backbone(backbone)
        self.backbone = backbone
        self.exits, self.exit_points = _resolve_exits(backbone, exits)
        out = backbone.output
        if len(out["features"].shape) != 2:
            raise ValueError(
                f"`backbone` features must be 2-D [batch, dim] (pooled), got shape "
                f"{tuple(out['features'].shape)}."
            )
        self.feature_dim = int(out["features"].shape[-1])
        self._tap = keras.Model(
            backbone.inputs[0],
            {"feature_maps": list(self.exit_points), **_head_outputs(out)},
            name=f"{backbone.name}_taps",
        )
        self._segments = None
        self._stage_models = None  # (ids of the heads they were built with, models)

    @property
    def num_exits(self) -> int:
        """Number of exits ``K``: the shallow exits plus the backbone's own head."""
        return len(self.exit_points) + 1

    def __call__(self, images, training: bool = False) -> dict:
        """One backbone pass: ``{"feature_maps": [map at each shallow exit], "features",
        "logits"}`` (the last two are the backbone's own)."""
        out = self._tap(images, training=training)
        return {**out, "feature_maps": list(out["feature_maps"])}

    def feature_maps(self, images, training: bool = False) -> list:
        """The feature map at every shallow exit point, shallow to deep, for ``images``."""
        return self(images, training=training)["feature_maps"]

    def segments(self) -> list[keras.Model]:
        """The backbone cut at the exit points: ``K`` functional models sharing its weights.

        ``segments()[0]`` maps images to the feature map at exit 1, ``segments()[i]`` maps the
        map at exit ``i`` to the map at exit ``i + 1``, and ``segments()[K - 1]`` maps the map at
        exit ``K - 1`` to ``{"features", "logits"}`` of the backbone. Chaining them equals one
        backbone pass, so early-exit inference can run the deeper segments on the undecided
        samples only.

        Raises:
            ValueError: when the backbone cannot be cut at an exit point (a connection skips
                over it, e.g. an exit inside a residual block).
        """
        if self._segments is None:
            points = self.exit_points
            ends = [*points, _head_outputs(self.backbone.output)]
            starts = [self.backbone.inputs[0], *points]
            segments = []
            for i, (start, end) in enumerate(zip(starts, ends)):
                try:
                    segments.append(keras.Model(start, end, name=f"segment{i + 1}"))
                except (ValueError, KeyError) as err:
                    raise ValueError(
                        f"`exits`: the backbone cannot be cut into segments at exit {i + 1} "
                        f"({self.exits!r}); some layer after it reads an earlier tensor ({err})."
                    ) from None
            self._segments = segments
        return list(self._segments)

    def stage_models(self, heads: Sequence[keras.layers.Layer]) -> list[keras.Model]:
        """``K`` functional models, one per exit, for dynamic (early-exit) inference.

        ``stage_models(heads)[i]`` (for ``i < K - 1``) maps the feature map at exit ``i`` (the
        images for ``i = 0``) to ``{"stage": map at exit i + 1, "logits": c_{i+1}, "features":
        F_{i+1}}``: the next segment followed by ``heads[i]``. The last maps the map at exit
        ``K - 1`` to ``{"logits": c_K, "features": F_K}``. They share the backbone's and the
        heads' weights; run them in inference mode (``training=False``). Built once per list of
        heads.

        Args:
            heads: the ``K - 1`` shallow exit heads, shallow to deep, each mapping a feature map
                to ``{"logits", "features"}``.
        """
        heads = list(heads)
        if len(heads) != self.num_exits - 1:
            raise ValueError(
                f"`heads` must hold one head per shallow exit ({self.num_exits - 1}), got "
                f"{len(heads)}."
            )
        key = tuple(id(head) for head in heads)
        if self._stage_models is None or self._stage_models[0] != key:
            models = []
            for i, segment in enumerate(self.segments()):
                inp = keras.Input(tuple(segment.inputs[0].shape[1:]), name=f"stage{i + 1}_in")
                h = segment(inp)
                if i < len(heads):
                    res = heads[i](h)
                    outputs = {"stage": h, "logits": res["logits"], "features": res["features"]}
                else:
                    outputs = {"logits": h["logits"], "features": h["features"]}
                models.append(keras.Model(inp, outputs, name=f"stage{i + 1}"))
            self._stage_models = (key, models)
        return list(self._stage_models[1])

    def export_backbone(self) -> keras.Model:
        """A plain Keras model ``images -> backbone logits``, without any exit.

        A copy (its own weights, equal to the current ones) with no extra parameters over the
        backbone; its predictions equal the final exit's.
        """
        shared = keras.Model(self.backbone.inputs[0], self.backbone.output["logits"])
        plain = keras.Model.from_config(shared.get_config())
        plain.set_weights(shared.get_weights())
        return plain


def _head_outputs(out) -> dict:
    """The backbone head's part of a contract output: ``{"features", "logits"}``."""
    return {"features": out["features"], "logits": out["logits"]}


def _producer(tensor):
    # Keras has no public accessor for the layer that produced a symbolic tensor.
    return _keras_compat.keras_history_operation(tensor)


def _resolve_exits(backbone: keras.Model, exits) -> tuple[str | list, list]:
    """``(config form of exits, [tensor at each shallow exit])``, validated, shallow to deep."""
    stages = list(backbone.output["stages"])
    if isinstance(exits, str):
        if exits != "stages":
            raise ValueError(
                f"`exits` must be 'stages' or a list of stage indices / layer names / tensors, "
                f"got {exits!r}."
            )
        if len(stages) < 2:
            raise ValueError(
                f"`backbone` must expose at least 2 stages for exits='stages' (the last stage's "
                f"exit is the backbone's head), got {len(stages)}."
            )
        return "stages", stages[:-1]
    if not isinstance(exits, Sequence) or len(exits) == 0:
        raise ValueError(
            f"`exits` must be 'stages' or a non-empty list of stage indices / layer names / "
            f"tensors, got {exits!r}."
        )
    position = {id(layer): i for i, layer in enumerate(backbone.layers)}
    last_stage_pos = position.get(id(_producer(stages[-1])), len(backbone.layers))
    config, taps = [], []
    for item in exits:
        if isinstance(item, keras.KerasTensor):
            match = [j for j, s in enumerate(stages) if s is item]
            item = match[0] if match else _producer(item).name
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            item = int(item)
            if not 0 <= item < len(stages) - 1:
                raise ValueError(
                    f"`exits`: stage index {item} out of range; the backbone has {len(stages)} "
                    f"stages and shallow exits may use indices 0..{len(stages) - 2} (the last "
                    f"stage's exit is the backbone's own head)."
                )
            tensor = stages[item]
        elif isinstance(item, str):
            try:
                layer = backbone.get_layer(item)
            except ValueError:
                raise ValueError(f"`exits`: the backbone has no layer named {item!r}.") from None
            try:
                tensor = layer.output
            except (AttributeError, ValueError):
                raise ValueError(
                    f"`exits`: layer {item!r} has no single output tensor (shared layer?)."
                ) from None
            if isinstance(tensor, (list, tuple, dict)):
                raise ValueError(f"`exits`: layer {item!r} has several outputs.")
        else:
            raise ValueError(
                f"`exits` items must be stage indices (int), layer names (str) or tensors of the "
                f"backbone, got {item!r}."
            )
        if len(tensor.shape) not in (3, 4):
            raise ValueError(
                f"`exits`: exit point {item!r} must be a 4-D feature map [batch, height, width, "
                f"channels] or a 3-D token sequence [batch, tokens, dim], got shape "
                f"{tuple(tensor.shape)}."
            )
        config.append(item)
        taps.append(tensor)
    pos = [position.get(id(_producer(t)), -1) for t in taps]
    if any(b <= a for a, b in zip(pos, pos[1:])) or pos[-1] >= last_stage_pos:
        raise ValueError(
            f"`exits` must be distinct, ordered shallow to deep and before the last stage, got "
            f"{config!r} (layer positions {pos}, last stage at {last_stage_pos})."
        )
    return config, taps
