"""The module layering drawn in docs/architecture.md holds: no keras_sd module imports one above it.

A new module must be placed in RANKS (and in the picture) before it can import anything.
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "keras_sd"

# Higher imports lower (or equal, within one row); the rows of docs/architecture.md.
RANKS = {
    "cli": 9,
    # The runner: its entry points, the Experiment they use, the figures it reports.
    **dict.fromkeys(["train", "tuning", "inference.run"], 8),
    "experiment": 7,
    "reporting": 6,
    # The callbacks package: one callback per module; the TensorBoard ones read models.
    "callbacks": 5,
    **dict.fromkeys(
        [
            "inference",
            "inference.early_exit",
            "inference.search",
            "inference.macs",
            "inference.litert",
        ],
        5,
    ),
    "models": 4,
    **dict.fromkeys(["backbones", "data"], 3),
    "layers": 2,
    **dict.fromkeys(["losses", "metrics", "plotting", "pskd", "distribute"], 1),
    **dict.fromkeys(
        [
            "_keras_compat",
            "recipes",
            "schedules",
            "paper_args",
            "testing",
            "litert_runtime",
            "validation",
            "atomic",
        ],
        0,
    ),
}


def _unit(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and ".".join(parts[:2]) in RANKS:
        return ".".join(parts[:2])
    return parts[0]


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "keras_sd":
                yield from (alias.name for alias in node.names)
            elif node.module.startswith("keras_sd."):
                yield node.module[len("keras_sd.") :]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("keras_sd."):
                    yield alias.name[len("keras_sd.") :]


def test_every_module_is_placed_and_imports_only_downwards():
    unplaced, upward = set(), []
    for file in sorted(PACKAGE.rglob("*.py")):
        parts = file.relative_to(PACKAGE).with_suffix("").parts
        if parts == ("__init__",):
            continue  # the package root re-exports the models lazily
        module = ".".join(p for p in parts if p != "__init__")
        source = _unit(module)
        if source not in RANKS:
            unplaced.add(source)
            continue
        for target in map(_unit, _imports(ast.parse(file.read_text()))):
            if target not in RANKS:
                unplaced.add(target)
            elif RANKS[target] > RANKS[source]:
                upward.append(f"{module} -> {target}")
    assert not unplaced, f"modules missing from RANKS / docs/architecture.md: {sorted(unplaced)}"
    assert not upward, f"imports that point up the layering: {upward}"


def test_the_check_sees_an_upward_import():
    tree = ast.parse("from keras_sd.train import train\nimport keras_sd.models.base\n")
    assert [_unit(m) for m in _imports(tree)] == ["train", "models"]
