"""Per-sample training distortions as Keras layers and as stateless functions.

Keras 3.15's ``keras.layers.RandomCrop`` draws ONE crop offset for the whole batch, so two
views made by it would share their translation across the batch. ``keras.layers.RandomFlip``
does draw per sample, but we keep our own flip so that the data pipeline (``keras_sd.data``)
and the layers share a single code path: every layer here draws a stateless seed pair from
its own ``keras.random.SeedGenerator`` and then calls the same stateless function that the
pipeline calls with its per-batch seed. Each image in a batch gets its own crop offset / box
and its own flip decision. With ``training=False`` every layer is the identity.

The ops are TensorFlow ops (the project runs on the TensorFlow backend), so the layers work in
eager mode, inside ``tf.function`` train steps and inside ``tf.data`` ``map`` functions.

Reference: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (pad-4 crop
and flip on CIFAR); Szegedy et al., "Going Deeper with Convolutions", CVPR 2015 (random
resized crop on ImageNet).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_sd import validation

_MAX_SEED = 2**31 - 1


def _split_seed(seed: tf.Tensor, n: int) -> list[tf.Tensor]:
    """Split one stateless seed pair into ``n`` independent pairs."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=n)
    return [seeds[i] for i in range(n)]


def flip_mask(batch_size: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Bernoulli(0.5) flip decisions, one per sample, shape [batch_size]."""
    return tf.random.stateless_uniform([batch_size], seed=seed) < 0.5


def apply_horizontal_flip(images: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Flip the images (NHWC) whose ``mask`` entry is True along the width axis."""
    return tf.where(mask[:, None, None, None], tf.reverse(images, axis=[2]), images)


def crop_offsets(
    batch_size: tf.Tensor, padding: int, seed: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-sample (dy, dx) offsets, uniform on {0, ..., 2 * padding}, each shape [batch_size]."""
    offsets = tf.random.stateless_uniform(
        [2, batch_size], seed=seed, minval=0, maxval=2 * padding + 1, dtype=tf.int32
    )
    return offsets[0], offsets[1]


def apply_pad_and_crop(images: tf.Tensor, dy: tf.Tensor, dx: tf.Tensor, padding: int) -> tf.Tensor:
    """Zero-pad by ``padding`` and cut an HxW window at per-sample offsets (dy, dx).

    The result is an exact translation of each image (no interpolation): output pixel (i, j) of
    sample b is padded pixel (dy[b] + i, dx[b] + j).
    """
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        shape = tf.shape(images)
        height, width = shape[1], shape[2]
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    rows = dy[:, None] + tf.range(height)[None, :]
    cols = dx[:, None] + tf.range(width)[None, :]
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(out, cols, axis=2, batch_dims=1)


def pad_crop_flip(
    images: tf.Tensor, seed: tf.Tensor, padding: int = 4, flip: bool = True
) -> tf.Tensor:
    """CIFAR distortion on a batch (NHWC) with per-sample randomness from a stateless seed."""
    crop_seed, flip_seed = _split_seed(seed, 2)
    batch = tf.shape(images)[0]
    if padding > 0:
        dy, dx = crop_offsets(batch, padding, crop_seed)
        images = apply_pad_and_crop(images, dy, dx, padding)
    if flip:
        images = apply_horizontal_flip(images, flip_mask(batch, flip_seed))
    return images


def random_crop_flip(
    images: tf.Tensor, seed: tf.Tensor, size: Sequence[int], flip: bool = True
) -> tf.Tensor:
    """Per-sample random ``size`` window of a batch (NHWC) + horizontal flip, no resampling.

    Each image's top-left corner is uniform on {0, ..., H - h} x {0, ..., W - w} (every
    window equally likely), drawn from the stateless ``seed``.
    """
    crop_seed, flip_seed = _split_seed(seed, 2)
    shape = tf.shape(images)
    batch, out_h, out_w = shape[0], int(size[0]), int(size[1])
    y_seed, x_seed = _split_seed(crop_seed, 2)
    dy = tf.random.stateless_uniform(
        [batch], seed=y_seed, minval=0, maxval=shape[1] - out_h + 1, dtype=tf.int32
    )
    dx = tf.random.stateless_uniform(
        [batch], seed=x_seed, minval=0, maxval=shape[2] - out_w + 1, dtype=tf.int32
    )
    rows = dy[:, None] + tf.range(out_h)[None, :]
    cols = dx[:, None] + tf.range(out_w)[None, :]
    out = tf.gather(tf.gather(images, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    if flip:
        out = apply_horizontal_flip(out, flip_mask(batch, flip_seed))
    return out


def resized_crop_boxes(
    batch_size: tf.Tensor,
    image_height: tf.Tensor,
    image_width: tf.Tensor,
    seed: tf.Tensor,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
) -> tf.Tensor:
    """Normalised [y1, x1, y2, x2] boxes of a random-resized crop, one per sample.

    Area fraction ~ U(scale) and log aspect ratio (width/height in pixels) ~ U(log ratio).
    Instead of torchvision's rejection loop, sides that would exceed the image are clipped to
    it, which keeps the op branch-free and vectorised.
    """
    s_seed, r_seed, y_seed, x_seed = _split_seed(seed, 4)
    shape = [batch_size]
    area = tf.random.stateless_uniform(shape, seed=s_seed, minval=scale[0], maxval=scale[1])
    log_r = tf.random.stateless_uniform(
        shape, seed=r_seed, minval=math.log(ratio[0]), maxval=math.log(ratio[1])
    )
    r = tf.exp(log_r)
    aspect = tf.cast(image_height, tf.float32) / tf.cast(image_width, tf.float32)  # H / W
    # w_px * h_px = area * H * W and w_px / h_px = r, in units of the image's own sides.
    w = tf.minimum(tf.sqrt(area * r * aspect), 1.0)
    h = tf.minimum(tf.sqrt(area / (r * aspect)), 1.0)
    y0 = tf.random.stateless_uniform(shape, seed=y_seed) * (1.0 - h)
    x0 = tf.random.stateless_uniform(shape, seed=x_seed) * (1.0 - w)
    return tf.stack([y0, x0, y0 + h, x0 + w], axis=1)


def random_resized_crop(
    images: tf.Tensor,
    seed: tf.Tensor,
    size: Sequence[int] = (224, 224),
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
    flip: bool = True,
) -> tf.Tensor:
    """ImageNet distortion on a batch (NHWC): per-sample random-resized crop (bilinear) + flip."""
    box_seed, flip_seed = _split_seed(seed, 2)
    shape = tf.shape(images)
    boxes = resized_crop_boxes(shape[0], shape[1], shape[2], box_seed, scale, ratio)
    out = tf.image.crop_and_resize(
        tf.cast(images, tf.float32), boxes, tf.range(shape[0]), list(size), method="bilinear"
    )
    if flip:
        out = apply_horizontal_flip(out, flip_mask(shape[0], flip_seed))
    return out


class _SeededDistortion(keras.layers.Layer):
    """Shared plumbing: one SeedGenerator per layer, identity when not training."""

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        seed = validation.integer(seed, "seed", allow_none=True)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = False

    def _draw_seed(self) -> tf.Tensor:
        # One stateless seed pair per call; the generator's state advances each call, so two
        # calls on the same batch (the two views) get different randomness.
        seed = keras.random.randint((2,), 0, _MAX_SEED, seed=self.seed_generator, dtype="int32")
        # Under tf.distribute the generator state is mirrored, so every replica would crop its
        # local batch exactly like the others; fold the replica id in to keep draws per sample
        # across the global batch.
        replica = tf.distribute.get_replica_context()
        if replica is not None and replica.num_replicas_in_sync > 1:
            replica_id = tf.cast(replica.replica_id_in_sync_group, "int32")
            seed = (seed + tf.stack([replica_id * 7919, tf.zeros_like(replica_id)])) % _MAX_SEED
        return seed

    def _check_rank(self, images: tf.Tensor) -> tuple[tf.Tensor, bool]:
        rank = images.shape.rank
        if rank == 3:  # one image, e.g. inside a per-example tf.data map
            return images[None], True
        if rank != 4:
            raise ValueError(
                f"{self.__class__.__name__} expects images of rank 3 (HWC) or 4 (NHWC), "
                f"got shape {images.shape}"
            )
        return images, False

    def call(self, inputs, training=None):
        if not training:
            return inputs
        images = tf.convert_to_tensor(inputs)
        images, single = self._check_rank(images)
        out = self._distort(images, self._draw_seed())
        out = tf.cast(out, images.dtype) if images.dtype.is_floating else out
        return out[0] if single else out

    def _distort(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update({"seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package="keras_sd")
class PadAndRandomCrop(_SeededDistortion):
    """Zero-pad by ``padding`` and random-crop back to the input size, per sample.

    Written here because ``keras.layers.RandomCrop`` (Keras 3.15) draws one offset for the
    whole batch; this layer draws an independent offset for every image.

    Args:
        padding: Pixels of zero padding on each side (the crop offset is uniform on
            {0, ..., 2 * padding} in each direction).
        horizontal_flip: Also flip each image left-right with probability 0.5 (the standard
            CIFAR distortion in one layer, the exact op ``keras_sd.data`` uses).
        seed: Seed of the layer's ``keras.random.SeedGenerator``; None for a random seed.
        **kwargs: Base ``keras.layers.Layer`` arguments (name, dtype, ...).

    Reference: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    def __init__(
        self, padding: int = 4, horizontal_flip: bool = False, seed: int | None = None, **kwargs
    ):
        validation.integer(padding, "padding", minimum=0)
        validation.boolean(horizontal_flip, "horizontal_flip")
        super().__init__(seed=seed, **kwargs)
        self.padding = padding
        self.horizontal_flip = horizontal_flip

    def _distort(self, images, seed):
        return pad_crop_flip(images, seed, padding=self.padding, flip=self.horizontal_flip)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"padding": self.padding, "horizontal_flip": self.horizontal_flip})
        return config


