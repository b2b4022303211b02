"""keras_sd/_keras_compat.py: the installed Keras/TensorFlow are the ones its shims were verified
on, and each shim does what its call sites rely on. Also the public replacement for
``Layer._flatten_layers`` (`keras_sd.layers.walk.iter_layers`)."""

import json

import keras
import numpy as np
import tensorflow as tf
from strategies import mirrored
from tiny import tiny_backbone

import keras_sd
from keras_sd import _keras_compat as compat
from keras_sd.callbacks import AtomicBackupAndRestore
from keras_sd.layers.walk import iter_layers

RNG = np.random.default_rng(0)
X = RNG.normal(size=(16, 8, 8, 1)).astype("float32")
Y = RNG.integers(0, 5, size=16)


# ---------------------------------------------------------------------------- version range
def test_installed_keras_and_tensorflow_are_in_the_verified_range():
    problems = compat.unverified_versions()
    assert not problems, "\n".join(problems)


def test_an_unverified_version_is_named_with_the_verified_range(monkeypatch):
    monkeypatch.setattr(keras, "__version__", "3.16.0")
    monkeypatch.setattr(tf, "__version__", "2.20.1")
    problems = compat.unverified_versions()
    assert len(problems) == 2
    assert "keras 3.16.0" in problems[0] and "keras>=3.15,<3.16" in problems[0]
    assert "tensorflow 2.20.1" in problems[1] and "tensorflow>=2.21,<2.22" in problems[1]
    monkeypatch.setattr(keras, "__version__", "3.15.9.dev2026")
    monkeypatch.setattr(tf, "__version__", "2.21.0rc1")
    assert compat.unverified_versions() == []


# ---------------------------------------------------------------------------- Keras shims
def test_keras_history_operation_is_the_producing_layer():
    inp = keras.Input((4,))
    dense = keras.layers.Dense(3, name="head")
    out = dense(keras.layers.ReLU()(inp))
    assert compat.keras_history_operation(out) is dense
    # backbones.from_keras relies on it to find a softmax head and use its pre-activation.
    h1 = keras.layers.Dense(4, activation="relu", name="h1")(out)
    h2 = keras.layers.Dense(4, activation="relu", name="h2")(h1)
    probs = keras.layers.Dense(5, activation="softmax", name="fc")(h2)
    wrapped = keras_sd.backbones.from_keras(keras.Model(inp, probs), ["h1", "h2"])
    assert compat.keras_history_operation(wrapped.output["logits"]).name == "fc_logits"


def test_set_initial_epoch_from_on_train_begin_skips_epochs():
    seen = []

    class Resume(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            compat.set_initial_epoch(self.model, 2)

        def on_epoch_begin(self, epoch, logs=None):
            seen.append(epoch)

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=4, verbose=0, callbacks=[Resume()])
    assert seen == [2, 3]
    assert len(history.history["loss"]) == 2


class RecordingBaseline(keras_sd.Baseline):
    built_from = None

    def _symbolic_build(self, iterator=None, data_batch=None):
        type(self).built_from = keras.tree.map_structure(lambda v: tuple(v.shape), data_batch)
        return super()._symbolic_build(iterator=iterator, data_batch=data_batch)


def test_symbolic_build_uses_the_first_replicas_batch():
    # The override must still be reached by fit (else the multi-worker fix silently vanishes)
    # and hand Keras one replica's batch: 16 global examples on 2 replicas -> 8.
    strategy = mirrored()
    with strategy.scope():
        model = RecordingBaseline(tiny_backbone(), name="recording")
        model.compile(optimizer="sgd")
    ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(16)
    RecordingBaseline.built_from = None
    logs = model.fit(ds, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0])
    assert RecordingBaseline.built_from == ((8, 8, 8, 1), (8,))


def test_no_symbolic_build_outside_a_strategy_scope():
    # As in Keras: a model made outside any strategy scope is built when the step is traced.
    model = RecordingBaseline(tiny_backbone(), name="recording")
    model.compile(optimizer="sgd")
    RecordingBaseline.built_from = None
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    assert RecordingBaseline.built_from is None


# ---------------------------------------------------------------------------- TensorFlow shims
def test_in_multi_worker_mode_matches_keras_own_test():
    from keras.src.backend.tensorflow.trainer import _collective_all_reduce_multi_worker
    from tensorflow.python.distribute.collective_all_reduce_strategy import (
        CollectiveAllReduceExtended,
    )

    assert callable(CollectiveAllReduceExtended._in_multi_worker_mode)
    for strategy in (tf.distribute.get_strategy(), mirrored()):
        assert compat.in_multi_worker_mode(strategy) is False
        assert _collective_all_reduce_multi_worker(strategy) is False
    # The True case (two worker processes) is tests/test_multiworker.py.


