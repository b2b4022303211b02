"""Analytic multiply-accumulate (MAC) counts of a model, per early-exit path.

Counted layers (one MAC = one multiplication and one addition; bias additions, activations,
pooling, up-sampling, element-wise products, layer normalisation and the softmax are not
counted, as is usual for MAC figures such as the TPAMI paper's):

* ``Conv1D/2D/3D``: ``output elements * kernel volume * input channels per group``;
* ``DepthwiseConv2D``: ``output elements * kernel height * kernel width``;
* ``SeparableConv2D``: its depthwise part plus its pointwise part
  (``H_out * W_out * C_in * multiplier * (k_h * k_w + C_out)``);
* ``Dense``: ``output elements * input units``;
* ``EinsumDense`` (the projections inside `MultiHeadAttention`): ``output elements *`` the
  kernel sizes summed over (the kernel's equation letters missing from the output);
* ``MultiHeadAttention``: its projections (``EinsumDense``, above) plus the two attention
  products, ``heads * T_q * T_k * key_dim`` for the scores and ``heads * T_q * T_k * value_dim``
  for the weighted sum of values (``T_q``, ``T_k``: query and key tokens per sample);
* ``BatchNormalization``: excluded by default, because at deployment it folds into the
  preceding convolution; with ``include_batchnorm=True`` it counts one MAC per output element
  (the folded ``x * scale + shift``).

Shapes are those of a real forward pass on one zero image, recorded per call, so layers used
several times are counted every time they run, and custom layers (exit heads, attention) are
counted through the standard layers they call.

Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural Networks",
TPAMI, section 4.7 (acceleration = baseline MACs / MACs spent).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np

from keras_sd import validation
from keras_sd.layers.walk import iter_layers
from keras_sd.models.multi_exit import MultiExitDistiller

_CONV = keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D


def _prod(values) -> int:
    return int(math.prod(int(v) for v in values))


def layer_macs(
    layer: keras.layers.Layer,
    output_shape: Sequence[int],
    include_batchnorm=False,
    input_shapes: Sequence[Sequence[int]] | None = None,
):
    """MACs of one call of ``layer`` producing ``output_shape`` (batch dimension included, it is
    divided out: the count is per sample). Layers that are not counted give 0.

    ``input_shapes`` (query, value, key) is needed for a `keras.layers.MultiHeadAttention`: its
    count here is the two attention products only (its projections are counted as the
    ``EinsumDense`` layers they are).
    """
    per_sample = _prod(output_shape[1:])
    if isinstance(layer, keras.layers.MultiHeadAttention):
        return _attention_products(layer, input_shapes)
    if isinstance(layer, keras.layers.EinsumDense):
        inputs_outputs = layer.equation.split("->")
        kernel_spec, out_spec = inputs_outputs[0].split(",")[1], inputs_outputs[1]
        summed = [d for letter, d in zip(kernel_spec, layer.kernel.shape) if letter not in out_spec]
        return per_sample * _prod(summed)
    if isinstance(layer, keras.layers.SeparableConv2D):
        kh, kw, cin, mult = layer.depthwise_kernel.shape
        spatial = _prod(output_shape[1:-1])
        return spatial * int(cin) * int(mult) * (int(kh) * int(kw) + int(output_shape[-1]))
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel.shape[:2]
        return per_sample * int(kh) * int(kw)
    if isinstance(layer, keras.layers.Conv2DTranspose | keras.layers.Conv1DTranspose):
        raise ValueError(
            f"`model`: transposed convolution {layer.name!r} is not supported by count_macs."
        )
    if isinstance(layer, _CONV):
        # kernel (*kernel_size, C_in / groups, C_out): every output element costs the volume.
        return per_sample * _prod(layer.kernel.shape[:-1])
    if isinstance(layer, keras.layers.Dense):
        return per_sample * int(layer.kernel.shape[0])
    if isinstance(layer, keras.layers.BatchNormalization):
        return per_sample if include_batchnorm else 0
    return 0


def _attention_products(layer, input_shapes) -> int:
    query, value, key = input_shapes
    key = value if key is None else key
    rank = len(query)
    # Keras resolves the default (None) to every axis between batch and features once built.
    axes = layer.attention_axes
    axes = range(1, rank - 1) if axes is None else [a % rank for a in axes]
    t_q, t_k = _prod(query[a] for a in axes), _prod(key[a] for a in axes)
    # Any other non-batch, non-feature axis of the query is a batch of its own attentions.
    groups = _prod(query[a] for a in range(1, rank - 1) if a not in axes)
    value_dim = layer.value_dim or layer.key_dim
    return layer.num_heads * groups * t_q * t_k * (int(layer.key_dim) + int(value_dim))


def _mha_input_shapes(args, kwargs) -> tuple:
    # MultiHeadAttention.call(query, value, key=None, ...), positionally or by keyword.
    names = ("query", "value", "key")
    found = [args[i] if i < len(args) else kwargs.get(n) for i, n in enumerate(names)]
    return tuple(None if t is None else tuple(t.shape) for t in found)


_COUNTED = (
    keras.layers.MultiHeadAttention,
    keras.layers.EinsumDense,
    keras.layers.SeparableConv2D,
    keras.layers.DepthwiseConv2D,
    *_CONV,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv1DTranspose,
    keras.layers.Dense,
    keras.layers.BatchNormalization,
)


@contextlib.contextmanager
def _recording(layers, include_batchnorm: bool, counter: list):
    """Temporarily wraps ``call`` of the counted layers so every call adds its MACs."""
    wrapped = []
    for layer in layers:
        if not isinstance(layer, _COUNTED) or "call" in layer.__dict__:
            continue
        original = layer.call

        def call(*args, _layer=layer, _original=original, **kwargs):
            out = _original(*args, **kwargs)
            first = out[0] if isinstance(out, (tuple, list)) else out  # (output, scores)
            shapes = None
            if isinstance(_layer, keras.layers.MultiHeadAttention):
                shapes = _mha_input_shapes(args, kwargs)
            counter[0] += layer_macs(_layer, tuple(first.shape), include_batchnorm, shapes)
            return out

        object.__setattr__(layer, "call", call)
        wrapped.append(layer)
    try:
        yield
    finally:
        for layer in wrapped:
            del layer.__dict__["call"]


def _macs_of(fn, layer_owner, x, include_batchnorm):
    counter = [0]
    layers = list(iter_layers(layer_owner))
    with _recording(layers, include_batchnorm, counter):
        out = fn(x)
    return counter[0], out


@dataclass(frozen=True)
class MacReport:
    """MACs per sample of a multi-exit model's early-exit paths and of its plain backbone.

    Attributes:
        backbone: the plain backbone (images to final logits, no exit heads): the baseline.
        segments: backbone MACs between consecutive exits (``sum(segments) == backbone``).
        heads: MACs of each shallow exit head (``K - 1`` values).
        exits: cumulative MACs spent to answer at exit ``i`` (``K`` values): segments ``1..i``
            plus the heads of exits ``1..i`` (the earlier heads ran and were not confident).
        ensemble: MACs spent when no exit is confident (every segment and head ran).
        include_batchnorm: whether batch normalisation was counted.
    """

    backbone: int
    segments: tuple[int, ...]
    heads: tuple[int, ...]
    exits: tuple[int, ...]
    ensemble: int
    include_batchnorm: bool = False

    @property
    def path_macs(self) -> np.ndarray:
        """``K + 1`` costs: answering at exit ``1..K``, then by the ensemble."""
        return np.asarray([*self.exits, self.ensemble], dtype="float64")

    def average(self, shares: Sequence[float]) -> float:
        """Average MACs per sample for the share of samples answered at each exit and by the
        ensemble (``K + 1`` non-negative values summing to 1)."""
        shares = np.asarray(shares, dtype="float64")
        if shares.shape != (len(self.exits) + 1,) or np.any(shares < 0):
            raise ValueError(
                f"`shares` must be {len(self.exits) + 1} non-negative values (one per exit, "
                f"then the ensemble), got {shares.tolist()!r}."
            )
        if not np.isclose(shares.sum(), 1.0, atol=1e-6):
            raise ValueError(f"`shares` must sum to 1, got {shares.tolist()!r}.")
        return float(shares @ self.path_macs)

    def acceleration(self, shares: Sequence[float]) -> float:
        """``backbone MACs / average MACs spent`` (TPAMI's acceleration ratio)."""
        return self.backbone / self.average(shares)


def count_macs(
    model: keras.Model,
    *,
    include_batchnorm: bool = False,
    input_shape: Sequence[int] | None = None,
) -> MacReport:
    """Counts MACs per sample analytically from the layers (see the module docstring).

    For a multi-exit model (`keras_sd.MultiExitDistiller`) the report has every exit path and the
    plain backbone; for any other model (a plain backbone or classifier) ``backbone`` is the
    whole model and it has a single "exit" with no heads.

    Args:
        model: a `keras_sd.MultiExitDistiller` or any Keras model.
        include_batchnorm: also count batch normalisation (one MAC per output element).
        input_shape: the per-sample input shape, when the model's own is not fully defined.

    Returns:
        A `MacReport`.

    Reference: Zhang, Bao & Ma, "Self-Distillation: Towards Efficient and Compact Neural
    Networks", TPAMI, section 4.7.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model, got {type(model).__name__}.")
    validation.boolean(include_batchnorm, "include_batchnorm")
    is_multi_exit = isinstance(model, MultiExitDistiller)
    if input_shape is None:
        source = model.backbone if is_multi_exit else model
        try:
            input_shape = tuple(source.inputs[0].shape[1:])
        except (AttributeError, IndexError, TypeError, ValueError):
            raise ValueError(
                "`input_shape` is needed: the model has no known input shape."
            ) from None
    input_shape = tuple(input_shape)
    if not input_shape or any(d is None or int(d) < 1 for d in input_shape):
        raise ValueError(
            f"`input_shape` must be fully defined positive sizes (per sample), got {input_shape}."
        )
    x = np.zeros((1, *input_shape), dtype="float32")
    if not is_multi_exit:
        total, _ = _macs_of(lambda v: model(v, training=False), model, x, include_batchnorm)
        return MacReport(total, (total,), (), (total,), total, include_batchnorm)

    backbone, _ = _macs_of(
        lambda v: model.backbone(v, training=False), model.backbone, x, include_batchnorm
    )
    segments, heads = [], []
    h = x
    for i, segment in enumerate(model.exit_graph.segments()):
        macs, h = _macs_of(lambda v, s=segment: s(v, training=False), segment, h, include_batchnorm)
        segments.append(macs)
        if i < len(model.exit_heads):
            head = model.exit_heads[i]
            macs, _ = _macs_of(lambda v, m=head: m(v, training=False), head, h, include_batchnorm)
            heads.append(macs)
    exits = []
    for i in range(len(segments)):
        exits.append(sum(segments[: i + 1]) + sum(heads[: i + 1]))
    return MacReport(
        backbone=backbone,
        segments=tuple(segments),
        heads=tuple(heads),
        exits=tuple(exits),
        ensemble=sum(segments) + sum(heads),
        include_batchnorm=include_batchnorm,
    )
