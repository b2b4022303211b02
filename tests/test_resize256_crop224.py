"""augment="resize256_crop224": Xu & Liu's ImageNet crop, in the pipeline and in the step."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from image_helpers import write_png

from keras_sd import data, layers, recipes
from keras_sd.experiment import pipeline_augment
from keras_sd.models import two_view

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Train: 4 copies of one 70x90 image, then 4 others; test: 2 of those others.

    A folder set has one image size (see ``sources.folder_source``); variable sizes are covered
    by the TFDS test below.
    """
    root = tmp_path_factory.mktemp("sq")
    rng = np.random.default_rng(0)
    same = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    images = [same] * 4 + [rng.integers(0, 256, (70, 90, 3), dtype=np.uint8) for _ in range(4)]
    for k, img in enumerate(images):
        write_png(root / "train" / "a" / f"{k}.png", img)
    for k in range(2):
        write_png(root / "test" / "a" / f"{k}.png", images[4 + k])
    return root, images


def _square(image, info):
    """The paper's 256x256 resize of one image, normalised like the pipeline."""
    x = tf.image.resize(image, (256, 256), antialias=True).numpy()
    return (x / 255.0 - np.array(info.mean)) / np.array(info.std)


def _find_window(out, big):
    """(dy, dx, flipped) of the 224 window of ``big`` that ``out`` is, or None."""
    for flipped in (False, True):
        o = out[:, ::-1] if flipped else out
        for dy in range(33):
            for dx in range(33):
                if np.abs(big[dy, dx] - o[0, 0]).max() > 1e-4:  # cheap pre-check
                    continue
                if np.allclose(big[dy : dy + 224, dx : dx + 224], o, atol=1e-4):
                    return dy, dx, flipped
    return None


def _batches(ds):
    xs, idx = [], []
    for x, _ in ds:
        xs.append(x["image"].numpy())
        idx.append(x["index"].numpy())
    return np.concatenate(xs), np.concatenate(idx)


def test_pipeline_crops_a_per_sample_window_of_the_256_square(folder):
    root, images = folder
    b = data.load(
        f"folder:{root}", batch_size=8, augment="resize256_crop224", with_index=True, seed=0
    )
    assert b.augment == "resize256_crop224" and b.info.image_shape == (224, 224, 3)
    x, index = _batches(b.train)
    assert x.shape == (8, 224, 224, 3) and x.dtype == np.float32
    draws = {}
    for out, i in zip(x, index):
        hit = _find_window(out, _square(images[i], b.info))
        assert hit is not None, f"image {i} is not a 224 window of its 256x256 resize"
        draws[int(i)] = hit
    # The four copies of one image (indices 0..3) in one batch get different windows.
    assert len({draws[i] for i in range(4)}) > 1
    # Test split: the centre window (offset 16) of the 256x256 resize, deterministic.
    xt = np.concatenate([x["image"].numpy() for x, _ in b.test])
    for out, src in zip(xt, images[4:6]):
        np.testing.assert_allclose(out, _square(src, b.info)[16:240, 16:240], atol=1e-4)


def test_undistorted_kind_and_in_step_layer_make_the_same_crop(folder):
    root, images = folder
    plain = data.load(f"folder:{root}", batch_size=8, augment="resize256", with_index=True)
    assert plain.augment == "resize256" and plain.info.image_shape == (224, 224, 3)
    x, index = _batches(plain.train)
    assert x.shape == (8, 256, 256, 3)
    for big, i in zip(x, index):
        np.testing.assert_allclose(big, _square(images[i], plain.info), atol=1e-4)
    layer = data.distortion("resize256_crop224", (224, 224, 3), seed=0)
    assert isinstance(layer, layers.RandomCropFlip)
    # Exactly the op the two-view model builds from the recipe's string spec.
    built = two_view.build_distortion("resize256_crop224", (224, 224, 3), seed=0)
    assert isinstance(built, layers.RandomCropFlip) and (built.height, built.width) == (224, 224)
    views = [layer(tf.constant(x), training=True).numpy() for _ in range(2)]
    hits = [[_find_window(v, big) for v, big in zip(view, x)] for view in views]
    assert all(h is not None for view in hits for h in view)
    assert len({h for h in hits[0][:4]}) > 1  # per sample, within one batch
    assert hits[0] != hits[1]  # the two views differ
    np.testing.assert_array_equal(
        layer(tf.constant(x[:, :224, :224]), training=False), x[:, :224, :224]
    )


RECIPE = str(REPO / "recipes" / "two_view" / "resnet18_imagenet.py")


def test_both_recipe_rows_use_the_papers_crop():
    # Through the loader: the `baseline` row is built by `recipes.load` from the file's BASELINE.
    method, baseline = recipes.load(RECIPE), recipes.load(RECIPE + ":baseline")
    assert method.data == baseline.data
    assert method.data.augment == "resize256_crop224"
    assert method.method_args["distortion"] == "resize256_crop224"
    assert baseline.method == "baseline" and baseline.method_args == {}
    # Baseline: the pipeline crops; method: the pipeline yields the 256x256 squares and the
    # model crops them with the op of the same name.
    assert pipeline_augment(baseline) == "resize256_crop224"
    assert pipeline_augment(method) == data.pipeline.UNDISTORTED["resize256_crop224"]
    assert pipeline_augment(method) == "resize256"
    for arg in ("two_branch", "mmd_only", "kl_only"):
        row = recipes.load(f"{RECIPE}:{arg}")
        assert row.data.augment == "resize256_crop224"
        assert row.method_args["distortion"] == "resize256_crop224"


def test_tfds_mock_imagenet_shapes():
    with tfds.testing.mock_data(num_examples=6):
        b = data.load("imagenet2012", batch_size=3, augment="resize256_crop224", seed=0)
        x, _ = next(iter(b.train))
        assert x.shape == (3, 224, 224, 3) and b.info.image_shape == (224, 224, 3)
        xt, _ = next(iter(b.test))
        assert xt.shape[1:] == (224, 224, 3)
        p = data.load("imagenet2012", batch_size=3, augment="resize256", seed=0)
        x, _ = next(iter(p.train))
        assert x.shape == (3, 256, 256, 3) and p.info.image_shape == (224, 224, 3)


def test_bad_values():
    with pytest.raises(ValueError, match="height"):
        layers.RandomCropFlip(height=0)
    with pytest.raises(ValueError, match="RandomCropFlip crops 224x224"):
        layers.RandomCropFlip(224, 224)(tf.zeros([1, 200, 256, 3]), training=True)
    with pytest.raises(
        ValueError,
        match=r"^`kind` must be one of \('cifar', 'autoaugment', 'randaugment', 'imagenet', 'resize256_crop224', 'none'\), got 'resize256'\.$",
    ):
        data.distortion("resize256", (224, 224, 3))