def test_in_xla_context_only_while_tracing_with_xla():
    seen = {}

    def probe(name):
        def fn(x):
            seen[name] = compat.in_xla_context()
            return x + 1.0

        return fn

    tf.function(probe("xla"), jit_compile=True)(tf.constant(1.0))
    tf.function(probe("graph"))(tf.constant(1.0))
    probe("eager")(tf.constant(1.0))
    assert seen == {"xla": True, "graph": False, "eager": False}


def test_convert_variables_to_constants_bakes_variables_in():
    v = tf.Variable(3.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def f(x):
        return x * v

    frozen = compat.convert_variables_to_constants(f.get_concrete_function())
    ops = {node.op for node in frozen.graph.as_graph_def().node}
    assert not ops & {"ReadVariableOp", "VarHandleOp"}, ops
    np.testing.assert_allclose(frozen(tf.constant([1.0, 2.0]))[0], [3.0, 6.0])


# ---------------------------------------------------------------------------- iter_layers
class _Holder(keras.layers.Layer):
    """Sublayers in a plain attribute, a list and a dict (as custom layers keep them)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first = keras.layers.Dense(2, name="first")
        self.more = [keras.layers.Dense(2, name="listed")]
        self.named = {"a": keras.layers.Dense(2, name="in_dict")}
        self.branch = keras.Sequential([keras.layers.Dense(2, name="in_sequential")])

    def call(self, x):
        x = self.first(x)
        x = self.more[0](x)
        x = self.named["a"](x)
        return self.branch(x)


def test_iter_layers_finds_every_nested_layer_once():
    shared = keras.layers.Dense(2, name="shared")
    inp = keras.Input((2,))
    out = shared(_Holder(name="holder")(shared(inp)))
    model = keras.Model(inp, out)
    layers = list(iter_layers(model))
    names = [layer.name for layer in layers]
    assert layers[0] is model
    assert len({id(layer) for layer in layers}) == len(layers)
    for name in ("shared", "holder", "first", "listed", "in_dict", "in_sequential"):
        assert names.count(name) == 1, (name, names)
    # Nothing Keras' private walk finds is missed.
    private = model._flatten_layers(include_self=True, recursive=True)
    assert {id(layer) for layer in private} <= {id(layer) for layer in layers}


def test_iter_layers_covers_the_flatten_walk_of_a_multi_exit_model():
    model = keras_sd.MultiExitDistiller(tiny_backbone())
    ours = {id(layer) for layer in iter_layers(model)}
    assert {id(layer) for layer in model._flatten_layers()} <= ours


# ---------------------------------------------------------------------------- backup callback
def _dense_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model(np.zeros((1, 3), "float32"))
    return model


def test_batch_saves_record_the_epoch_they_are_in_after_a_resume(tmp_path):
    # save_freq=3 with 4 steps per epoch, counted through the public callback hooks.
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    backup = tmp_path / "backup"
    states = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            meta = json.loads((backup / "training_metadata.json").read_text())
            states.append((meta["epoch"], meta["step"]))

    cb = AtomicBackupAndRestore(str(backup), save_freq=3, delete_checkpoint=False)
    _dense_model().fit(x, y, batch_size=2, epochs=2, verbose=0, callbacks=[cb])
    # Last save: after the 6th step, i.e. 2 steps into epoch 1 (the end of fit is not saved).
    meta = json.loads((backup / "training_metadata.json").read_text())
    assert (meta["epoch"], meta["step"], meta["batch"]) == (1, 2, 1)
    cb = AtomicBackupAndRestore(str(backup), save_freq=3, delete_checkpoint=False)
    model = _dense_model()
    history = model.fit(x, y, batch_size=2, epochs=3, verbose=0, callbacks=[cb, Spy()])
    assert len(history.history["loss"]) == 2  # resumed in epoch 1
    # Epoch 1 resumes after its 2nd step and ends after its 2 remaining ones: the run takes the
    # 12 steps of an uninterrupted one (restarting epoch 1 would make it 14).
    assert int(model.optimizer.iterations.numpy()) == 3 * 4
    # Saves after the 3rd step of the resumed run (epoch 2, step 1) and the 6th, the last of
    # epoch 2, which is committed at that epoch's end as (3, 0); Keras' own callback would
    # record epoch 0 for the first one.
    assert states == [(1, 2), (1, 2), (2, 1), (2, 1), (2, 1), (2, 1)]
    meta = json.loads((backup / "training_metadata.json").read_text())
    assert (meta["epoch"], meta["step"]) == (3, 0)


def test_a_keras_backup_folder_is_restored_the_keras_way(tmp_path):
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    backup = str(tmp_path / "backup")
    keras_cb = keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False)
    _dense_model().fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[keras_cb])
    model = _dense_model()
    cb = AtomicBackupAndRestore(backup, delete_checkpoint=False)
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[cb])
    assert len(history.history["loss"]) == 1
    assert int(model.optimizer.iterations.numpy()) == 2 * 2 + 2
