"""augment="randaugment": DeiT's RandAugment (timm rand-m9-mstd0.5-inc1), per sample, seeded."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from image_helpers import (
    assert_epochs_follow_the_seed,
    eight_bit_pixels,
    first_two_epochs,
    write_same_image_folder,
)

from keras_sd import data
from keras_sd.layers import randaugment as ra

SEED = tf.constant([3, 4], tf.int64)
RNG = np.random.default_rng(0)
# Values 40..199: AutoContrast and Equalize change it (a full-range image is left alone).
IMG = RNG.integers(40, 200, (32, 32, 3)).astype(np.float32)


def test_operations_are_timms_increasing_set():
    # timm auto_augment.py, _RAND_INCREASING_TRANSFORMS (Posterize/Solarize/Color/Contrast/
    # Brightness/Sharpness in their "Increasing" forms, translations relative to the size).
    expected = (
        "AutoContrast Equalize Invert Rotate Posterize Solarize SolarizeAdd Color Contrast "
        "Brightness Sharpness ShearX ShearY TranslateX TranslateY"
    )
    assert ra.OPERATIONS == tuple(expected.split())
    assert (ra.NUM_OPS, ra.MAGNITUDE, ra.MAGNITUDE_STD, ra.PROB) == (2, 9.0, 0.5, 0.5)


# (op, magnitude, sign, expected): timm's level functions written out by hand, 32x32 image.
PARAMS = [
    ("ShearX", 9.0, 1, 0.27),
    ("ShearY", 9.0, -1, -0.27),
    ("TranslateX", 9.0, 1, 0.405 * 32),
    ("TranslateY", 5.0, -1, -0.225 * 32),
    ("Rotate", 9.0, -1, -27.0),
    ("Color", 9.0, 1, 1.81),
    ("Contrast", 9.0, -1, 0.19),
    ("Brightness", 10.0, -1, 0.1),  # 1 - 0.9 = 0.1: the floor
    ("Sharpness", 0.0, 1, 1.0),
    ("Posterize", 9.0, 1, 1.0),  # 4 - int(3.6)
    ("Posterize", 10.0, 1, 0.0),
    ("Posterize", 2.4, 1, 4.0),  # 4 - int(0.96)
    ("Solarize", 9.0, 1, 26.0),  # 256 - int(230.4)
    ("Solarize", 0.0, 1, 256.0),  # nothing inverted
    ("SolarizeAdd", 9.0, 1, 99.0),  # int(99.0)
    ("SolarizeAdd", 5.5, 1, 60.0),  # int(60.5)
]


@pytest.mark.parametrize("op, magnitude, sign, expected", PARAMS)
def test_parameters_follow_timms_level_functions(op, magnitude, sign, expected):
    got = ra.parameter(op, tf.constant([magnitude]), tf.constant([float(sign)]), 32, 32)
    np.testing.assert_allclose(got.numpy(), [expected], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bits", range(9))
def test_posterize_is_pils_bit_mask(bits):
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    want = x & np.uint8((0xFF << (8 - bits)) & 0xFF)  # PIL: keep the high `bits` bits
    got = ra.posterize(tf.constant(x, tf.float32), tf.constant([float(bits)])).numpy()
    np.testing.assert_array_equal(got, want.astype(np.float32))


def test_solarize_add():
    x = np.arange(256, dtype=np.float32).reshape(1, 16, 16, 1)
    got = ra.solarize_add(tf.constant(x), tf.constant([99.0])).numpy()
    want = np.where(x < 128, np.minimum(x + 99, 255), x)
    np.testing.assert_array_equal(got, want)


def test_draws_are_per_sample_seeded_and_distributed_as_deit():
    index, apply, mags, signs = (t.numpy() for t in ra.draws(20000, SEED))
    assert index.shape == apply.shape == mags.shape == signs.shape == (2, 20000)
    assert set(np.unique(index)) == set(range(15))  # uniform over the 15, with replacement
    counts = np.bincount(index.ravel(), minlength=15) / index.size
    np.testing.assert_allclose(counts, 1 / 15, atol=0.01)
    assert abs(apply.mean() - 0.5) < 0.01
    assert mags.min() >= 0 and mags.max() == 10.0  # clipped at the scale's top
    inside = mags[mags < 10]
    assert abs(np.median(mags) - 9.0) < 0.02 and abs(inside.std() - 0.5) < 0.05
    assert set(np.unique(signs)) == {-1.0, 1.0}
    again = [t.numpy() for t in ra.draws(20000, SEED)]
    np.testing.assert_array_equal(index, again[0])
    np.testing.assert_array_equal(mags, again[2])
    other = ra.draws(20000, tf.constant([3, 5], tf.int64))[0].numpy()
    assert (other != index).mean() > 0.9


def test_each_image_gets_its_own_drawn_operation():
    # One operation per image, always applied, fixed magnitude: the elementwise ones are
    # checked against NumPy on exactly the images that drew them, and every other image that
    # drew no change-free op differs from its input.
    batch = np.stack([IMG] * 64)
    kwargs = dict(num_ops=1, magnitude=9.0, magnitude_std=0.0, prob=1.0)
    out = ra.randaugment(tf.constant(batch), SEED, **kwargs).numpy()
    index = ra.draws(64, SEED, **kwargs)[0].numpy()[0]
    signs = ra.draws(64, SEED, **kwargs)[3].numpy()[0]
    names = [ra.OPERATIONS[i] for i in index]
    assert len(set(names)) >= 12
    for o, name, s in zip(out, names, signs):
        if name == "Invert":
            np.testing.assert_array_equal(o, 255 - IMG)
        elif name == "Posterize":  # 1 bit kept at magnitude 9
            np.testing.assert_array_equal(o, np.where(IMG >= 128, 128, 0))
        elif name == "Solarize":  # threshold 26
            np.testing.assert_array_equal(o, np.where(IMG >= 26, 255 - IMG, IMG))
        elif name == "SolarizeAdd":
            np.testing.assert_array_equal(o, np.where(IMG < 128, np.minimum(IMG + 99, 255), IMG))
        elif name == "Brightness":  # factor 1.81 or 0.19, truncated and clipped
            factor = 1.0 + 0.81 * s
            np.testing.assert_array_equal(o, np.floor(np.clip(IMG * factor, 0, 255)))
        else:
            assert not np.array_equal(o, IMG), name


def test_randaugment_per_sample_reproducible_and_in_range():
    batch = tf.constant(np.stack([IMG] * 32))
    out = ra.randaugment(batch, SEED).numpy()
    assert out.shape == (32, 32, 32, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.round(out))
    assert out.min() >= 0 and out.max() <= 255
    # 32 copies of one image: different draws per copy (about 1/4 take no operation at all).
    assert len({o.tobytes() for o in out}) > 20
    np.testing.assert_array_equal(out, ra.randaugment(batch, SEED).numpy())
    assert not np.array_equal(out, ra.randaugment(batch, tf.constant([3, 5], tf.int64)).numpy())
    untouched = ra.randaugment(batch, SEED, prob=0.0).numpy()
    np.testing.assert_array_equal(untouched, batch.numpy())


def test_keras_randaugment_draws_one_operation_set_per_batch():
    # Why keras.layers.RandAugment is not used (module docstring): Keras 3.15 draws the
    # operations once per call, shape [num_ops], shared by every image of the batch.
    layer = keras.layers.RandAugment(num_ops=2, seed=0)
    t = layer.get_random_transformation(tf.zeros((8, 32, 32, 3)), training=True)
    assert tuple(t["layer_idxes"].shape) == (2,)


@pytest.fixture(scope="module")
def same_image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ra")
    return write_same_image_folder(root, IMG.astype(np.uint8))


def test_pipeline_per_sample_deterministic_and_in_range(same_image_folder):
    (e1, e2), info = first_two_epochs(same_image_folder, "randaugment", 0)
    eight_bit_pixels(e1, info)
    # 16 copies of one image, each its own draws: a copy may match another only when both
    # took no operation (probability 1/4 each) and the same of the 162 crop-and-flip outcomes.
    assert len({o.tobytes() for o in e1}) >= 14
    assert_epochs_follow_the_seed(same_image_folder, "randaugment", e1, e2)


def test_distortion_layer_and_config():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    layer = data.distortion("randaugment", (32, 32, 3), seed=0, mean=mean, std=std)
    assert isinstance(layer, ra.CifarRandAugment)
    x = tf.constant(((np.stack([IMG] * 8) / 255.0 - mean) / std).astype(np.float32))
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x.numpy())
    out = layer(x, training=True).numpy()
    pixels = (out * std + np.array(mean)) * 255
    np.testing.assert_allclose(pixels, np.round(pixels), atol=2e-3)
    assert pixels.min() > -0.01 and pixels.max() < 255.01
    assert len({o.tobytes() for o in out}) > 4
    again = ra.CifarRandAugment.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: data.load("digits", augment="randaugment"), r"augment='randaugment' needs 8-bit"),
        (lambda: data.distortion("randaugment", (32, 32, 3), mean=(0.5,), std=(0.2,)), "mean"),
        (lambda: ra.CifarRandAugment(mean=(0.5,) * 3), "mean and std"),
        (lambda: ra.CifarRandAugment(num_ops=-1), r"`num_ops` must be an int >= 0, got -1\."),
        (lambda: ra.randaugment(IMG[None], SEED, magnitude=11), r"magnitude must be in \[0, 10\]"),
        (lambda: ra.randaugment(IMG[None], SEED, prob=1.5), r"prob must be in \[0, 1\], got"),
        (lambda: ra.randaugment(IMG[None], SEED, magnitude_std=-1), "magnitude_std must be"),
        (
            lambda: ra.parameter("Blur", 1.0, 1.0),
            r"`op` must be one of \('AutoContrast', .*'TranslateY'\), got 'Blur'\.$",
        ),
    ],
)
def test_bad_values(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_two_view_model_with_the_randaugment_layer_trains_and_round_trips():
    # The layer the runner builds for a two-view recipe with distortion "randaugment": the model
    # passes the harness (fit, config and .keras round trips with identical predictions).
    from tiny import tiny_backbone

    from keras_sd.models.two_view import TwoViewDistiller
    from keras_sd.testing import run_model_test

    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    x = ((np.stack([IMG] * 4) / 255.0 - mean) / std).astype(np.float32)

    def factory():
        layer = data.distortion("randaugment", (32, 32, 3), seed=0, mean=mean, std=std)
        return TwoViewDistiller(tiny_backbone(input_shape=(32, 32, 3)), distortion=layer)

    model = run_model_test(factory, x, np.array([0, 1, 0, 1]), expected_logs=("kl_loss",))
    assert isinstance(model.distortion, ra.CifarRandAugment)
