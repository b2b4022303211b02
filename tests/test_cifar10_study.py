"""benchmarks/cifar10_study.py: recipe-built rows, resumable runs, records and the doc tables.

The harness runs on its ``smoke`` protocol (20 training images per class, one epoch, two rows)
over a small real-CIFAR-10 folder (symlinks to 20 train and 10 test images per class), into
temporary run, results and doc paths.
"""

import dataclasses
import json
import pathlib
import re
import shutil
import subprocess

import pytest
from harness import load_benchmark, mini_cifar10

from keras_sd import recipes

REPO = pathlib.Path(__file__).resolve().parents[1]


def _study():
    return load_benchmark("cifar10_study")


def test_list_and_bad_arguments(capsys):
    study = _study()
    assert study.main(["--list"]) == 0
    out = capsys.readouterr().out
    for row, spec in study.ROWS.items():
        assert f"| {row} | {spec.recipe} |" in out
    with pytest.raises(SystemExit, match=r"--protocol 'C' is not known; expected one of short, B"):
        study.main(["--protocol", "C"])
    with pytest.raises(SystemExit, match=r"--row 'nope' is not known"):
        study.main(["--protocol", "smoke", "--row", "nope"])
    with pytest.raises(SystemExit, match=r"--eval-every 0 must be a positive integer"):
        study.main(["--protocol", "smoke", "--eval-every", "0"])
    with pytest.raises(SystemExit, match=r"--runs .* is inside the repository"):
        study.main(["--protocol", "smoke", "--runs", str(REPO / "runs")])


