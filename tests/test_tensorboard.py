"""keras_sd.callbacks' TensorBoard callbacks and keras_sd.plotting: what a `keras-sd train` run writes for TensorBoard, read back."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from tiny import tiny_backbone, tiny_multi_exit_recipe

from keras_sd import backbones, callbacks, plotting, train
from keras_sd.metrics import calibration_report
from keras_sd.recipes import DataConfig

BACKBONE = "tiny_tensorboard_test"


@pytest.fixture(scope="module", autouse=True)
def tiny_registered():
    backbones._REGISTRY[BACKBONE] = lambda num_classes, input_shape: tiny_backbone(
        input_shape, num_classes, batch_norm=True
    )
    yield
    backbones._REGISTRY.pop(BACKBONE, None)


# ---------------------------------------------------------------------------- pure helpers
def test_reliability_bins_by_hand():
    probs = np.array(
        [[0.95, 0.05], [0.85, 0.15], [0.35, 0.65], [0.55, 0.45], [0.5, 0.5]], dtype=np.float64
    )
    labels = np.array([0, 1, 1, 0, 1])
    stats = plotting.reliability_bins(probs, labels, num_bins=5)
    # confidences 0.95, 0.85, 0.65, 0.55, 0.5 -> bins (ceil(5c) - 1): 4, 4, 3, 2, 2.
    # The tie 0.5/0.5 is correct for either label (no class scores strictly higher).
    np.testing.assert_array_equal(stats["count"], [0, 0, 2, 1, 2])
    np.testing.assert_allclose(stats["confidence"][2:], [0.525, 0.65, 0.9])
    np.testing.assert_allclose(stats["accuracy"][2:], [1.0, 1.0, 0.5])
    assert np.isnan(stats["accuracy"][0]) and np.isnan(stats["confidence"][1])
    gap = np.nansum(np.abs(stats["accuracy"] - stats["confidence"]) * stats["count"]) / 5
    assert 100 * gap == pytest.approx(calibration_report(probs, labels, num_bins=5)["ece"])


def test_reliability_bins_bad_input():
    with pytest.raises(ValueError, match="`num_bins`"):
        plotting.reliability_bins(np.ones((2, 2)) / 2, [0, 1], num_bins=0)
    with pytest.raises(ValueError, match="`labels`"):
        plotting.reliability_bins(np.ones((2, 2)) / 2, [0, 1, 1])
    with pytest.raises(ValueError, match="`probs`"):
        plotting.reliability_bins(np.ones(4), [0])


def test_attention_panels_put_the_heat_where_the_mask_is_high():
    images = np.zeros((2, 4, 4, 1))
    masks = np.full((2, 2, 2, 3), 0.5)
    masks[0, 0, 0, :] = 0.9  # top-left of sample 0 attends most
    masks[1, 1, 1, :] = 0.9  # bottom-right of sample 1
    panels = plotting.attention_panels(images, masks, min_size=8)
    assert panels.shape == (2, 8, 16, 3) and panels.dtype == np.uint8
    hot = (np.array(plotting._colormap(np.array(1.0))) * 255).round()
    cold = (np.array(plotting._colormap(np.array(0.0))) * 255).round()
    np.testing.assert_allclose(panels[0, 0, 8], hot, atol=1)  # right half = heat map
    np.testing.assert_allclose(panels[0, -1, -1], cold, atol=1)
    np.testing.assert_allclose(panels[1, -1, -1], hot, atol=1)


INFERENCE_PAYLOAD = {  # the layout keras_sd.inference.run writes
    "thresholds": [0.9, 0.8],
    "accuracy": 91.0,
    "mac_acceleration": 1.6,
    "final_exit_accuracy": 90.5,
    "table": [
        {"thresholds": [0.9, 0.8], "accuracy": 91.0, "mac_acceleration": 1.6},
        {"thresholds": [0.7, 0.6], "accuracy": 88.0, "mac_acceleration": 2.1},
    ],
    "sweep": {"values": [0.5, 0.9], "table": [{"accuracy": 87.0, "mac_acceleration": 2.0}]},
}


def test_early_exit_points_and_image():
    points = plotting.early_exit_points(INFERENCE_PAYLOAD)
    assert points["table"] == [(1.6, 91.0), (2.1, 88.0)]
    assert points["sweep"] == [(2.0, 87.0)]
    assert points["chosen"] == (1.6, 91.0)
    assert points["baseline"] == 90.5 and points["thresholds"] == [0.9, 0.8]
    image = plotting.early_exit_image(INFERENCE_PAYLOAD)
    assert image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.uint8
    with pytest.raises(ValueError, match="no accuracy/acceleration"):
        plotting.early_exit_points({"thresholds": [0.5]})
    with pytest.raises(ValueError, match="JSON object"):
        plotting.early_exit_points([1, 2])


def test_callback_bad_input(tmp_path):
    x, y = np.zeros((4, 8, 8, 1), "float32"), np.zeros(4, "int32")
    with pytest.raises(ValueError, match="`validation_data`"):
        callbacks.ReliabilityDiagram(tmp_path, [x, y])
    with pytest.raises(ValueError, match="`num_bins`"):
        callbacks.ReliabilityDiagram(tmp_path, (x, y), num_bins=0)
    with pytest.raises(ValueError, match="`max_samples`"):
        callbacks.ReliabilityDiagram(tmp_path, (x, y), max_samples=0)
    with pytest.raises(ValueError, match="`log_dir`"):
        callbacks.ReliabilityDiagram("", (x, y))
    with pytest.raises(ValueError, match="`num_images`"):
        callbacks.AttentionMaps(tmp_path, (x, y), num_images=0)
    with pytest.raises(ValueError, match="empty"):
        callbacks.AttentionMaps(tmp_path, (x[:0], y[:0]))
    with pytest.raises(ValueError, match="`thresholds_path`"):
        callbacks.EarlyExitPlot(tmp_path, None)
    with pytest.raises(ValueError, match="`recipe`"):
        callbacks.RecipeHParams(tmp_path, {"name": "x"})


# ---------------------------------------------------------------------------- a real run
def _recipe(**changes):
    base = {
        "name": "test/tb_multi_exit",
        "method_args": {"alpha": 0.5, "feature_weight": 0.02},
        "epochs": 2,
    }
    return tiny_multi_exit_recipe(BACKBONE, **{**base, **changes})


def _events(directory):
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(directory), size_guidance={ea.IMAGES: 0, ea.TENSORS: 0})
    acc.Reload()
    return acc


def _scalar(acc, tag):
    import tensorflow as tf

    return [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]


@pytest.fixture(scope="module")
def multi_exit_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("tb_run")
    (run / "thresholds.json").write_text(json.dumps(INFERENCE_PAYLOAD))
    metrics = train.train(_recipe(), run, verbose=0)
    return run, metrics


def test_event_files_hold_terms_accuracies_schedules_and_images(multi_exit_run):
    run, metrics = multi_exit_run
    tr = _events(run / "logs" / "train")
    tags = set(tr.Tags()["tensors"])
    expected = {
        "epoch_loss",
        "epoch_ce_loss",
        "epoch_kl_loss",
        "epoch_feature_loss",
        "epoch_exit1_accuracy",
        "epoch_exit2_accuracy",
        "epoch_ensemble_accuracy",
        "epoch_learning_rate",
        "epoch_kl_loss_weight",
        "epoch_feature_loss_weight",
    }
    assert expected <= tags
    # DistillationAnnealing(last_epochs=1) over 2 epochs: configured value, then 0.
    assert _scalar(tr, "epoch_kl_loss_weight") == [0.5, 0.0]
    assert _scalar(tr, "epoch_feature_loss_weight") == pytest.approx([0.02, 0.0])
    # Cosine decay over 2 epochs x 2 steps, logged after each epoch's steps: lr(step 2), lr(4).
    lr = _scalar(tr, "epoch_learning_rate")
    assert lr == pytest.approx([0.05 * 0.5 * (1 + np.cos(np.pi * s / 4)) for s in (2, 4)])

    va = _events(run / "logs" / "validation")
    vtags = set(va.Tags()["tensors"])
    assert {
        "epoch_exit2_accuracy",
        "epoch_ece",
        "epoch_nll",
        "epoch_exit1_ece",
        "epoch_ensemble_ece",
    } <= vtags
    # val_ece of the last epoch is the deployed output's ECE on the test split with the final
    # weights: the number train() computes independently for metrics.json.
    assert _scalar(va, "epoch_ece")[-1] == pytest.approx(metrics["calibration"]["ece"], abs=1e-3)
    assert _scalar(va, "epoch_nll")[-1] == pytest.approx(metrics["calibration"]["nll"], rel=1e-4)

    images = set(va.Tags()["images"]) | {t for t in vtags if "/" in t}
    for tag in (
        "reliability/exit1",
        "reliability/exit2",
        "reliability/ensemble",
        "attention/exit1",
        "early_exit/trade_off",
    ):
        assert tag in images, tag
    attention = va.Tensors("attention/exit1")
    assert [e.step for e in attention] == [0, 1]
    # Image summaries: [width, height, png...]; 4 panels of image + heat map side by side.
    width, height, *pngs = attention[-1].tensor_proto.string_val
    assert len(pngs) == 4 and int(width) == 2 * int(height)
    assert all(p.startswith(b"\x89PNG") for p in pngs)

    root = _events(run / "logs")
    assert "_hparams_/session_start_info" in root.Tags()["tensors"]
    start = root.SummaryMetadata("_hparams_/session_start_info").plugin_data
    assert start.plugin_name == "hparams" and b"method_args.alpha" in start.content


def test_tensorboard_serves_the_scalars(multi_exit_run):
    run, _ = multi_exit_run
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(run / "logs"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast",
            "false",
            "--reload_interval",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/data/plugin/scalars"
    try:
        deadline = time.monotonic() + 90
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(
                    f"{base}/scalars?run=train&tag=epoch_kl_loss_weight", timeout=5
                ) as r:
                    body = json.loads(r.read())
            except OSError:
                assert proc.poll() is None, "tensorboard exited"
                time.sleep(1)
        assert body is not None, "tensorboard did not answer within 90 s"
        assert [row[1] for row in body] == [0, 1]
        assert [row[2] for row in body] == [0.5, 0.0]
        with urllib.request.urlopen(f"{base}/tags", timeout=10) as r:
            tags = json.loads(r.read())
        assert "epoch_ece" in tags["validation"] and "epoch_kl_loss" in tags["train"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_pskd_alpha_t_and_single_output_names(tmp_path):
    recipe = _recipe(
        method="baseline",
        method_args={"pskd_alpha": 0.8},
        callbacks={},
        data=DataConfig(name="digits", batch_size=32, with_index=True),
    )
    metrics = train.train(recipe, tmp_path, verbose=0)
    tr = _events(tmp_path / "logs" / "train")
    # alpha_t = alpha_T * t / T with t = 1, 2 of T = 2 epochs.
    assert _scalar(tr, "epoch_pskd_alpha_t") == pytest.approx([0.4, 0.8])
    va = _events(tmp_path / "logs" / "validation")
    tags = set(va.Tags()["tensors"])
    assert {"epoch_accuracy", "epoch_ece", "reliability/output"} <= tags
    assert "attention/exit1" not in tags and "early_exit/trade_off" not in tags
    assert _scalar(va, "epoch_ece")[-1] == pytest.approx(metrics["calibration"]["ece"], abs=1e-3)
