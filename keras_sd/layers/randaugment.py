"""RandAugment as DeiT trains with it (timm's ``rand-m9-mstd0.5-inc1``), per sample, seeded.

Cubuk et al., "RandAugment: Practical automated data augmentation with a reduced search space",
NeurIPS 2020, applies ``N`` operations drawn uniformly (with replacement) at one magnitude ``M``.
DeiT (Touvron et al., "Training data-efficient image transformers & distillation through
attention", ICML 2021, Table 9: "Rand-m9-mstd0.5") uses timm's variant of it, written here:

- ``num_ops = 2`` operations per image, each drawn uniformly from the 15 of `OPERATIONS` (timm's
  ``_RAND_INCREASING_TRANSFORMS``: severity grows with the magnitude for every operation);
- each operation applies with probability ``prob = 0.5`` (timm's ``AugmentOp`` default);
- its magnitude is ``clip(M + mstd * N(0, 1), 0, 10)`` with ``M = 9``, ``mstd = 0.5``, on
  timm's scale of 10 levels (``_LEVEL_DENOM``), drawn afresh for each operation and image;
- the parameter at magnitude ``m`` (``r = m / 10``), with a random sign where marked:

=================================  ==============================================  ======
operation                          parameter                                       sign
=================================  ==============================================  ======
ShearX/Y                           shear 0.3 r                                     +-
TranslateX/Y                       0.45 r of the image width / height, in pixels   +-
Rotate                             30 r degrees                                    +-
Color, Contrast, Brightness,       enhance factor max(0.1, 1 +- 0.9 r)             +-
Sharpness
Posterize                          keep 4 - int(4 r) bits (4 .. 0)                 --
Solarize                           invert pixels >= 256 - int(256 r)               --
SolarizeAdd                        add int(110 r) to pixels < 128 (clip 255)       --
AutoContrast, Equalize, Invert     no magnitude                                    --
=================================  ==============================================  ======

Why not ``keras.layers.RandAugment`` (Keras 3.15): it draws ONE pair of operations per call (its
``layer_idxes`` has shape ``[num_ops]``), so every image of a batch gets the same operations,
and its magnitudes are uniform up to ``factor``, not a fixed M; its randomness comes from a
stateful ``SeedGenerator``, which a ``tf.data`` map cannot replay from a per-batch stateless
seed. Mapping it over single images would fix the first point only. The operations themselves
are those of `keras_sd.layers.autoaugment` (PIL's definitions, per image, vectorised), so the
pipeline's rule holds: every draw is per sample and stateless, one seed pair gives the same
batch every time.

Differences from timm, all small: geometric operations fill with grey 128 (`autoaugment.FILL`;
timm fills with the ImageNet mean colour, 124/116/104) and sample shear bilinearly, translate and
rotate nearest (timm picks bilinear or bicubic at random per operation).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_sd import validation
from keras_sd.layers import augment as aug
from keras_sd.layers import autoaugment as aa

# timm's _RAND_INCREASING_TRANSFORMS, in its order.
OPERATIONS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
)
LEVELS = 10.0  # timm's _LEVEL_DENOM: magnitudes run 0..10
NUM_OPS, MAGNITUDE, MAGNITUDE_STD, PROB = 2, 9.0, 0.5, 0.5  # DeiT's rand-m9-mstd0.5(-inc1)
SOLARIZE_ADD_THRESHOLD = 128.0


def parameter(op: str, magnitude, sign, height: int | None = None, width: int | None = None):
    """Per-image parameter of ``op`` at ``magnitude`` (0..10, float [B]) with ``sign`` (+-1 [B]).

    See the module docstring's table; ``height`` / ``width`` (pixels) size the translations.
    """
    validation.one_of(op, "op", OPERATIONS)
    r = tf.cast(magnitude, tf.float32) / LEVELS
    s = tf.cast(sign, tf.float32)
    if op in ("ShearX", "ShearY"):
        return 0.3 * r * s
    if op == "TranslateX":
        return 0.45 * r * float(width) * s
    if op == "TranslateY":
        return 0.45 * r * float(height) * s
    if op == "Rotate":
        return 30.0 * r * s
    if op in ("Color", "Contrast", "Brightness", "Sharpness"):
        return tf.maximum(0.1, 1.0 + 0.9 * r * s)
    if op == "Posterize":
        return 4.0 - tf.floor(4.0 * r)
    if op == "Solarize":
        return 256.0 - tf.floor(256.0 * r)
    if op == "SolarizeAdd":
        return tf.floor(110.0 * r)
    return tf.zeros_like(r)


def posterize(images, bits):
    """PIL ``ImageOps.posterize``: keep the ``bits`` (0..8, per image) high bits of each value.

    Written here rather than through `autoaugment.posterize` (``keras.layers.RandomPosterization``
    shifts a uint8 by ``8 - bits``), because RandAugment reaches 0 bits (a shift by 8), where PIL
    gives 0; ``floor(x / 2**(8 - bits)) * 2**(8 - bits)`` is PIL's mask for every ``bits``.
    """
    step = tf.pow(2.0, 8.0 - aa._per_image(bits))
    return tf.floor(tf.cast(images, tf.float32) / step) * step


def solarize_add(images, addition, threshold: float = SOLARIZE_ADD_THRESHOLD):
    """timm's ``solarize_add``: ``min(x + addition, 255)`` for pixels below ``threshold``."""
    x = tf.cast(images, tf.float32)
    return tf.where(x < threshold, tf.minimum(x + aa._per_image(addition), 255.0), x)


