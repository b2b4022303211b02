"""Every public constructor, loader and CLI verb, fed its likely mistakes.

Each row is ``(id, call, pattern)``: ``call()`` must raise a ValueError whose message matches
``pattern`` (which names the argument). CLI rows run `keras_sd.cli.main` and must return 2 with
one stderr line naming the argument (argparse's own errors add their usage line before it).
Rows that currently fail because of code outside this helper's files are strict xfails that say
where the fix belongs, so they turn into failures (XPASS) once fixed and must then be unmarked.
"""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from tiny import tiny_backbone

import keras_sd
from keras_sd import backbones, data, layers, recipes
from keras_sd import cli as cli_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
DIGITS_RECIPE = str(REPO / "recipes" / "baseline" / "resnet20_digits.py")


def bb(**kw):
    return tiny_backbone(**kw)


def sd_backbone():
    return backbones.get(
        "resnet_cifar", depth=8, num_classes=5, input_shape=(8, 8, 1), stochastic_depth=0.5
    )


def no_stages_backbone():
    inp = keras.Input((8, 8, 1))
    h = keras.layers.GlobalAveragePooling2D()(inp)
    z = keras.layers.Dense(5)(h)
    return keras.Model(inp, {"stages": [], "features": h, "logits": z})


def plain_model():
    inp = keras.Input((8, 8, 1))
    return keras.Model(inp, keras.layers.Dense(5)(keras.layers.Flatten()(inp)))


def fit_baseline(x, y):
    model = keras_sd.Baseline(bb())
    model.compile(optimizer="sgd")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)


def evaluate_baseline(x, y):
    model = keras_sd.Baseline(bb())
    model.compile(optimizer="sgd")
    model.evaluate(x, y, batch_size=4, verbose=0)


X = np.zeros((8, 8, 8, 1), "float32")
Y = np.arange(8) % 5


def image_folder(root: pathlib.Path, corrupt: bool = False) -> str:
    """A 2-class folder data set of 4x4 PNGs; with ``corrupt`` one train file is not an image."""
    import tensorflow as tf

    for split in ("train", "test"):
        for c in ("a", "b"):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(4):
                png = tf.io.encode_png(np.full((4, 4, 3), 40 * i, np.uint8)).numpy()
                (d / f"{i}.png").write_bytes(png)
    if corrupt:
        (root / "train" / "a" / "0.png").write_bytes(b"this is not a png")
    return str(root)


def _xfail(reason):
    return pytest.mark.xfail(strict=True, reason=reason)


