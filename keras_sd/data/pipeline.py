"""``keras_sd.data.load``: tf.data input pipelines with seeded, per-sample augmentation.

Order of operations (training): source in stable order -> (seeded per-class subset) ->
attach example index -> ``cache()`` of decoded uint8 images -> a permutation of the (sub)set for
the epoch -> augmentation with per-sample randomness from a stateless per-batch (or per-image)
seed -> ``prefetch``.

Epoch ``e`` of the training data is a pure function of ``(seed, e)`` (and the subset seed): its
permutation and its augmentation seeds are stateless draws keyed by ``seed``, ``e`` and the
position in the epoch (`tf.random.experimental.stateless_fold_in`), never by how many iterators
were made before. ``DataBundle.epoch(e)`` is that epoch; ``DataBundle.batches(start, stop)`` is
the endless sequence epoch 0, epoch 1, ... cut to batches ``start..stop-1``, which is what
``fit`` gets (with ``steps_per_epoch``): a run resumed after ``g`` optimizer steps is handed
``batches(g, ...)`` and sees exactly the batches the uninterrupted run saw from there, without
replaying anything and however many iterators Keras has made (``fit`` with ``steps_per_epoch``
reads one iterator on across epochs).

The permutation is uniform: for fixed-size sets of at most ``FULL_SHUFFLE_MAX`` images a
`tf.random.experimental.stateless_shuffle` of the whole cached set; larger or variable-size sets
(ImageNet) use ``Dataset.shuffle`` with a ``SHUFFLE_BUFFER`` buffer, seeded per epoch, which is
only approximately uniform (and, as ``Dataset.shuffle`` is, also keyed by TensorFlow's global
seed, which ``keras_sd.train`` sets from the recipe seed).

Normalisation is ``(x / scale - mean) / std`` per channel. For the "cifar" distortion it is
applied BEFORE the pad-and-crop, so the padding value is 0 in normalised units (the mean
colour) -- the same value the in-model distortion layer (``distortion``) pads with when a
two-view model distorts normalised batches inside its train step.

For the "autoaugment" distortion (``keras_sd.layers.autoaugment.autoaugment_cifar``) the order
is the reference's instead: pad-crop-flip, AutoAugment and Cutout act on pixel values in
[0, 255] and normalisation comes LAST, so the photometric operations see 8-bit images, the crop
border and the geometric fills are grey 128 (the reference's ``fill=128``) and the Cutout hole
is black (0 before normalisation, ``-mean / std`` after), as in the reference, which zeroes the
``ToTensor`` output before ``Normalize``.

"randaugment" (``keras_sd.layers.randaugment.randaugment_cifar``: DeiT's RandAugment,
rand-m9-mstd0.5, after the same grey pad-crop-flip, no Cutout) takes the same order: distort the
8-bit pixel values, normalise last.
"""

from __future__ import annotations

import dataclasses
import typing

import keras
import numpy as np
import tensorflow as tf

from keras_sd import validation
from keras_sd.data import sources
from keras_sd.layers import augment as aug
from keras_sd.layers import autoaugment, randaugment

