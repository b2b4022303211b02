"""AutoAugment's CIFAR-10 policy and Cutout, per sample, vectorised over a batch.

The training distortion of the TPAMI self-distillation paper (Zhang, Bao & Ma,
"Self-Distillation: Towards Efficient and Compact Neural Networks", IEEE TPAMI), whose
released code trains CIFAR with: random crop 32 with a 4-pixel border filled with grey 128 and a
horizontal flip, then the CIFAR-10 AutoAugment policy, then ``ToTensor``, then Cutout (one
16x16 hole), then the per-channel normalisation. ``autoaugment_cifar`` is that chain on a batch
of pixel images in [0, 255] (before normalisation):

- pad-crop-flip: the border that the crop brings in is 128 (grey), as in the reference;
- the policy of Cubuk et al., "AutoAugment: Learning Augmentation Strategies from Data",
  CVPR 2019 (its 25 CIFAR-10 sub-policies, ``CIFAR10_POLICY``): every image draws its own
  sub-policy uniformly, then applies each of its two (operation, probability, magnitude) steps
  with that probability; geometric operations fill with grey 128 too;
- Cutout of DeVries & Taylor, "Improved Regularization of Convolutional Neural Networks with
  Cutout", arXiv 1708.04552, 2017: one ``length x length`` square, centre uniform over the
  image, clipped at the borders, set to 0 -- black, since the reference zeroes the [0, 1]
  tensor before ``Normalize`` (after normalisation the hole is ``-mean / std``).

Every image has its own sub-policy, coin flips, signs, crop, flip and hole; all are drawn with
stateless ops from one seed pair, so a batch and a seed give the same images every time.

Magnitudes 0..9 map to parameters as in the CIFAR10Policy implementation the reference code
uses (``np.linspace`` over 10 levels, which is also torchvision's ``AutoAugment``):

=============  ===============================================  =======================
operation      parameter at level m (0..9)                      sign
=============  ===============================================  =======================
ShearX/Y       shear 0.3 * m / 9                                random +-
TranslateX/Y   (150 / 331) * m / 9 of the image width / height  random +-
Rotate         30 * m / 9 degrees                               random +- (see below)
Color,         enhance factor 1 + 0.9 * m / 9 * s (0.1 .. 1.9)  random s = +-1
Contrast,
Brightness,
Sharpness
Posterize      keep round(8 - 4 * m / 9) bits (8, 8, 7, ... 4)  --
Solarize       invert pixels >= 256 - 256 * m / 9               --
AutoContrast,  no magnitude                                     --
Equalize,
Invert
=============  ===============================================  =======================

The enhance operations follow the common "1 + magnitude * random sign" form (factor 1 +- 0.1 m,
so level 0 is the identity), not the AutoAugment paper's official TensorFlow code, which maps
level m to 0.1 + 1.8 * m / 10 with no sign. Rotate takes a random sign as the paper's
search space ([-30, 30] degrees) and torchvision do; the CIFAR10Policy file the reference code
copies rotates counter-clockwise only.

Operations act on float32 pixel values and round or truncate to integers after each one, as the
reference's uint8 PIL images do, with PIL's definitions: enhance = ``Image.blend(degenerate,
image, factor)`` truncated, Color's degenerate is the ITU-R 601-2 luma, Contrast's is the
rounded mean luma, Sharpness's is PIL's SMOOTH filter with the 1-pixel border kept,
AutoContrast stretches each channel's [min, max] to [0, 255] (as PIL computes it), Equalize is PIL's
per-channel ``ImageOps.equalize``. Shear samples bilinearly (PIL uses bicubic; Keras' affine
transform offers nearest and bilinear only), translate and rotate use nearest (PIL's default).

Keras layers used: ``keras.layers.Solarization``, ``keras.layers.RandomPosterization`` and
``keras.layers.RandomInvert`` through their ``transform_images`` with per-image parameters
that we draw (their own random draws give random magnitudes, not the policy's fixed ones), and
``keras.ops.image.affine_transform`` with one matrix per image for the geometric operations.
Why the others are written here is said at each operation.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from keras_sd import validation
from keras_sd.layers import augment as aug

FILL = 128.0  # grey: the pad-crop border and the geometric operations' fill, as the reference
CUTOUT_LENGTH = 16

OPERATIONS = (
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Color",
    "Posterize",
    "Solarize",
    "Contrast",
    "Sharpness",
    "Brightness",
    "AutoContrast",
    "Equalize",
    "Invert",
)
SIGNED = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate") + (
    "Color",
    "Contrast",
    "Sharpness",
    "Brightness",
)

# Cubuk et al., CVPR 2019, the CIFAR-10 policy (found on reduced CIFAR-10): 25 sub-policies,
# each two (operation, probability, magnitude level 0..9) steps. Operations without a
# magnitude carry the level the paper lists; it is ignored.
CIFAR10_POLICY = (
    (("Invert", 0.1, 7), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, 8), ("Equalize", 0.9, 2)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, 5), ("Equalize", 0.5, 1)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, 7), ("AutoContrast", 0.4, 8)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, 3)),
    (("Equalize", 0.2, 0), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.2, 8), ("Equalize", 0.6, 4)),
    (("Color", 0.9, 9), ("Equalize", 0.6, 6)),
    (("AutoContrast", 0.8, 4), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, 3)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, 2), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, 8), ("Invert", 0.1, 3)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 1)),
)

POSTERIZE_BITS = tuple(int(v) for v in np.round(np.linspace(8, 4, 10)))  # 8 8 7 7 6 6 5 5 4 4


def magnitude(op: str, level, size: int | None = None):
    """Unsigned parameter of ``op`` at magnitude ``level`` (0..9; a Python number or a tensor).

    ``size`` is the image width (TranslateX) or height (TranslateY) in pixels.
    """
    validation.one_of(op, "op", OPERATIONS)
    m = tf.cast(level, tf.float32)
    if op in ("ShearX", "ShearY"):
        return 0.3 * m / 9.0
    if op in ("TranslateX", "TranslateY"):
        return (150.0 / 331.0) * m / 9.0 * float(size)
    if op == "Rotate":
        return 30.0 * m / 9.0
    if op in ("Color", "Contrast", "Sharpness", "Brightness"):
        return 0.9 * m / 9.0
    if op == "Posterize":
        return tf.gather(tf.constant(POSTERIZE_BITS, tf.float32), tf.cast(level, tf.int32))
    if op == "Solarize":
        return 256.0 - 256.0 * m / 9.0
    return tf.zeros_like(m)


# ------------------------------------------------------------------------ Keras layers used
_KERAS_LAYERS: dict = {}


def _keras_layer(name: str):
    # Built once, used only through transform_images (no state, no random draws of their own).
    if name not in _KERAS_LAYERS:
        _KERAS_LAYERS[name] = {
            "solarize": lambda: keras.layers.Solarization(value_range=(0, 255)),
            "posterize": lambda: keras.layers.RandomPosterization(factor=8, value_range=(0, 255)),
            "invert": lambda: keras.layers.RandomInvert(value_range=(0, 255)),
        }[name]()
    return _KERAS_LAYERS[name]


def _per_image(v: tf.Tensor) -> tf.Tensor:
    return tf.reshape(tf.cast(v, tf.float32), [-1, 1, 1, 1])


# ----------------------------------------------------------------------- geometric operations
# keras.layers.RandomShear / RandomTranslation / RandomRotation draw a uniform random magnitude
# per image; AutoAugment needs a fixed magnitude (different per sub-policy, so per image) with a
# random sign, and grey fill. We build one affine matrix per image for the public
# keras.ops.image.affine_transform instead. Matrices map an output pixel (x, y) to the input
# point (a0 x + a1 y + a2, b0 x + b1 y + b2) in pixel-index coordinates; PIL's transforms use
# pixel-centre coordinates (index + 0.5), hence the half-pixel terms.


def _affine(images, rows, interpolation):
    transform = tf.stack(rows + [tf.zeros_like(rows[0])] * 2, axis=1)
    out = keras.ops.image.affine_transform(
        images, transform, interpolation=interpolation, fill_mode="constant", fill_value=FILL
    )
    return tf.round(out) if interpolation == "bilinear" else out


def shear_x(images, shear):
    """PIL ``transform(AFFINE, (1, s, 0, 0, 1, 0))``: output (x, y) reads input (x + s y, y)."""
    s = tf.cast(shear, tf.float32)
    one, zero = tf.ones_like(s), tf.zeros_like(s)
    return _affine(images, [one, s, 0.5 * s, zero, one, zero], "bilinear")


def shear_y(images, shear):
    """PIL ``transform(AFFINE, (1, 0, 0, s, 1, 0))``: output (x, y) reads input (x, y + s x)."""
    s = tf.cast(shear, tf.float32)
    one, zero = tf.ones_like(s), tf.zeros_like(s)
    return _affine(images, [one, zero, zero, s, one, 0.5 * s], "bilinear")


def translate(images, dx, dy):
    """Output (x, y) reads input (x + dx, y + dy) (nearest), grey outside: PIL's translate."""
    dx, dy = tf.cast(dx, tf.float32), tf.cast(dy, tf.float32)
    one, zero = tf.ones_like(dx), tf.zeros_like(dx)
    return _affine(images, [one, zero, dx, zero, one, dy], "nearest")