# ---------------------------------------------------------------------------- models
MODEL_CASES = [
    ("baseline_backbone_not_model", lambda: keras_sd.Baseline("resnet20"), "backbone"),
    ("baseline_backbone_plain_output", lambda: keras_sd.Baseline(plain_model()), "backbone"),
    ("baseline_backbone_without_stages", lambda: keras_sd.Baseline(no_stages_backbone()), "stage"),
    (
        "baseline_weight_decay_negative",
        lambda: keras_sd.Baseline(bb(), weight_decay=-1e-4),
        "weight_decay",
    ),
    (
        "baseline_weight_decay_str",
        lambda: keras_sd.Baseline(bb(), weight_decay="5e-4x"),
        "weight_decay",
    ),
    (
        "baseline_pskd_alpha_range",
        lambda: keras_sd.Baseline(bb(), pskd_alpha=1.5, num_train_examples=8),
        "alpha",
    ),
    (
        "baseline_pskd_without_size",
        lambda: keras_sd.Baseline(bb(), pskd_alpha=0.8),
        "num_train_examples",
    ),
    ("baseline_bank_dtype", lambda: keras_sd.Baseline(bb(), bank_dtype="int8"), "bank_dtype"),
    (
        "two_view_temperature_zero",
        lambda: keras_sd.TwoViewDistiller(bb(), temperature=0),
        "temperature",
    ),
    (
        "two_view_kl_weight_negative",
        lambda: keras_sd.TwoViewDistiller(bb(), kl_weight=-1),
        "kl_weight",
    ),
    (
        "two_view_mmd_weight_str",
        lambda: keras_sd.TwoViewDistiller(bb(), mmd_weight="big"),
        "mmd_weight",
    ),
    ("two_view_kl_scale", lambda: keras_sd.TwoViewDistiller(bb(), kl_scale="t3"), "kl_scale"),
    ("two_view_views", lambda: keras_sd.TwoViewDistiller(bb(), views="triple"), "views"),
    ("two_view_seed_float", lambda: keras_sd.TwoViewDistiller(bb(), seed=1.5), "seed"),
    (
        "two_view_distortion_name",
        lambda: keras_sd.TwoViewDistiller(bb(), distortion="rotate"),
        "distortion",
    ),
    ("multi_exit_alpha_range", lambda: keras_sd.MultiExitDistiller(bb(), alpha=1.5), "alpha"),
    (
        "multi_exit_feature_weight",
        lambda: keras_sd.MultiExitDistiller(bb(), feature_weight=-1),
        "feature_weight",
    ),
    (
        "multi_exit_temperature",
        lambda: keras_sd.MultiExitDistiller(bb(), temperature=-3),
        "temperature",
    ),
    (
        "multi_exit_exits_out_of_range",
        lambda: keras_sd.MultiExitDistiller(bb(), exits=[0, 7]),
        "exits",
    ),
    ("multi_exit_exits_str", lambda: keras_sd.MultiExitDistiller(bb(), exits="layers"), "exits"),
    ("multi_exit_path", lambda: keras_sd.MultiExitDistiller(bb(), path="widest"), "path"),
    (
        "multi_exit_reduction",
        lambda: keras_sd.MultiExitDistiller(bb(), reduction="max"),
        "reduction",
    ),
    (
        "multi_exit_mutual_weight",
        lambda: keras_sd.MultiExitDistiller(bb(), mutual_feature_weight=-1),
        "mutual_feature_weight",
    ),
    pytest.param(
        lambda: keras_sd.MultiExitDistiller(bb(), teacher=bb(num_classes=7)),
        "teacher",
        id="multi_exit_teacher_classes",
    ),
    (
        "multi_exit_backbone_without_stages",
        lambda: keras_sd.MultiExitDistiller(no_stages_backbone()),
        "stage",
    ),
    (
        "self_guidance_kd_weight",
        lambda: keras_sd.SelfGuidanceDistiller(sd_backbone(), kd_weight=-1),
        "kd_weight",
    ),
    (
        "self_guidance_temperature",
        lambda: keras_sd.SelfGuidanceDistiller(sd_backbone(), temperature=0),
        "temperature",
    ),
    (
        "self_guidance_final_survival",
        lambda: keras_sd.SelfGuidanceDistiller(sd_backbone(), final_survival=1.5),
        "final_survival",
    ),
    (
        "self_guidance_drop_mode",
        lambda: keras_sd.SelfGuidanceDistiller(sd_backbone(), drop_mode="per_pixel"),
        "drop_mode",
    ),
    (
        "self_guidance_teacher_gradient",
        lambda: keras_sd.SelfGuidanceDistiller(sd_backbone(), teacher_gradient="yes"),
        "teacher_gradient",
    ),
    (
        "self_guidance_plain_backbone",
        lambda: keras_sd.SelfGuidanceDistiller(bb()),
        "backbone|stochastic",
    ),
]

