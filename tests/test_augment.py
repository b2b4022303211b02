"""Per-sample distortion layers (keras_sd.layers.augment) and data.distortion."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_sd import data
from keras_sd.layers import augment as aug


def _np_pad_crop(image: np.ndarray, dy: int, dx: int, padding: int) -> np.ndarray:
    h, w = image.shape[:2]
    padded = np.pad(image, [(padding, padding), (padding, padding), (0, 0)])
    return padded[dy : dy + h, dx : dx + w]


def _match_translation(out: np.ndarray, image: np.ndarray, padding: int, flips=(False, True)):
    """All (dy, dx, flipped) for which out is the NumPy pad+slice (+ flip) of image."""
    hits = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = _np_pad_crop(image, dy, dx, padding)
            for f in flips:
                if np.array_equal(out, crop[:, ::-1] if f else crop):
                    hits.append((dy, dx, f))
    return hits


@pytest.fixture
def image():
    # Strictly positive random values: every translation and flip is distinguishable.
    return np.random.default_rng(0).uniform(0.1, 1.0, (10, 12, 3)).astype("float32")


def test_pad_and_random_crop_is_per_sample_translation(image):
    batch = np.repeat(image[None], 48, axis=0)
    out = aug.PadAndRandomCrop(padding=2, seed=1)(batch, training=True).numpy()
    offsets = []
    for o in out:
        hits = _match_translation(o, image, 2, flips=(False,))
        assert len(hits) == 1, "each output must be exactly one translation of the padded image"
        offsets.append(hits[0][:2])
    # Identical inputs get different crops within one batch (P(all equal) = 25**-47).
    assert len(set(offsets)) > 1


def test_pad_crop_offsets_cover_range():
    # A delta image: the output position of the single 1 reveals the offset.
    img = np.zeros((5, 5, 1), "float32")
    img[2, 2, 0] = 1.0
    out = aug.PadAndRandomCrop(padding=1, seed=3)(np.repeat(img[None], 400, 0), training=True)
    pos = set()
    for o in out.numpy():
        r, c = np.argwhere(o[..., 0] == 1.0)[0]
        pos.add((2 - r + 1, 2 - c + 1))  # dy, dx in 0..2
    assert pos == {(dy, dx) for dy in range(3) for dx in range(3)}


def test_cifar_distortion_crop_and_flip_per_sample(image):
    layer = data.distortion("cifar", image.shape, seed=5)
    out = layer(np.repeat(image[None], 64, 0), training=True).numpy()
    draws = []
    for o in out:
        hits = _match_translation(o, image, 4)
        assert len(hits) == 1
        draws.append(hits[0])
    flips = [d[2] for d in draws]
    assert any(flips) and not all(flips)
    assert len({d[:2] for d in draws}) > 1


def test_random_horizontal_flip_per_sample(image):
    out = aug.RandomHorizontalFlip(seed=0)(np.repeat(image[None], 64, 0), training=True).numpy()
    flipped = []
    for o in out:
        if np.array_equal(o, image):
            flipped.append(False)
        else:
            np.testing.assert_array_equal(o, image[:, ::-1])
            flipped.append(True)
    assert 0 < sum(flipped) < 64


@pytest.mark.parametrize(
    "layer",
    [
        lambda: aug.PadAndRandomCrop(4, horizontal_flip=True, seed=0),
        lambda: aug.RandomHorizontalFlip(seed=0),
        lambda: aug.RandomResizedCrop(10, 12, seed=0),
        lambda: data.distortion("none", (10, 12, 3)),
    ],
)
def test_identity_when_not_training(layer, image):
    batch = np.stack([image, image * 0.5])
    layer = layer()
    np.testing.assert_array_equal(layer(batch, training=False).numpy(), batch)
    np.testing.assert_array_equal(layer(batch).numpy(), batch)


def test_seeded_reproducible_and_successive_calls_differ(image):
    batch = np.repeat(image[None], 16, 0)
    a, b = (
        data.distortion("cifar", image.shape, seed=7),
        data.distortion("cifar", image.shape, seed=7),
    )
    a1, a2 = a(batch, training=True).numpy(), a(batch, training=True).numpy()
    b1 = b(batch, training=True).numpy()
    np.testing.assert_array_equal(a1, b1)
    assert not np.array_equal(a1, a2)  # two views of the same batch differ
    c1 = data.distortion("cifar", image.shape, seed=8)(batch, training=True).numpy()
    assert not np.array_equal(a1, c1)


def test_works_in_tf_function_and_tf_data(image):
    layer = data.distortion("cifar", image.shape, seed=1)
    batch = np.repeat(image[None], 8, 0)

    @tf.function
    def two_views(x):
        return layer(x, training=True), layer(x, training=True)

    v1, v2 = two_views(tf.constant(batch))
    assert v1.shape == batch.shape and not np.array_equal(v1.numpy(), v2.numpy())
    for o in v1.numpy():
        assert len(_match_translation(o, image, 4)) == 1

    ds = tf.data.Dataset.from_tensor_slices(batch).batch(4).map(lambda x: layer(x, training=True))
    outs = np.concatenate([b.numpy() for b in ds])
    for o in outs:
        assert len(_match_translation(o, image, 4)) == 1
    # Rank-3 inputs (per-example map) are accepted by the layer itself.
    crop = aug.PadAndRandomCrop(4, seed=2)
    single = tf.data.Dataset.from_tensor_slices(batch).map(lambda x: crop(x, training=True))
    for o in single:
        assert len(_match_translation(o.numpy(), image, 4, flips=(False,))) == 1


def test_random_resized_crop_full_box_is_identity(image):
    batch = np.stack([image, image + 1.0])
    layer = aug.RandomResizedCrop(10, 12, scale=(1.0, 1.0), ratio=(1.2, 1.2), seed=0)
    np.testing.assert_allclose(layer(batch, training=True).numpy(), batch, atol=1e-5)


def test_random_resized_crop_boxes_area_and_ratio():
    h, w = 30, 50
    boxes = aug.resized_crop_boxes(2000, h, w, tf.constant([1, 2]), (0.1, 0.5), (0.75, 4 / 3))
    boxes = boxes.numpy()
    bh, bw = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 1 + 1e-6).all()
    unclipped = (bh < 1 - 1e-6) & (bw < 1 - 1e-6)
    assert unclipped.mean() > 0.9
    area = (bh * bw)[unclipped]
    ratio = (bw * w / (bh * h))[unclipped]
    assert area.min() >= 0.1 - 1e-5 and area.max() <= 0.5 + 1e-5
    assert ratio.min() >= 0.75 - 1e-4 and ratio.max() <= 4 / 3 + 1e-4
    # Per-sample: many different boxes.
    assert len(np.unique(np.round(area, 5))) > 1000


def test_random_resized_crop_shape_and_per_sample(image):
    batch = np.repeat(image[None], 8, 0)
    out = aug.RandomResizedCrop(7, 9, seed=0)(batch, training=True).numpy()
    assert out.shape == (8, 7, 9, 3)
    assert len({o.tobytes() for o in out}) == 8
    assert data.distortion("imagenet", (10, 12, 3), seed=0)(batch, training=True).shape == (
        8,
        10,
        12,
        3,
    )


@pytest.mark.parametrize(
    "layer",
    [
        aug.PadAndRandomCrop(3, horizontal_flip=True, seed=4),
        aug.RandomHorizontalFlip(seed=4),
        aug.RandomResizedCrop(
            6, 5, scale=(0.2, 0.9), ratio=(0.5, 2.0), horizontal_flip=True, seed=4
        ),
    ],
)
def test_config_round_trip_and_save_load(layer, tmp_path, image):
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    batch = np.repeat(image[None], 4, 0)
    # Same seed -> same draws for the clone and a fresh layer.
    fresh = layer.__class__.from_config(config)
    np.testing.assert_array_equal(
        clone(batch, training=True).numpy(), fresh(batch, training=True).numpy()
    )
    model = keras.Sequential([keras.Input(image.shape), layer.__class__.from_config(config)])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.layers[0]) is type(layer)
    np.testing.assert_array_equal(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: aug.PadAndRandomCrop(padding=-1), "padding"),
        (lambda: aug.PadAndRandomCrop(padding=2.5), "padding"),
        (lambda: aug.PadAndRandomCrop(horizontal_flip="yes"), "horizontal_flip"),
        (lambda: aug.PadAndRandomCrop(seed=1.5), "seed"),
        (lambda: aug.RandomHorizontalFlip(seed="a"), "seed"),
        (lambda: aug.RandomResizedCrop(0, 5), "height"),
        (lambda: aug.RandomResizedCrop(5, -2), "width"),
        (lambda: aug.RandomResizedCrop(5, 5, scale=(0.5, 0.2)), "scale"),
        (lambda: aug.RandomResizedCrop(5, 5, scale=(0.0, 1.0)), "scale"),
        (lambda: aug.RandomResizedCrop(5, 5, ratio=(2.0, 1.0)), "ratio"),
        (lambda: aug.RandomResizedCrop(5, 5, horizontal_flip=None), "horizontal_flip"),
        (lambda: data.distortion("mixup", (32, 32, 3)), "kind"),
        (lambda: data.distortion("cifar", (32, 32)), "image_shape"),
        (lambda: data.distortion("cifar", (32, 0, 3)), "image_shape"),
        (lambda: data.distortion("cifar", (32, 32, 3), seed="x"), "seed"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_rank():
    with pytest.raises(ValueError, match="rank"):
        aug.PadAndRandomCrop(2, seed=0)(np.zeros((4, 4), "float32"), training=True)


def test_replicas_draw_different_crops_under_mirrored_strategy():
    """The generator state is mirrored across replicas; the layer folds in the replica id so two
    replicas do not crop their local batches identically."""
    import tensorflow as tf
    from strategies import mirrored

    from keras_sd.layers.augment import PadAndRandomCrop

    strategy = mirrored()
    with strategy.scope():
        layer = PadAndRandomCrop(padding=4, horizontal_flip=True, seed=3)
    image = np.arange(16 * 16 * 3, dtype="float32").reshape(1, 16, 16, 3) / 100.0
    batch = np.repeat(image, 8, axis=0)

    @tf.function
    def step(x):
        return layer(x, training=True)

    outs = strategy.run(step, args=(tf.constant(batch),))
    a, b = (np.asarray(t) for t in strategy.experimental_local_results(outs))
    assert not np.array_equal(a, b)