AUGMENTS = (
    "auto",
    "cifar",
    "autoaugment",
    "randaugment",
    "imagenet",
    "resize256_crop224",
    "resize256",
    "none",
)
# Kinds that distort 8-bit pixel values and normalise afterwards (need images scaled 0..255).
PIXEL_KINDS = ("autoaugment", "randaugment")
# Kinds that resize every image to 256x256 (Xu & Liu's ImageNet data); evaluation: centre 224.
SQUARE_KINDS = ("resize256_crop224", "resize256")
# For a model that distorts inside its step with the distortion named like a pipeline kind:
# the pipeline kind that yields the images that distortion starts from (default "none").
UNDISTORTED = {"resize256_crop224": "resize256"}
IMAGENET_SIZE = 224
IMAGENET_RESIZE = 256
# Fixed-size training sets up to this many images are permuted whole each epoch (a uniform
# shuffle); larger or variable-size ones go through a SHUFFLE_BUFFER-element shuffle buffer.
FULL_SHUFFLE_MAX = 100_000
SHUFFLE_BUFFER = 10_000
# Stream tags of the per-epoch stateless draws (see `_epoch_key`).
_SHUFFLE_STREAM, _AUGMENT_STREAM = 0, 1


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about a loaded data set.

    Attributes:
        name: The name passed to ``load``.
        num_classes: Number of classes C (labels are 0..C-1).
        num_train: Training examples (after ``train_per_class``); indices run 0..num_train-1.
        num_test: Test examples.
        image_shape: (H, W, C) of the images the pipelines yield.
        mean: Per-channel mean on the [0, 1] scale used for normalisation.
        std: Per-channel std on the [0, 1] scale used for normalisation.
        class_names: Name of each label.
    """

    name: str
    num_classes: int
    num_train: int
    num_test: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class DataBundle:
    """Training and test pipelines plus their ``DataInfo``.

    Attributes:
        train: One epoch of shuffled, augmented batches of ``(images, labels)``, or
            ``({"image": images, "index": idx}, labels)`` with ``with_index=True``. Each pass
            over it (each new iterator) is a fresh seeded epoch, for quick loops and a plain
            ``fit(train, epochs=...)``; which epoch a pass gets depends on how many iterators
            were made before, so a run that must resume exactly feeds ``fit`` from `batches`.
        test: Deterministic, un-augmented batches in source order (``drop_remainder=False``);
            ``({"image": images}, labels)`` when ``with_index=True``, else ``(images, labels)``.
        info: The ``DataInfo``.
        augment: The resolved training distortion (one of ``AUGMENTS`` other than "auto").
        batches_per_epoch: Training batches in one epoch (``num_train // batch_size``, or
            rounded up with ``drop_remainder=False``).
    """

    train: tf.data.Dataset
    test: tf.data.Dataset
    info: DataInfo
    augment: str
    batches_per_epoch: int = 0
    epoch_batches: typing.Callable[[tf.Tensor], tf.data.Dataset] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    def epoch(self, epoch: int) -> tf.data.Dataset:
        """The training batches of epoch ``epoch`` (0-based): a pure function of the seed and
        ``epoch``, the same in every process and on every pass.

        Raises:
            ValueError: if ``epoch`` is not a non-negative int.
        """
        if not _is_int(epoch) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got epoch={epoch!r}")
        return (
            self._check_epochs()
            .epoch_batches(tf.constant(epoch, tf.int64))
            .prefetch(tf.data.AUTOTUNE)
        )

    def batches(self, start: int = 0, stop: int | None = None) -> tf.data.Dataset:
        """Batches ``start .. stop - 1`` of the endless sequence epoch 0, epoch 1, ... (each
        ``batches_per_epoch`` batches of `epoch`); endless with ``stop=None``.

        This is the training input of a resumable ``fit``: ``fit(bundle.batches(g, E * S),
        epochs=E, steps_per_epoch=S)`` after ``g`` finished optimizer steps continues with the
        batches an uninterrupted run would see (Keras keeps one iterator across epochs when
        ``steps_per_epoch`` is given). ``S`` need not be ``batches_per_epoch``.

        Raises:
            ValueError: if ``start`` is not a non-negative int, or ``stop`` is neither None nor
                an int >= ``start``.
        """
        if not _is_int(start) or start < 0:
            raise ValueError(f"start must be a non-negative int, got start={start!r}")
        if stop is not None and (not _is_int(stop) or stop < start):
            raise ValueError(f"stop must be None or an int >= start={start}, got stop={stop!r}")
        self._check_epochs()
        per_epoch = self.batches_per_epoch
        last = np.iinfo(np.int64).max if stop is None else -(-stop // per_epoch)
        ds = tf.data.Dataset.range(start // per_epoch, max(last, start // per_epoch))
        ds = ds.flat_map(self.epoch_batches).skip(start % per_epoch)
        if stop is None:
            ds = ds.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
        else:
            ds = ds.take(stop - start)
            ds = ds.apply(tf.data.experimental.assert_cardinality(stop - start))
        return ds.prefetch(tf.data.AUTOTUNE)

    def _check_epochs(self) -> DataBundle:
        if self.epoch_batches is None or self.batches_per_epoch < 1:
            raise ValueError(
                "this DataBundle has no epoch function; build it with keras_sd.data.load"
            )
        return self


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _make_source(name: str, data_dir, image_size) -> sources.Source:
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got name={name!r}")
    if name == "digits":
        return sources.digits_source()
    if name.startswith("folder:"):
        path = name[len("folder:") :]
        if not path:
            raise ValueError(f"name={name!r} has an empty folder path; expected 'folder:PATH'")
        return sources.folder_source(path, image_size=image_size)
    return sources.tfds_source(name, data_dir=data_dir)


def _select_per_class(
    labels: np.ndarray, num_classes: int, per_class: int, seed: int
) -> np.ndarray:
    """Sorted source positions of a seeded subset with ``per_class`` examples of each class."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(num_classes):
        pos = np.flatnonzero(labels == c)
        if len(pos) < per_class:
            raise ValueError(
                f"train_per_class={per_class} but class {c} has only {len(pos)} training images"
            )
        keep.append(rng.choice(pos, size=per_class, replace=False))
    return np.sort(np.concatenate(keep))


