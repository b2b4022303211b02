"""Building blocks shared by the backbones: layers with the project's defaults, argument
checks, the stochastic-depth schedule and the dict-output head."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras

from keras_sd import validation
from keras_sd.layers.stochastic_depth import StochasticDepth

KERNEL_INIT = "he_normal"
# PyTorch-style BatchNorm statistics (momentum 0.1 there == 0.9 here), as the papers' code.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
DROP_MODES = ("per_sample", "per_batch")


def conv(
    filters: int,
    kernel_size: int,
    strides: int = 1,
    name: str | None = None,
    groups: int = 1,
    use_bias: bool = False,
) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        groups=groups,
        use_bias=use_bias,
        kernel_initializer=KERNEL_INIT,
        name=name,
    )


def bn(name: str | None = None) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def relu(name: str | None = None) -> keras.layers.ReLU:
    return keras.layers.ReLU(name=name)


def final_bn_relu(x: Any) -> Any:
    """The final BN-ReLU of a pre-activation network (``final_bn``, ``final_relu``)."""
    return relu("final_relu")(bn("final_bn")(x))


def check_num_classes(num_classes: Any) -> int:
    return validation.positive_int(num_classes, "num_classes")


def check_input_shape(input_shape: Any) -> tuple[int, int, int]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
    ):
        raise ValueError(
            f"input_shape must be (height, width, channels) of positive ints, got {input_shape!r}"
        )
    return shape  # type: ignore[return-value]


def check_variant(variant: Any) -> str:
    if variant not in ("cifar", "imagenet"):
        raise ValueError(f"variant must be 'cifar' or 'imagenet', got {variant!r}")
    return variant


def default_input_shape(input_shape: Any, variant: str) -> tuple[int, int, int]:
    if input_shape is None:
        input_shape = (32, 32, 3) if variant == "cifar" else (224, 224, 3)
    return check_input_shape(input_shape)


class DepthSchedule:
    """Hands out the survival probability (and a seed) for each residual block in order.

    Linear decay ``p_l = 1 - l / L * (1 - final_survival)`` for blocks ``l = 1..L``.

    Reference: Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.
    """

    def __init__(
        self,
        stochastic_depth: float | None,
        num_blocks: int,
        drop_mode: str = "per_batch",
        seed: int | None = None,
    ) -> None:
        validation.one_of(drop_mode, "drop_mode", DROP_MODES)
        # The last block's survival probability; the gates decay linearly to it.
        stochastic_depth = validation.survival_probability(
            stochastic_depth, "stochastic_depth", allow_none=True
        )
        seed = validation.integer(seed, "seed", allow_none=True)
        self.final = stochastic_depth
        self.num_blocks = num_blocks
        self.drop_mode = drop_mode
        self.seed = seed
        self._next = 0

    @property
    def enabled(self) -> bool:
        return self.final is not None

    def next_block(self) -> tuple[float | None, int | None]:
        """Survival probability and seed of the next block (``(None, None)`` when disabled)."""
        self._next += 1
        if self._next > self.num_blocks:
            raise RuntimeError("more residual blocks built than counted")  # programming error
        if self.final is None:
            return None, None
        p = 1.0 - self._next / self.num_blocks * (1.0 - self.final)
        seed = None if self.seed is None else self.seed + self._next
        return p, seed


def survival_probabilities(final_survival: float, num_blocks: int) -> list[float]:
    """Linear-decay survival probabilities ``p_1..p_L`` (Huang et al. 2016)."""
    schedule = DepthSchedule(final_survival, num_blocks)
    return [schedule.next_block()[0] for _ in range(num_blocks)]  # type: ignore[misc]


def residual(
    x: Any,
    shortcut: Any,
    branch_layers: Sequence[keras.layers.Layer],
    schedule: DepthSchedule,
    name: str,
) -> Any:
    """``shortcut + branch(x)``, through a `StochasticDepth` gate when the schedule says so."""
    p, seed = schedule.next_block()
    if p is None:
        y = x
        for layer in branch_layers:
            y = layer(y)
        return keras.layers.Add(name=f"{name}_add")([shortcut, y])
    branch = keras.Sequential(list(branch_layers), name=f"{name}_branch")
    gate = StochasticDepth(branch, p, mode=schedule.drop_mode, seed=seed, name=f"{name}_sd")
    return gate([x, shortcut])


def block_stages(
    x: Any,
    *,
    in_filters: int,
    widths: Sequence[int],
    blocks: Sequence[int],
    schedule: DepthSchedule,
    block: Callable[..., Any],
) -> list[Any]:
    """The stage layout every ResNet here shares; returns the stage outputs.

    Stage ``s`` has ``blocks[s]`` blocks of output width ``widths[s]``, the first of them with
    stride 2 except in the first stage. Each is ``block(x, in_filters, filters, stride, schedule,
    name)`` with ``name`` ``"stage{s}_block{b}"`` (1-based) and ``in_filters`` the previous
    block's width (``in_filters`` for the first).
    """
    stages = []
    for s, (filters, n) in enumerate(zip(widths, blocks)):
        for b in range(n):
            stride = 2 if (s > 0 and b == 0) else 1
            x = block(x, in_filters, filters, stride, schedule, f"stage{s + 1}_block{b + 1}")
            in_filters = filters
        stages.append(x)
    return stages


def head_and_model(inputs: Any, stages: list[Any], num_classes: int, name: str) -> keras.Model:
    """Global average pool + dense classifier; returns the contract's dict-output model."""
    features = keras.layers.GlobalAveragePooling2D(name="avg_pool")(stages[-1])
    logits = keras.layers.Dense(num_classes, kernel_initializer=KERNEL_INIT, name="logits")(
        features
    )
    return keras.Model(
        inputs, {"stages": list(stages), "features": features, "logits": logits}, name=name
    )


def image_input(input_shape: tuple[int, int, int]) -> Any:
    return keras.Input(shape=input_shape, dtype="float32", name="image")
