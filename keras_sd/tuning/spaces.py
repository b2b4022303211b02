"""Search spaces: `Space`, the papers' default spaces, and a recipe's searched fields."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import keras_tuner

from keras_sd import recipes as recipes_lib
from keras_sd.recipes import Recipe


@dataclasses.dataclass(frozen=True)
class Space:
    """One hyperparameter's search space: a float/int range or a list of choices.

    Args:
        low: lower bound of a range.
        high: upper bound of a range (> ``low``).
        values: choices (a non-empty tuple) instead of a range.
        log: sample the range on a log scale (needs ``low > 0``).
        integer: the range holds integers.
    """

    low: float | None = None
    high: float | None = None
    values: tuple = ()
    log: bool = False
    integer: bool = False

    def __post_init__(self):
        if self.values:
            if self.low is not None or self.high is not None:
                raise ValueError(
                    f"`Space`: give either `values` or `low`/`high`, got values={self.values!r} "
                    f"and low={self.low!r}, high={self.high!r}."
                )
            if len(set(self.values)) != len(self.values):
                raise ValueError(f"`Space.values` must be distinct, got {self.values!r}.")
            return
        if self.low is None or self.high is None:
            raise ValueError(
                f"`Space` needs `values` or both `low` and `high`, got low={self.low!r}, "
                f"high={self.high!r}."
            )
        if not self.high > self.low:
            raise ValueError(
                f"`Space.high` must be greater than `low`, got low={self.low!r}, high={self.high!r}."
            )
        if self.log and not self.low > 0:
            raise ValueError(f"`Space.low` must be > 0 on a log scale, got {self.low!r}.")

    def define(self, hp: keras_tuner.HyperParameters, name: str):
        """Registers the hyperparameter ``name`` in ``hp`` and returns its current value."""
        if self.values:
            return hp.Choice(name, list(self.values))
        sampling = "log" if self.log else "linear"
        if self.integer:
            return hp.Int(name, int(self.low), int(self.high), sampling=sampling)
        return hp.Float(name, float(self.low), float(self.high), sampling=sampling)

    def describe(self) -> str:
        if self.values:
            return "{" + ", ".join(repr(v) for v in self.values) + "}"
        kind = "int" if self.integer else "float"
        return f"{kind} {self.low:g} .. {self.high:g}" + (" (log)" if self.log else "")

    @classmethod
    def parse(cls, text: str) -> Space:
        """``"1:5"`` (float range), ``"1e-4:1e-2:log"``, ``"2:8:int"``, ``"0|1e-4|5e-4"`` (choices)."""
        text = str(text).strip()
        if "|" in text:
            values = tuple(recipes_lib.parse_value(v.strip()) for v in text.split("|") if v.strip())
            if not values:
                raise ValueError(f"`--search` space {text!r} has no choices.")
            return cls(values=values)
        parts = [p.strip() for p in text.split(":")]
        flags = set(parts[2:])
        if len(parts) < 2 or not flags <= {"log", "int"}:
            raise ValueError(f"`--search` space {text!r} must be LOW:HIGH[:log][:int] or A|B|C.")
        try:
            low, high = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"`--search` space {text!r}: LOW and HIGH must be numbers.") from None
        integer = "int" in flags
        if integer:
            low, high = int(low), int(high)
        return cls(low=low, high=high, log="log" in flags, integer=integer)


DEFAULT_SPACES: dict[str, Space] = {
    "temperature": Space(1.0, 5.0),
    "kl_weight": Space(0.1, 2.0),
    "mmd_weight": Space(values=(0.0, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2)),
    "alpha": Space(0.1, 0.8),
    "feature_weight": Space(0.01, 0.08),
    "kd_weight": Space(values=(0.0, 0.1, 0.25, 0.5, 1.0, 3.0)),
    "pskd_alpha": Space(0.1, 0.9),
}
DEFAULT_SEARCH: dict[str, tuple[str, ...]] = {
    "two_view": ("temperature", "kl_weight", "mmd_weight"),
    "multi_exit": ("alpha", "feature_weight"),
    "self_guidance": ("kd_weight",),
    "baseline": (),
}


def default_search(recipe: Recipe) -> tuple[str, ...]:
    """The fields searched when none are named: the method's paper sweep, plus ``pskd_alpha``
    when the recipe has PS-KD on."""
    names = list(DEFAULT_SEARCH.get(recipe.method, ()))
    if recipe.method_args.get("pskd_alpha") is not None:
        names.append("pskd_alpha")
    return tuple(names)


def recipe_key(recipe: Recipe, name: str) -> str:
    """The recipe key a search name stands for: a method argument's bare name means
    ``method_args.<name>``; dotted keys (``optimizer.learning_rate``) and top-level fields are
    used as they are."""
    if "." in name:
        return name
    defaults = recipes_lib.method_arguments(recipe.method)
    if name in defaults:
        return f"method_args.{name}"
    if name in {f.name for f in dataclasses.fields(Recipe)}:
        return name
    raise ValueError(
        f"`search`: {name!r} is neither an argument of method {recipe.method!r} "
        f"({sorted(defaults)}) nor a recipe field; use a dotted key such as "
        "optimizer.learning_rate."
    )


def parse_search(text: str | Sequence[str] | None) -> dict[str, Space | None]:
    """``"kl_weight,temperature=1:3"`` -> ``{"kl_weight": None, "temperature": Space(1, 3)}``
    (None: the default space)."""
    if text is None:
        return {}
    items = text.split(",") if isinstance(text, str) else list(text)
    out: dict[str, Space | None] = {}
    for item in items:
        item = item.strip()
        if not item:
            continue
        name, sep, space = item.partition("=")
        name = name.strip()
        if not name:
            raise ValueError(f"`--search` item {item!r} has no field name.")
        out[name] = Space.parse(space) if sep else None
    if not out:
        raise ValueError(f"`--search` names no field, got {text!r}.")
    return out


def resolve_search(
    recipe: Recipe,
    search: Sequence[str] | Mapping[str, Space | None] | None = None,
    spaces: Mapping[str, Space] | None = None,
) -> dict[str, tuple[str, Space]]:
    """``{hp name: (recipe key, Space)}``, checked against the recipe.

    Args:
        recipe: the recipe to tune.
        search: names to search (a list, or a mapping name -> Space or None for the default);
            None: `default_search`.
        spaces: spaces overriding `DEFAULT_SPACES` by name.

    Raises:
        ValueError: unknown field, no default space for a field, a space whose ends the recipe's
            type checks reject, or nothing to search. Values the method's constructor rejects
            (e.g. ``alpha`` > 1) are found by `RecipeHyperModel.check_space`.
    """
    if search is None:
        search = default_search(recipe)
    if isinstance(search, str) or (not isinstance(search, Mapping) and search):
        search = parse_search(search)  # names, optionally with "=SPACE"
    if not isinstance(search, Mapping):
        search = {}
    table = {**DEFAULT_SPACES, **(spaces or {})}
    resolved: dict[str, tuple[str, Space]] = {}
    for name, space in search.items():
        key = recipe_key(recipe, name)
        space = space or table.get(name) or table.get(key)
        if space is None:
            raise ValueError(
                f"`search`: no default space for {name!r}; give one, e.g. {name}=LOW:HIGH or "
                f"{name}=A|B|C (defaults exist for {sorted(DEFAULT_SPACES)})."
            )
        if not isinstance(space, Space):
            raise ValueError(f"`spaces[{name!r}]` must be a keras_sd.tuning.Space, got {space!r}.")
        # Fail now, not inside a trial: every end of the space must be a valid value.
        probes = space.values or (space.low, space.high)
        for value in probes:
            recipes_lib.apply_override(recipe, key, value)
        resolved[name] = (key, space)
    if not resolved:
        raise ValueError(
            f"`search`: nothing to search for method {recipe.method!r}; name fields with "
            "--search (e.g. optimizer.learning_rate=0.01:0.2:log)."
        )
    return resolved


def apply_hyperparameters(
    recipe: Recipe, search: Mapping[str, tuple[str, Space]], values: Mapping[str, Any]
) -> Recipe:
    """``recipe`` with every searched field set from ``values`` (hp name -> value)."""
    for name, (key, _) in search.items():
        if name in values:
            recipe = recipes_lib.apply_override(recipe, key, values[name])
    return recipe


def _order_key(value):
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


__all__ = [
    "DEFAULT_SEARCH",
    "DEFAULT_SPACES",
    "Space",
    "apply_hyperparameters",
    "default_search",
    "parse_search",
    "recipe_key",
    "resolve_search",
]