def test_rows_are_built_from_the_recipe_files(tmp_path):
    study = _study()
    protocol = study.PROTOCOLS["B"]
    for row, spec in study.ROWS.items():
        if spec.network != protocol.network:
            with pytest.raises(SystemExit, match=f"row '{row}' does not belong to protocol 'B'"):
                study.study_recipe(row, protocol, 1, tmp_path, 1)
            continue
        if spec.augment == "autoaugment" and not study.augment_available("autoaugment"):
            with pytest.raises(SystemExit, match="needs augment='autoaugment'"):
                study.study_recipe(row, protocol, 1, tmp_path, 1)
            continue
        recipe, overrides = study.study_recipe(row, protocol, 1, tmp_path, 1)
        base = recipes.load(str(REPO / spec.recipe))
        # What users run: the recipe's method and method arguments, untouched.
        assert (recipe.method, dict(recipe.method_args)) == (base.method, dict(base.method_args))
        assert recipe.epochs == 60 and recipe.seed == 1 and recipe.eval_every == 1
        assert recipe.data.train_per_class == 500 and recipe.data.subset_seed == 0
        assert recipe.data.name == f"folder:{tmp_path}" and recipe.data.batch_size == 128
        assert recipe.data.with_index == base.data.with_index
        opt = recipe.optimizer
        assert (opt.name, opt.learning_rate, opt.momentum, opt.nesterov) == ("sgd", 0.1, 0.9, True)
        assert (opt.weight_decay, opt.schedule, opt.milestones) == (5e-4, "cosine", ())
        assert overrides["epochs"] == 60 and overrides["data.name"] == "folder:<cifar10>"
        assert all(not k.startswith("method_args") for k in overrides)
    sg, _ = study.study_recipe("self_guidance", protocol, 0, tmp_path, 1)
    assert (sg.backbone, sg.backbone_args["depth"], sg.backbone_args["stochastic_depth"]) == (
        "resnet_cifar",
        20,
        0.5,
    )
    me, overrides = study.study_recipe("multi_exit", protocol, 0, tmp_path, 1)
    # TPAMI anneals for the last 5 of 300 epochs: 1 of 60.
    assert me.callbacks["DistillationAnnealing"]["last_epochs"] == 1
    assert overrides["callbacks.DistillationAnnealing.last_epochs"] == 1
    assert (me.backbone, dict(me.backbone_args)) == ("resnet20", {})
    two_view, _ = study.study_recipe("two_view", protocol, 0, tmp_path, 1)
    assert two_view.method_args["temperature"] == 2.0  # the CIFAR-10 row
    # The two-view ablations switch off the KL and MMD terms one at a time, nothing else.
    for row, weights in (
        ("two_view_two_branch", (0.0, 0.0)),
        ("two_view_kl_only", (1.0, 0.0)),
        ("two_view_mmd_only", (0.0, 5e-4)),
    ):
        ablation, _ = study.study_recipe(row, protocol, 0, tmp_path, 1)
        args = dict(ablation.method_args)
        assert (args.pop("kl_weight"), args.pop("mmd_weight")) == weights
        full = dict(two_view.method_args)
        del full["kl_weight"], full["mmd_weight"]
        assert args == full and ablation.data == two_view.data
        assert row not in study.PROTOCOLS["B"].rows  # seed-0 ablations are run by name

    # Multi-exit's and Self-Guidance's ablations: the method row with one change each, to the
    # loss weights (or, for stochastic depth alone, the method), and the same network and data.
    def rest_of(recipe, *skip):  # the recipe's fields but its labels and ``skip``
        labels = ("name", "paper", "published")
        return {k: v for k, v in dataclasses.asdict(recipe).items() if k not in labels + skip}

    sg_args = dict(sg.method_args)
    for row, method, args in (
        (
            "multi_exit_no_distillation",
            "multi_exit",
            {**me.method_args, "alpha": 0.0, "feature_weight": 0.0},
        ),
        ("multi_exit_kl_only", "multi_exit", {**me.method_args, "feature_weight": 0.0}),
        ("multi_exit_l2_only", "multi_exit", {**me.method_args, "alpha": 0.0}),
        ("self_guidance_stochastic_depth", "baseline", {}),
        ("self_guidance_no_distillation", "self_guidance", {**sg_args, "kd_weight": 0.0}),
        ("self_guidance_no_backward_full", "self_guidance", {**sg_args, "teacher_ce_weight": 0.0}),
    ):
        ablation, _ = study.study_recipe(row, protocol, 0, tmp_path, 1)
        assert (ablation.method, dict(ablation.method_args)) == (method, args), row
        full = me if row.startswith("multi_exit") else sg
        skip = ("method", "method_args")
        assert rest_of(ablation, *skip) == rest_of(full, *skip), row
        assert row not in study.PROTOCOLS["B"].rows
    pskd, _ = study.study_recipe("pskd_byot_dmfl", protocol, 0, tmp_path, 1)
    # PS-KD + BYOT + DMFL's ablations are the paper's Table 1 rows 5-7 as the recipe ships them.
    for row, arg in (
        ("pskd_byot_dmfl_no_dmfl", "pskd_byot"),
        ("pskd_byot_dmfl_no_byot", "pskd_dmfl"),
        ("pskd_byot_dmfl_no_pskd", "dmfl_byot"),
    ):
        ablation, _ = study.study_recipe(row, protocol, 0, tmp_path, 1)
        shipped = recipes.load(f"{REPO}/recipes/pskd/resnet18_cifar100.py:{arg}")
        assert dict(ablation.method_args) == dict(shipped.method_args), row
        assert rest_of(ablation, "method_args", "data") == rest_of(pskd, "method_args", "data")
        assert ablation.data.with_index == shipped.data.with_index
    # The recipe's row 8 as it ships: exit terms summed, T = 3 with T^2 (the BYOT code the paper
    # builds on), bottleneck exits, final-exit CE weight 1.9 (the first harness ran mean / T = 3
    # with attention exits and weight 1, which no recipe ships).
    args = pskd.method_args
    assert (args["reduction"], args["temperature"], args["kl_scale"]) == ("sum", 3.0, "t2")
    assert (args["exit_head"], args["final_ce_weight"]) == ("bottleneck", 1.9)


def test_migrated_short_schedule_records_stay_readable(tmp_path):
    study = _study()
    committed = json.loads((REPO / "benchmarks" / "results" / "cifar10_study.json").read_text())
    payload = study.migrate(committed)
    short = [r for r in payload["runs"] if r["protocol"] == "short"]
    assert short and all(r["best_epoch"] is None for r in short if "harness" in r)
    for r in short:
        assert r["last_epoch"]["top1"] > 10 and r["row"] and r["seed"] in (0, 1, 2)
    text = study.table(payload["runs"], "short")
    assert "| baseline" in text and "short schedule" in text


