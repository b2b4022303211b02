"""LiteRT export of early exit (EarlyExitModel.export_litert) and its TensorFlow-free runtime
(keras_sd.litert_runtime.LiteRTEarlyExit)."""

import hashlib
import json
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from tiny import confident_multi_exit, staged_backbone

pytest.importorskip("ai_edge_litert", reason="the [litert] extra (part of [test]) is not installed")

from keras_sd.inference import EarlyExitModel, LiteRTEarlyExit  # noqa: E402
from keras_sd.models.multi_exit import MultiExitDistiller  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
H, W, C, CLASSES = 8, 8, 3, 5
NORM = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "scale": 255.0}


def three_stage_backbone(seed=0):
    """3 stages (8x8x4, 4x4x6, 2x2x8) and a dense "fc" head; batch norm on the second stage, which
    the converter folds: still the same answers."""
    stages = [(4, 1), (6, 2), (8, 2)]
    return staged_backbone((H, W, C), stages, CLASSES, {1}, seed, name="three", head="fc")


def _softmax(z):
    z = np.asarray(z, "float64")
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def model():
    return confident_multi_exit(three_stage_backbone)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).normal(size=(1000, H, W, C)).astype("float32")


@pytest.fixture(scope="module")
def thresholds(model, images):
    """Each exit's median confidence: every exit and the ensemble answer some images."""
    out = model.call_exits(images)
    return [float(np.median(_softmax(out[n]).max(-1))) for n in model.exit_names]


@pytest.fixture(scope="module")
def export(model, thresholds, tmp_path_factory):
    path = tmp_path_factory.mktemp("litert") / "early_exit"
    manifest = EarlyExitModel(model, thresholds).export_litert(
        path, normalization=NORM, backbone=True
    )
    return path, manifest


def reference(model, images, thresholds):
    """Algorithm 1 from the Keras model's exits (every exit on every image), in float64."""
    out = model.call_exits(images)
    logits = [np.asarray(out[n], "float64") for n in model.exit_names]
    probs = [_softmax(z) for z in logits]
    k = len(logits)
    exit_ = np.full(len(images), k)
    answer = np.log(np.mean(probs, axis=0))
    for i in reversed(range(k)):  # the shallowest confident exit wins
        sure = probs[i].max(-1) > thresholds[i]
        exit_[sure] = i
        answer[sure] = logits[i][sure]
    confidence = np.stack([p.max(-1) for p in probs], 1)
    return exit_, answer, confidence


# ---------------------------------------------------------------------------- parity
def test_parity_with_early_exit_model_and_reference(model, images, thresholds, export):
    path, _ = export
    fast = LiteRTEarlyExit(path, num_threads=1)
    out = fast(images)
    tf_out = EarlyExitModel(model, thresholds).predict_early_exit(images)
    ref_exit, ref_logits, confidence = reference(model, images, thresholds)
    assert out["exit"].dtype == np.int32 and out["prediction"].dtype == np.int32
    assert out["logits"].dtype == np.float32 and out["logits"].shape == (len(images), CLASSES)
    assert set(ref_exit.tolist()) == {0, 1, 2, 3}  # every path is exercised
    for other in (tf_out["exit"], ref_exit):
        agree = out["exit"] == other
        assert agree.mean() >= 0.999
        # A disagreement is only allowed for an image whose confidence at the first exit where
        # the two differ is within 1e-4 of that exit's threshold (float rounding).
        for j in np.flatnonzero(~agree):
            i = min(out["exit"][j], other[j])
            assert abs(confidence[j, i] - thresholds[i]) < 1e-4
    same = out["exit"] == tf_out["exit"]
    np.testing.assert_array_equal(out["prediction"][same], tf_out["prediction"][same])
    np.testing.assert_allclose(out["logits"][same], tf_out["logits"][same], atol=1e-4)
    np.testing.assert_allclose(out["logits"][same], ref_logits[same], atol=1e-4)