def rotate(images, degrees):
    """PIL ``Image.rotate(degrees)``: counter-clockwise about the centre, nearest, grey fill."""
    shape = tf.shape(images)
    cy = (tf.cast(shape[1], tf.float32) - 1.0) / 2.0
    cx = (tf.cast(shape[2], tf.float32) - 1.0) / 2.0
    theta = -tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    c, s = tf.cos(theta), tf.sin(theta)
    return _affine(images, [c, s, cx - c * cx - s * cy, -s, c, cy + s * cx - c * cy], "nearest")


# ------------------------------------------------------------------------ colour operations
def _luma(images):
    """PIL's ``convert("L")``: (19595 R + 38470 G + 7471 B + 2**15) >> 16, shape [B, H, W, 1]."""
    if images.shape[-1] == 1:
        return images
    x = tf.cast(images, tf.int32)
    weights = tf.constant([19595, 38470, 7471], tf.int32)
    luma = tf.bitwise.right_shift(tf.reduce_sum(x * weights, -1, keepdims=True) + 32768, 16)
    return tf.cast(luma, tf.float32)


def _blend(degenerate, images, factor):
    """PIL ``Image.blend(degenerate, images, factor)``: clipped to [0, 255] and truncated."""
    out = degenerate + _per_image(factor) * (images - degenerate)
    return tf.floor(tf.clip_by_value(out, 0.0, 255.0))


