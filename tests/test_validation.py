"""keras_sd.validation: the shared argument checks (each names the argument, the value and what
was expected)."""

import doctest

import numpy as np
import pytest

from keras_sd import validation


def test_docstring_examples():
    result = doctest.testmod(validation)
    assert result.attempted >= 4 and result.failed == 0


def test_integers():
    assert (
        validation.integer(np.int64(3), "n") == 3
        and type(validation.integer(np.int64(3), "n")) is int
    )
    assert validation.integer(-5, "seed") == -5
    assert validation.integer(None, "seed", allow_none=True) is None
    assert validation.positive_int(1, "n") == 1
    for bad, text in [
        (True, "`n` must be a positive int, got True."),
        (0, "`n` must be a positive int, got 0."),
        (2.0, "`n` must be a positive int, got 2.0."),
        ("3", "`n` must be a positive int, got '3'."),
        (None, "`n` must be a positive int, got None."),
    ]:
        with pytest.raises(ValueError) as e:
            validation.positive_int(bad, "n")
        assert str(e.value) == text
    with pytest.raises(ValueError, match=r"^`k` must be an int >= 2 or None, got 1\.$"):
        validation.integer(1, "k", minimum=2, allow_none=True)
    with pytest.raises(ValueError, match=r"^`seed` must be an int, got 1\.5\.$"):
        validation.integer(1.5, "seed")


def test_numbers():
    assert validation.unit_interval(1, "a") == 1.0 and validation.unit_interval("0.5", "a") == 0.5
    assert validation.non_negative(0, "w") == 0.0 and validation.positive(np.float32(2), "t") == 2.0
    assert validation.non_negative(float("inf"), "w") == float("inf")
    cases = [
        (validation.unit_interval, 1.5, r"`a` must be in \[0, 1\], got 1.5"),
        (validation.unit_interval, "x", r"`a` must be a number in \[0, 1\], got 'x'"),
        (validation.unit_interval, float("nan"), r"`a` must be a number in \[0, 1\], got nan"),
        (validation.unit_interval, True, r"`a` must be a number in \[0, 1\], got True"),
        (validation.non_negative, -0.1, r"`a` must be >= 0, got -0.1"),
        (validation.positive, 0, r"`a` must be > 0, got 0"),
        (validation.positive, None, r"`a` must be a positive number, got None"),
    ]
    for check, value, match in cases:
        with pytest.raises(ValueError, match=match):
            check(value, "a")
    with pytest.raises(ValueError, match=r"`b` must be a finite number >= 0, got inf"):
        validation.non_negative(float("inf"), "b", finite=True)


def test_choices_and_flags():
    assert validation.one_of("sum", "reduction", ("mean", "sum")) == "sum"
    with pytest.raises(
        ValueError, match=r"`reduction` must be one of \('mean', 'sum'\), got 'max'"
    ):
        validation.one_of("max", "reduction", ("mean", "sum"))
    with pytest.raises(ValueError, match="got True"):
        validation.one_of(True, "n", (1, 2))  # True == 1, but a flag is not a count
    # An unhashable value checked against a dict's keys: the ValueError, not a TypeError.
    with pytest.raises(ValueError, match=r"^`depth` must be one of \(20, 32\), got \[20\]\.$"):
        validation.one_of([20], "depth", {20: "a", 32: "b"})
    assert validation.one_of(np.int64(32), "depth", {20: "a", 32: "b"}) == 32
    assert validation.boolean(False, "flag") is False
    with pytest.raises(ValueError, match="`flag` must be True or False, got 1"):
        validation.boolean(1, "flag")


def test_survival_probability():
    assert validation.survival_probability(1, "p") == 1.0
    assert validation.survival_probability(np.float32(0.25), "p") == 0.25
    assert validation.survival_probability(None, "p", allow_none=True) is None
    for bad in (0, 0.0, -0.1, 1.5, float("nan"), "0.5", True, None):
        with pytest.raises(ValueError) as e:
            validation.survival_probability(bad, "p")
        assert (
            str(e.value) == f"`p` must be a number in (0, 1] (a survival probability), got {bad!r}."
        )
    with pytest.raises(ValueError, match=r"^`q` must be None or a number in \(0, 1\]"):
        validation.survival_probability(2, "q", allow_none=True)