@keras.saving.register_keras_serializable(package="keras_sd")
class RandomHorizontalFlip(_SeededDistortion):
    """Flip each image left-right with probability 0.5, independently per sample.

    Keras's own ``RandomFlip`` is per-sample too; this one exists so that the layer and the
    ``keras_sd.data`` pipeline share the same stateless code and seed handling.

    Args:
        seed: Seed of the layer's ``keras.random.SeedGenerator``; None for a random seed.
        **kwargs: Base ``keras.layers.Layer`` arguments.

    Reference: Krizhevsky et al., "ImageNet Classification with Deep Convolutional Neural
    Networks", NeurIPS 2012.
    """

    def _distort(self, images, seed):
        _, flip_seed = _split_seed(seed, 2)
        return apply_horizontal_flip(images, flip_mask(tf.shape(images)[0], flip_seed))

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_sd")
class RandomResizedCrop(_SeededDistortion):
    """Per-sample random-resized crop (area ``scale``, aspect ``ratio``) resized bilinearly.

    Args:
        height: Output height.
        width: Output width.
        scale: (min, max) fraction of the image area covered by the crop.
        ratio: (min, max) aspect ratio width / height of the crop, in pixels.
        horizontal_flip: Also flip each image left-right with probability 0.5.
        seed: Seed of the layer's ``keras.random.SeedGenerator``; None for a random seed.
        **kwargs: Base ``keras.layers.Layer`` arguments.

    With ``training=False`` the layer is the identity (it does not resize), so it is meant to
    be applied to images that already have the model's input size.

    Reference: Szegedy et al., "Going Deeper with Convolutions", CVPR 2015.
    """

    def __init__(
        self,
        height: int = 224,
        width: int = 224,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        horizontal_flip: bool = False,
        seed: int | None = None,
        **kwargs,
    ):
        validation.integer(height, "height", minimum=1)
        validation.integer(width, "width", minimum=1)
        scale, ratio = tuple(float(v) for v in scale), tuple(float(v) for v in ratio)
        if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ValueError(
                f"scale must be (min, max) with 0 < min <= max <= 1, got scale={scale}"
            )
        if len(ratio) != 2 or not 0.0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must be (min, max) with 0 < min <= max, got ratio={ratio}")
        validation.boolean(horizontal_flip, "horizontal_flip")
        super().__init__(seed=seed, **kwargs)
        self.height, self.width, self.scale, self.ratio = height, width, scale, ratio
        self.horizontal_flip = horizontal_flip

    def _distort(self, images, seed):
        return random_resized_crop(
            images,
            seed,
            (self.height, self.width),
            self.scale,
            self.ratio,
            flip=self.horizontal_flip,
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "height": self.height,
                "width": self.width,
                "scale": list(self.scale),
                "ratio": list(self.ratio),
                "horizontal_flip": self.horizontal_flip,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_sd")
class RandomCropFlip(_SeededDistortion):
    """Per-sample random ``height x width`` window (no resampling) + horizontal flip.

    The crop of Xu & Liu's ImageNet distortion: every image resized to 256x256, then a random
    224x224 window "or its mirror flip" (``keras_sd.data`` kind "resize256_crop224"). Written
    here because ``keras.layers.RandomCrop`` (Keras 3.15) draws one offset per batch.

    Args:
        height: Output height (at most the input height).
        width: Output width (at most the input width).
        horizontal_flip: Also flip each image left-right with probability 0.5.
        seed: Seed of the layer's ``keras.random.SeedGenerator``; None for a random seed.
        **kwargs: Base ``keras.layers.Layer`` arguments.

    With ``training=False`` the layer is the identity (it does not crop), so evaluation inputs
    must already have the output size (the pipeline's test split is the 224 centre crop).

    Reference: Xu & Liu, "Data-Distortion Guided Self-Distillation for Deep Neural Networks",
    AAAI 2019.
    """

    def __init__(
        self,
        height: int = 224,
        width: int = 224,
        horizontal_flip: bool = True,
        seed: int | None = None,
        **kwargs,
    ):
        validation.integer(height, "height", minimum=1)
        validation.integer(width, "width", minimum=1)
        validation.boolean(horizontal_flip, "horizontal_flip")
        super().__init__(seed=seed, **kwargs)
        self.height, self.width, self.horizontal_flip = height, width, horizontal_flip

    def _distort(self, images, seed):
        h, w = images.shape[1], images.shape[2]
        if (h is not None and h < self.height) or (w is not None and w < self.width):
            raise ValueError(
                f"RandomCropFlip crops {self.height}x{self.width} windows but got images of "
                f"shape {images.shape}; expected at least that size"
            )
        return random_crop_flip(images, seed, (self.height, self.width), flip=self.horizontal_flip)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {"height": self.height, "width": self.width, "horizontal_flip": self.horizontal_flip}
        )
        return config


