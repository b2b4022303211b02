"""Recipes: every recipe file loads; smoke variants train a couple of steps; overrides are typed."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_sd import paper_args, recipes, train

REPO = pathlib.Path(__file__).resolve().parents[1]
RECIPE_FILES = recipes.all_recipe_files(REPO / "recipes")


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    # Dozens of backbones (up to 36M parameters) are built here; free each one's graph state.
    yield
    import keras

    keras.backend.clear_session()


ALL_SPECS = [f"{p}:{a}" if a else str(p) for p in RECIPE_FILES for a in recipes.file_args(p)]


def test_there_are_recipes():
    assert len(RECIPE_FILES) >= 2


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.split("recipes/")[-1])
def test_every_recipe_loads_with_docstring(spec):
    recipe = recipes.load(spec)
    path = pathlib.Path(spec.split(":")[0])
    doc = path.read_text().split('"""')[1]
    assert "keras-sd train" in doc, f"{path} docstring must give the command"
    smoke = recipes.load(
        spec.split(":")[0] + ":" + ",".join(filter(None, [spec.partition(":")[2], "smoke"]))
    )
    assert smoke.data.name == "digits" and smoke.epochs == 2
    assert smoke.method == recipe.method and smoke.backbone == recipe.backbone
    recipes.method_class(recipe.method)  # the method class exists


def test_every_recipe_data_set_loads():
    # The paper-scale data of every recipe is a set keras_sd.data loads (tried on TFDS's mock data:
    # nothing is downloaded), with the pipeline kind the runner asks for. A misspelt name would
    # otherwise fail only on the machine that runs the paper's schedule.
    from keras_sd import data
    from keras_sd.experiment import pipeline_augment

    sets = sorted({(r.data.name, pipeline_augment(r)) for r in map(recipes.load, ALL_SPECS)})
    assert {name for name, _ in sets} >= {"cifar10", "cifar100", "imagenet2012"}
    # Image folders (e.g. FER2013, which TFDS does not have) are the user's to provide.
    sets = [(name, augment) for name, augment in sets if not name.startswith("folder:")]
    with tfds.testing.mock_data(num_examples=4):
        for name, augment in sets:
            bundle = data.load(name, batch_size=2, augment=augment)
            x, y = next(iter(bundle.test))
            assert tuple(x.shape[1:]) == bundle.info.image_shape, (name, augment)
            assert 0 <= int(np.min(y)) and int(np.max(y)) < bundle.info.num_classes


# Deeper four-stage ResNets stack more of ResNet-50's bottleneck blocks (same layers, same
# variant), and a CIFAR ResNet's `depth` only repeats its blocks, so a compiled step on the
# deeper one traces nothing the shallower one's does not.
_SAME_GRAPH_AS = {"resnet101": "resnet50", "resnet152": "resnet50"}
_REPEAT_ARGS = {"depth"}


