"""augment="autoaugment": AutoAugment's CIFAR-10 policy + Cutout, per sample, seeded."""

import numpy as np
import pytest
import tensorflow as tf
from image_helpers import (
    assert_epochs_follow_the_seed,
    eight_bit_pixels,
    first_two_epochs,
    pad_crop_flip_hits,
    write_same_image_folder,
)

from keras_sd import data
from keras_sd.layers import autoaugment as aa

# Cubuk et al., "AutoAugment: Learning Augmentation Strategies from Data", CVPR 2019, appendix
# table of the policy found on reduced CIFAR-10, written out row by row:
# sub-policy: (operation 1, probability, magnitude), (operation 2, probability, magnitude).
PAPER_CIFAR10 = """
0  Invert 0.1 7        Contrast 0.2 6
1  Rotate 0.7 2        TranslateX 0.3 9
2  Sharpness 0.8 1     Sharpness 0.9 3
3  ShearY 0.5 8        TranslateY 0.7 9
4  AutoContrast 0.5 8  Equalize 0.9 2
5  ShearY 0.2 7        Posterize 0.3 7
6  Color 0.4 3         Brightness 0.6 7
7  Sharpness 0.3 9     Brightness 0.7 9
8  Equalize 0.6 5      Equalize 0.5 1
9  Contrast 0.6 7      Sharpness 0.6 5
10 Color 0.7 7         TranslateX 0.5 8
11 Equalize 0.3 7      AutoContrast 0.4 8
12 TranslateY 0.4 3    Sharpness 0.2 6
13 Brightness 0.9 6    Color 0.2 8
14 Solarize 0.5 2      Invert 0.0 3
15 Equalize 0.2 0      AutoContrast 0.6 0
16 Equalize 0.2 8      Equalize 0.6 4
17 Color 0.9 9         Equalize 0.6 6
18 AutoContrast 0.8 4  Solarize 0.2 8
19 Brightness 0.1 3    Color 0.7 0
20 Solarize 0.4 5      AutoContrast 0.9 3
21 TranslateY 0.9 9    TranslateY 0.7 9
22 AutoContrast 0.9 2  Solarize 0.8 3
23 Equalize 0.8 8      Invert 0.1 3
24 TranslateY 0.7 9    AutoContrast 0.9 1
"""
UNSIGNED_LEVEL_OPS = ("AutoContrast", "Equalize", "Invert")


def _paper_table():
    rows = []
    for line in PAPER_CIFAR10.strip().splitlines():
        f = line.split()
        rows.append(((f[1], float(f[2]), int(f[3])), (f[4], float(f[5]), int(f[6]))))
    return rows


def test_policy_is_the_papers_cifar10_table():
    paper = _paper_table()
    assert len(aa.CIFAR10_POLICY) == len(paper) == 25
    for i, (ours, theirs) in enumerate(zip(aa.CIFAR10_POLICY, paper)):
        assert len(ours) == 2, i
        for (op, p, m), (op2, p2, m2) in zip(ours, theirs):
            assert (op, m) == (op2, m2) and p == pytest.approx(p2), (i, ours, theirs)