# Named per-sample distortions (``autoaugment`` is built by `keras_sd.data.distortion`, which
# knows the normalisation to undo).
DISTORTION_KINDS = ("cifar", "imagenet", "resize256_crop224", "none")
PAD_CROP_PREFIXES = ("pad_crop_flip:", "pad_crop:")


def check_distortion_args(image_shape, seed) -> tuple:
    """Returns ``image_shape`` as a tuple, or raises unless it is ``(H, W, C)`` of positive ints
    and ``seed`` is an int or None."""
    shape = tuple(image_shape) if image_shape is not None else ()
    if len(shape) != 3 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in shape):
        raise ValueError(
            f"image_shape must be (H, W, C) of positive ints, got image_shape={image_shape!r}"
        )
    validation.integer(seed, "seed", allow_none=True)
    return shape


def named_distortion(kind: str, image_shape, seed: int | None = None) -> keras.layers.Layer:
    """The layer of one of `DISTORTION_KINDS` for batches of ``image_shape`` ``(H, W, C)``.

    "cifar": pad 4 + random crop to the input size + horizontal flip; "imagenet": random-resized
    crop to the input size + flip; "resize256_crop224": a random ``image_shape`` window + flip
    of each image of a larger batch (Xu & Liu's 224 crop of 256x256 images); "none": identity.
    One layer per kind, drawing all its randomness from one seed generator and calling the same
    stateless op as the data pipeline.
    """
    validation.one_of(kind, "kind", DISTORTION_KINDS)
    shape = check_distortion_args(image_shape, seed)
    if kind == "cifar":
        return PadAndRandomCrop(padding=4, horizontal_flip=True, seed=seed, name="cifar_distortion")
    if kind == "resize256_crop224":
        return RandomCropFlip(
            int(shape[0]), int(shape[1]), horizontal_flip=True, seed=seed, name=f"{kind}_distortion"
        )
    if kind == "imagenet":
        return RandomResizedCrop(
            int(shape[0]),
            int(shape[1]),
            horizontal_flip=True,
            seed=seed,
            name="imagenet_distortion",
        )
    return keras.layers.Identity(name="none_distortion")