def color(images, factor):
    """PIL ``ImageEnhance.Color``: blend with the grey (luma) image.

    ``keras.layers.RandomColorDegeneration`` does this blend per image, but with unrounded
    0.2989 / 0.5870 / 0.1140 weights; PIL's integer luma is used here to match the reference.
    """
    return _blend(tf.broadcast_to(_luma(images), tf.shape(images)), images, factor)


def contrast(images, factor):
    """PIL ``ImageEnhance.Contrast``: blend with a flat image at the rounded mean luma.

    ``keras.layers.RandomContrast`` blends with each channel's own mean instead.
    """
    mean = tf.floor(tf.reduce_mean(_luma(images), axis=[1, 2, 3], keepdims=True) + 0.5)
    return _blend(tf.broadcast_to(mean, tf.shape(images)), images, factor)


def brightness(images, factor):
    """PIL ``ImageEnhance.Brightness``: blend with black, i.e. scale by ``factor``.

    ``keras.layers.RandomBrightness`` adds an offset instead of scaling.
    """
    return _blend(tf.zeros_like(images), images, factor)


def sharpness(images, factor):
    """PIL ``ImageEnhance.Sharpness``: blend with the SMOOTH-filtered image.

    SMOOTH is [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, rounded; PIL keeps the 1-pixel border of
    the original. ``keras.layers.RandomSharpness`` zero-pads that border instead, which darkens
    it, so the filter is applied here.
    """
    channels = images.shape[-1]
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
    smooth = tf.round(tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], "VALID"))
    change = tf.pad(smooth - images[:, 1:-1, 1:-1, :], [[0, 0], [1, 1], [1, 1], [0, 0]])
    return _blend(images + change, images, factor)


def posterize(images, bits):
    """Keep the ``bits`` high bits of every 8-bit value (``keras.layers.RandomPosterization``)."""
    shift = tf.cast(8 - tf.cast(bits, tf.int32), tf.uint8)
    return _keras_layer("posterize").transform_images(images, {"shift_factor": shift})


