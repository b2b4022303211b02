"""keras_sd.data.load: digits, TFDS (mocked), image folders, real CIFAR-10 folder."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from image_helpers import pad_crop_flip_hits

from keras_sd import data
from keras_sd.data import sources

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)


def _epoch(ds):
    xs, ys, idx = [], [], []
    for x, y in ds:
        if isinstance(x, dict):
            xs.append(x["image"].numpy())
            if "index" in x:
                idx.append(x["index"].numpy())
        else:
            xs.append(x.numpy())
        ys.append(y.numpy())
    return (np.concatenate(xs), np.concatenate(ys), np.concatenate(idx) if idx else None)


# ------------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits_np():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    tr, te = train_test_split(
        np.arange(len(d.target)), test_size=0.2, stratify=d.target, random_state=0
    )
    tr, te = np.sort(tr), np.sort(te)
    return (
        d.images[tr][..., None] / 16.0,
        d.target[tr],
        d.images[te][..., None] / 16.0,
        d.target[te],
    )


def test_digits_counts_stats_and_test_set(digits_np):
    x_tr, y_tr, x_te, y_te = digits_np
    b = data.load("digits", batch_size=100)
    info = b.info
    assert (info.num_train, info.num_test, info.num_classes) == (1437, 360, 10)
    assert info.image_shape == (8, 8, 1) and b.augment == "none"
    np.testing.assert_allclose(info.mean, [x_tr.mean()], rtol=1e-6)
    np.testing.assert_allclose(info.std, [x_tr.std()], rtol=1e-6)
    x, y, _ = _epoch(b.test)
    np.testing.assert_array_equal(y, y_te)
    np.testing.assert_allclose(x, (x_te - x_tr.mean()) / x_tr.std(), atol=1e-5)
    # Stratified: each class's share of the test set is within one image of 20 %.
    for c in range(10):
        total = (y_tr == c).sum() + (y_te == c).sum()
        assert abs((y == c).sum() - 0.2 * total) <= 1


def test_digits_train_normalised_and_deterministic():
    b = data.load("digits", batch_size=64, drop_remainder=False)
    x, y, _ = _epoch(b.train)
    assert x.shape == (1437, 8, 8, 1) and y.dtype == np.int32
    assert abs(x.mean()) < 1e-4 and abs(x.std() - 1.0) < 1e-4
    x2, y2, _ = _epoch(data.load("digits", batch_size=64, drop_remainder=False).train)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(x, x2)


def test_index_is_stable_and_covers_the_set():
    b = data.load("digits", batch_size=100, with_index=True, drop_remainder=False, seed=3)
    x1, y1, i1 = _epoch(b.train)
    x2, y2, i2 = _epoch(b.train)
    assert i1.dtype == np.int32
    np.testing.assert_array_equal(np.sort(i1), np.arange(1437))
    assert not np.array_equal(i1, i2)  # reshuffled
    order1, order2 = np.argsort(i1), np.argsort(i2)
    np.testing.assert_array_equal(x1[order1], x2[order2])  # index i is always the same image
    np.testing.assert_array_equal(y1[order1], y2[order2])
    # The index is the source position: same images as the unshuffled pipeline.
    x0, _, i0 = _epoch(
        data.load(
            "digits", batch_size=100, with_index=True, shuffle=False, drop_remainder=False
        ).train
    )
    np.testing.assert_array_equal(i0, np.arange(1437))
    np.testing.assert_array_equal(x0, x1[order1])
    # The test pipeline keeps the dict structure but never carries the index.
    xt, _ = next(iter(b.test))
    assert set(xt) == {"image"}


def test_shuffle_reproducible_and_differs_across_epochs_and_seeds():
    def orders(seed):
        b = data.load("digits", batch_size=100, with_index=True, seed=seed)
        return [_epoch(b.train)[2] for _ in range(2)]

    a, b, c = orders(11), orders(11), orders(12)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(a[0], c[0])
    assert len(a[0]) == 1400  # drop_remainder with 14 full batches


def _indices(ds):
    return np.concatenate([x["index"].numpy() for x, _ in ds])


def test_epoch_is_a_uniform_permutation_keyed_by_seed_and_epoch():
    b = data.load("digits", batch_size=100, with_index=True, seed=11, drop_remainder=False)
    epochs = [_indices(b.epoch(e)) for e in range(3)]
    for order in epochs:  # every epoch holds each example exactly once
        np.testing.assert_array_equal(np.sort(order), np.arange(1437))
    # Consecutive epochs are different permutations; the same (seed, epoch) is the same one,
    # on any pass and from a fresh load; another seed gives another one.
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[1], epochs[2])
    np.testing.assert_array_equal(_indices(b.epoch(1)), epochs[1])
    again = data.load("digits", batch_size=100, with_index=True, seed=11, drop_remainder=False)
    np.testing.assert_array_equal(_indices(again.epoch(2)), epochs[2])
    other = data.load("digits", batch_size=100, with_index=True, seed=12, drop_remainder=False)
    assert not np.array_equal(_indices(other.epoch(1)), epochs[1])


def test_permutation_is_uniform():
    # 20 images (2 per class), 1000 epochs: which image comes first, and the position of image
    # 0, must each be uniform over the 20 choices. Chi-square with 19 degrees of freedom; the
    # bound 43.82 is its 0.999 quantile, so a correct shuffle fails once in a thousand seeds.
    b = data.load(
        "digits", batch_size=20, with_index=True, train_per_class=2, seed=0, subset_seed=0
    )
    assert b.batches_per_epoch == 1
    orders = _indices(b.batches(0, 1000)).reshape(1000, 20)
    for order in orders:
        assert sorted(order) == list(range(20))
    expected = 1000 / 20
    for counts in (
        np.bincount(orders[:, 0], minlength=20),
        np.bincount(np.argmax(orders == 0, axis=1), minlength=20),
    ):
        chi2 = ((counts - expected) ** 2 / expected).sum()
        assert chi2 < 43.82, counts


def test_batches_are_the_epochs_end_to_end():
    b = data.load("digits", batch_size=100, with_index=True, augment="cifar", seed=3)
    per = b.batches_per_epoch
    assert per == 1437 // 100
    want = [x for e in range(3) for x, _ in b.epoch(e)]
    for start, stop in ((0, 3 * per), (per + 3, 3 * per), (2 * per - 1, 2 * per + 1)):
        got = list(b.batches(start, stop))
        assert len(got) == stop - start == int(b.batches(start, stop).cardinality())
        for (x, _), w in zip(got, want[start:stop]):
            np.testing.assert_array_equal(x["index"], w["index"])
            np.testing.assert_array_equal(x["image"], w["image"])  # same augmentation draws
    assert int(b.batches(5).cardinality()) == tf.data.INFINITE_CARDINALITY


def test_augmentation_is_per_sample_and_per_epoch():
    # No shuffle: every epoch has the same order, so only the augmentation can differ.
    b = data.load("digits", batch_size=64, augment="cifar", shuffle=False, seed=1)
    first, _, _ = _epoch(b.epoch(0))
    second, _, _ = _epoch(b.epoch(1))
    # Most images get another crop/flip in the next epoch (a few draw the same one by chance:
    # 81 offsets x 2 flips, fewer distinct results on the digits' blank borders).
    changed = np.mean([not np.array_equal(a, c) for a, c in zip(first, second)])
    assert changed > 0.8, changed
    np.testing.assert_array_equal(_epoch(b.epoch(1))[0], second)


@pytest.mark.slow
def test_epoch_is_the_same_across_processes_and_global_seeds(tmp_path):
    # The same (seed, epoch) here under two tf global seeds and in a fresh process (~40 s).
    import os
    import pathlib
    import subprocess
    import sys

    def first_batch(bundle):
        x, _ = next(iter(bundle.epoch(2)))
        return np.concatenate([x["index"].numpy(), x["image"].numpy().ravel()]).astype("float64")

    here = []
    for global_seed in (1, 2):
        tf.random.set_seed(global_seed)
        b = data.load("digits", batch_size=100, with_index=True, augment="cifar", seed=5)
        here.append(first_batch(b))
    np.testing.assert_array_equal(here[0], here[1])
    script = tmp_path / "order.py"
    script.write_text(
        "import sys, numpy as np\n"
        "from keras_sd import data\n"
        "b = data.load('digits', batch_size=100, with_index=True, augment='cifar', seed=5)\n"
        "x, _ = next(iter(b.epoch(2)))\n"
        "np.save(sys.argv[1], np.concatenate([x['index'].numpy(), "
        "x['image'].numpy().ravel()]).astype('float64'))\n"
    )
    root = pathlib.Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = tmp_path / "other.npy"
    subprocess.run([sys.executable, str(script), str(out)], env=env, check=True)
    np.testing.assert_array_equal(np.load(out), here[0])
    other = data.load("digits", batch_size=100, with_index=True, augment="cifar", seed=6)
    assert not np.array_equal(first_batch(other), here[0])


def test_bounded_shuffle_ignores_the_global_seed():
    # Variable-size sets (ImageNet) take the bounded-buffer shuffle, not the stateless
    # permutation above. tf.data pairs a shuffle's seed with the global seed, so the epoch
    # changed with tf.random.set_seed, and after keras.utils.set_random_seed(0) TF's get_seed
    # tested the tensor seed as a Python bool and the set did not load at all.
    def order(bundle, epoch):
        return np.concatenate([x["index"].numpy() for x, _ in bundle.epoch(epoch)])

    orders = {}
    with tfds.testing.mock_data(num_examples=12):
        for global_seed in (0, 3, None):
            if global_seed is None:
                tf.random.set_seed(None)
            else:
                keras.utils.set_random_seed(global_seed)
            b = data.load("imagenet2012", batch_size=3, augment="imagenet", with_index=True, seed=5)
            assert b.info.image_shape == (224, 224, 3)
            orders[global_seed] = [order(b, 1), order(b, 2)]
            resumed = np.concatenate([x["index"].numpy() for x, _ in b.batches(4, 8)])
            np.testing.assert_array_equal(resumed, orders[global_seed][0])  # epoch 1
    for global_seed in (3, None):
        np.testing.assert_array_equal(orders[global_seed], orders[0])
    first, second = orders[0]
    assert sorted(first) == list(range(12)) and sorted(second) == list(range(12))
    assert not np.array_equal(first, second)  # each epoch has its own order


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda b: b.epoch(-1), "epoch=-1"),
        (lambda b: b.epoch(1.0), "epoch=1.0"),
        (lambda b: b.batches(-1), "start=-1"),
        (lambda b: b.batches(5, 4), "stop=4"),
        (lambda b: b.batches(0, "9"), "stop='9'"),
    ],
)
def test_bad_epoch_and_batch_positions_are_named(call, match):
    b = data.load("digits", batch_size=100)
    with pytest.raises(ValueError, match=match):
        call(b)


def test_train_has_the_epoch_length_as_cardinality():
    # A plain fit(bundle.train) then knows the epoch length (no "ran out of data" epoch).
    for kwargs, n in (({}, 1437 // 64), ({"drop_remainder": False}, -(-1437 // 64))):
        b = data.load("digits", batch_size=64, augment="cifar", **kwargs)
        assert b.batches_per_epoch == n == int(b.train.cardinality())
        assert len(list(b.train)) == n


def test_pipeline_cifar_augment_is_per_sample_translation():
    plain = data.load(
        "digits", batch_size=100, with_index=True, shuffle=False, drop_remainder=False
    )
    ref, _, _ = _epoch(plain.train)
    b = data.load("digits", batch_size=64, with_index=True, augment="cifar", seed=1)
    ((x, _),) = b.train.take(1)
    images, index = x["image"].numpy(), x["index"].numpy()
    draws = []
    for out, i in zip(images, index):
        hits = pad_crop_flip_hits(out, ref[i], lambda a, b: np.allclose(a, b, atol=1e-6))
        assert hits, "augmented image must be a pad-4 translation (+ flip) of the original"
        draws.append(hits[0])
    assert len({d[:2] for d in draws}) > 5
    assert 0 < sum(d[2] for d in draws) < len(draws)
    ((x2, _),) = b.train.take(1)  # a new epoch draws new crops
    assert not np.array_equal(images, x2["image"].numpy())


def test_pipeline_identical_images_get_different_crops(tmp_path):
    img = np.random.default_rng(2).integers(1, 256, (8, 8, 3), dtype=np.uint8)
    for k in range(16):
        _write(tmp_path / "train" / "a" / f"{k}.png", img, "png")
    _write(tmp_path / "test" / "a" / "0.png", img, "png")
    b = data.load(f"folder:{tmp_path}", batch_size=16, augment="cifar", seed=0)
    x, _ = next(iter(b.train))
    assert len({o.tobytes() for o in x.numpy()}) > 1


def test_train_per_class_subset_balanced_and_seeded():
    b = data.load("digits", batch_size=50, train_per_class=30, with_index=True, seed=4)
    assert b.info.num_train == 300
    x, y, idx = _epoch(b.train)
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [30] * 10)
    np.testing.assert_array_equal(np.sort(idx), np.arange(300))
    same = _epoch(
        data.load(
            "digits", batch_size=50, train_per_class=30, seed=4, with_index=True, shuffle=False
        ).train
    )[0]
    other = _epoch(
        data.load(
            "digits", batch_size=50, train_per_class=30, seed=5, with_index=True, shuffle=False
        ).train
    )[0]
    np.testing.assert_array_equal(x[np.argsort(idx)], same)
    assert not np.array_equal(same, other)


# ------------------------------------------------------------------------------- TFDS


@pytest.mark.parametrize(
    "name, classes, mean",
    [("cifar10", 10, CIFAR10_MEAN), ("cifar100", 100, (0.5071, 0.4865, 0.4409))],
)
def test_tfds_mock(name, classes, mean):
    with tfds.testing.mock_data(num_examples=24):
        raw = [
            (x.numpy(), int(y))
            for x, y in tfds.load(name, split="test", as_supervised=True, shuffle_files=False)
        ]
        b = data.load(name, batch_size=8, with_index=True, eval_batch_size=10)
        info = b.info
        assert (info.num_classes, info.num_train, info.num_test) == (classes, 24, 24)
        assert info.image_shape == (32, 32, 3) and b.augment == "cifar"
        assert len(info.class_names) == classes and info.mean == mean
        x, y, idx = _epoch(b.train)
        assert x.shape == (24, 32, 32, 3) and x.dtype == np.float32
        assert y.dtype == np.int32 and y.min() >= 0 and y.max() < classes
        np.testing.assert_array_equal(np.sort(idx), np.arange(24))
        xt, yt, _ = _epoch(b.test)
        np.testing.assert_array_equal(yt, [r[1] for r in raw])
        expect = (np.stack([r[0] for r in raw]) / 255.0 - np.array(mean)) / np.array(info.std)
        np.testing.assert_allclose(xt, expect, atol=1e-5)
        assert [len(yb) for _, yb in b.test] == [10, 10, 4]


def test_tfds_train_per_class_and_labels_out_of_range(monkeypatch):
    with tfds.testing.mock_data(num_examples=200):
        b = data.load("cifar10", batch_size=10, train_per_class=3, with_index=True)
        assert b.info.num_train == 30
        _, y, idx = _epoch(b.train)
        np.testing.assert_array_equal(np.bincount(y, minlength=10), [3] * 10)
        np.testing.assert_array_equal(np.sort(idx), np.arange(30))
        monkeypatch.setattr(sources, "_tfds_num_classes", lambda builder, key: (5, tuple("abcde")))
        with pytest.raises(ValueError, match="labels out of range"):
            data.load("cifar10", batch_size=10)


def test_unknown_data_set():
    with pytest.raises(ValueError, match="unknown data set.*digits.*folder:PATH"):
        data.load("no_such_data_set_xyz")


# ------------------------------------------------------------------------------- folders


def _write(path, image, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    enc = tf.io.encode_png(image) if fmt == "png" else tf.io.encode_jpeg(image, quality=95)
    path.write_bytes(enc.numpy())


def _make_folder(root, classes=("cat", "ant", "bee"), n_train=4, n_test=2, shape=(6, 7, 3), seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        for label, cls in enumerate(sorted(classes)):
            for k in range(n):
                img = rng.integers(0, 256, shape, dtype=np.uint8)
                _write(root / split / cls / f"{k:03d}.png", img, "png")
                arrays[split].append((img, label))
    return arrays


def test_folder_loader(tmp_path):
    arrays = _make_folder(tmp_path)
    b = data.load(f"folder:{tmp_path}", batch_size=4, with_index=True, eval_batch_size=5)
    info = b.info
    assert info.class_names == ("ant", "bee", "cat")
    assert (info.num_train, info.num_test, info.num_classes) == (12, 6, 3)
    assert info.image_shape == (6, 7, 3) and b.augment == "cifar"
    train = np.stack([a for a, _ in arrays["train"]]) / 255.0
    np.testing.assert_allclose(info.mean, train.reshape(-1, 3).mean(0), rtol=1e-6)
    np.testing.assert_allclose(info.std, train.reshape(-1, 3).std(0), rtol=1e-6)
    xt, yt, _ = _epoch(b.test)
    np.testing.assert_array_equal(yt, [lbl for _, lbl in arrays["test"]])
    test = np.stack([a for a, _ in arrays["test"]]) / 255.0
    np.testing.assert_allclose(xt, (test - info.mean) / info.std, atol=1e-5)
    x, y, idx = _epoch(b.train)
    assert x.shape == (12, 6, 7, 3)
    np.testing.assert_array_equal(y, np.array([lbl for _, lbl in arrays["train"]])[idx])


def test_folder_jpeg_resize_and_grayscale(tmp_path):
    rng = np.random.default_rng(1)
    _write(tmp_path / "train" / "a" / "0.jpg", rng.integers(0, 256, (9, 9, 1), np.uint8), "jpg")
    _write(tmp_path / "train" / "b" / "0.png", rng.integers(0, 256, (5, 4, 3), np.uint8), "png")
    _write(tmp_path / "test" / "a" / "0.png", rng.integers(0, 256, (9, 9, 1), np.uint8), "png")
    _write(tmp_path / "test" / "b" / "0.jpeg", rng.integers(0, 256, (20, 3, 3), np.uint8), "jpg")
    (tmp_path / "test" / "b" / "notes.txt").write_text("not an image")
    b = data.load(f"folder:{tmp_path}", batch_size=2, augment="none")
    assert b.info.image_shape == (9, 9, 1) and b.info.num_test == 2
    x, y, _ = _epoch(b.test)
    assert x.shape == (2, 9, 9, 1)
    np.testing.assert_array_equal(y, [0, 1])
    b = data.load(f"folder:{tmp_path}", batch_size=2, image_size=(4, 5))
    assert b.info.image_shape == (4, 5, 1)
    assert _epoch(b.train)[0].shape == (2, 4, 5, 1)


def test_folder_imagenet_augment(tmp_path):
    _make_folder(tmp_path, classes=("x", "y"), n_train=2, n_test=1, shape=(70, 90, 3))
    b = data.load(f"folder:{tmp_path}", batch_size=2, seed=0)
    assert b.augment == "imagenet" and b.info.image_shape == (224, 224, 3)
    x, _ = next(iter(b.train))
    assert x.shape == (2, 224, 224, 3)
    t1, t2 = _epoch(b.test)[0], _epoch(b.test)[0]
    assert t1.shape == (2, 224, 224, 3)
    np.testing.assert_array_equal(t1, t2)


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        data.load(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="'train' subfolder"):
        data.load(f"folder:{tmp_path}")
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError, match="no class subfolders"):
        data.load(f"folder:{tmp_path}")
    (tmp_path / "train" / "a").mkdir()
    with pytest.raises(ValueError, match="is empty"):
        data.load(f"folder:{tmp_path}")
    _write(tmp_path / "train" / "a" / "0.png", np.zeros((4, 4, 3), np.uint8), "png")
    with pytest.raises(ValueError, match="'test' subfolder"):
        data.load(f"folder:{tmp_path}")
    _write(tmp_path / "test" / "z" / "0.png", np.zeros((4, 4, 3), np.uint8), "png")
    with pytest.raises(ValueError, match="differ from those of the train"):
        data.load(f"folder:{tmp_path}")
    with pytest.raises(ValueError, match="empty folder path"):
        data.load("folder:")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -3}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"batch_size": 5000}, "batch_size=5000"),
        ({"eval_batch_size": 0}, "eval_batch_size"),
        ({"augment": "autoaugment"}, "augment"),
        ({"train_per_class": 0}, "train_per_class"),
        ({"train_per_class": 1000}, "train_per_class=1000"),
        ({"seed": "0"}, "seed"),
        ({"image_size": 32}, "image_size"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load("digits", **kwargs)


def test_bad_name_and_image_size(tmp_path):
    with pytest.raises(ValueError, match="name"):
        data.load("")
    _make_folder(tmp_path, classes=("a",), n_train=1, n_test=1)
    with pytest.raises(ValueError, match="image_size"):
        data.load(f"folder:{tmp_path}", batch_size=1, image_size=(0, 3))


# ------------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_cifar10_folder(cifar10_dir):
    b = data.load(f"folder:{cifar10_dir}", batch_size=128)
    info = b.info
    assert (info.num_train, info.num_test, info.num_classes) == (50_000, 10_000, 10)
    assert info.class_names == (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
    assert info.image_shape == (32, 32, 3) and b.augment == "cifar"
    # README: per-channel train mean 125.3/122.9/113.9 and std 62.5/61.9/66.5 (of 255);
    # the statistics come from a fixed sample of 10,000 training images.
    np.testing.assert_allclose(np.array(info.mean) * 255, [125.3, 122.9, 113.9], atol=1.0)
    np.testing.assert_allclose(np.array(info.std) * 255, [62.5, 61.9, 66.5], atol=1.0)
    x, y = next(iter(b.test))  # only the first 128 test images are decoded
    assert x.shape == (128, 32, 32, 3) and (y.numpy() == 0).all()  # source order: airplanes

    sub = data.load(f"folder:{cifar10_dir}", batch_size=50, train_per_class=20, with_index=True)
    assert sub.info.num_train == 200
    _, ys, idx = _epoch(sub.train)
    np.testing.assert_array_equal(np.bincount(ys, minlength=10), [20] * 10)
    np.testing.assert_array_equal(np.sort(idx), np.arange(200))