def _graph_shape(value):
    """``value`` with its non-zero floats (weights, temperatures: constants of the step) erased."""
    if isinstance(value, dict):
        return tuple(sorted((k, _graph_shape(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_graph_shape(v) for v in value)
    if isinstance(value, float):
        return "float" if value else 0.0
    return value


def _graph_key(spec):
    """Recipes with equal keys train the same graph up to float constants."""
    spec = str(spec)
    r = recipes.load(f"{spec},smoke" if ":" in spec else f"{spec}:smoke")
    return (
        r.method,
        _SAME_GRAPH_AS.get(r.backbone, r.backbone),
        _graph_shape({k: v for k, v in r.backbone_args.items() if k not in _REPEAT_ARGS}),
        _graph_shape(r.method_args),
        _graph_shape(vars(r.data)),
        r.precision,
        r.jit_compile,
    )


def _compiled_smoke_recipes(paths):
    """One recipe per graph key, preferring the shallowest backbone: their smoke steps run
    compiled, the rest eagerly (the twins' numbers and arguments still train; tracing a
    ResNet-152 step costs minutes of CI and checks nothing its twin's trace does not)."""

    def depth_first(path):  # the shallowest of a group first
        r = recipes.load(f"{path}:smoke")
        return r.backbone in _SAME_GRAPH_AS, r.backbone_args.get("depth", 0), str(path)

    chosen = {}
    for path in sorted(paths, key=depth_first):
        chosen.setdefault(_graph_key(path), path)
    return set(chosen.values())


COMPILED_SMOKE = _compiled_smoke_recipes(RECIPE_FILES)


def test_one_compiled_smoke_run_per_graph():
    def recipe(name):
        return REPO / "recipes" / name

    keys = [_graph_key(p) for p in COMPILED_SMOKE]
    assert len(set(keys)) == len(keys) == len({_graph_key(p) for p in RECIPE_FILES})
    # Twins differing in a temperature share a graph; a zero weight or a soft-target bank does not.
    tv10, tv100 = recipe("two_view/resnet110_cifar10.py"), recipe("two_view/resnet110_cifar100.py")
    assert _graph_key(tv10) == _graph_key(tv100)
    assert _graph_key(tv10) != _graph_key(f"{tv10}:kl_only")
    me = recipe("multi_exit/resnet18_cifar100.py")
    assert _graph_key(me) != _graph_key(recipe("pskd/resnet18_cifar100_ablation.py"))
    # The shallowest of a group is the one traced.
    assert recipe("multi_exit/resnet50_cifar100.py") in COMPILED_SMOKE
    assert recipe("multi_exit/resnet152_cifar100.py") not in COMPILED_SMOKE
    assert recipe("self_guidance/resnet_cifar.py") in COMPILED_SMOKE  # depth 32, not 110


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: str(p).split("recipes/")[-1])
def test_smoke_variant_of_every_recipe_trains_two_steps(path):
    """Each recipe file's smoke variant builds its model from the registry and takes two steps,
    compiled for one recipe per graph (`COMPILED_SMOKE`), eagerly for the others (the
    run-directory machinery is covered once, below, by the CLI test)."""
    from keras_sd import data

    r = recipes.load(f"{path}:smoke")
    bundle = data.load(
        r.data.name, batch_size=16, augment="none", with_index=r.data.with_index, seed=0
    )
    info = bundle.info
    # As the runner does: PS-KD's bank has one row per training example, a number of the data.
    model = train.build_model(
        r, info.num_classes, info.image_shape, info.num_train, mean=info.mean, std=info.std
    )
    model.compile(
        optimizer=train.build_optimizer(r.optimizer, 1, 2), run_eagerly=path not in COMPILED_SMOKE
    )
    logs = model.fit(
        bundle.train,
        epochs=1,
        steps_per_epoch=2,
        verbose=0,
        callbacks=train.build_callbacks(r),
    ).history
    assert all(np.isfinite(v[-1]) for v in logs.values()), logs


BASE = str(REPO / "recipes" / "baseline" / "resnet20_digits.py")


def test_overrides_are_typed_and_unknown_keys_rejected():
    r = recipes.load(BASE, ["epochs=3", "optimizer.learning_rate=0.2", "data.batch_size=32"])
    assert (r.epochs, r.optimizer.learning_rate, r.data.batch_size) == (3, 0.2, 32)
    assert isinstance(r.optimizer.learning_rate, float)
    with pytest.raises(ValueError, match="epochs"):
        recipes.load(BASE, ["epochs=three"])
    with pytest.raises(ValueError, match="epoch"):
        recipes.load(BASE, ["epoch=3"])
    with pytest.raises(ValueError, match="optimizer.lr"):
        recipes.load(BASE, ["optimizer.lr=0.1"])
    with pytest.raises(ValueError, match="unknown method argument"):
        recipes.load(BASE, ["method_args.kl_weight=1.0"])
    with pytest.raises(ValueError, match="key=value"):
        recipes.load(BASE, ["epochs"])
    with pytest.raises(ValueError, match="does not exist"):
        recipes.load("recipes/nope.py")
    with pytest.raises(ValueError, match="optimizer.schedule"):
        recipes.load(BASE, ["optimizer.schedule=linear"])
    with pytest.raises(ValueError, match="method"):
        recipes.load(BASE, ["method=ddgsd"])


def test_to_source_roundtrip(tmp_path):
    r = recipes.load(BASE, ["epochs=4", "optimizer.milestones=(2, 3)"])
    f = tmp_path / "best.py"
    f.write_text(recipes.to_source(r, "tuned"))
    assert recipes.load(str(f)) == r


def test_learning_rate_multistep_schedule():
    cfg = recipes.OptimizerConfig(learning_rate=0.1, milestones=(2, 4), gamma=0.1)
    lr = train.learning_rate(cfg, epochs=6, steps_per_epoch=10)
    got = [float(lr(s)) for s in (0, 19, 20, 39, 40, 59)]
    assert got == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_adamw_decay_is_decoupled_skips_biases_and_leaves_the_model_no_l2():
    import keras

    from keras_sd import schedules

    cfg = schedules.deit_adamw(512)
    assert (cfg.name, cfg.learning_rate, cfg.weight_decay, cfg.schedule, cfg.warmup_epochs) == (
        "adamw",
        5e-4,
        0.05,
        "cosine",
        5,
    )
    assert schedules.deit_adamw(128).learning_rate == pytest.approx(1.25e-4)
    opt = train.build_optimizer(cfg, epochs=10, steps_per_epoch=1)
    kernel = keras.Variable(np.ones((2, 2), "float32"), name="kernel")
    bias = keras.Variable(np.ones((2,), "float32"), name="bias")
    opt.apply([np.zeros((2, 2), "float32"), np.zeros((2,), "float32")], [kernel, bias])
    # A zero gradient moves nothing through Adam; only the decay acts, at the first warm-up
    # step's rate 5e-4 * 1 / 5: w <- w - lr * 0.05 * w. Biases are not decayed.
    np.testing.assert_allclose(kernel.numpy(), 1 - 1e-4 * 0.05, rtol=1e-7)
    np.testing.assert_array_equal(bias.numpy(), 1.0)
    # On a ViT, zero gradients change exactly the kernels: biases, norms, the class token and
    # the position embedding are left undecayed, as in DeiT.
    from keras_sd import backbones

    vit = backbones.get("hub_vit", num_classes=3, input_shape=(8, 8, 1), num_layers=1)
    before = [v.numpy().copy() for v in vit.trainable_variables]
    opt = train.build_optimizer(cfg, epochs=10, steps_per_epoch=1)
    opt.apply(
        [np.zeros(v.shape, "float32") for v in vit.trainable_variables], vit.trainable_variables
    )
    decayed = {
        v.path.split("/")[-1]
        for v, b in zip(vit.trainable_variables, before)
        if not np.array_equal(v.numpy(), b)
    }
    assert decayed == {"kernel"}
    assert train.model_weight_decay(cfg) == 0.0
    sgd = recipes.OptimizerConfig(weight_decay=5e-4)
    assert train.model_weight_decay(sgd) == 5e-4
    r = recipes.load(f"{REPO}/recipes/multi_exit/vit_tiny_cifar10.py:baseline,smoke")
    model = train.build_model(r, 10, (8, 8, 1))
    assert model.weight_decay == 0.0


def test_smoke_overrides_of_a_recipe_file(tmp_path):
    f = tmp_path / "r.py"
    f.write_text(
        '"""keras-sd train r.py"""\n'
        "from keras_sd.recipes import Recipe\n"
        'SMOKE = {"backbone_args.depth": 8, "epochs": 1}\n'
        "def get_config(arg=None):\n"
        '    return Recipe(backbone="resnet_cifar", backbone_args={"depth": 20}, epochs=9)\n'
    )
    full, smoke = recipes.load(str(f)), recipes.load(f"{f}:smoke")
    assert (full.backbone_args["depth"], full.epochs) == (20, 9)
    assert (smoke.backbone_args["depth"], smoke.epochs, smoke.data.name) == (8, 1, "digits")
    vit = recipes.load(f"{REPO}/recipes/two_view/vit_tiny_cifar10.py:smoke").backbone_args
    assert (vit["num_layers"], vit["hidden_dim"], vit["patch_size"]) == (4, 32, 4)


def test_two_view_pixel_distortion_needs_and_uses_the_data_statistics():
    from keras_sd.layers import CifarRandAugment

    r = recipes.load(f"{REPO}/recipes/two_view/vit_tiny_cifar10.py:smoke")
    with pytest.raises(ValueError, match=r"`method_args.distortion`='randaugment' .* mean=None"):
        train.build_model(r, 10, (8, 8, 1))
    model = train.build_model(r, 10, (8, 8, 1), mean=(0.3,), std=(0.2,))
    assert isinstance(model.distortion, CifarRandAugment)
    assert (model.distortion.mean, model.distortion.std) == ([0.3], [0.2])


def _cli(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "keras_sd.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_train_resume_evaluate_and_errors(tmp_path):
    out = tmp_path / "run"
    train_args = ("train", f"{BASE}:smoke", "--out", str(out), "--verbose", "0")
    train_args += ("--set", "epochs=2", "--set", "steps_per_epoch=3")
    res = _cli(*train_args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "test accuracy of every output" in res.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["accuracy"]) == {"output"}
    assert metrics["seconds_per_epoch"] > 0 and metrics["images_per_second"] > 0
    assert (out / "model.keras").exists() and list((out / "logs").rglob("*tfevents*"))
    meta = json.loads((out / "backup" / "training_metadata.json").read_text())
    assert meta["epoch"] == 2
    # Rerunning resumes at the last epoch: nothing is retrained, same final numbers.
    res2 = _cli(*train_args)
    assert res2.returncode == 0, res2.stderr[-2000:]
    again = json.loads((out / "metrics.json").read_text())
    assert again["accuracy"] == metrics["accuracy"]
    res3 = _cli("evaluate", str(out))
    assert res3.returncode == 0 and "top-1" in res3.stdout
    bad = _cli("train", BASE, "--set", "epoch=1", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "unknown recipe key 'epoch'" in bad.stderr
    assert "Traceback" not in bad.stderr
    other = _cli("train", f"{BASE}:smoke", "--out", str(out), "--set", "epochs=1")
    assert other.returncode == 2 and "different recipe" in other.stderr
    missing = _cli("evaluate", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "run_dir" in missing.stderr


@pytest.mark.parametrize("verb", ["train", "evaluate"])
def test_help_on_every_verb(verb):
    res = _cli(verb, "--help")
    assert res.returncode == 0 and "usage: keras-sd" in res.stdout


@pytest.mark.parametrize(
    "build, match",
    [
        (
            lambda: paper_args.tpami_row("resnet18", "cifar10", tpami="1 / 2"),
            "`dataset`.*'cifar10'",
        ),
        (
            lambda: paper_args.ddgsd_cifar_row(
                "resnet32", "cifar100", "vgg", error="1", baseline_error="2"
            ),
            "`family`.*'vgg'",
        ),
        (
            lambda: paper_args.tpami_row("resnet18", "cifar100", tpami=None),
            "either `tpami`.*or `unpublished`",
        ),
        (
            lambda: paper_args.tpami_row(
                "resnet18", "cifar100", tpami="1 / 2", unpublished={None: "none"}
            ),
            "either `tpami`.*or `unpublished`",
        ),
        (
            lambda: paper_args.ddgsd_cifar_row(
                "resnet32", "svhn", "resnet", error="1", baseline_error="2"
            ),
            "`dataset`.*'svhn'",
        ),
    ],
)
def test_row_builders_reject_unknown_choices(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_row_builder_rows_differ_only_where_the_paper_does():
    """Two TPAMI rows from one builder: same schedule and method, their own backbone and numbers;
    the authors'-code rows exist only with an ICCV number (the code trains on CIFAR only)."""
    get18, variants18, _, pub18 = paper_args.tpami_row(
        "resnet18", "cifar100", tpami="79.01 / 1 / 2 / 3 / 4 / 5", iccv="77.09 / 1 / 2 / 3 / 4 / 5"
    )
    get_mb, variants_mb, _, pub_mb = paper_args.tpami_row(
        "mobilenet_v2", "cifar100", tpami="65.49 / 1 / 2 / 3 / 4 / 5"
    )
    a, b = get18(None), get_mb(None)
    assert (a.backbone, b.backbone) == ("resnet18", "mobilenet_v2")
    assert a.replace(backbone="x") == b.replace(backbone="x")
    assert "authors_code" in variants18 and "authors_code" not in variants_mb
    assert (
        pub18["baseline"] == "TPAMI baseline 79.01" and pub_mb["baseline"] == "TPAMI baseline 65.49"
    )
    code = get18("authors_code")
    assert (code.epochs, code.callbacks, code.method_args["alpha"]) == (250, {}, 0.3)
    assert get18("authors_code_baseline") == recipes.baseline(code)


def test_tpami_row_for_a_configuration_no_paper_ran():
    get, variants, _, published = paper_args.tpami_row(
        "hub_resnet18", "cifar100", tpami=None, backbone_args={}, unpublished={None: "none: x"}
    )
    row = get(None)
    assert row.backbone_args == {} and published == {None: "none: x"}
    paper_row = paper_args.tpami_row("resnet18", "cifar100", tpami="79.01 / 1")[0](None)
    assert paper_row.backbone_args == {"variant": "cifar"}
    # Everything but the backbone is the paper row's.
    assert row.replace(backbone="x", backbone_args={}) == paper_row.replace(
        backbone="x", backbone_args={}
    )
    assert list(variants) == [None]