def solarize(images, threshold):
    """Invert values >= ``threshold`` (PIL), by ``keras.layers.Solarization``."""
    t = _per_image(threshold)
    return _keras_layer("solarize").transform_images(
        images, {"thresholds": t, "additions": tf.zeros_like(t)}
    )


def invert(images, mask=None):
    """``255 - x`` for the images whose ``mask`` entry is True (``keras.layers.RandomInvert``)."""
    if mask is None:
        mask = tf.ones(tf.shape(images)[:1], tf.bool)
    return _keras_layer("invert").transform_images(images, {"apply_inversion": mask})


def autocontrast(images):
    """PIL ``ImageOps.autocontrast``: each channel's [lo, hi] to [0, 255], truncated.

    PIL's lookup table is ``int(x * scale + offset)`` with ``scale = 255 / (hi - lo)`` and
    ``offset = -lo * scale`` in double precision, which puts ``hi`` at 254 for some (lo, hi);
    that is reproduced exactly here. ``keras.layers.AutoContrast`` is per image and channel too
    but computes in float32 without truncation, so its integers differ from the reference's.
    Flat channels are unchanged.
    """
    x = tf.cast(images, tf.float64)
    lo = tf.reduce_min(x, axis=[1, 2], keepdims=True)
    hi = tf.reduce_max(x, axis=[1, 2], keepdims=True)
    ok = hi > lo
    scale = 255.0 / tf.where(ok, hi - lo, 1.0)
    out = tf.clip_by_value(tf.floor(x * scale + (-lo * scale)), 0.0, 255.0)
    return tf.cast(tf.where(ok, out, x), tf.float32)


