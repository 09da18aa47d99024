"""The robust scale a quantity column is judged on, shared by the plugins that judge
tails (robust_outliers decides on it, distribution_shape describes with it), so a
column one calls heavy-tailed is the column the other does not call outliers.

Rule (:func:`judged_scale`), from the column's quantiles:

* a share (semantic ``share``): the logit of the proportion (clamped to
  [0.001, 0.999]), where 0.98 is as far from 0.9 as 0.1 is from 0.02 and a bounded
  column has no unbounded tail;
* a non-negative column that is right-skewed ((p99 - p50) >= 2 (p50 - p01)) or spans
  two orders of magnitude (p99/p01 >= 100): the log, of ``x`` when every value is
  positive, else of ``x + median`` so that zeros stay ordinary; a multiplicative tail
  is ordinary there and only values far off in ratio terms stand out;
* anything else: the raw values.

On that scale a value's modified z-score is ``|v - median| / (1.4826 MAD)``
(Iglewicz and Hoaglin).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal, TypedDict

import numpy as np
import numpy.typing as npt

from .sql import quote_ident

MAD_TO_SIGMA = 1.482602218505602
"""1 / Phi^-1(0.75): the MAD of a normal sample times this is its sigma."""
EPSILON = 0.001
"""Shares are clamped to [EPSILON, 1 - EPSILON] before the logit."""


class Scale(TypedDict):
    kind: Literal["raw", "log", "logit"]
    shift: float
    top: float


def _finite(value: object) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return float(value) if math.isfinite(value) else None


def judged_scale(quantiles: dict[str, object], semantic: str | None, mode: str = "auto") -> Scale:
    """The scale to judge a column on (rule in the module docstring).

    Args:
        quantiles: ``min``, ``p01``, ``p50``, ``p99`` and ``max`` of the column.
        semantic: its semantic (``share`` gets the logit).
        mode: ``auto`` (the rule), ``raw`` (always raw) or ``log`` (log wherever the
            values allow it).
    """
    raw: Scale = {"kind": "raw", "shift": 0.0, "top": 1.0}
    keys = ("min", "p01", "p50", "p99", "max")
    low, p01, p50, p99, high = (_finite(quantiles.get(k)) for k in keys)
    if mode == "raw" or low is None or p01 is None or p50 is None or p99 is None:
        return raw
    if mode == "auto" and semantic == "share" and low >= 0:
        return {"kind": "logit", "shift": 0.0, "top": 1.0 if (high or 0.0) <= 1 else 100.0}
    skewed = p99 > p50 and p99 - p50 >= 2 * (p50 - p01)
    wide = p01 > 0 and p99 / p01 >= 100
    if low >= 0 and (mode == "log" or skewed or wide):
        shift = 0.0 if low > 0 else p50
        if low > 0 or shift > 0:
            return {"kind": "log", "shift": shift, "top": 1.0}
    return raw


def number_expr(column: str) -> str:
    """SQL for ``column`` as a double where NaN is missing, like NULL: NaN is no value
    of a quantity, and DuckDB orders it above every number (so it would pass every
    ``>`` fence and move every median). Infinities stay: they are values, gross ones."""
    return f"nullif(CAST({quote_ident(column)} AS DOUBLE), 'NaN'::DOUBLE)"


def scaled_expr(column: str, scale: Scale) -> str:
    """SQL for the value of ``column`` on ``scale`` (NULL and NaN are NULL)."""
    x = number_expr(column)
    if scale["kind"] == "log":
        return f"ln({x} + {float(scale['shift'])!r})"
    if scale["kind"] == "logit":
        p = f"least(greatest({x} / {float(scale['top'])!r}, {EPSILON}), {1 - EPSILON})"
        return f"ln({p} / (1 - {p}))"
    return x


def scaled_values(x: npt.NDArray[np.float64], scale: Scale) -> npt.NDArray[np.float64]:
    """:func:`scaled_expr` in numpy: the values ``x`` on ``scale``, written over ``x``
    (no column-sized array is allocated)."""
    if scale["kind"] == "log":
        return np.log(np.add(x, float(scale["shift"]), out=x), out=x)
    if scale["kind"] == "logit":
        p = np.clip(np.divide(x, float(scale["top"]), out=x), EPSILON, 1 - EPSILON, out=x)
        return np.log(p / (1 - p), out=p)
    return x


def unscaled(value: float, scale: Scale) -> float:
    """A value on ``scale`` back on the column's own scale."""
    if scale["kind"] == "log":
        return math.exp(value) - scale["shift"]
    if scale["kind"] == "logit":
        return scale["top"] / (1 + math.exp(-value))
    return value


def median_mad(values: npt.NDArray[np.float64]) -> tuple[float, float]:
    """The median and the MAD (the median of the absolute deviations from it: DuckDB's
    ``median()`` and ``mad()``) of finite ``values``, which are reordered and
    overwritten: two selections in place, no column-sized copy."""
    median = float(np.median(values, overwrite_input=True))
    deviation = np.abs(np.subtract(values, median, out=values), out=values)
    return median, float(np.median(deviation, overwrite_input=True))


def read_into(buffer: npt.NDArray[np.float64], chunks: Iterable[Any]) -> npt.NDArray[np.float64]:
    """The values of Arrow ``chunks`` (without nulls) copied into the start of
    ``buffer``, as a view of it. A plugin that reads several columns of a table reuses
    one buffer: a fresh column-sized array costs more to touch (0.3-0.45 s at 10M rows
    here) than the selections made in it."""
    at = 0
    for chunk in chunks:
        buffer[at : at + len(chunk)] = chunk.to_numpy()
        at += len(chunk)
    return buffer[:at]