@pytest.mark.parametrize("level", range(10))
def test_magnitude_ranges(level):
    # Ranges of the CIFAR10Policy the reference code uses: 10 levels over np.linspace.
    expect = {
        "ShearX": np.linspace(0, 0.3, 10)[level],
        "ShearY": np.linspace(0, 0.3, 10)[level],
        "TranslateX": np.linspace(0, 150 / 331, 10)[level] * 32,
        "TranslateY": np.linspace(0, 150 / 331, 10)[level] * 32,
        "Rotate": np.linspace(0, 30, 10)[level],
        "Color": np.linspace(0, 0.9, 10)[level],
        "Contrast": np.linspace(0, 0.9, 10)[level],
        "Sharpness": np.linspace(0, 0.9, 10)[level],
        "Brightness": np.linspace(0, 0.9, 10)[level],
        "Posterize": [8, 8, 7, 7, 6, 6, 5, 5, 4, 4][level],
        "Solarize": np.linspace(256, 0, 10)[level],
    }
    for op, value in expect.items():
        got = float(aa.magnitude(op, level, size=32))
        assert got == pytest.approx(value, rel=1e-5, abs=1e-5), op
    # Enhance factors 1 +- magnitude (0.1 .. 1.9), signed geometric parameters.
    assert float(aa.parameter("Color", level, -1.0)) == pytest.approx(1 - 0.1 * level, abs=1e-5)
    assert float(aa.parameter("Brightness", level, 1.0)) == pytest.approx(1 + 0.1 * level, abs=1e-5)
    assert float(aa.parameter("Rotate", level, -1.0)) == pytest.approx(-30 * level / 9, abs=1e-4)
    assert float(aa.parameter("Solarize", level, -1.0)) == pytest.approx(256 - 256 * level / 9)


# ------------------------------------------------------------------- operations vs NumPy
RNG = np.random.default_rng(0)
IMG = RNG.integers(0, 256, (2, 9, 10, 3)).astype(np.float32)
NARROW = RNG.integers(60, 140, (2, 32, 32, 3)).astype(np.float32)  # for equalize/autocontrast


def _op(images, op, value, mask=None):
    v = np.broadcast_to(np.asarray(value, np.float32), (len(images),))
    m = None if mask is None else tf.constant(mask)
    return aa.apply_operation(tf.constant(images), op, tf.constant(v), m).numpy()


def _luma(x):
    r, g, b = (x[..., i].astype(np.int64) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 32768) >> 16).astype(np.float64)[..., None]


def _blend(deg, x, f):
    # PIL's Image.blend computes in float32: deg + f * (x - deg), clipped, truncated.
    deg, x = np.float32(deg), np.float32(x)
    return np.floor(np.clip(deg + np.float32(f) * (x - deg), 0, 255))


def test_invert_posterize_solarize():
    np.testing.assert_array_equal(_op(IMG, "Invert", 0), 255 - IMG)
    for bits in (4, 5, 6, 7, 8):
        want = np.bitwise_and(IMG.astype(np.uint8), (0xFF << (8 - bits)) & 0xFF)
        np.testing.assert_array_equal(_op(IMG, "Posterize", bits), want)
    for t in (0.0, 28.44, 113.78, 199.11, 256.0):
        np.testing.assert_array_equal(_op(IMG, "Solarize", t), np.where(IMG < t, IMG, 255 - IMG))


def test_mask_leaves_other_images_alone():
    out = _op(IMG, "Invert", 0, mask=[False, True])
    np.testing.assert_array_equal(out[0], IMG[0])
    np.testing.assert_array_equal(out[1], 255 - IMG[1])
    out = _op(IMG, "Brightness", 1.5, mask=[True, False])
    np.testing.assert_array_equal(out[1], IMG[1])


def test_translate_by_known_offsets():
    out = _op(IMG, "TranslateX", 3.0)  # output (x, y) reads input (x + 3, y)
    want = np.full_like(IMG, 128.0)
    want[:, :, :-3] = IMG[:, :, 3:]
    np.testing.assert_array_equal(out, want)
    out = _op(IMG, "TranslateY", -2.0)  # reads (x, y - 2)
    want = np.full_like(IMG, 128.0)
    want[:, 2:] = IMG[:, :-2]
    np.testing.assert_array_equal(out, want)


def test_rotate_quarter_turn_is_counter_clockwise():
    square = IMG[:, :9, :9]
    np.testing.assert_array_equal(_op(square, "Rotate", 90.0), np.rot90(square, 1, axes=(1, 2)))
    np.testing.assert_array_equal(_op(square, "Rotate", -90.0), np.rot90(square, -1, axes=(1, 2)))


