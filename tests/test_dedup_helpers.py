"""The small shared helpers that replaced repeated code (issue 18): their contracts directly."""

from __future__ import annotations

import hashlib
import pathlib

import keras
import pytest
from harness import load_benchmark

from keras_sd import litert_runtime
from keras_sd.backbones import _common as c
from keras_sd.callbacks._summary import _SummaryCallback
from keras_sd.layers.exits import ExitHeadBase

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_file_sha256_and_read_json_file(tmp_path):
    file = tmp_path / "a.json"
    file.write_text('{"x": [1, 2]}')
    assert litert_runtime.file_sha256(file) == hashlib.sha256(file.read_bytes()).hexdigest()
    assert litert_runtime.read_json_file(file, missing="no", label="L") == {"x": [1, 2]}
    with pytest.raises(ValueError, match="^nothing here$"):
        litert_runtime.read_json_file(tmp_path / "b.json", missing="nothing here", label="L")
    file.write_text("{")
    with pytest.raises(ValueError, match=r"^`f` a\.json is not valid JSON \("):
        litert_runtime.read_json_file(file, missing="no", label="`f` a.json")


def test_block_stages_names_strides_and_widths():
    calls = []

    def block(x, in_filters, filters, stride, schedule, name):
        calls.append((in_filters, filters, stride, name))
        return f"{name}_out"

    schedule = c.DepthSchedule(None, 5)
    stages = c.block_stages(
        "x", in_filters=8, widths=(16, 32), blocks=(2, 3), schedule=schedule, block=block
    )
    assert stages == ["stage1_block2_out", "stage2_block3_out"]
    assert calls == [
        (8, 16, 1, "stage1_block1"),
        (16, 16, 1, "stage1_block2"),
        (16, 32, 2, "stage2_block1"),
        (32, 32, 1, "stage2_block2"),
        (32, 32, 1, "stage2_block3"),
    ]


def test_final_bn_relu_layer_names():
    x = keras.Input((4, 4, 3))
    y = c.final_bn_relu(x)
    model = keras.Model(x, y)
    assert [layer.name for layer in model.layers[1:]] == ["final_bn", "final_relu"]


def test_writes_epoch(tmp_path):
    callback = _SummaryCallback(tmp_path)
    callback.every_n_epochs = 3
    callback.set_params({"epochs": 5})
    assert [callback.writes_epoch(e) for e in range(5)] == [False, False, True, False, True]
    callback.params = None
    assert [callback.writes_epoch(e) for e in range(4)] == [False, False, True, False]


def test_exit_head_base_output_shape_and_config():
    class Head(ExitHeadBase):
        def build(self, input_shape):
            self.build_classifier(batch=input_shape[0])
            super().build(input_shape)

        def call(self, x):
            return self.head_outputs(x)

    head = Head(3, 4, name="h")
    out = head(keras.ops.zeros((2, 4)))
    assert tuple(out["logits"].shape) == (2, 3) and tuple(out["features"].shape) == (2, 4)
    assert head.compute_output_shape((2, 4)) == {"logits": (2, 3), "features": (2, 4)}
    config = head.get_config()
    assert config["num_classes"] == 3 and config["feature_dim"] == 4
    with pytest.raises(ValueError, match="`num_classes` must be a positive int"):
        Head(0, 4)


def _study():
    return load_benchmark("cifar10_study")


def test_replace_section():
    replace = _study().replace_section
    added = replace("# Results\n\n\n", key="k", body="table\n", heading="## K")
    assert added == "# Results\n\n## K\n\n<!-- k:start -->\ntable\n<!-- k:end -->\n"
    assert replace(added, key="k", body="new\n") == (
        "# Results\n\n## K\n\n<!-- k:start -->\nnew\n<!-- k:end -->\n"
    )
    assert replace("x", key="k", body="b") == "x\n\n<!-- k:start -->\nb<!-- k:end -->\n"
