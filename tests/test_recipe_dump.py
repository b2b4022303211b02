"""Every recipe builds exactly what it built before the recipes' shared pieces moved into the
package: tests/fixtures/recipe_fingerprints.json holds, per recipe file, the arguments that loaded
and one sha256 over their `Recipe.to_dict()` (smoke variants included), made by
benchmarks/recipe_dump.py from the tree before that change.

A deliberate change to a recipe fails here; check it with ``benchmarks/recipe_dump.py --compare``
against a dump of the previous commit, then refresh the fingerprints (``--fingerprints``)."""

import json
import pathlib

from harness import load_benchmark

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "recipe_fingerprints.json"


def _recipe_dump():
    return load_benchmark("recipe_dump")


def test_recipes_build_what_they_built_before():
    dump = _recipe_dump()
    expected = json.loads(FIXTURE.read_text())
    specs = [f"{file}:{arg}" if arg else file for file, e in expected.items() for arg in e["args"]]
    got = dump.fingerprints(dump.dump(specs, REPO))
    changed = sorted(file for file in expected if got.get(file) != expected[file])
    assert not changed, f"these recipe files now build other recipes: {changed}"
    assert len(specs) >= 490 and len(expected) == len(list((REPO / "recipes").rglob("*.py")))
