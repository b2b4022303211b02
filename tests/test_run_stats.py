"""`RunStats`: an epoch's training time excludes its validation, which Keras runs before
``on_epoch_end``; images per second count steps, not ``steps_per_execution`` calls."""

import keras
import numpy as np
import pytest

from keras_sd.callbacks import RunStats
from keras_sd.callbacks import run_stats as run_stats_module


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_hooks_split_training_and_validation_time(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(run_stats_module.time, "perf_counter", clock)
    stats = RunStats(batch_size=8)
    # Epoch 0: 4 steps in 2 s, then a 3 s validation, then 0.5 s of other callbacks.
    stats.on_epoch_begin(0)
    for step in range(4):
        clock.now += 0.5
        stats.on_train_batch_end(step)
    stats.on_test_begin()
    clock.now += 3.0
    stats.on_test_end()
    clock.now += 0.5
    stats.on_epoch_end(0)
    # Epoch 1: not validated; 2 calls of steps_per_execution=3 (last step indices 2 and 5).
    stats.on_epoch_begin(1)
    clock.now += 1.5
    stats.on_train_batch_end(2)
    clock.now += 1.5
    stats.on_train_batch_end(5)
    stats.on_epoch_end(1)
    # An evaluate() after fit is no epoch's validation.
    stats.on_test_begin()
    clock.now += 7.0
    stats.on_test_end()
    assert stats.epoch_seconds == [2.0, 3.0]
    assert stats.images_per_second == [4 * 8 / 2.0, 6 * 8 / 3.0]
    assert stats.validation_seconds == [3.0]


def test_fit_calls_the_hooks_in_that_order():
    """In a real fit with validation on epochs 2 and 3 and steps_per_execution=2: one validation
    time per validated epoch, and every epoch counts its 6 steps."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(48, 4)).astype("float32"), rng.integers(0, 3, 48)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=2,
    )
    stats = RunStats(batch_size=8)
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        validation_data=(x, y),
        validation_freq=[2, 3],
        callbacks=[stats],
        verbose=0,
    )
    assert len(stats.epoch_seconds) == 3 and len(stats.validation_seconds) == 2
    for seconds, rate in zip(stats.epoch_seconds, stats.images_per_second, strict=True):
        assert seconds * rate == pytest.approx(6 * 8)
    model.evaluate(x, y, callbacks=[stats], verbose=0)
    assert len(stats.validation_seconds) == 2