def _channel_stats(ds: tf.data.Dataset, scale: float, channels: int) -> tuple[tuple, tuple]:
    """Per-channel mean and (population) std of the pixels of ``ds`` images, on [0, 1]."""

    def per_image(image):
        x = tf.reshape(tf.cast(image, tf.float64) / scale, [-1, channels])
        return tf.reduce_sum(x, 0), tf.reduce_sum(x * x, 0), tf.cast(tf.shape(x)[0], tf.float64)

    zeros = tf.zeros([channels], tf.float64)
    s, ss, n = ds.map(per_image, num_parallel_calls=tf.data.AUTOTUNE).reduce(
        (zeros, zeros, tf.constant(0.0, tf.float64)),
        lambda acc, v: (acc[0] + v[0], acc[1] + v[1], acc[2] + v[2]),
    )
    mean = s.numpy() / n.numpy()
    var = np.maximum(ss.numpy() / n.numpy() - mean**2, 0.0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in np.sqrt(var))


def _resolve_augment(augment: str, name: str, image_shape: tuple) -> str:
    # `augment` is one of AUGMENTS: `load`, the only caller, checked it before the slow source.
    if augment != "auto":
        return augment
    if name == "digits":
        return "none"
    h, w = image_shape[0], image_shape[1]
    if h is None or w is None or min(h, w) >= 64:
        return "imagenet"
    return "cifar"