def test_one_image_and_chunked_predict_equal_the_batch(export, images):
    fast = LiteRTEarlyExit(export[0])
    batch = fast(images[:200])
    # One image takes a scalar fast path (plain floats): it must answer as the batch does.
    for j in range(200):
        one = fast(images[j])
        assert one["exit"].shape == () and one["logits"].shape == (CLASSES,)
        assert int(one["exit"]) == batch["exit"][j]
        assert int(one["prediction"]) == batch["prediction"][j]
        np.testing.assert_allclose(one["logits"], batch["logits"][j], atol=1e-5)
    assert set(batch["exit"].tolist()) == {0, 1, 2, 3}
    chunked = fast.predict(images[:200], batch_size=7)  # ragged last chunk
    np.testing.assert_array_equal(chunked["exit"], batch["exit"])
    np.testing.assert_allclose(chunked["logits"], batch["logits"], atol=1e-5)


def test_deeper_stages_run_only_on_undecided_images(export, images):
    fast = LiteRTEarlyExit(export[0])
    seen = []

    class Counting:
        def __init__(self, i, stage):
            self.i, self.stage = i, stage

        def invoke(self, x):
            seen.append((self.i, len(x)))
            self.stage.invoke(x)

        def get(self, name):
            return self.stage.get(name)

    fast._stages = [Counting(i, stage) for i, stage in enumerate(fast._stages)]
    out = fast(images[:200])
    exits = out["exit"]
    expected = [(0, 200), (1, int(np.sum(exits >= 1))), (2, int(np.sum(exits >= 2)))]
    assert seen == expected
    seen.clear()
    fast.set_thresholds([1e-3, 1e-3, 1e-3])  # every image is sure at exit 1
    assert (fast(images[:20])["exit"] == 0).all() and seen == [(0, 20)]


def test_thresholds_of_one_give_the_ensemble_of_all_exits(model, export, images):
    fast = LiteRTEarlyExit(export[0], thresholds=[1.0, 1.0, 1.0])
    assert fast.thresholds == [1.0, 1.0, 1.0] and fast.ensemble_index == 3
    out = fast(images[:30])
    assert (out["exit"] == 3).all()
    exits = model.call_exits(images[:30])
    mean = np.mean([_softmax(exits[n]) for n in model.exit_names], axis=0)
    np.testing.assert_allclose(out["logits"], np.log(mean), atol=1e-4)


