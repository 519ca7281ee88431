"""Input checks shared by every public function of the project.

One wording for every bad parameter: the error names the parameter, what is
allowed, and the value that was given, and where it can, the fix.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable

import numpy as np


class ParameterError(ValueError):
    """A parameter is out of its allowed range, of the wrong type or shape."""


def _fmt(value) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}"
    return repr(value)


def fail(name: str, expected: str, value, hint: str = "") -> None:
    """Raise :class:`ParameterError` with the project's one wording."""
    msg = f"parameter '{name}' must be {expected}; got {_fmt(value)}"
    if hint:
        msg += f" ({hint})"
    raise ParameterError(msg)


def check_number(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> None:
    """Check that ``value`` is a finite real (or integer) inside a range."""
    if integer:
        ok_type = isinstance(value, int | np.integer) and not isinstance(value, bool)
        kind = "an integer"
    else:
        ok_type = isinstance(value, int | float | np.integer | np.floating)
        ok_type = ok_type and not isinstance(value, bool)
        kind = "a real number"
    if not ok_type:
        fail(name, kind, value)
    if not math.isfinite(float(value)):
        fail(name, f"a finite {kind[2:]}", value)
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    rng = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    if low is not None and (value < low or (low_open and value == low)):
        fail(name, f"{kind} in {rng}", value)
    if high is not None and (value > high or (high_open and value == high)):
        fail(name, f"{kind} in {rng}", value)


def check_choice(name: str, value, choices: Iterable) -> None:
    """Check that ``value`` is one of ``choices``, suggesting the closest."""
    choices = list(choices)
    if value in choices:
        return
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [str(c) for c in choices], n=1)
        if close:
            hint = f"did you mean {close[0]!r}?"
    fail(name, f"one of {choices}", value, hint)


def check_array(
    name: str,
    value,
    *,
    ndim: int | None = None,
    shape: tuple | None = None,
    finite: bool = True,
) -> np.ndarray:
    """Return ``value`` as a float64 array after checking its shape and values.

    ``shape`` may hold ``None`` for a free dimension.
    """
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        fail(name, "an array of real numbers", value)
    if ndim is not None and arr.ndim != ndim:
        fail(name, f"a {ndim}-D array", value, f"it has {arr.ndim} dimensions")
    if shape is not None:
        want = tuple("any" if s is None else s for s in shape)
        if arr.ndim != len(shape) or any(
            s is not None and s != a for s, a in zip(shape, arr.shape, strict=True)
        ):
            fail(name, f"an array of shape {want}", value)
    # One sum finds NaN and inf cheaply (both propagate); only a sum that
    # overflowed needs the element-wise check.
    if finite and not np.isfinite(arr.sum()) and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        fail(name, "finite (no NaN or inf)", value, f"{bad} entries are not")
    return arr


def closest_key(key: str, valid: Iterable[str]) -> str | None:
    """The valid key closest to ``key``, or None when nothing is close."""
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return close[0] if close else None