FIT_CASES = [
    ("fit_image_rank_2", lambda: fit_baseline(X[:, :, 0, 0], Y), "input shape"),
    ("fit_image_wrong_channels", lambda: fit_baseline(np.repeat(X, 3, axis=-1), Y), "input shape"),
    ("fit_onehot_wrong_width", lambda: fit_baseline(X, np.eye(7)[Y]), "[Ll]abels"),
    ("fit_labels_rank_3", lambda: fit_baseline(X, Y[:, None, None]), "[Ll]abels"),
    ("fit_labels_out_of_range", lambda: fit_baseline(X, Y + 5), "[Ll]abels"),
    ("fit_labels_negative", lambda: fit_baseline(X, Y - 1), "[Ll]abels"),
    ("fit_labels_fractional", lambda: fit_baseline(X, Y + 0.5), "[Ll]abels"),
    ("evaluate_labels_out_of_range", lambda: evaluate_baseline(X, Y + 5), "[Ll]abels"),
]

# ---------------------------------------------------------------------------- backbones, layers
BACKBONE_CASES = [
    ("backbones_get_unknown", lambda: backbones.get("resnet21"), "resnet21"),
    ("backbones_get_not_str", lambda: backbones.get(20), "name|backbone"),
    ("backbones_get_bad_kwarg", lambda: backbones.get("resnet20", widht=2), "widht"),
    (
        "backbones_get_num_classes_zero",
        lambda: backbones.get("resnet20", num_classes=0),
        "num_classes",
    ),
    (
        "backbones_get_input_rank",
        lambda: backbones.get("resnet20", input_shape=(32, 32)),
        "input_shape",
    ),
    ("backbones_resnet_cifar_depth", lambda: backbones.get("resnet_cifar", depth=21), "depth"),
    ("backbones_from_keras_not_model", lambda: backbones.from_keras("resnet", ["a", "b"]), "model"),
    (
        "backbones_from_keras_unknown_stage",
        lambda: backbones.from_keras(plain_model(), ["nope", "dense"]),
        "nope",
    ),
]

LAYER_CASES = [
    ("pad_crop_padding_negative", lambda: layers.PadAndRandomCrop(padding=-1), "padding"),
    (
        "pad_crop_flip_str",
        lambda: layers.PadAndRandomCrop(horizontal_flip="yes"),
        "horizontal_flip",
    ),
    ("pad_crop_seed_float", lambda: layers.PadAndRandomCrop(seed=0.5), "seed"),
    ("flip_seed_str", lambda: layers.RandomHorizontalFlip(seed="0"), "seed"),
    ("rrc_height_zero", lambda: layers.RandomResizedCrop(height=0), "height"),
    ("rrc_scale_reversed", lambda: layers.RandomResizedCrop(scale=(0.9, 0.1)), "scale"),
    ("rrc_ratio_nonpositive", lambda: layers.RandomResizedCrop(ratio=(0.0, 1.0)), "ratio"),
    (
        "exit_head_num_classes",
        lambda: layers.ExitHead(num_classes=0, feature_dim=8, num_blocks=1),
        "num_classes",
    ),
    (
        "exit_head_blocks",
        lambda: layers.ExitHead(num_classes=5, feature_dim=8, num_blocks=-1),
        "num_blocks",
    ),
    ("sepconv_filters", lambda: layers.SeparableConvBlock(filters=0), "filters"),
    ("sepconv_strides", lambda: layers.SeparableConvBlock(filters=4, strides=3), "strides"),
    (
        "stochastic_depth_p",
        lambda: layers.StochasticDepth(keras.layers.Identity(), 1.5),
        "survival_probability",
    ),
    (
        "stochastic_depth_mode",
        lambda: layers.StochasticDepth(keras.layers.Identity(), 0.5, mode="x"),
        "mode",
    ),
    ("distortion_kind", lambda: data.distortion("rotate", (8, 8, 1)), "kind"),
    ("distortion_shape", lambda: data.distortion("cifar", (8, 8)), "image_shape"),
]