def test_backbone_and_manifest(model, export, thresholds, images):
    path, manifest = export
    fast = LiteRTEarlyExit(path)
    plain = np.asarray(model.exit_graph.export_backbone()(images[:20], training=False))
    np.testing.assert_allclose(fast.backbone(images[:20]), plain, atol=1e-4)
    on_disk = json.loads((path / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["format"] == "keras_sd.litert_early_exit" and manifest["format_version"] == 1
    assert manifest["thresholds"] == thresholds and manifest["exit_names"] == list(model.exit_names)
    assert manifest["input_shape"] == [H, W, C] and manifest["num_classes"] == CLASSES
    assert manifest["normalization"] == NORM and manifest["quantize"] is None
    for entry in [*manifest["stages"], manifest["backbone"]]:
        digest = hashlib.sha256((path / entry["file"]).read_bytes()).hexdigest()
        assert entry["sha256"] == digest
    pixels = np.random.default_rng(0).integers(0, 256, (2, H, W, C))
    expected = (pixels / 255.0 - np.array(NORM["mean"])) / np.array(NORM["std"])
    np.testing.assert_allclose(fast.normalize(pixels), expected, rtol=1e-5, atol=1e-5)
    assert not list(path.parent.glob(".*tmp"))  # no leftover work folder


def test_dynamic_int8_export(model, thresholds, images, export, tmp_path):
    manifest = EarlyExitModel(model, thresholds).export_litert(
        tmp_path / "q", quantize="dynamic_int8"
    )
    assert manifest["quantize"] == "dynamic_int8" and manifest["backbone"] is None
    q = LiteRTEarlyExit(tmp_path / "q")(images)
    f = LiteRTEarlyExit(export[0])(images)
    # int8 weights move the confidences a little: most images keep their exit and answer.
    assert np.mean(q["prediction"] == f["prediction"]) > 0.9
    assert np.mean(q["exit"] == f["exit"]) > 0.8


# ---------------------------------------------------------------------------- no TensorFlow
def _python(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


def test_runtime_imports_no_tensorflow(export, images, tmp_path):
    path, _ = export
    np.save(tmp_path / "x.npy", images[:64])
    expected = LiteRTEarlyExit(path)(images[:64])
    proc = _python(
        f"""
        import sys
        import numpy as np
        from keras_sd.litert_runtime import LiteRTEarlyExit
        out = LiteRTEarlyExit({str(path)!r})(np.load("x.npy"))
        np.savez("out.npz", **out)
        heavy = sorted(m for m in ("tensorflow", "keras", "keras_sd.models") if m in sys.modules)
        print("HEAVY", heavy)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    got = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(got["exit"], expected["exit"])
    np.testing.assert_array_equal(got["logits"], expected["logits"])


def test_missing_runtime_names_the_extra(export, tmp_path):
    proc = _python(
        f"""
        import sys
        sys.modules["ai_edge_litert"] = None  # as if the package were not installed
        from keras_sd.litert_runtime import LiteRTEarlyExit
        try:
            LiteRTEarlyExit({str(export[0])!r})
        except ImportError as err:
            print("ERR", err)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ERR LiteRTEarlyExit needs the LiteRT runtime" in proc.stdout
    assert 'pip install "keras-sd[litert]"' in proc.stdout


# ---------------------------------------------------------------------------- bad input
def test_bad_export_arguments(model, thresholds, tmp_path):
    early = EarlyExitModel(model, thresholds)
    with pytest.raises(ValueError, match=r"`quantize` must be one of .*got 'int4'"):
        early.export_litert(tmp_path / "a", quantize="int4")
    with pytest.raises(ValueError, match="`normalization` must be None or a dict"):
        early.export_litert(tmp_path / "a", normalization=[0.5])
    with pytest.raises(ValueError, match=r"`normalization` must have as many means as stds"):
        early.export_litert(tmp_path / "a", normalization={"mean": [0.5], "std": [0.0]})
    with pytest.raises(ValueError, match="`backbone` must be True or False, got 'yes'"):
        early.export_litert(tmp_path / "a", backbone="yes")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="exists and is not a LiteRT early-exit export"):
        early.export_litert(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert not (tmp_path / "a").exists()


def test_bad_runtime_arguments(export, images, tmp_path):
    path, manifest = export
    with pytest.raises(ValueError, match="has no manifest.json"):
        LiteRTEarlyExit(tmp_path)
    with pytest.raises(ValueError, match=r"`num_threads` must be a positive int or None, got 0"):
        LiteRTEarlyExit(path, num_threads=0)
    with pytest.raises(ValueError, match=r"`thresholds` must all lie in \(0, 1\]"):
        LiteRTEarlyExit(path, thresholds=[0.5, 0.0, 0.5])
    fast = LiteRTEarlyExit(path)
    with pytest.raises(ValueError, match="exactly one threshold per exit"):
        fast.set_thresholds([0.5, 0.5])
    with pytest.raises(ValueError, match=r"`images` must be one image of shape \(8, 8, 3\)"):
        fast(np.zeros((2, 8, 8, 1), "float32"))
    with pytest.raises(ValueError, match="`images` is an empty batch"):
        fast(np.zeros((0, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="`batch_size` must be a positive int, got 0"):
        fast.predict(images[:4], batch_size=0)
    # A copied folder whose flatbuffer was damaged, and one written by a newer format.
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in path.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    with open(broken / "stage2.tflite", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="stage2.tflite does not match the manifest"):
        LiteRTEarlyExit(broken)
    (broken / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99, this runtime reads version 1"):
        LiteRTEarlyExit(broken)


def test_reexport_replaces_the_artefact(model, tmp_path):
    target = tmp_path / "ee"
    EarlyExitModel(model, [0.5, 0.5, 0.5]).export_litert(target)
    EarlyExitModel(model, [0.9, 0.8, 0.7]).export_litert(target)
    assert LiteRTEarlyExit(target).thresholds == [0.9, 0.8, 0.7]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ee"]  # nothing left behind


# ---------------------------------------------------------------------------- command line
def _digits_run(tmp_path):
    from keras_sd.atomic import write_json_atomic
    from keras_sd.recipes import DataConfig, Recipe

    keras.utils.set_random_seed(0)
    init = keras.initializers.HeNormal(seed=0)
    inp = keras.Input((8, 8, 1))
    a = keras.layers.ReLU()(keras.layers.Conv2D(4, 3, padding="same", kernel_initializer=init)(inp))
    b = keras.layers.ReLU()(keras.layers.Conv2D(6, 3, 2, "same", kernel_initializer=init)(a))
    h = keras.layers.GlobalAveragePooling2D()(b)
    z = keras.layers.Dense(10, kernel_initializer=init)(h)
    model = MultiExitDistiller(keras.Model(inp, {"stages": [a, b], "features": h, "logits": z}))
    run = tmp_path / "run"
    run.mkdir()
    recipe = Recipe(name="t", method="multi_exit", data=DataConfig(name="digits", batch_size=32))
    write_json_atomic(run / "recipe.json", recipe.to_dict())
    model.save(run / "model.keras")
    return run


def test_cli_export_litert(tmp_path, capsys):
    from keras_sd import cli
    from keras_sd import data as data_lib

    run = _digits_run(tmp_path)
    # No thresholds.json yet: the error says how to make one.
    assert cli.main(["export", str(run), "--litert"]) == 2
    assert "run `keras-sd thresholds RUN_DIR" in capsys.readouterr().err
    (run / "thresholds.json").write_text(json.dumps({"thresholds": [0.15, 0.2], "beta": 1.0}))
    assert cli.main(["export", str(run)]) == 2
    assert "choose an export format: --litert" in capsys.readouterr().err
    assert cli.main(["export", str(run), "--litert", "--backbone"]) == 0
    assert "wrote" in capsys.readouterr().out
    bundle = data_lib.load("digits", batch_size=32, augment="none", seed=0)
    x = np.concatenate([np.asarray(a) for a, _ in bundle.test])
    fast = LiteRTEarlyExit(run / "litert")
    manifest = fast.manifest
    assert manifest["thresholds"] == [0.15, 0.2] and manifest["backbone"] is not None
    assert manifest["normalization"] == {
        "mean": list(bundle.info.mean),
        "std": list(bundle.info.std),
        "scale": 16.0,  # digits pixels run 0..16
    }
    loaded = keras.models.load_model(run / "model.keras")
    expected = EarlyExitModel(loaded, [0.15, 0.2]).predict_early_exit(x)
    out = fast(x)
    assert np.mean(out["exit"] == expected["exit"]) >= 0.999
    assert 0 < np.mean(out["exit"] == 0) < 1  # both exits answer some digits
    # --thresholds FILE (a plain JSON list) and --out.
    (tmp_path / "t.json").write_text("[1.0, 1.0]")
    argv = ["export", str(run), "--litert", "--thresholds", str(tmp_path / "t.json")]
    assert cli.main([*argv, "--out", str(tmp_path / "ens")]) == 0
    assert (LiteRTEarlyExit(tmp_path / "ens")(x[:10])["exit"] == 2).all()
    (tmp_path / "t.json").write_text("[1.0, 1.0, 1.0]")
    assert cli.main(argv) == 2
    assert "exactly one threshold per exit (2 values" in capsys.readouterr().err


def test_cli_export_help(capsys):
    from keras_sd import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["export", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--litert" in text and "--thresholds" in text and "keras-sd[litert]" in text