@pytest.mark.realdata
def test_smoke_protocol_runs_records_skips_and_tables(cifar10_dir, tmp_path, capsys):
    study = _study()
    data = mini_cifar10(cifar10_dir, tmp_path / "mini", train=20, test=10)
    runs, results = tmp_path / "runs", tmp_path / "results.json"
    args = ["--protocol", "smoke", "--data", str(data), "--runs", str(runs)]
    args += ["--results", str(results), "--seed", "0", "--verbose", "0"]
    assert study.main(args) == 0
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    records = json.loads(results.read_text())["runs"]
    assert [(r["protocol"], r["row"], r["seed"]) for r in records] == [
        ("smoke", "baseline", 0),
        ("smoke", "pskd", 0),
    ]
    for r in records:
        out = runs / "smoke" / r["row"] / "seed0"
        run_recipe = json.loads((out / "recipe.json").read_text())
        assert r["recipe"] == study.ROWS[r["row"]].recipe
        assert (
            run_recipe["method_args"]
            == recipes.load(str(REPO / r["recipe"])).to_dict()["method_args"]
        )
        assert r["code_commit"] == head and isinstance(r["code_dirty"], bool)
        assert r["machine"]["cores"] >= 1 and "hostname" not in json.dumps(r["machine"])
        assert r["train_images"] == 200 and r["test_images"] == 100 and r["epochs"] == 1
        curves = r["curves"]
        primary = r["primary_output"]
        assert curves["epoch"] == [1]
        test_curve = curves["test_top1"][primary]
        assert len(curves["train_top1"][primary]) == 1 and test_curve[0] is not None
        # Last epoch: the final evaluate equals the last epoch's validation; best: the max.
        assert r["last_epoch"]["top1"] == pytest.approx(test_curve[-1], abs=1e-4)
        assert r["best_epoch"]["top1"] == pytest.approx(max(test_curve), abs=1e-6)
        assert r["best_epoch"]["epoch"] == curves["epoch"][test_curve.index(max(test_curve))]
        metrics = json.loads((out / "metrics.json").read_text())
        assert r["last_epoch"]["top1"] == pytest.approx(
            100 * metrics["last_epoch"]["accuracy"][primary]["top1"]
        )
        assert (
            r["ece"] == metrics["calibration"]["ece"]
            and r["aurc"] == metrics["calibration"]["aurc"]
        )
        assert r["wall_clock_seconds"] > 0 and r["sessions"][-1]["commit"] == head
    pskd = json.loads((runs / "smoke" / "pskd" / "seed0" / "recipe.json").read_text())
    assert pskd["data"]["with_index"] is True and pskd["method_args"]["pskd_alpha"] == 0.8

    # Rerunning skips the finished runs: nothing is retrained or rewritten.
    stamp = {p: p.stat().st_mtime_ns for p in runs.rglob("model.keras")}
    before = results.read_text()
    capsys.readouterr()
    assert study.main(args) == 0
    out = capsys.readouterr().out
    assert out.count("skip smoke/") == 2
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("model.keras")} == stamp
    assert results.read_text() == before
    # A finished run whose record was lost is recorded again from its run directory, untrained.
    results.unlink()
    assert study.main(args) == 0
    again = json.loads(results.read_text())["runs"]
    assert [r["last_epoch"] for r in again] == [r["last_epoch"] for r in records]
    assert [r["curves"] for r in again] == [r["curves"] for r in records]
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("model.keras")} == stamp

    # --table rewrites only the marked blocks of a copy of the doc.
    doc = tmp_path / "docs" / "results.md"
    doc.parent.mkdir()
    shutil.copy(REPO / "docs" / "results.md", doc)
    original = doc.read_text()
    img = tmp_path / "docs" / "img"
    table_args = ["--table", "--results", str(results), "--doc", str(doc), "--img-dir", str(img)]
    # The method pages beside the doc are rewritten (here: a copy; the repo's pages untouched).
    (doc.parent / "methods").mkdir()
    page = doc.parent / "methods" / "pskd.md"
    shutil.copy(REPO / "docs" / "methods" / "pskd.md", page)
    repo_page = (REPO / "docs" / "methods" / "pskd.md").read_bytes()
    assert study.main(table_args) == 0
    assert (REPO / "docs" / "methods" / "pskd.md").read_bytes() == repo_page
    assert "No B run of this method yet." in page.read_text()  # this results file has none
    text = doc.read_text()
    start, end = "<!-- cifar10_study:smoke:start -->", "<!-- cifar10_study:smoke:end -->"
    block = text.split(start)[1].split(end)[0]
    base = records[0]
    assert f"| baseline | - | 0 | {base['last_epoch']['top1']:.2f} |" in block
    diff = records[1]["last_epoch"]["top1"] - base["last_epoch"]["top1"]
    assert f"| baseline | s0: {diff:+.2f} | {diff:+.2f} | - |" in block
    assert (img / "cifar10_study_smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (img / "cifar10_study_smoke_baseline_curves.png").stat().st_size > 1000

    # Outside the marked blocks the doc is unchanged (all of it, wherever the blocks stand).
    def outside(doc_text):
        return re.sub(r"<!-- (\S+):start -->.*?<!-- \1:end -->", "<block>", doc_text, flags=re.S)

    # (the smoke protocol's block is new, so it is appended at the end)
    assert outside(text) == outside(original).rstrip("\n") + "\n\n<block>\n"
    assert outside(original).count("<block>") >= 2  # short and B at least
    assert study.main(table_args) == 0 and doc.read_text() == text  # idempotent


def test_convergence_reads_the_last_tenth_of_epochs():
    study = _study()
    epochs = list(range(1, 21))  # 20 epochs: the last 10 % are epochs 19 and 20
    train = [50.0] * 18 + [97.5, 98.25]
    test = [40.0] * 18 + [None, 71.0]  # epoch 19 not evaluated
    run = {
        "protocol": "B",
        "row": "baseline",
        "seed": 1,
        "primary_output": "output",
        "wall_clock_seconds": 1530.0,
        "curves": {"epoch": epochs, "train_top1": {"output": train}, "test_top1": {"output": test}},
    }
    other = dict(run, row="two_view")
    text = study.convergence([other, run], "B")
    assert text.splitlines()[2] == "| 1 | 20 | 97.5-98.2 | 71.0-71.0 | 0.00 | 26 |"
    assert len(text.splitlines()) == 3  # the two_view run is not the baseline
    assert study.convergence([other], "B") is None


def _record(row, seed, test_curve, last, commit="abc"):
    epochs = list(range(1, len(test_curve) + 1))
    return {
        "protocol": "B",
        "row": row,
        "seed": seed,
        "primary_output": "output",
        "last_epoch": {"epoch": epochs[-1], "top1": last, "outputs_top1": {"output": last}},
        "best_epoch": {"top1": max(v for v in test_curve if v is not None)},
        "ece": 1.0,
        "nll": 1.0,
        "aurc": 1.0,
        "wall_clock_seconds": 60.0,
        "code_commit": commit,
        "curves": {
            "epoch": epochs,
            "train_top1": {"output": [None] * len(epochs)},
            "test_top1": {"output": test_curve},
        },
    }


def test_best_epoch_difference_uses_the_epochs_both_runs_evaluated():
    study = _study()
    # The baseline, evaluated every epoch, peaks at epoch 3 (an epoch the method never saw);
    # over epochs 5 and 10 its best is 70. The method, evaluated at 5 and 10, peaks at 71.
    base0 = _record("baseline", 0, [50, 60, 80, 65, 70, 60, 61, 62, 63, 69], 69.0)
    meth0 = _record("two_view", 0, [None] * 4 + [71] + [None] * 4 + [70], 70.0)
    base1 = _record("baseline", 1, [50, 60, 75, 65, 66, 60, 61, 62, 63, 68], 68.0)
    meth1 = _record("two_view", 1, [None] * 4 + [69] + [None] * 4 + [67], 67.0)
    assert study.evaluated(meth0) == [5, 10]
    assert study.best_over(base0, [5, 10]) == 70 and study.best_over(base0, [11]) is None
    runs = [base0, meth0, base1, meth1]
    assert study._best_differences(
        {"baseline": {0: base0, 1: base1}, "two_view": {0: meth0, 1: meth1}}, "two_view", "baseline"
    ) == [(0, 1.0), (1, 1.0)]
    text = study.table(runs, "B")
    header, _, *rows = [line for line in text.splitlines() if line.startswith("|")]
    cells = dict(
        zip(
            header.split(" | "),
            next(r for r in rows if r.startswith("| two_view")).split(" | "),
            strict=True,
        )
    )
    # last epoch: +1 and -1 per seed; best over the same epochs: 71 - 70 and 69 - 68 (the bests
    # over all evaluated epochs would give 71 - 80 and 69 - 75)
    assert cells["last-epoch top-1 − reference, per seed"] == "s0: +1.00, s1: -1.00"
    assert cells["best-epoch top-1 − reference, same evaluated epochs, mean"] == "+1.00"


def test_method_pages_get_a_per_seed_table_against_the_same_seed_of_the_reference(tmp_path):
    study = _study()
    base0 = dict(_record("baseline", 0, [60, 70], 70.0), ece=10.0, nll=1.2, aurc=110.0)
    base1 = dict(_record("baseline", 1, [60, 72], 72.0), ece=12.0, nll=1.1, aurc=100.0)
    meth0 = dict(_record("pskd", 0, [None, 71.5], 71.5), ece=4.0, nll=0.8, aurc=101.0)
    meth1 = dict(_record("pskd", 1, [None, 71.25], 71.25), ece=13.0, nll=0.9, aurc=99.0)
    meth1["last_epoch"]["outputs_top1"]["exit1"] = 60.5
    short = dict(meth0, protocol="short")  # another protocol's run is not in B's table
    results = tmp_path / "results.json"
    runs = [base0, base1, meth0, meth1, short]
    results.write_text(json.dumps({"protocols": {}, "runs": runs}))
    pages = tmp_path / "methods"
    pages.mkdir()
    start, end = "<!-- cifar10_study:B:rows:start -->", "<!-- cifar10_study:B:rows:end -->"
    (pages / "pskd.md").write_text(f"# PS-KD\n\n## Study result\n\n{start}\nold\n{end}\n\nafter\n")
    (pages / "two_view.md").write_text("# Two-view, no block\n")  # left alone
    (pages / "self_guidance.md").write_text(f"{start}\n{end}\n")  # a block, no run yet

    written = study.write_method_pages(results, pages)
    assert sorted(p.name for p in written) == ["pskd.md", "self_guidance.md"]
    assert (pages / "two_view.md").read_text() == "# Two-view, no block\n"
    assert "No B run of this method yet." in (pages / "self_guidance.md").read_text()
    text = (pages / "pskd.md").read_text()
    assert text.startswith("# PS-KD\n\n## Study result\n\n" + start) and text.endswith(
        end + "\n\nafter\n"
    )
    assert "old" not in text
    rows = [line for line in text.splitlines() if line.startswith("| pskd |")]
    assert rows == [
        "| pskd | 0 | baseline | 71.50 (70.00) | +1.50 | +1.50 | 4.00 (10.00) | 0.80 (1.20) "
        "| 101.00 (110.00) | - |",
        "| pskd | 1 | baseline | 71.25 (72.00) | -0.75 | -0.75 | 13.00 (12.00) | 0.90 (1.10) "
        "| 99.00 (100.00) | exit1 60.50 |",
    ]
    assert (
        "- pskd against baseline: seeds 0, 1, mean +0.38 points, mixed signs; lower ECE on 1 of "
        "2 seed(s)." in text
    )
    # Rewriting is idempotent.
    study.write_method_pages(results, pages)
    assert (pages / "pskd.md").read_text() == text


def test_vit_protocol_keeps_the_recipe_network_and_optimizer(tmp_path):
    study = _study()
    protocol = study.PROTOCOLS["vit"]
    base = recipes.load(str(REPO / "recipes" / "multi_exit" / "vit_tiny_cifar10.py"))
    me, overrides = study.study_recipe("vit_multi_exit", protocol, 0, tmp_path, 5)
    assert (me.method, dict(me.method_args)) == (base.method, dict(base.method_args))
    assert (me.backbone, dict(me.backbone_args)) == ("hub_vit", dict(base.backbone_args))
    # DeiT's AdamW at batch 128: 5e-4 * 128 / 512, decoupled decay 0.05, 5 warm-up epochs kept.
    opt = me.optimizer
    assert (opt.name, opt.weight_decay, opt.schedule, opt.warmup_epochs) == (
        "adamw",
        0.05,
        "cosine",
        5,
    )
    assert opt.learning_rate == pytest.approx(1.25e-4)
    assert (me.epochs, me.eval_every, me.data.batch_size, me.data.augment) == (
        60,
        5,
        128,
        "randaugment",
    )
    assert me.data.train_per_class == 500 and me.data.subset_seed == 0
    # TPAMI anneals for the last 5 of 300 epochs: 1 of 60.
    assert me.callbacks["DistillationAnnealing"]["last_epochs"] == 1
    assert "backbone" not in overrides and "optimizer.name" not in overrides
    baseline, _ = study.study_recipe("vit_baseline", protocol, 0, tmp_path, 5)
    assert baseline.method == "baseline" and baseline.backbone == "hub_vit"
    assert baseline.optimizer == opt
    assert study.ROWS["vit_multi_exit"].reference == "vit_baseline"
    # The diagnostic row: the same network, schedule and data, both distillation weights 0.
    deep, _ = study.study_recipe("vit_multi_exit_no_distillation", protocol, 0, tmp_path, 5)
    assert dict(deep.method_args) == {
        **dict(base.method_args),
        "alpha": 0.0,
        "feature_weight": 0.0,
    }
    assert (deep.backbone_args, deep.optimizer, deep.data) == (me.backbone_args, opt, me.data)
    with pytest.raises(SystemExit, match="run it under --protocol short or B or smoke"):
        study.study_recipe("multi_exit", protocol, 0, tmp_path, 5)


def test_each_protocol_names_its_baseline_row():
    study = _study()
    assert study.baseline_row("B") == "baseline" and study.baseline_row("vit") == "vit_baseline"
    assert study.baseline_row("smoke") == "baseline"
    run = _record("vit_baseline", 0, [40.0, 50.0], 50.0)
    run["protocol"] = "vit"
    run["curves"]["train_top1"]["output"] = [45.0, 55.0]
    text = study.convergence([run, dict(run, row="vit_multi_exit")], "vit")
    assert text.splitlines()[2] == "| 0 | 2 | 55.0-55.0 | 50.0-50.0 | 0.00 | 1 |"
    assert len(text.splitlines()) == 3


def _pilot(test_curve, train_curve=None, epochs=None):
    run = _record("vit_baseline", 0, test_curve, test_curve[-1])
    run["protocol"] = "vit"
    run["curves"]["train_top1"]["output"] = train_curve or [90.0] * len(test_curve)
    if epochs is not None:
        run["curves"]["epoch"] = list(range(1, epochs + 1))
    return run


def test_pilot_check_is_the_pre_registered_one(tmp_path, capsys):
    study = _study()
    vit = study.PROTOCOLS["vit"]
    assert vit.epochs == 60
    # Evaluated every 2nd epoch: the last 10 % (6 epochs) hold evaluations at 56, 58 and 60.
    curve = [None if e % 2 else 50.0 for e in range(1, 61)]
    curve[55], curve[57], curve[59] = 70.2, 71.2, 70.9  # spread 1.00: stands
    stands, reason = study.pilot_check([_pilot(curve)], vit)
    assert stands and "70.20, 71.20, 70.90" in reason and "spread 1.00" in reason
    curve[57] = 71.25  # spread 1.05: fails
    assert not study.pilot_check([_pilot(curve)], vit)[0]
    # Unfinished, a single evaluation, another seed only, none at all: no verdict that stands.
    short = _pilot([50.0] * 30)
    assert study.pilot_check([short], vit) == (False, "vit_baseline seed 0 ended at epoch 30 of 60")
    once = [None] * 59 + [71.0]
    assert "needs two" in study.pilot_check([_pilot(once)], vit)[1]
    other = dict(_pilot(curve), seed=1)
    assert study.pilot_check([other], vit)[0] is False
    assert study.pilot_check([], vit)[1] == "no vit/vit_baseline seed 0 record with curves"
    # The command line: exit 0 if it stands, 1 if not, the reason printed either way.
    results = tmp_path / "results.json"
    curve[57] = 71.0
    results.write_text(json.dumps({"protocols": {}, "runs": [_pilot(curve)]}))
    args = ["--protocol", "vit", "--check-pilot", "--results", str(results)]
    assert study.main(args) == 0 and "stands" in capsys.readouterr().out
    results.write_text(json.dumps({"protocols": {}, "runs": [short]}))
    assert study.main(args) == 1 and "FAILS" in capsys.readouterr().out


def test_study_queue_plans_every_pinned_step_and_rejects_bad_arguments(tmp_path):
    """benchmarks/study_queue.sh --dry-run prints the queue without running it: the three pinned
    checkouts, protocol B from the two-view rows' code, each ablation row (rows main's study
    defines) after its same-machine references, and the ViT pilot; a bad second argument or a
    runs folder inside the repo exits 2."""
    script = REPO / "benchmarks" / "study_queue.sh"

    def queue(*args):
        return subprocess.run(
            ["bash", str(script), *args], capture_output=True, text=True, timeout=60
        )

    done = queue(str(tmp_path / "runs"), "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    runs = (tmp_path / "runs").resolve()
    for name, commit in (
        ("study_fd", "fd09bde"),
        ("study_abl3", "b734c48"),
        ("study_vit2", "ca76b8c"),
    ):
        assert f"+ git -C {REPO} worktree add --detach {runs}/wt/{name} {commit}" in lines
    driver = f"+ env STUDY_CHECKOUT={runs}/wt/study_fd bash {REPO}/benchmarks/protocol_B.sh {runs} "
    assert driver in done.stdout
    pinned = [ln for ln in lines if "study_abl3 python" in ln]
    rows = [ln.split("--row ")[1].split()[0] for ln in pinned]
    # Each method's ablations follow a rerun, on this machine, of the baseline's and the
    # method's seed 0 into this CPU's reruns file (not the study's results).
    reruns = [row for row, ln in zip(rows, pinned, strict=True) if "cifar10_study_reruns/" in ln]
    assert rows == [
        "baseline",
        "two_view",
        "two_view_two_branch",
        "two_view_kl_only",
        "two_view_mmd_only",
        "multi_exit",
        "multi_exit_no_distillation",
        "multi_exit_kl_only",
        "multi_exit_l2_only",
        "self_guidance",
        "self_guidance_stochastic_depth",
        "self_guidance_no_distillation",
        "self_guidance_no_backward_full",
        "pskd_byot_dmfl",
        "pskd_byot_dmfl_no_dmfl",
        "pskd_byot_dmfl_no_byot",
        "pskd_byot_dmfl_no_pskd",
    ]
    assert reruns == ["baseline", "two_view", "multi_exit", "self_guidance", "pskd_byot_dmfl"]
    assert all("--seed 0" in ln for ln in pinned) and set(rows) <= set(_study().ROWS)
    assert all(
        f"--results {REPO}/benchmarks/results/cifar10_study.json" in ln
        for row, ln in zip(rows, pinned, strict=True)
        if row not in reruns
    )
    vit = [ln for ln in lines if "study_vit2 python" in ln]
    assert len(vit) == 2
    assert "--protocol vit --row vit_baseline --seed 0" in vit[0] and "--eval-every 2" in vit[0]
    assert "--protocol vit --row vit_multi_exit --seed 0" in vit[1] and "--eval-every 5" in vit[1]
    # The method row comes after the pilot's check, which main's script makes on the results.
    check = f"+ python {REPO}/benchmarks/cifar10_study.py --protocol vit --check-pilot --results "
    assert lines.index(vit[0]) < [i for i, ln in enumerate(lines) if ln.startswith(check)][0]
    assert [i for i, ln in enumerate(lines) if ln.startswith(check)][0] < lines.index(vit[1])
    # The diagnostic follows the method row, from its own pinned checkout.
    diagnostic = [ln for ln in lines if "study_vit3 python" in ln]
    assert len(diagnostic) == 1 and lines.index(vit[1]) < lines.index(diagnostic[0])
    assert "--row vit_multi_exit_no_distillation --seed 0" in diagnostic[0]
    assert not (runs / "wt").exists()  # nothing was created or run

    bad = queue(str(tmp_path / "runs"), "--dryrun")
    assert bad.returncode == 2 and "'--dryrun'" in bad.stderr and "--dry-run" in bad.stderr
    inside = queue(str(REPO / "benchmarks" / "results"), "--dry-run")
    assert inside.returncode == 2 and "inside the repository" in inside.stderr


def test_runs_on_different_machines_are_marked_in_both_tables():
    study = _study()

    def on(cpu, record):
        return dict(record, machine={"cpu": cpu})

    base = [on("AMD EPYC", _record("baseline", s, [70], 70.0)) for s in (0, 1)]
    meth0 = on("AMD EPYC", _record("pskd", 0, [71], 71.0))
    meth1 = on("Intel Xeon", _record("pskd", 1, [69], 69.0))

    one_machine = study.table([*base, meth0], "B")
    assert "Machines" not in one_machine
    assert "†" not in study.seed_table([*base, meth0], "B", ["pskd"])

    runs = [*base, meth0, meth1]
    assert (
        "Machines (CPU): AMD EPYC: baseline s0, s1; pskd s0 | Intel Xeon: pskd s1. "
        in study.table(runs, "B")
    )
    text = study.seed_table(runs, "B", ["pskd"])
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| pskd |")]
    assert [(r[1], r[4], r[5]) for r in rows] == [
        ("0", "+1.00", "+1.00"),
        ("1", "-1.00 †", "-1.00 †"),
    ]
    assert (
        "† the run and its reference ran on different machines (pskd seed 1: Intel Xeon against AMD EPYC)"
        in text
    )


def test_reruns_measure_the_machine_and_ablations_are_read_on_the_same_machine(tmp_path):
    study = _study()

    def on(cpu, row, top1):
        record = dict(_record(row, 0, [top1], top1), machine={"cpu": cpu})
        record["curves"]["train_top1"]["output"] = [99.0]
        return record

    recorded = [
        on("AMD", "baseline", 70.0),
        on("AMD", "two_view", 69.0),
        on("Intel", "two_view_kl_only", 71.0),  # read against the Intel reruns
        on("AMD", "two_view_mmd_only", 68.5),  # read against the recorded AMD runs
        on("ARM", "two_view_two_branch", 66.0),  # no run of its references on this CPU
        on("Intel", "pskd", 71.0),  # its reference ran on AMD: paired again on Intel
        on("ARM", "multi_exit", 72.0),  # no rerun of its reference on ARM: not paired again
    ]
    reruns = [on("Intel", "baseline", 70.5), on("Intel", "two_view", 69.25)]
    (tmp_path / "results.json").write_text(json.dumps({"protocols": {}, "runs": recorded}))
    folder = tmp_path / "cifar10_study_reruns"
    folder.mkdir()
    (folder / "intel.json").write_text(json.dumps({"protocols": {}, "runs": reruns}))
    assert study.reruns_table(recorded, []) is None

    doc = tmp_path / "results.md"
    key = "cifar10_study:B:reruns"
    doc.write_text(f"# Results\n\n<!-- {key}:start -->\n<!-- {key}:end -->\n")
    study.write_doc(tmp_path / "results.json", doc, tmp_path / "img")
    text = doc.read_text().split(f"<!-- {key}:start -->")[1].split(f"<!-- {key}:end -->")[0]
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert "| baseline | 0 | AMD, 70.00 | Intel, 70.50 | +0.50 | - |" in lines
    # A method's rerun is also paired with its reference's run on the same CPU.
    assert "| two_view | 0 | AMD, 69.00 | Intel, 69.25 | +0.25 | baseline 70.50: -1.25 |" in lines
    # The machine's own effect, summarised: sqrt((0.50^2 + 0.25^2) / 2) = 0.395.
    assert (
        "The machine alone, over these 2 run(s): root mean square 0.40 points, largest +0.50 "
        "(baseline seed 0)." in " ".join(text.split())
    )
    ablations = [line for line in lines if line.startswith("| two_view_")]
    assert ablations == [
        "| two_view_two_branch | 0 | ARM | 66.00 | two_view: no run on this CPU | - "
        "| baseline: no run on this CPU | - |",
        "| two_view_kl_only | 0 | Intel | 71.00 | two_view 69.25 | +1.75 | baseline 70.50 | +0.50 |",
        "| two_view_mmd_only | 0 | AMD | 68.50 | two_view 69.00 | -0.50 | baseline 70.00 | -1.50 |",
    ]
    assert [line for line in lines if line.startswith(("| pskd |", "| multi_exit |"))] == [
        "| pskd | 0 | Intel, 71.00 | AMD, 70.00 | +1.00 | 70.50 | +0.50 |"
    ]
    # The method page gets its own ablations' same-machine table (no other method's rows).
    pages = tmp_path / "methods"
    pages.mkdir()
    block = "<!-- cifar10_study:B:rows:start -->\n<!-- cifar10_study:B:rows:end -->\n"
    for name in ("two_view.md", "pskd.md"):
        (pages / name).write_text(block)
    study.write_method_pages(tmp_path / "results.json", pages)
    page = (pages / "two_view.md").read_text()
    assert "Ablations against their method and the baseline on the same machine:" in page
    assert [line for line in page.splitlines() if line.startswith("| two_view_")][-3:] == ablations
    assert "on the same machine" not in (pages / "pskd.md").read_text()
    # A doc without the block is left as it was.
    other = tmp_path / "other.md"
    other.write_text("# Results\n")
    study.write_doc(tmp_path / "results.json", other, tmp_path / "img")
    assert key not in other.read_text()