def _apply(images, op: str, value, mask):
    if op in ("Posterize", "SolarizeAdd"):  # elementwise: the whole batch, then keep the mask
        fn = posterize if op == "Posterize" else solarize_add
        return tf.where(mask[:, None, None, None], fn(images, value), images)
    return aa.apply_operation(images, op, value, mask)


def draws(
    batch_size,
    seed,
    num_ops: int = NUM_OPS,
    magnitude: float = MAGNITUDE,
    magnitude_std: float = MAGNITUDE_STD,
    prob: float = PROB,
):
    """Per-image draws for ``num_ops`` steps: operation index [N, B] (into `OPERATIONS`),
    apply flags [N, B], magnitudes [N, B] (clipped to 0..10) and signs [N, B] (+-1)."""
    s_op, s_prob, s_mag, s_sign = aug._split_seed(seed, 4)
    shape = [num_ops, batch_size]
    index = tf.random.stateless_uniform(
        shape, seed=s_op, minval=0, maxval=len(OPERATIONS), dtype=tf.int32
    )
    apply = tf.random.stateless_uniform(shape, seed=s_prob) < prob
    noise = tf.random.stateless_normal(shape, seed=s_mag)
    mags = tf.clip_by_value(magnitude + magnitude_std * noise, 0.0, LEVELS)
    signs = tf.where(tf.random.stateless_uniform(shape, seed=s_sign) < 0.5, -1.0, 1.0)
    return index, apply, mags, signs


def _check(num_ops, magnitude, magnitude_std, prob):
    validation.integer(num_ops, "num_ops", minimum=0)
    if not 0 <= magnitude <= LEVELS:
        raise ValueError(f"magnitude must be in [0, {LEVELS:g}], got magnitude={magnitude!r}")
    if not magnitude_std >= 0:
        raise ValueError(f"magnitude_std must be >= 0, got magnitude_std={magnitude_std!r}")
    if not 0 <= prob <= 1:
        raise ValueError(f"prob must be in [0, 1], got prob={prob!r}")