def default_distortion_spec(image_shape) -> str:
    """The distortion used when ``distortion=None``, as a string spec, for ``(H, W, C)`` inputs.

    ``"cifar"`` (pad 4, random crop, horizontal flip: the paper's CIFAR distortion) for 32x32
    colour images. Otherwise a zero-pad of ``max(1, round(min(H, W) / 8))`` pixels and a random
    crop back to the input size, plus a horizontal flip for 3-channel (natural colour) images
    only: a mirrored digit or character is not the same class, so grayscale inputs such as the
    8x8 digits get the crop alone (``"pad_crop:1"``).
    """
    height, width, channels = (int(v) for v in image_shape)
    if (height, width, channels) == (32, 32, 3):
        return "cifar"
    padding = max(1, round(min(height, width) / 8))
    return f"pad_crop_flip:{padding}" if channels == 3 else f"pad_crop:{padding}"


def build_distortion(spec: str, image_shape, seed: int | None = None) -> keras.layers.Layer:
    """A per-sample distortion layer from a string spec.

    Args:
        spec: ``"cifar"``, ``"imagenet"``, ``"resize256_crop224"`` or ``"none"`` (see
            `named_distortion`), or
            ``"pad_crop:P"`` / ``"pad_crop_flip:P"`` (zero-pad ``P`` pixels, random crop back to
            the input size, optionally a horizontal flip; every image its own offset and flip).
        image_shape: ``(H, W, C)`` of the batches the layer will see.
        seed: Seed of the layers' seed generators; None for a random seed.

    Returns:
        A Keras layer that is the identity when ``training=False``.
    """
    if spec in DISTORTION_KINDS:
        return named_distortion(spec, tuple(int(v) for v in image_shape), seed)
    for prefix in PAD_CROP_PREFIXES:
        if isinstance(spec, str) and spec.startswith(prefix):
            text = spec[len(prefix) :]
            if not text.isdigit() or int(text) < 1:
                break
            padding = int(text)
            return PadAndRandomCrop(
                padding=padding,
                horizontal_flip=prefix == "pad_crop_flip:",
                seed=seed,
                name=f"{prefix[:-1]}{padding}_distortion",
            )
    raise ValueError(
        f"`distortion` must be None, a keras.layers.Layer, one of {DISTORTION_KINDS}, or "
        f"'pad_crop:P' / 'pad_crop_flip:P' with an integer P >= 1; got {spec!r}."
    )