# ---------------------------------------------------------------------------- data
DATA_CASES = [
    ("load_name_not_str", lambda: data.load(3), "name"),
    ("load_batch_size_zero", lambda: data.load("digits", batch_size=0), "batch_size"),
    ("load_batch_size_float", lambda: data.load("digits", batch_size=1.5), "batch_size"),
    ("load_batch_size_too_big", lambda: data.load("digits", batch_size=100_000), "batch_size"),
    ("load_eval_batch_size", lambda: data.load("digits", eval_batch_size=-1), "eval_batch_size"),
    ("load_seed_str", lambda: data.load("digits", seed="0"), "seed"),
    ("load_augment", lambda: data.load("digits", augment="randaugment"), "augment"),
    (
        "load_train_per_class_zero",
        lambda: data.load("digits", train_per_class=0),
        "train_per_class",
    ),
    (
        "load_train_per_class_too_many",
        lambda: data.load("digits", train_per_class=10_000),
        "train_per_class",
    ),
    ("load_image_size_not_folder", lambda: data.load("digits", image_size=8), "image_size"),
    ("load_folder_empty_path", lambda: data.load("folder:"), "folder"),
    ("load_folder_missing", lambda: data.load("folder:/nonexistent/keras_sd_data"), "nonexistent"),
]