def randaugment(
    images,
    seed,
    num_ops: int = NUM_OPS,
    magnitude: float = MAGNITUDE,
    magnitude_std: float = MAGNITUDE_STD,
    prob: float = PROB,
):
    """RandAugment on a batch, per sample (see the module docstring).

    Args:
        images: [B, H, W, C] pixel values in [0, 255] (any real dtype).
        seed: Stateless seed pair (shape [2] int).
        num_ops: Operations per image (N).
        magnitude: Mean magnitude M on the 0..10 scale.
        magnitude_std: Standard deviation of each draw's magnitude (0: always M).
        prob: Probability that each drawn operation is applied.

    Returns:
        float32 images of the same shape, integer values in [0, 255].
    """
    _check(num_ops, magnitude, magnitude_std, prob)
    images = tf.cast(images, tf.float32)
    height, width = images.shape[1], images.shape[2]
    index, apply, mags, signs = draws(
        tf.shape(images)[0], seed, num_ops, magnitude, magnitude_std, prob
    )
    for step in range(num_ops):
        for k, op in enumerate(OPERATIONS):
            mask = apply[step] & tf.equal(index[step], k)
            value = parameter(op, mags[step], signs[step], height, width)
            images = _apply(images, op, value, mask)
    return images


def randaugment_cifar(images, seed, padding: int = 4, **kwargs):
    """Pad by ``padding`` with grey 128, random-crop back, flip with probability 0.5, then
    `randaugment` (``**kwargs``), on pixel images in [0, 255]; normalise afterwards.

    DeiT's chain is random-resized crop + flip, RandAugment, normalise, random erasing; on 32x32
    CIFAR images the crop is the usual pad-4 crop, and random erasing is not applied.
    """
    crop_seed, policy_seed = aug._split_seed(seed, 2)
    x = tf.cast(images, tf.float32)
    x = aug.pad_crop_flip(x - aa.FILL, crop_seed, padding=padding, flip=True) + aa.FILL
    return randaugment(x, policy_seed, **kwargs)


@keras.saving.register_keras_serializable(package="keras_sd")
class CifarRandAugment(aa.PixelDistortion):
    """``randaugment_cifar`` as a per-sample Keras layer (identity when not training).

    Args:
        mean: Per-channel mean on the [0, 1] scale the inputs were normalised with, or None for
            inputs that are pixel values in [0, 255]. With ``mean`` and ``std`` the layer maps
            its (normalised) inputs back to rounded pixel values, distorts them and normalises
            again, so a two-view model can apply it to normalised batches inside its step.
        std: Per-channel std on the [0, 1] scale (with ``mean``).
        padding: Crop padding.
        num_ops, magnitude, magnitude_std, prob: As `randaugment`.
        seed: Seed of the layer's ``keras.random.SeedGenerator``; None for a random seed.
        **kwargs: Base ``keras.layers.Layer`` arguments.

    Reference: Cubuk et al., NeurIPS 2020; DeiT's setting, Touvron et al., ICML 2021.
    """

    def __init__(
        self,
        mean=None,
        std=None,
        padding: int = 4,
        num_ops: int = NUM_OPS,
        magnitude: float = MAGNITUDE,
        magnitude_std: float = MAGNITUDE_STD,
        prob: float = PROB,
        seed: int | None = None,
        **kwargs,
    ):
        _check(num_ops, magnitude, magnitude_std, prob)
        super().__init__(mean=mean, std=std, padding=padding, seed=seed, **kwargs)
        self.num_ops = num_ops
        self.magnitude, self.magnitude_std, self.prob = (
            float(magnitude),
            float(magnitude_std),
            float(prob),
        )

    def _distort_pixels(self, x, seed):
        return randaugment_cifar(
            x,
            seed,
            self.padding,
            num_ops=self.num_ops,
            magnitude=self.magnitude,
            magnitude_std=self.magnitude_std,
            prob=self.prob,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_ops": self.num_ops,
                "magnitude": self.magnitude,
                "magnitude_std": self.magnitude_std,
                "prob": self.prob,
            }
        )
        return config
