"""Tiny contract backbones for fast tests (no batch norm unless asked, so distributed and
single-device gradients are comparable), a confident multi-exit model and a quick multi-exit
recipe built on them."""

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


def staged_backbone(
    input_shape, stages, num_classes=5, batch_norm=False, seed=0, name="staged", head="head"
):
    """Contract backbone of 3x3 conv stages, ``stages`` = [(filters, stride), ...], one stage
    output (and so one exit) per entry; layers named conv{i} / bn{i} / relu{i}, pool and ``head``.
    ``batch_norm``: True for every stage, or the indices of the stages that have it."""
    with_bn = range(len(stages)) if batch_norm is True else (batch_norm or ())
    init = keras.initializers.HeNormal(seed=seed)
    inp = keras.Input(input_shape)
    x, outputs = inp, []
    for i, (filters, stride) in enumerate(stages):
        x = keras.layers.Conv2D(
            filters, 3, strides=stride, padding="same", kernel_initializer=init, name=f"conv{i}"
        )(x)
        if i in with_bn:
            x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        outputs.append(x)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    z = keras.layers.Dense(num_classes, kernel_initializer=init, name=head)(h)
    return keras.Model(inp, {"stages": outputs, "features": h, "logits": z}, name=name)


def confident_multi_exit(make_backbone, **kwargs):
    """A MultiExitDistiller on ``make_backbone()`` (after seeding 0) with its exits' classifiers
    and the backbone's ``fc`` layer scaled by 8: confident, varied exits (an untrained net is near
    uniform), for early-exit inference."""
    from keras_sd.models.multi_exit import MultiExitDistiller

    keras.utils.set_random_seed(0)
    m = MultiExitDistiller(make_backbone(), **kwargs)
    for head in m.exit_heads:
        head.classifier.kernel.assign(head.classifier.kernel * 8.0)
    fc = m.backbone.get_layer("fc")
    fc.kernel.assign(fc.kernel * 8.0)
    return m


def tiny_multi_exit_recipe(backbone, **changes):
    """A multi-exit recipe on the registered tiny backbone key ``backbone``: digits, one epoch of
    two steps, the default strategy; ``changes`` replace whole fields."""
    from keras_sd.recipes import DataConfig, OptimizerConfig, Recipe

    base = Recipe(
        name="test/tiny_multi_exit",
        method="multi_exit",
        backbone=backbone,
        method_args={"alpha": 0.5, "feature_weight": 0.02, "temperature": 3.0},
        callbacks={"DistillationAnnealing": {"last_epochs": 1}},
        data=DataConfig(name="digits", batch_size=32),
        optimizer=OptimizerConfig(learning_rate=0.05, schedule="cosine"),
        epochs=1,
        steps_per_epoch=2,
        strategy="default",
    )
    return base.replace(**changes)
