"""Image files and pad-crop-flip checks shared by the data and augmentation tests."""

import numpy as np
import tensorflow as tf

from keras_sd import data


def write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(image).numpy())


def write_same_image_folder(root, image, copies=16):
    """An image folder (one class, "a") of ``copies`` training copies of ``image`` and one test
    copy; returns ``root``."""
    for k in range(copies):
        write_png(root / "train" / "a" / f"{k:02d}.png", image)
    write_png(root / "test" / "a" / "0.png", image)
    return root


def pad_crop_flip_hits(out, image, match, pad_value=0):
    """Every (dy, dx, flip) for which the pad-4 crop of ``image`` (padded with ``pad_value``) at
    offset (dy, dx), flipped horizontally if ``flip``, ``match``es ``out``."""
    h, w = image.shape[:2]
    padded = np.pad(image, [(4, 4), (4, 4), (0, 0)], constant_values=pad_value)
    return [
        (dy, dx, f)
        for dy in range(9)
        for dx in range(9)
        for f in (False, True)
        if match(
            out,
            padded[dy : dy + h, dx : dx + w][:, ::-1] if f else padded[dy : dy + h, dx : dx + w],
        )
    ]


def first_two_epochs(folder, augment, seed):
    """The training images of the first two epochs of the 32x32 image ``folder`` (batch 16,
    ``augment``, ``seed``), and its data info."""
    b = data.load(f"folder:{folder}", batch_size=16, augment=augment, seed=seed)
    assert b.augment == augment and b.info.image_shape == (32, 32, 3)
    # Each pass over b.train is the next epoch (fresh shuffle and augmentation draws).
    return [np.concatenate([x.numpy() for x, _ in b.train]) for _ in range(2)], b.info


def eight_bit_pixels(images, info):
    """``images`` unnormalised to [0, 255], asserted to be 8-bit values in that range."""
    pixels = (images * np.array(info.std) + np.array(info.mean)) * 255
    np.testing.assert_allclose(pixels, np.round(pixels), atol=2e-3)  # 8-bit values ...
    assert pixels.min() > -0.01 and pixels.max() < 255.01  # ... in [0, 255]
    return pixels


def assert_epochs_follow_the_seed(folder, augment, e1, e2):
    """Seed 0's first two epochs ``e1``, ``e2`` come again with seed 0; the next epoch and another
    seed give different images."""
    (f1, f2), _ = first_two_epochs(folder, augment, 0)
    np.testing.assert_array_equal(e1, f1)
    np.testing.assert_array_equal(e2, f2)
    assert not np.array_equal(e1, e2)
    (g1, _), _ = first_two_epochs(folder, augment, 1)
    assert not np.array_equal(e1, g1)