def equalize(images):
    """PIL ``ImageOps.equalize`` of each channel of each image.

    ``keras.layers.Equalization`` histograms a channel over the whole batch (and uses another
    formula), so PIL's is written here: with ``h`` the channel's 256-bin histogram and ``step =
    (N - h[last non-empty bin]) // 256``, value ``v`` maps to ``(step // 2 + sum(h[:v])) //
    step`` (at most 255); unchanged when ``step == 0`` or only one bin is non-empty.
    """
    shape = tf.shape(images)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    x = tf.transpose(tf.cast(images, tf.int32), [0, 3, 1, 2])
    flat = tf.reshape(x, [b * c, h * w])
    hist = tf.math.bincount(flat, minlength=256, maxlength=256, axis=-1, dtype=tf.int32)
    nonempty = tf.reduce_sum(tf.cast(hist > 0, tf.int32), axis=1)
    last = 255 - tf.argmax(
        tf.reverse(tf.cast(hist > 0, tf.int32), [1]), axis=1, output_type=tf.int32
    )
    step = (h * w - tf.gather(hist, last, batch_dims=1)) // 256
    keep = (nonempty <= 1) | (step == 0)
    step = tf.maximum(step, 1)[:, None]
    lut = tf.minimum((step // 2 + tf.cumsum(hist, axis=1, exclusive=True)) // step, 255)
    lut = tf.where(keep[:, None], tf.range(256)[None, :], lut)
    out = tf.gather(lut, flat, batch_dims=1)
    out = tf.transpose(tf.reshape(out, [b, c, h, w]), [0, 2, 3, 1])
    return tf.cast(out, images.dtype)


def apply_operation(images, op: str, value, mask=None):
    """``op`` with per-image parameter ``value`` ([B]; signed for signed ops) where ``mask``.

    Args:
        images: float32 [B, H, W, C] pixel values in [0, 255].
        op: One of ``OPERATIONS``.
        value: The operation's parameter per image (shear, pixels, degrees, enhance factor,
            bits, threshold; ignored for AutoContrast, Equalize and Invert).
        mask: bool [B]; images where it is False are returned unchanged (default: all True).
    """
    validation.one_of(op, "op", OPERATIONS)
    images = tf.cast(images, tf.float32)
    if mask is None:
        mask = tf.ones(tf.shape(images)[:1], tf.bool)
    value = tf.broadcast_to(tf.cast(value, tf.float32), tf.shape(images)[:1])
    if op == "Invert":
        return invert(images, mask)
    fn = {
        "ShearX": shear_x,
        "ShearY": shear_y,
        "TranslateX": lambda x, v: translate(x, v, tf.zeros_like(v)),
        "TranslateY": lambda x, v: translate(x, tf.zeros_like(v), v),
        "Rotate": rotate,
        "Color": color,
        "Posterize": posterize,
        "Solarize": solarize,
        "Contrast": contrast,
        "Sharpness": sharpness,
        "Brightness": brightness,
        "AutoContrast": lambda x, v: autocontrast(x),
        "Equalize": lambda x, v: equalize(x),
    }[op]

    # Only the images that take the operation are computed (each image takes one operation per
    # step, so a step costs about one batch of work, not one per operation), then scattered
    # back; nothing runs when no image of the batch takes it.
    def run():
        where = tf.where(mask)
        out = fn(tf.gather_nd(images, where), tf.gather_nd(value, where))
        return tf.tensor_scatter_nd_update(images, where, out)

    return tf.cond(tf.reduce_any(mask), run, lambda: images)


def parameter(op: str, level, sign, height: int | None = None, width: int | None = None):
    """Signed per-image parameter of ``op`` from its level (0..9) and sign (+-1) tensors."""
    size = width if op == "TranslateX" else height
    m = magnitude(op, level, size)
    if op in ("Color", "Contrast", "Sharpness", "Brightness"):
        return 1.0 + m * tf.cast(sign, tf.float32)
    if op in SIGNED:
        return m * tf.cast(sign, tf.float32)
    return m


def policy_draws(batch_size, seed, policy=CIFAR10_POLICY):
    """Per-image draws: sub-policy index [B], apply flags [2, B] and signs [2, B] (+-1)."""
    s_pol, s_prob, s_sign = aug._split_seed(seed, 3)
    index = tf.random.stateless_uniform(
        [batch_size], seed=s_pol, minval=0, maxval=len(policy), dtype=tf.int32
    )
    probs = tf.constant([[step[1] for step in sub] for sub in policy], tf.float32)  # [25, 2]
    coins = tf.random.stateless_uniform([2, batch_size], seed=s_prob)
    apply = coins < tf.transpose(tf.gather(probs, index))  # p = 0 never, p = 1 always
    signs = tf.where(tf.random.stateless_uniform([2, batch_size], seed=s_sign) < 0.5, -1.0, 1.0)
    return index, apply, signs


def autoaugment(images, seed, policy=CIFAR10_POLICY):
    """The AutoAugment policy on a batch, per sample (see the module docstring).

    Args:
        images: [B, H, W, C] pixel values in [0, 255] (any real dtype).
        seed: Stateless seed pair (shape [2] int).
        policy: Sub-policies as ``((op, probability, level), (op, probability, level))``.

    Returns:
        float32 images of the same shape, integer values in [0, 255].
    """
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    height, width = images.shape[1], images.shape[2]
    index, apply, signs = policy_draws(shape[0], seed, policy)
    for step in range(2):
        ops = [sub[step][0] for sub in policy]
        levels = tf.gather(tf.constant([sub[step][2] for sub in policy], tf.int32), index)
        for op in sorted(set(ops)):
            chosen = tf.constant([name == op for name in ops])
            mask = apply[step] & tf.gather(chosen, index)
            value = parameter(op, levels, signs[step], height, width)
            images = apply_operation(images, op, value, mask)
    return images


def cutout(images, seed, length: int = CUTOUT_LENGTH, value: float = 0.0):
    """DeVries & Taylor's Cutout: one ``length`` square per image set to ``value``.

    The centre (cy, cx) is uniform over the pixels; the square covers rows
    ``clip(cy - length // 2, 0, H) .. clip(cy + length // 2, 0, H) - 1`` (and likewise columns),
    so it is clipped at the borders.
    """
    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    y_seed, x_seed = aug._split_seed(seed, 2)
    cy = tf.random.stateless_uniform([b], seed=y_seed, minval=0, maxval=h, dtype=tf.int32)
    cx = tf.random.stateless_uniform([b], seed=x_seed, minval=0, maxval=w, dtype=tf.int32)
    half = length // 2
    rows, cols = tf.range(h)[None, :], tf.range(w)[None, :]
    in_y = (rows >= tf.maximum(cy - half, 0)[:, None]) & (rows < tf.minimum(cy + half, h)[:, None])
    in_x = (cols >= tf.maximum(cx - half, 0)[:, None]) & (cols < tf.minimum(cx + half, w)[:, None])
    hole = in_y[:, :, None, None] & in_x[:, None, :, None]
    return tf.where(hole, tf.cast(value, images.dtype), images)


def autoaugment_cifar(images, seed, padding: int = 4, cutout_length: int = CUTOUT_LENGTH):
    """The reference CIFAR training distortion on pixel images in [0, 255], per sample.

    Pad by ``padding`` with grey 128 and random-crop back, flip left-right with probability
    0.5, AutoAugment's CIFAR-10 policy, then Cutout (0 = black). Normalise afterwards.

    Args:
        images: [B, H, W, C] pixel values in [0, 255].
        seed: Stateless seed pair.
        padding: Crop padding (4 on CIFAR).
        cutout_length: Side of the Cutout square (16 on CIFAR-10); 0 for none.

    Returns:
        float32 images of the same shape in [0, 255].
    """
    crop_seed, policy_seed, cutout_seed = aug._split_seed(seed, 3)
    x = tf.cast(images, tf.float32)
    x = aug.pad_crop_flip(x - FILL, crop_seed, padding=padding, flip=True) + FILL
    x = autoaugment(x, policy_seed)
    if cutout_length > 0:
        x = cutout(x, cutout_seed, cutout_length)
    return x


class PixelDistortion(aug._SeededDistortion):
    """Base of the layers that distort 8-bit pixel images (AutoAugment, RandAugment).

    With ``mean`` and ``std`` (per channel, on the [0, 1] scale) the layer maps its normalised
    inputs back to rounded pixel values, runs ``_distort_pixels`` and normalises again, so it can
    distort normalised batches inside a train step; without them its inputs are pixel values in
    [0, 255]. Subclasses implement ``_distort_pixels(x, seed)`` and add their own config.
    """

    def __init__(self, mean=None, std=None, padding: int = 4, seed: int | None = None, **kwargs):
        if (mean is None) != (std is None):
            raise ValueError(f"mean and std must be given together, got mean={mean!r}, std={std!r}")
        validation.integer(padding, "padding", minimum=0)
        super().__init__(seed=seed, **kwargs)
        self.mean = None if mean is None else [float(v) for v in mean]
        self.std = None if std is None else [float(v) for v in std]
        self.padding = padding

    def _distort_pixels(self, x, seed):
        raise NotImplementedError

    def _distort(self, images, seed):
        x = tf.cast(images, tf.float32)
        if self.mean is not None:
            x = tf.round(tf.clip_by_value((x * self.std + self.mean) * 255.0, 0.0, 255.0))
        x = self._distort_pixels(x, seed)
        if self.mean is not None:
            x = (x / 255.0 - tf.constant(self.mean)) / tf.constant(self.std)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mean": self.mean, "std": self.std, "padding": self.padding})
        return config


@keras.saving.register_keras_serializable(package="keras_sd")
class CifarAutoAugment(PixelDistortion):
    """``autoaugment_cifar`` as a per-sample Keras layer (identity when not training).

    Args:
        mean: Per-channel mean on the [0, 1] scale the inputs were normalised with, or None for
            inputs that are pixel values in [0, 255]. With ``mean`` and ``std`` the layer maps
            its (normalised) inputs back to rounded pixel values, distorts them and normalises
            again, so it can distort normalised batches inside a train step.
        std: Per-channel std on the [0, 1] scale (with ``mean``).
        padding: Crop padding.
        cutout_length: Side of the Cutout square; 0 for none.
        seed: Seed of the layer's ``keras.random.SeedGenerator``; None for a random seed.
        **kwargs: Base ``keras.layers.Layer`` arguments.

    Reference: Cubuk et al., "AutoAugment: Learning Augmentation Strategies from Data",
    CVPR 2019; DeVries & Taylor, "Improved Regularization of Convolutional Neural Networks
    with Cutout", arXiv 2017.
    """

    def __init__(
        self,
        mean=None,
        std=None,
        padding: int = 4,
        cutout_length: int = CUTOUT_LENGTH,
        seed: int | None = None,
        **kwargs,
    ):
        validation.integer(cutout_length, "cutout_length", minimum=0)
        super().__init__(mean=mean, std=std, padding=padding, seed=seed, **kwargs)
        self.cutout_length = cutout_length

    def _distort_pixels(self, x, seed):
        return autoaugment_cifar(x, seed, self.padding, self.cutout_length)

    def get_config(self):
        config = super().get_config()
        config.update({"cutout_length": self.cutout_length})
        return config