def _bilinear(img, xs, ys, fill=128.0):
    h, w = img.shape[:2]

    def px(y, x):
        return img[y, x] if 0 <= y < h and 0 <= x < w else np.full(img.shape[-1], fill)

    x0, y0 = int(np.floor(xs)), int(np.floor(ys))
    ax, ay = xs - x0, ys - y0
    return (1 - ay) * ((1 - ax) * px(y0, x0) + ax * px(y0, x0 + 1)) + ay * (
        (1 - ax) * px(y0 + 1, x0) + ax * px(y0 + 1, x0 + 1)
    )


def test_shear_matches_pil_geometry_with_bilinear_sampling():
    s = 0.3
    out = _op(IMG, "ShearX", s)
    h, w = IMG.shape[1:3]
    for b in range(2):
        for y in range(h):
            for x in range(w):
                # PIL (1, s, 0, 0, 1, 0) in pixel centres: u = (x + .5) + s (y + .5).
                xs = x + s * (y + 0.5)
                if xs > w - 1 + 1e-6 and xs < w:  # half a pixel past the last centre
                    continue
                want = np.round(_bilinear(IMG[b], xs, y)) if xs <= w - 1 else 128.0
                np.testing.assert_allclose(out[b, y, x], want, atol=1.0, err_msg=(b, y, x))
    out = _op(IMG, "ShearY", -s)
    np.testing.assert_array_equal(out[:, 0, 0], np.round(_bilinear_col(IMG, -s)))


def _bilinear_col(imgs, s):
    # Pixel (0, 0) of ShearY reads (0, 0 + s * 0.5): between row 0 and the fill above it.
    ys = s * 0.5
    return np.stack([_bilinear(im, 0.0, ys) for im in imgs])


def test_color_contrast_brightness():
    for f in (0.1, 0.6, 1.0, 1.9):
        grey = np.broadcast_to(_luma(IMG), IMG.shape)
        np.testing.assert_array_equal(_op(IMG, "Color", f), _blend(grey, IMG, f))
        mean = np.floor(_luma(IMG).mean(axis=(1, 2, 3), keepdims=True) + 0.5)
        np.testing.assert_array_equal(_op(IMG, "Contrast", f), _blend(mean, IMG, f))
        np.testing.assert_array_equal(_op(IMG, "Brightness", f), _blend(0.0, IMG, f))
    np.testing.assert_array_equal(_op(IMG, "Color", 1.0), IMG)  # factor 1 is the identity


def test_sharpness_smooths_the_interior_only():
    k = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float64) / 13
    smooth = IMG.astype(np.float64).copy()
    h, w = IMG.shape[1:3]
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            win = IMG[:, y - 1 : y + 2, x - 1 : x + 2]
            smooth[:, y, x] = np.round(np.einsum("byxc,yx->bc", win, k))
    for f in (0.1, 1.9):
        out = _op(IMG, "Sharpness", f)
        np.testing.assert_array_equal(out, _blend(smooth, IMG, f))