def _resize_centre_crop(image: tf.Tensor) -> tf.Tensor:
    """ImageNet evaluation transform: shorter side to 256, centre crop 224 (one HWC image)."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    factor = IMAGENET_RESIZE / tf.reduce_min(shape)
    new = tf.cast(tf.round(shape * factor), tf.int32)
    new = tf.maximum(new, IMAGENET_SIZE)
    image = tf.image.resize(image, new, antialias=True)
    top = (new[0] - IMAGENET_SIZE) // 2
    left = (new[1] - IMAGENET_SIZE) // 2
    return image[top : top + IMAGENET_SIZE, left : left + IMAGENET_SIZE]


def _resize_square(image: tf.Tensor) -> tf.Tensor:
    """One HWC image resized to 256x256 (aspect ratio not kept; bilinear, antialiased).

    Xu & Liu, AAAI 2019: "resize all the raw images to single-scale 256x256".
    """
    return tf.image.resize(image, (IMAGENET_RESIZE, IMAGENET_RESIZE), antialias=True)


def load(
    name: str,
    *,
    batch_size: int = 128,
    augment: str = "auto",
    with_index: bool = False,
    seed: int = 0,
    data_dir: str | None = None,
    train_per_class: int | None = None,
    eval_batch_size: int | None = None,
    shuffle: bool = True,
    drop_remainder: bool = True,
    cache: bool = True,
    image_size: int | tuple[int, int] | None = None,
    subset_seed: int | None = None,
) -> DataBundle:
    """Build the training and test pipelines of a data set.

    Args:
        name: "digits" (scikit-learn's embedded 8x8 digits), a TFDS image-classification name
            ("cifar10", "cifar100", "imagenet2012", ...) or "folder:PATH" for
            ``PATH/train/<class>/*`` and ``PATH/test/<class>/*``.
        batch_size: Training batch size.
        augment: "auto", "cifar" (pad 4, random crop, horizontal flip), "autoaugment"
            (pad 4 with grey + random crop + flip, AutoAugment's CIFAR-10 policy and a 16x16
            Cutout, per sample, on 8-bit images before normalisation: the TPAMI
            self-distillation paper's CIFAR training), "randaugment" (the same grey pad-crop-flip,
            then RandAugment as DeiT uses it: 2 operations, magnitude 9 +- 0.5, each applied
            with probability 0.5, per sample, on 8-bit images before normalisation; no Cutout),
            "imagenet" (random-resized crop 224 +
            flip; evaluation: resize 256, centre crop 224), "resize256_crop224" (every image
            resized to 256x256, then a random 224x224 window + flip, per sample: Xu & Liu's
            ImageNet distortion; evaluation: the centre 224 window of the 256x256 image),
            "resize256" (its undistorted form: 256x256 training images for a model that crops
            inside its step, e.g. ``distortion("resize256_crop224", ...)``; ``info.image_shape``
            is still 224x224, the model's input) or "none". "auto" picks "none" for digits,
            "cifar" below 64 pixels, else "imagenet".
        with_index: Carry each training example's index 0..num_train-1 as ``x["index"]``.
        seed: Seeds shuffling, augmentation and the ``train_per_class`` subset.
        data_dir: TFDS data directory (ImageNet's manual dir is ``data_dir/downloads/manual``).
        train_per_class: Use a fixed seeded subset of this many training images per class.
        subset_seed: Seed of the ``train_per_class`` subset (default: ``seed``); fix it to train
            several seeds on the same subset.
        eval_batch_size: Test batch size (defaults to ``batch_size``).
        shuffle: Shuffle the training set (reshuffled every epoch).
        drop_remainder: Drop the last partial training batch.
        cache: Cache decoded images in memory (before augmentation).
        image_size: For folders, the (height, width) every image is resized to; by default
            the size of the first training image.

    Returns:
        A ``DataBundle`` with ``train``, ``test`` and ``info``.

    Raises:
        ValueError: For an unknown data set, a missing or malformed folder, labels out of
            range, or bad arguments.
    """
    validation.positive_int(batch_size, "batch_size")
    validation.positive_int(eval_batch_size, "eval_batch_size", allow_none=True)
    validation.positive_int(train_per_class, "train_per_class", allow_none=True)
    if not _is_int(seed) or not -(2**63) <= seed < 2**63:
        raise ValueError(f"seed must be an int (int64 range), got seed={seed!r}")
    validation.one_of(augment, "augment", AUGMENTS)
    if image_size is not None and not (isinstance(name, str) and name.startswith("folder:")):
        raise ValueError(f"image_size is only used for 'folder:PATH' data sets, got name={name!r}")

    src = _make_source(name, data_dir, image_size)
    num_classes = src.num_classes
    channels = src.image_shape[-1]
    kind = _resolve_augment(augment, name, src.image_shape)
    fixed = src.image_shape[0] is not None and src.image_shape[1] is not None
    if kind in PIXEL_KINDS and src.scale != 255:
        raise ValueError(
            f"augment={augment!r} needs 8-bit images (pixel values 0..255) but {name!r} has "
            f"pixel scale {src.scale:g}; expected an 8-bit image set such as 'cifar10'"
        )
    if kind not in ("imagenet", *SQUARE_KINDS) and not fixed:
        raise ValueError(
            f"augment={augment!r} needs images of one fixed size but {name!r} has variable "
            "image sizes; use augment='imagenet' (crops to 224x224)"
        )

    keep = None
    num_train = src.num_train
    if train_per_class is not None:
        if src.train_labels is None:
            raise ValueError(
                f"train_per_class is not supported for {name!r}: its labels are too many to scan"
            )
        keep = _select_per_class(
            src.train_labels,
            num_classes,
            train_per_class,
            seed if subset_seed is None else subset_seed,
        )
        num_train = len(keep)
    if drop_remainder and batch_size > num_train:
        raise ValueError(
            f"batch_size={batch_size} is larger than the {num_train} training examples, so "
            "drop_remainder=True would leave no batch; expected batch_size <= num_train"
        )
    if src.train_labels is not None:
        sources.check_labels(src.train_labels, num_classes, f"{name!r} train split")

    # Per-channel statistics: known constants, else computed from (a fixed sample of at most
    # MAX_STATS_IMAGES of) the training images actually used.
    if src.mean is not None:
        mean, std = src.mean, src.std
    else:
        stats_keep = keep
        if num_train > sources.MAX_STATS_IMAGES and src.train_labels is not None:
            base = keep if keep is not None else np.arange(src.num_train)
            stats_keep = np.sort(
                np.random.default_rng(0).choice(base, sources.MAX_STATS_IMAGES, replace=False)
            )
            stats_ds = src.train(stats_keep).map(lambda x, y: x)
        else:
            stats_ds = src.train(stats_keep).map(lambda x, y: x).take(sources.MAX_STATS_IMAGES)
        mean, std = _channel_stats(stats_ds, src.scale, channels)
    if len(mean) != channels:
        raise ValueError(f"{name!r}: {len(mean)} mean values for {channels}-channel images")

    out_shape = (
        (IMAGENET_SIZE, IMAGENET_SIZE, channels)
        if kind in ("imagenet", *SQUARE_KINDS)
        else tuple(src.image_shape)
    )
    info = DataInfo(
        name=name,
        num_classes=num_classes,
        num_train=num_train,
        num_test=src.num_test,
        image_shape=tuple(int(v) for v in out_shape),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        class_names=src.class_names,
    )

    mean_t = tf.constant(mean, tf.float32)
    std_t = tf.constant(std, tf.float32)
    scale = float(src.scale)

    def normalise(images):
        return (tf.cast(images, tf.float32) / scale - mean_t) / std_t

    def check(labels):
        if not src.check_labels_in_graph:
            return labels
        # Labels of very large sets are not scanned eagerly; fail at iteration instead.
        with tf.control_dependencies(
            [
                tf.debugging.assert_greater_equal(labels, 0, message="label out of range"),
                tf.debugging.assert_less(labels, num_classes, message="label out of range"),
            ]
        ):
            return tf.identity(labels)

    def structure(images, labels, index=None):
        if with_index:
            x = {"image": images} if index is None else {"image": images, "index": index}
            return x, labels
        return images, labels

    # ---- training pipeline: epoch e is a pure function of (seed, e); see the module docstring.
    train = src.train(keep)
    train = train.enumerate().map(lambda i, ex: (ex[0], check(ex[1]), tf.cast(i, tf.int32)))
    full_shuffle = shuffle and fixed and num_train <= FULL_SHUFFLE_MAX
    if full_shuffle:
        # The whole (sub)set as one element (the cache then holds one copy of it), so that an
        # epoch can be a stateless permutation of it.
        train = train.batch(num_train)
    if cache:
        train = train.cache()
    elements = train

    def epoch_elements(epoch):
        if full_shuffle:

            def permuted(images, labels, index):
                key = _epoch_key(seed, epoch, _SHUFFLE_STREAM)
                order = tf.random.experimental.stateless_shuffle(
                    tf.range(tf.shape(index)[0]), key, alg="philox"
                )
                return (
                    tf.data.Dataset.from_tensor_slices(order)
                    .batch(1024)
                    .map(
                        lambda j: (tf.gather(images, j), tf.gather(labels, j), tf.gather(index, j))
                    )
                    .unbatch()
                )

            return elements.flat_map(permuted)
        if shuffle:
            # Large or variable-size sets: a bounded buffer, seeded per epoch.
            draw = _draw(_epoch_key(seed, epoch, _SHUFFLE_STREAM))
            return _seeded_shuffle(elements, SHUFFLE_BUFFER, draw)
        return elements

    def epoch_batches(epoch):
        """The training batches of epoch ``epoch`` (an int64 scalar tensor)."""
        epoch = tf.cast(epoch, tf.int64)
        key = _epoch_key(seed, epoch, _AUGMENT_STREAM)
        # One augmentation draw per batch (per image for "imagenet"), keyed by its position.
        randoms = tf.data.Dataset.range(np.iinfo(np.int64).max).map(
            lambda position: _draw(tf.random.experimental.stateless_fold_in(key, position))
        )
        batches = _augment_and_batch(
            epoch_elements(epoch),
            randoms,
            kind=kind,
            augment=augment,
            normalise=normalise,
            batch_size=batch_size,
            drop_remainder=drop_remainder,
        )
        return batches.map(structure)

    per_epoch = num_train // batch_size if drop_remainder else -(-num_train // batch_size)
    # `train`: each new iterator is a fresh epoch (an epoch number drawn per iterator), for
    # quick loops and a plain fit(); resumable runs use DataBundle.batches instead.
    train = (
        tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        .take(1)
        .flat_map(epoch_batches)
        .apply(tf.data.experimental.assert_cardinality(per_epoch))
        .prefetch(tf.data.AUTOTUNE)
    )

    # ---- test pipeline: deterministic, un-augmented, source order, partial last batch.
    test = src.test.map(lambda x, y: (x, check(y)))
    if cache:
        test = test.cache()
    if kind == "imagenet":
        test = test.map(
            lambda x, y: (normalise(_resize_centre_crop(x)), y), num_parallel_calls=tf.data.AUTOTUNE
        ).batch(eval_batch_size or batch_size)
    elif kind in SQUARE_KINDS:
        offset = (IMAGENET_RESIZE - IMAGENET_SIZE) // 2
        window = slice(offset, offset + IMAGENET_SIZE)
        test = test.map(
            lambda x, y: (normalise(_resize_square(x)[window, window]), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        ).batch(eval_batch_size or batch_size)
    else:
        test = test.batch(eval_batch_size or batch_size).map(
            lambda x, y: (normalise(x), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    test = test.map(lambda x, y: structure(x, y)).prefetch(tf.data.AUTOTUNE)
    return DataBundle(
        train=train,
        test=test,
        info=info,
        augment=kind,
        batches_per_epoch=per_epoch,
        epoch_batches=epoch_batches,
    )


def _epoch_key(seed: int, epoch: tf.Tensor, stream: int) -> tf.Tensor:
    """The stateless key of one stream of draws (shuffle or augmentation) of one epoch."""
    base = tf.constant([seed, stream], tf.int64)
    return tf.random.experimental.stateless_fold_in(base, epoch, alg="philox")


def _seeded_shuffle(elements: tf.data.Dataset, buffer_size: int, seed: tf.Tensor):
    """``elements.shuffle(buffer_size, seed=seed)`` in an order that depends on ``seed`` alone.

    tf.data pairs an op seed with the graph-level seed (``tf.random.set_seed``,
    ``keras.utils.set_random_seed``), so a plain ``shuffle`` would give a different epoch under
    each global seed, breaking "epoch e is a pure function of (seed, e)"; and with a global seed
    of 0 TensorFlow's ``get_seed`` (checked on TF 2.21) compares the tensor seed as a Python
    bool and fails, so no variable-size set (ImageNet) loaded after ``set_random_seed(0)``.
    TensorFlow has no stateless buffered shuffle, so the shuffle is built inside a function of
    its own whose graph-level seed is cleared: ``get_seed`` then pairs ``seed`` with TF's fixed
    default graph seed, whatever the caller set.
    """

    def shuffled(_):
        tf.random.set_seed(None)  # a graph function: sets this graph's seed, not the user's
        return elements.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=False)

    return tf.data.Dataset.from_tensors(0).flat_map(shuffled)


def _draw(key: tf.Tensor) -> tf.Tensor:
    """One int64 drawn from a stateless key."""
    return tf.random.stateless_uniform(
        [], seed=key, minval=None, maxval=None, dtype=tf.int64, alg="philox"
    )


def _augment_and_batch(
    train: tf.data.Dataset,
    randoms: tf.data.Dataset,
    *,
    kind: str,
    augment: str,
    normalise,
    batch_size: int,
    drop_remainder: bool,
) -> tf.data.Dataset:
    """One epoch's ``(image, label, index)`` elements, distorted with the draws of ``randoms``
    (int64 scalars, one per batch, or per image for "imagenet") and batched."""

    def stateless_seed(r):
        return tf.stack([r, tf.constant(0, tf.int64)])

    if kind == "imagenet":

        def per_image(ex, r):
            image, label, index = ex
            out = aug.random_resized_crop(image[None], stateless_seed(r), (IMAGENET_SIZE,) * 2)
            return normalise(out[0]), label, index

        def per_image_plain(image, label, index):
            return normalise(_resize_centre_crop(image)), label, index

        if augment == "none":
            train = train.map(per_image_plain, num_parallel_calls=tf.data.AUTOTUNE)
        else:
            train = tf.data.Dataset.zip((train, randoms)).map(
                per_image, num_parallel_calls=tf.data.AUTOTUNE
            )
        train = train.batch(batch_size, drop_remainder=drop_remainder)
    elif kind in SQUARE_KINDS:
        train = train.map(
            lambda x, y, i: (normalise(_resize_square(x)), y, i),
            num_parallel_calls=tf.data.AUTOTUNE,
        ).batch(batch_size, drop_remainder=drop_remainder)
        if kind == "resize256_crop224":

            def crop_batch(ex, r):
                images, labels, index = ex
                size = (IMAGENET_SIZE, IMAGENET_SIZE)
                return aug.random_crop_flip(images, stateless_seed(r), size), labels, index

            train = tf.data.Dataset.zip((train, randoms)).map(
                crop_batch, num_parallel_calls=tf.data.AUTOTUNE
            )
    else:
        train = train.batch(batch_size, drop_remainder=drop_remainder)

        def per_batch(ex, r):
            images, labels, index = ex
            if kind == "autoaugment":
                # Distort the 8-bit pixel values, then normalise (see the module docstring).
                images = autoaugment.autoaugment_cifar(images, stateless_seed(r), padding=4)
                return normalise(images), labels, index
            if kind == "randaugment":  # per sample, stateless, like "autoaugment"
                images = randaugment.randaugment_cifar(images, stateless_seed(r), padding=4)
                return normalise(images), labels, index
            images = normalise(images)
            if kind == "cifar":
                images = aug.pad_crop_flip(images, stateless_seed(r), padding=4, flip=True)
            return images, labels, index

        train = tf.data.Dataset.zip((train, randoms)).map(
            per_batch, num_parallel_calls=tf.data.AUTOTUNE
        )
    return train


DISTORTIONS = ("cifar", "autoaugment", "randaugment", "imagenet", "resize256_crop224", "none")


def distortion(
    kind: str, image_shape, seed: int | None = None, mean=None, std=None
) -> keras.layers.Layer:
    """The training distortion of ``load`` as a per-sample Keras layer for a whole batch.

    Meant for models that distort inside their train step (the two-view method applies it
    twice to the same normalised batch). Every image gets its own crop and flip; with
    ``training=False`` the layer is the identity.

    Args:
        kind: "cifar" (pad 4 + random crop to the input size + horizontal flip),
            "autoaugment" (``load``'s "autoaugment" chain, `keras_sd.layers.CifarAutoAugment`),
            "randaugment" (``load``'s "randaugment" chain, `keras_sd.layers.CifarRandAugment`),
            "imagenet" (random-resized crop to the input size + flip), "resize256_crop224" (a
            random ``image_shape`` window + flip of each image of the larger batches that
            ``load(..., augment="resize256")`` yields: Xu & Liu's 224 crop of 256x256 images)
            or "none" (identity).
        image_shape: (H, W, C) of the batches the layer will see; for "resize256_crop224" the
            (H, W, C) it crops to (the model's input).
        seed: Seed of the layer's ``keras.random.SeedGenerator``; None for a random seed.
        mean: For "autoaugment" and "randaugment" only: the ``DataInfo.mean`` the batches were normalised with;
            the layer then un-normalises to 8-bit pixel values, distorts and normalises again.
            None (with ``std``) means the batches are pixel values in [0, 255].
        std: For "autoaugment" and "randaugment" only: the matching ``DataInfo.std``.

    Returns:
        A ``keras_sd.layers.augment`` layer (``keras.layers.Identity`` for "none").

    Reference: Xu & Liu, "Data-Distortion Guided Self-Distillation for Deep Neural
    Networks", AAAI 2019 (distortion applied twice to each image).
    """
    validation.one_of(kind, "kind", DISTORTIONS)
    shape = aug.check_distortion_args(image_shape, seed)
    if kind not in PIXEL_KINDS and (mean is not None or std is not None):
        raise ValueError(
            f"mean and std are only used with kind in {PIXEL_KINDS}, got kind={kind!r}"
        )
    if kind not in PIXEL_KINDS:
        return aug.named_distortion(kind, shape, seed)
    for arg, value in (("mean", mean), ("std", std)):
        if value is not None and len(value) != shape[-1]:
            raise ValueError(
                f"{arg} must have one value per channel ({shape[-1]}), got {arg}={value!r}"
            )
    if kind == "randaugment":
        return randaugment.CifarRandAugment(
            mean=mean, std=std, padding=4, seed=seed, name="randaugment_distortion"
        )
    return autoaugment.CifarAutoAugment(
        mean=mean, std=std, padding=4, seed=seed, name="autoaugment_distortion"
    )
