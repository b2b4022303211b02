"""Raw image sources for ``keras_sd.data.load``: embedded digits, TFDS sets, image folders.

A source yields undecoded-to-float examples ``(image uint8 HWC, label int32)`` in a fixed,
stable order (the order defines the per-sample index), plus what the pipeline needs to know
about them (classes, counts, pixel scale, per-channel statistics when they are known).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable

import numpy as np
import tensorflow as tf

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")

# Per-channel statistics of the training sets on the [0, 1] scale (computed from the full
# training splits; the CIFAR std is the true pixel std, not the widely copied 0.2023/...).
KNOWN_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet2012": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "imagenet2012_subset": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
# Sets whose labelled held-out split is "validation" although TFDS may list a "test" split.
EVAL_SPLIT = {"imagenet2012": "validation", "imagenet2012_subset": "validation"}
# Above this many training examples the labels are not scanned eagerly (checked in-graph).
MAX_LABEL_SCAN = 300_000
# Statistics of sets without known constants use at most this many training images.
MAX_STATS_IMAGES = 10_000


@dataclasses.dataclass
class Source:
    """Raw examples and metadata of one data set (internal).

    Attributes:
        name: Data set name as given to ``load``.
        class_names: One name per label 0..C-1.
        train: Builds the training dataset of ``(image uint8, label int32)`` in stable order,
            restricted to the given sorted example indices when not None.
        test: Dataset of ``(image uint8, label int32)``.
        num_train: Number of training examples (before any subset).
        num_test: Number of test examples.
        train_labels: All training labels in source order, when cheaply known.
        image_shape: (H, W, C) when every image has it, else (None, None, C).
        scale: Pixel value that maps to 1.0 (255 for 8-bit images, 16 for digits).
        mean: Known per-channel mean on the [0, 1] scale, or None to compute.
        std: Known per-channel std on the [0, 1] scale, or None to compute.
        check_labels_in_graph: Labels were not scanned; the pipeline must assert them.
    """

    name: str
    class_names: tuple[str, ...]
    train: Callable[[np.ndarray | None], tf.data.Dataset]
    test: tf.data.Dataset
    num_train: int
    num_test: int
    train_labels: np.ndarray | None
    image_shape: tuple
    scale: float = 255.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    check_labels_in_graph: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    """Raise a ValueError when any label is outside 0..num_classes-1."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise ValueError(
            f"labels out of range in {where}: found label {int(bad[0])} "
            f"({bad.size} bad in total), expected 0..{num_classes - 1} for num_classes={num_classes}"
        )


# --------------------------------------------------------------------------------------------
# digits