def test_autocontrast_and_equalize():
    lo = NARROW.min(axis=(1, 2), keepdims=True)
    hi = NARROW.max(axis=(1, 2), keepdims=True)
    scale = 255.0 / (hi.astype(np.float64) - lo)  # PIL's table: int(x * scale + offset)
    want = np.floor(NARROW.astype(np.float64) * scale + (-lo * scale))
    np.testing.assert_array_equal(_op(NARROW, "AutoContrast", 0), want)
    flat = np.full((1, 4, 4, 3), 77.0, np.float32)
    np.testing.assert_array_equal(_op(flat, "AutoContrast", 0), flat)
    np.testing.assert_array_equal(_op(flat, "Equalize", 0), flat)

    def np_equalize(ch):  # PIL ImageOps.equalize on one channel
        hist = np.bincount(ch.astype(np.int64).ravel(), minlength=256)
        used = hist[hist > 0]
        step = (used.sum() - used[-1]) // 256
        if len(used) <= 1 or step == 0:
            return ch
        lut = np.minimum((step // 2 + np.concatenate([[0], np.cumsum(hist)[:-1]])) // step, 255)
        return lut[ch.astype(np.int64)].astype(np.float32)

    want = np.stack([np.stack([np_equalize(im[..., c]) for c in range(3)], -1) for im in NARROW])
    out = _op(NARROW, "Equalize", 0)
    np.testing.assert_array_equal(out, want)
    assert not np.array_equal(out, NARROW)


def test_operations_match_pillow():
    """The operations PIL defines exactly (no resampling choice) match Pillow itself."""
    Image = pytest.importorskip("PIL.Image")
    from PIL import ImageEnhance, ImageOps

    pil = [Image.fromarray(im.astype(np.uint8)) for im in NARROW]

    def check(op, value, fn):
        want = np.stack([np.asarray(fn(p), np.float32) for p in pil])
        np.testing.assert_array_equal(_op(NARROW, op, value), want, err_msg=op)

    check("AutoContrast", 0, ImageOps.autocontrast)
    check("Equalize", 0, ImageOps.equalize)
    check("Invert", 0, ImageOps.invert)
    check("Posterize", 5, lambda p: ImageOps.posterize(p, 5))
    check("Solarize", 113.77777, lambda p: ImageOps.solarize(p, 113.77777))
    for f in (0.3, 1.7):
        check("Brightness", f, lambda p, f=f: ImageEnhance.Brightness(p).enhance(f))
        check("Color", f, lambda p, f=f: ImageEnhance.Color(p).enhance(f))
        check("Contrast", f, lambda p, f=f: ImageEnhance.Contrast(p).enhance(f))
        check("Sharpness", f, lambda p, f=f: ImageEnhance.Sharpness(p).enhance(f))
    check(
        "TranslateX",
        5.0,
        lambda p: p.transform(p.size, Image.AFFINE, (1, 0, 5, 0, 1, 0), fillcolor=(128,) * 3),
    )


# ------------------------------------------------------------------------ per-sample draws
def test_cutout_is_one_clipped_16_square():
    images = tf.fill([64, 32, 32, 3], 200.0)
    out = aa.cutout(images, tf.constant([3, 4], tf.int64)).numpy()
    sides = set()
    for im in out:
        hole = im[..., 0] == 0
        assert (im[hole] == 0).all() and (im[~hole] == 200).all()
        rows, cols = np.flatnonzero(hole.any(1)), np.flatnonzero(hole.any(0))
        # a filled rectangle ...
        assert hole.sum() == len(rows) * len(cols) and hole[np.ix_(rows, cols)].all()
        # ... equal to clip(c - 8, 0, 32) .. clip(c + 8, 0, 32) for some centre c
        fits = [
            (cy, cx)
            for cy in range(32)
            for cx in range(32)
            if (max(cy - 8, 0), min(cy + 8, 32)) == (rows[0], rows[-1] + 1)
            and (max(cx - 8, 0), min(cx + 8, 32)) == (cols[0], cols[-1] + 1)
        ]
        assert fits
        sides.add((len(rows), len(cols)))
    assert (16, 16) in sides and any(s != (16, 16) for s in sides)  # full and clipped holes
    assert len({o.tobytes() for o in out}) > 30  # every image its own position


def test_draws_differ_within_a_batch_and_are_seeded():
    seed = tf.constant([5, 6], tf.int64)
    index, apply, signs = (t.numpy() for t in aa.policy_draws(64, seed))
    assert len(set(index)) > 15 and index.min() >= 0 and index.max() < 25
    assert apply.shape == signs.shape == (2, 64) and set(np.unique(signs)) == {-1.0, 1.0}
    again = aa.policy_draws(64, seed)
    np.testing.assert_array_equal(index, again[0].numpy())
    # Probabilities: sub-policy 14's second step (p = 0) never applies; the coin frequency of
    # the first step tracks the table's probabilities over many images.
    index, apply, _ = (t.numpy() for t in aa.policy_draws(20000, tf.constant([1, 2], tf.int64)))
    assert not apply[1][index == 14].any()
    p_first = np.array([sub[0][1] for sub in aa.CIFAR10_POLICY])
    assert abs(apply[0].mean() - p_first[index].mean()) < 0.02


@pytest.fixture(scope="module")
def same_image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("aa")
    img = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return write_same_image_folder(root, img), img


def test_pipeline_per_sample_deterministic_and_sane(same_image_folder):
    root, img = same_image_folder
    (e1, e2), info = first_two_epochs(root, "autoaugment", 0)
    assert e1.shape == (16, 32, 32, 3) and e1.dtype == np.float32
    pixels = eight_bit_pixels(e1, info)
    assert (np.abs(pixels).max(axis=-1) < 1e-3).any()  # Cutout: black before normalisation
    # 16 copies of one image: every copy gets its own draws.
    assert len({o.tobytes() for o in e1}) == 16
    assert_epochs_follow_the_seed(root, "autoaugment", e1, e2)


def test_pipeline_pads_with_grey_before_the_policy(same_image_folder):
    # The chain on its own: with no policy step applied, no hole, the result is the
    # grey-padded crop (+ flip) of the image.
    root, img = same_image_folder
    x = tf.constant(np.stack([img] * 8).astype(np.float32))
    out = aa.autoaugment_cifar(x, tf.constant([0, 9], tf.int64), cutout_length=0).numpy()
    crop_seed, policy_seed, _ = (
        s.numpy() for s in tf.random.experimental.stateless_split(tf.constant([0, 9], tf.int64), 3)
    )
    _, apply, _ = aa.policy_draws(8, tf.constant(policy_seed))
    untouched = ~apply.numpy().any(0)
    for o in out[untouched]:
        assert pad_crop_flip_hits(o, img.astype(np.float32), np.array_equal, pad_value=128)


def test_distortion_layer(same_image_folder):
    _, img = same_image_folder
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    layer = data.distortion("autoaugment", (32, 32, 3), seed=0, mean=mean, std=std)
    x = (np.stack([img] * 4) / 255.0 - mean) / std
    x = tf.constant(x.astype(np.float32))
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x.numpy())
    out = layer(x, training=True).numpy()
    pixels = (out * std + np.array(mean)) * 255
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_allclose(pixels, np.round(pixels), atol=2e-3)
    assert len({o.tobytes() for o in out}) == 4


@pytest.mark.parametrize(
    "call, pattern",
    [
        (
            lambda: data.load("digits", augment="autoaugmnt"),
            r"`augment` must be one of \(.*'autoaugment'.*\), got 'autoaugmnt'\.$",
        ),
        (lambda: data.load("digits", augment="autoaugment"), r"augment='autoaugment' needs 8-bit"),
        (lambda: data.distortion("autoaugment", (32, 32, 3), mean=(0.5,), std=(0.2,)), "mean"),
        (lambda: data.distortion("cifar", (32, 32, 3), mean=(0.5,) * 3, std=(0.2,) * 3), "mean"),
        (lambda: aa.apply_operation(IMG, "Blur", 1.0), "op"),
        (lambda: aa.CifarAutoAugment(mean=(0.5,) * 3), "mean and std"),
        (lambda: aa.CifarAutoAugment(cutout_length=-1), "cutout_length"),
    ],
)
def test_bad_values(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_bad_augment_message_names_value_and_choices():
    with pytest.raises(ValueError) as err:
        data.load("digits", augment="autoaugmnt")
    msg = str(err.value)
    assert "augment" in msg and "'autoaugmnt'" in msg and "'autoaugment'" in msg
