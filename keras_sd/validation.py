"""Argument checks shared by the whole package: each returns the value in its canonical type or
raises a ValueError that names the argument, the value and what was expected.

Imports neither TensorFlow nor Keras (the LiteRT runtime and the recipe loader use it too).

Example:
    >>> positive_int(3, "batch_size")
    3
    >>> integer(0, "last_epochs", minimum=0)
    0
    >>> unit_interval(0.25, "alpha")
    0.25
    >>> positive_int(True, "batch_size")
    Traceback (most recent call last):
        ...
    ValueError: `batch_size` must be a positive int, got True.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import Any


def _is_int(value: Any) -> bool:
    # bool is an int subclass, but True is never a meaningful count or seed.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integer(
    value: Any, name: str, *, minimum: int | None = None, allow_none: bool = False
) -> int | None:
    """``value`` as an int (NumPy integers accepted, bools refused), at least ``minimum`` if
    given; None passes through when ``allow_none``."""
    if value is None and allow_none:
        return None
    if not _is_int(value) or (minimum is not None and value < minimum):
        expected = "an int" if minimum is None else f"an int >= {minimum}"
        if minimum == 1:
            expected = "a positive int"
        raise ValueError(
            f"`{name}` must be {expected}{' or None' if allow_none else ''}, got {value!r}."
        )
    return int(value)


def positive_int(value: Any, name: str, *, allow_none: bool = False) -> int | None:
    """``integer(value, name, minimum=1)``: a count, a size, a number of steps."""
    return integer(value, name, minimum=1, allow_none=allow_none)


def _number(value: Any, name: str, expected: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"`{name}` must be {expected}, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be {expected}, got {value!r}.") from None
    if math.isnan(number):
        raise ValueError(f"`{name}` must be {expected}, got {value!r}.")
    return number


def unit_interval(value: Any, name: str) -> float:
    """``value`` as a float in ``[0, 1]`` (a weight mixing two terms, a probability)."""
    number = _number(value, name, "a number in [0, 1]")
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1], got {value!r}.")
    return number


def non_negative(value: Any, name: str, *, finite: bool = False) -> float:
    """``value`` as a float >= 0 (a loss weight); also finite when ``finite``."""
    number = _number(value, name, "a non-negative number")
    if not number >= 0 or (finite and math.isinf(number)):
        raise ValueError(
            f"`{name}` must be {'a finite number ' if finite else ''}>= 0, got {value!r}."
        )
    return number


def positive(value: Any, name: str) -> float:
    """``value`` as a float > 0 (a temperature, a learning rate)."""
    number = _number(value, name, "a positive number")
    if not number > 0:
        raise ValueError(f"`{name}` must be > 0, got {value!r}.")
    return number


def survival_probability(value: Any, name: str, *, allow_none: bool = False) -> float | None:
    """``value`` as a float in ``(0, 1]``, a stochastic-depth block's chance to be kept (1 keeps
    it always); a real number, not a string or bool. None passes through when ``allow_none``.

    Example:
        >>> survival_probability(0.5, "final_survival")
        0.5
        >>> survival_probability(0, "final_survival")
        Traceback (most recent call last):
            ...
        ValueError: `final_survival` must be a number in (0, 1] (a survival probability), got 0.
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not 0.0 < float(value) <= 1.0:  # NaN fails the comparison
        raise ValueError(
            f"`{name}` must be {'None or ' if allow_none else ''}a number in (0, 1] (a survival "
            f"probability), got {value!r}."
        )
    return float(value)


def one_of(value: Any, name: str, allowed: Collection) -> Any:
    """``value`` itself if it is one of ``allowed`` (compared by equality, so an unhashable
    ``value`` such as a list gets this ValueError too, not a TypeError from a dict or set)."""
    allowed = tuple(allowed)
    if isinstance(value, bool) or value not in allowed:
        raise ValueError(f"`{name}` must be one of {allowed}, got {value!r}.")
    return value


def boolean(value: Any, name: str) -> bool:
    """``value`` if it is True or False (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False, got {value!r}.")
    return value
