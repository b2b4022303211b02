"""Tiny contract backbones for fast tests (no batch norm unless asked, so distributed and
single-device gradients are comparable)."""

import keras


def tiny_backbone(input_shape=(8, 8, 1), num_classes=5, batch_norm=False, seed=0, name="tiny"):
    init = keras.initializers.HeNormal(seed=seed)
    inp = keras.Input(input_shape)
    a = keras.layers.Conv2D(4, 3, padding="same", kernel_initializer=init)(inp)
    if batch_norm:
        a = keras.layers.BatchNormalization()(a)
    a = keras.layers.ReLU()(a)
    b = keras.layers.Conv2D(6, 3, strides=2, padding="same", kernel_initializer=init)(a)
    b = keras.layers.ReLU()(b)
    h = keras.layers.GlobalAveragePooling2D()(b)
    z = keras.layers.Dense(num_classes, kernel_initializer=init)(h)
    return keras.Model(inp, {"stages": [a, b], "features": h, "logits": z}, name=name)