def digits_source(split_seed: int = 0) -> Source:
    """scikit-learn's embedded 8x8 digits, stratified 80/20 split with a fixed seed.

    The split seed is fixed (not the training seed) so that runs with different training
    seeds are evaluated on the same 360 test images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.uint8)[..., None]  # pixel values 0..16
    labels = digits.target.astype(np.int32)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=split_seed
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    x_train, y_train = images[train_idx], labels[train_idx]
    x_test, y_test = images[test_idx], labels[test_idx]

    def train(keep: np.ndarray | None) -> tf.data.Dataset:
        x, y = (x_train, y_train) if keep is None else (x_train[keep], y_train[keep])
        return tf.data.Dataset.from_tensor_slices((x, y))

    return Source(
        name="digits",
        class_names=tuple(str(i) for i in range(10)),
        train=train,
        test=tf.data.Dataset.from_tensor_slices((x_test, y_test)),
        num_train=len(y_train),
        num_test=len(y_test),
        train_labels=y_train,
        image_shape=(8, 8, 1),
        scale=16.0,
    )


# --------------------------------------------------------------------------------------------
# image folders


def _list_class_dir(directory: pathlib.Path) -> list[str]:
    with os.scandir(directory) as entries:
        files = [
            e.path
            for e in entries
            if e.is_file()
            and not e.name.startswith(".")
            and e.name.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return sorted(files)


def _list_split(root: pathlib.Path, split: str, class_names: list[str] | None):
    split_dir = root / split
    if not split_dir.is_dir():
        raise ValueError(
            f"folder data set {str(root)!r} has no {split!r} subfolder; expected "
            f"{root!s}/train/<class>/* and {root!s}/test/<class>/*"
        )
    classes = sorted(
        p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not classes:
        raise ValueError(
            f"folder {str(split_dir)!r} has no class subfolders; expected {split_dir!s}/<class>/*"
        )
    if class_names is not None and classes != class_names:
        raise ValueError(
            f"class subfolders of {str(split_dir)!r} ({classes}) differ from those of the train "
            f"split ({class_names})"
        )
    paths, labels = [], []
    for label, cls in enumerate(classes):
        files = _list_class_dir(split_dir / cls)
        if not files:
            raise ValueError(
                f"class folder {str(split_dir / cls)!r} is empty; expected image files "
                f"with one of the extensions {IMAGE_EXTENSIONS}"
            )
        for f in files:
            _check_image_header(f)
        paths.extend(files)
        labels.extend([label] * len(files))
    return classes, np.array(paths), np.array(labels, dtype=np.int32)


# Leading bytes of the formats tf.io.decode_image reads (WebP: "RIFF....WEBP").
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def _check_image_header(path) -> None:
    # A file TensorFlow cannot decode otherwise fails lazily, mid-epoch, with an
    # InvalidArgumentError that does not name the file; reading 12 bytes per file up front
    # (about a second for CIFAR-10's 60,000 files) names it before anything is trained.
    with open(path, "rb") as f:
        head = f.read(12)
    if head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return
    raise ValueError(
        f"image file {str(path)!r} is not a JPEG, PNG, GIF, BMP or WebP image (corrupt or "
        "truncated?); remove or replace it."
    )


def _decode(path: tf.Tensor, channels: int, size: tuple[int, int]) -> tf.Tensor:
    image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    hw = tf.shape(image)[:2]
    same = tf.reduce_all(tf.equal(hw, tf.constant(size, tf.int32)))
    image = tf.cond(
        same,
        lambda: image,
        lambda: tf.cast(
            tf.clip_by_value(tf.round(tf.image.resize(image, size, antialias=True)), 0, 255),
            tf.uint8,
        ),
    )
    return tf.ensure_shape(image, (*size, channels))


def folder_source(path: str, image_size: int | tuple[int, int] | None = None) -> Source:
    """An image folder ``path/train/<class>/*`` and ``path/test/<class>/*``.

    Classes are the sorted subfolder names (labels 0..C-1). Images are decoded with tf.io;
    every image is resized (bilinear, antialiased) to ``image_size`` or, when it is None, to
    the size of the first training image. The channel count is that of the first image
    (alpha dropped).
    """
    root = pathlib.Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"folder data set path {str(root)!r} does not exist or is not a directory")
    class_names, train_paths, train_labels = _list_split(root, "train", None)
    _, test_paths, test_labels = _list_split(root, "test", class_names)

    first = tf.io.decode_image(tf.io.read_file(train_paths[0]), expand_animations=False)
    channels = {1: 1, 2: 1, 3: 3, 4: 3}[int(first.shape[-1])]
    if image_size is None:
        size = (int(first.shape[0]), int(first.shape[1]))
    elif isinstance(image_size, int) and not isinstance(image_size, bool) and image_size > 0:
        size = (image_size, image_size)
    elif (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(v, int) and v > 0 for v in image_size)
    ):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise ValueError(
            f"image_size must be None, a positive int or (height, width), got image_size={image_size!r}"
        )

    def from_paths(paths: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((paths, labels))
        return ds.map(
            lambda p, y: (_decode(p, channels, size), y),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    def train(keep: np.ndarray | None) -> tf.data.Dataset:
        if keep is None:
            return from_paths(train_paths, train_labels)
        return from_paths(train_paths[keep], train_labels[keep])

    return Source(
        name=f"folder:{path}",
        class_names=tuple(class_names),
        train=train,
        test=from_paths(test_paths, test_labels),
        num_train=len(train_paths),
        num_test=len(test_paths),
        train_labels=train_labels,
        image_shape=(*size, channels),
    )


# --------------------------------------------------------------------------------------------
# TFDS


def _tfds_num_classes(builder, label_key: str) -> tuple[int, tuple[str, ...]]:
    feature = builder.info.features[label_key]
    return int(feature.num_classes), tuple(feature.names)


def tfds_source(name: str, data_dir: str | None = None) -> Source:
    """Any TFDS image-classification set loaded with ``as_supervised`` semantics.

    Splits: "train" and "test" ("validation" when there is no test split, and always for
    ImageNet, whose test split has no labels). For ``imagenet2012`` the manual download
    directory is TFDS's default, ``<data_dir>/downloads/manual``.
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as err:
        raise ValueError(
            f"unknown data set name={name!r}; expected 'digits', 'folder:PATH' or a TFDS "
            f"image-classification set such as {sorted(KNOWN_STATS)}"
        ) from err
    keys = builder.info.supervised_keys
    if not keys or len(keys) != 2:
        raise ValueError(
            f"TFDS data set name={name!r} has no (image, label) supervised keys; "
            "expected an image-classification set"
        )
    image_key, label_key = keys
    num_classes, class_names = _tfds_num_classes(builder, label_key)
    image_feature = builder.info.features[image_key]
    image_shape = tuple(image_feature.shape)
    if len(image_shape) != 3:
        raise ValueError(f"TFDS data set name={name!r} has image shape {image_shape}, expected HWC")

    builder.download_and_prepare()
    splits = builder.info.splits
    if name in EVAL_SPLIT:
        test_split = EVAL_SPLIT[name]
    elif len(splits) == 0 or "test" in splits:
        test_split = "test"
    elif "validation" in splits:
        test_split = "validation"
    else:
        raise ValueError(
            f"TFDS data set name={name!r} has neither a 'test' nor a 'validation' split"
        )

    def as_dataset(split: str, skip_images: bool = False) -> tf.data.Dataset:
        decoders = {image_key: tfds.decode.SkipDecoding()} if skip_images else None
        ds = builder.as_dataset(
            split=split,
            shuffle_files=False,
            decoders=decoders,
            read_config=tfds.ReadConfig(shuffle_seed=0, interleave_cycle_length=1),
        )
        return ds.map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)))

    def count(split: str) -> int | None:
        if split in splits:
            return int(splits[split].num_examples)
        return None

    def scan_labels(split: str) -> np.ndarray:
        ds = as_dataset(split, skip_images=True).map(lambda x, y: y).batch(65536)
        parts = [b.numpy() for b in ds]
        return np.concatenate(parts) if parts else np.zeros([0], np.int32)

    num_train, num_test = count("train"), count(test_split)
    train_labels = None
    if num_train is None or num_train <= MAX_LABEL_SCAN:
        train_labels = scan_labels("train")
        num_train = len(train_labels)
        check_labels(train_labels, num_classes, f"TFDS {name!r} split 'train'")
        if num_test is None or num_test <= MAX_LABEL_SCAN:
            test_labels = scan_labels(test_split)
            num_test = len(test_labels)
            check_labels(test_labels, num_classes, f"TFDS {name!r} split {test_split!r}")

    def train(keep: np.ndarray | None) -> tf.data.Dataset:
        ds = as_dataset("train")
        if keep is None:
            return ds
        # Keep the chosen source positions only; enumerate happens before the filter so the
        # positions refer to the full split.
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(keep, tf.int64), tf.ones([len(keep)], tf.int64)
            ),
            default_value=0,
        )
        ds = ds.enumerate().filter(lambda i, ex: table.lookup(i) > 0)
        return ds.map(lambda i, ex: ex)

    stats = KNOWN_STATS.get(name)
    return Source(
        name=name,
        class_names=class_names,
        train=train,
        test=as_dataset(test_split),
        num_train=num_train,
        num_test=num_test,
        train_labels=train_labels,
        image_shape=image_shape,
        mean=stats[0] if stats else None,
        std=stats[1] if stats else None,
        check_labels_in_graph=train_labels is None,
    )