@pytest.mark.parametrize(
    "call,pattern",
    [
        row if isinstance(row, type(pytest.param(0))) else pytest.param(row[1], row[2], id=row[0])
        for row in MODEL_CASES + FIT_CASES + BACKBONE_CASES + LAYER_CASES + DATA_CASES
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_folder_without_split(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="test"):
        data.load(f"folder:{tmp_path}")


def test_corrupt_image_in_folder(tmp_path):
    root = image_folder(tmp_path, corrupt=True)
    with pytest.raises(ValueError, match="0.png"):
        bundle = data.load(f"folder:{root}", batch_size=2)
        for _ in bundle.train:  # decoding may be lazy: iterating must fail the same way
            pass


def test_valid_folder_loads(tmp_path):
    # The control for the two folder rows: the same folder without mistakes loads.
    bundle = data.load(f"folder:{image_folder(tmp_path)}", batch_size=2)
    assert bundle.info.num_classes == 2 and bundle.info.num_train == 8


# ---------------------------------------------------------------------------- recipes
RECIPE_CASES = [
    ("recipe_method", dict(method="byot"), "method"),
    ("recipe_epochs_zero", dict(epochs=0), "epochs"),
    ("recipe_epochs_float", dict(epochs=2.5), "epochs"),
    ("recipe_steps", dict(steps_per_epoch=0), "steps_per_epoch"),
    ("recipe_save_freq_zero", dict(save_freq=0), "`save_freq` must be 'epoch' or a positive int"),
    ("recipe_save_freq_word", dict(save_freq="batch"), r"save_freq.*got 'batch'"),
    ("recipe_save_freq_bool", dict(save_freq=True), r"save_freq.*got True"),
    ("recipe_batch", dict(data=recipes.DataConfig(batch_size=0)), "batch_size"),
    ("recipe_lr", dict(optimizer=recipes.OptimizerConfig(learning_rate=0)), "learning_rate"),
    ("recipe_schedule", dict(optimizer=recipes.OptimizerConfig(schedule="step")), "schedule"),
    ("recipe_milestones", dict(optimizer=recipes.OptimizerConfig(milestones=(5, 2))), "milestones"),
    ("recipe_strategy", dict(strategy="gpu"), "strategy"),
    ("recipe_precision", dict(precision="float16"), "precision"),
]


@pytest.mark.parametrize("changes,pattern", [pytest.param(c, p, id=i) for i, c, p in RECIPE_CASES])
def test_bad_recipe_field(changes, pattern):
    with pytest.raises(ValueError, match=pattern):
        recipes.Recipe(name="bad", **changes)


# ---------------------------------------------------------------------------- CLI
def write_recipe(tmp_path, body: str) -> str:
    path = tmp_path / "r.py"
    path.write_text("from keras_sd.recipes import DataConfig, OptimizerConfig, Recipe\n\n" + body)
    return str(path)


def cli_cases(tmp_path, write=True):
    no_name, no_fn = str(tmp_path / "r.py"), tmp_path / "nofn.py"
    if write:
        # `name` may be left out (the loader fills it from the path); an unknown field may not.
        write_recipe(tmp_path, "def get_config(arg=None):\n    return Recipe(epoch=3)\n")
        no_fn.write_text("x = 1\n")
    return [
        ("train_missing_recipe", ["train", str(tmp_path / "missing.py")], "missing.py", None),
        ("train_unknown_set_key", ["train", DIGITS_RECIPE, "--set", "epochz=3"], "epochz", None),
        (
            "train_unknown_method_arg",
            ["train", DIGITS_RECIPE, "--set", "method_args.kl_weight=1"],
            "kl_weight",
            None,
        ),
        ("train_set_without_equals", ["train", DIGITS_RECIPE, "--set", "epochs"], "--set", None),
        ("train_set_wrong_type", ["train", DIGITS_RECIPE, "--set", "epochs=many"], "epochs", None),
        ("train_set_out_of_range", ["train", DIGITS_RECIPE, "--set", "epochs=0"], "epochs", None),
        (
            "train_set_bad_batch",
            ["train", DIGITS_RECIPE, "--set", "data.batch_size=0"],
            "batch_size",
            None,
        ),
        ("train_no_get_config", ["train", str(no_fn)], "get_config", None),
        (
            "train_recipe_unknown_field",
            ["train", no_name],
            "epoch",
            None,
        ),
        (
            "train_bad_strategy_flag",
            ["train", DIGITS_RECIPE, "--strategy", "gpu"],
            "strategy",
            None,
        ),
        ("evaluate_missing_dir", ["evaluate", str(tmp_path / "norun")], "run_dir", None),
        (
            "thresholds_missing_dir",
            ["thresholds", str(tmp_path / "norun"), "--beta", "1"],
            "run_dir|norun",
            None,
        ),
        (
            "thresholds_beta_not_number",
            ["thresholds", str(tmp_path), "--beta", "high"],
            "beta",
            None,
        ),
        (
            "thresholds_split_seed_not_int",
            ["thresholds", str(tmp_path), "--beta", "1", "--split-seed", "half"],
            "split-seed",
            None,
        ),
        (
            "thresholds_measure_images_zero",
            ["thresholds", str(tmp_path), "--beta", "1", "--measure-images", "0"],
            "`measure_images` must be a positive int, got 0",
            None,
        ),
        ("tune_missing_recipe", ["tune", str(tmp_path / "missing.py")], "missing.py", None),
        ("tune_bad_search", ["tune", DIGITS_RECIPE, "--search", "=1:2"], "search", None),
        ("tune_bad_tuner", ["tune", DIGITS_RECIPE, "--tuner", "grid"], "tuner", None),
        ("unknown_verb", ["fly"], "fly", None),
    ]


CLI_IDS = [c[0] for c in cli_cases(pathlib.Path("/unused"), write=False)]


@pytest.mark.parametrize("case_id", CLI_IDS)
def test_cli_bad_input_exits_2_with_one_line(case_id, tmp_path, capsys, request):
    case = {c[0]: c for c in cli_cases(tmp_path)}[case_id]
    _, argv, pattern, xfail_reason = case
    if xfail_reason:
        request.applymarker(_xfail(xfail_reason))
    try:
        code = cli_lib.main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err
    # Our errors: exactly one line. argparse errors: a usage line, then the error line.
    assert len(lines) == 1 or (lines[0].startswith("usage:") and "error:" in lines[-1]), err
    import re

    assert re.search(pattern, lines[-1]), lines[-1]


def test_cli_entry_point_prints_one_line_no_traceback(tmp_path):
    # The installed console script itself, in a fresh process.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("KERAS_SD_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "keras_sd.cli", "train", DIGITS_RECIPE, "--set", "bogus_key=1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("keras-sd train: error:") and "bogus_key" in lines[-1]
    assert "Traceback" not in proc.stderr
