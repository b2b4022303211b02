"""`import keras_sd` is TensorFlow-free, yet saved models load the usual way."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
from tiny import tiny_backbone

import keras_sd

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,  # a guard against a hang, not a speed check (TF import takes minutes on a loaded CI box)
    )


def test_import_keras_sd_and_recipes_import_no_tensorflow():
    proc = _run(
        """
        import sys
        import keras_sd, keras_sd.recipes, keras_sd.schedules, keras_sd.paper_args
        print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"


def test_saved_model_loads_after_import_keras_then_keras_sd(tmp_path):
    model = keras_sd.MultiExitDistiller(tiny_backbone())
    x = np.random.default_rng(0).random((3, 8, 8, 1)).astype("float32")
    expected = [np.asarray(v) for v in keras.tree.flatten(model(x, training=False))]
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    proc = _run(
        f"""
        import numpy as np
        import keras
        import keras_sd  # Keras already imported: every keras_sd class is registered now
        loaded = keras.models.load_model({str(tmp_path / "m.keras")!r})
        out = loaded(np.load({str(tmp_path / "x.npy")!r}), training=False)
        np.savez({str(tmp_path / "y.npz")!r}, *[np.asarray(v) for v in keras.tree.flatten(out)])
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "y.npz")
    assert len(got.files) == len(expected)
    for i, value in enumerate(expected):
        np.testing.assert_allclose(got[f"arr_{i}"], value, atol=1e-6)
