"""The intervals between consecutive values of a timestamp column, exactly, from its
values as epoch microseconds: shared by time_coverage (which describes them) and
timestamp_gaps (which looks for the long ones), so the two agree figure for figure.

numpy sorts the 8-byte integers (and skips a column already in order) in a fraction of
the time of SQL's window over the sorted column, and the sorted array gives the rows per
calendar day as well. Quantiles are numpy's linear ones, the definition of SQL's
``quantile_cont`` (the two can differ in the last bit of the interpolation). Of equal
intervals among the largest, the earliest comes first.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TypedDict

import numpy as np
import numpy.typing as npt

DAY_US = 86_400_000_000
_EPOCH = date(1970, 1, 1)

Ints = npt.NDArray[np.int64]


def values_query(ts: str) -> str:
    """The values of the timestamp expression ``ts`` as epoch microseconds (column
    ``u``), the input of :func:`intervals`."""
    return f"SELECT epoch_us({ts}) AS u FROM data WHERE {ts} IS NOT NULL"


class Intervals(TypedDict):
    n: int
    first_us: int
    last_us: int
    first_day: date
    per_day: Ints
    """Rows on each calendar day from ``first_day`` to the last value's (zeros included)."""
    intervals: int
    zero_intervals: int
    distinct_intervals: int
    """Intervals between consecutive distinct values (the positive ones)."""
    q: list[float] | None
    """Median, p90 and p99 of every interval."""
    distinct_q: list[float] | None
    """Median and p99 of the positive intervals."""
    mean_dt: float | None
    gaps: list[tuple[int, int]]
    """The ``top`` largest intervals as (length, end), largest first, then earliest."""


CHUNK = 1 << 20
"""The largest intervals are picked a chunk of this many at a time (no column-sized copy)."""


def _largest(dt: Ints, ends: Ints, k: int) -> list[tuple[int, int]]:
    """The ``k`` largest of ``dt`` with their ``ends``, largest first, then earliest."""
    picked = []
    for start in range(0, dt.size, CHUNK):
        part = dt[start : start + CHUNK]
        if part.size > k:
            kth = np.partition(part, part.size - k)[part.size - k]
            picked.append(np.flatnonzero(part >= kth) + start)  # ties kept: a superset
        else:
            picked.append(np.arange(start, start + part.size))
    candidates = np.concatenate(picked)
    order = np.lexsort((ends[candidates], -dt[candidates]))[:k]
    return [(int(dt[candidates[i]]), int(ends[candidates[i]])) for i in order]


def intervals(u: Ints, top: int) -> Intervals | None:
    """The figures of ``u`` (``None`` when empty). A column in order is used as it is
    (even read-only); any other is sorted, in place when ``u`` is writable. Pass the
    array without keeping it, and it is freed as soon as it is no longer needed."""
    if u.size == 0:
        return None
    if u.size > 1 and not bool(np.all(u[1:] >= u[:-1])):
        if u.flags.writeable:
            u.sort(kind="stable")
        else:
            u = np.sort(u, kind="stable")
    first, last = int(u[0]), int(u[-1])
    day0 = first // DAY_US
    midnights = np.arange(day0, last // DAY_US + 2, dtype=np.int64) * DAY_US
    out: Intervals = {
        "n": int(u.size),
        "first_us": first,
        "last_us": last,
        "first_day": _EPOCH + timedelta(days=int(day0)),
        "per_day": np.diff(np.searchsorted(u, midnights, side="left")).astype(np.int64),
        "intervals": int(u.size) - 1,
        "zero_intervals": 0,
        "distinct_intervals": 0,
        "q": None,
        "distinct_q": None,
        "mean_dt": None,
        "gaps": [],
    }
    if u.size < 2:
        return out
    dt = np.diff(u)
    if top > 0:
        out["gaps"] = _largest(dt, u[1:], min(int(top), int(dt.size)))
    del u  # the sorted values are not needed past here (the caller's, if it keeps them)
    out["mean_dt"] = (last - first) / dt.size  # the sum of the intervals telescopes
    # the quantiles reorder ``dt`` in place; the positive intervals are the same set
    out["q"] = [float(v) for v in np.quantile(dt, [0.5, 0.9, 0.99], overwrite_input=True)]
    positive = dt[dt > 0]
    out["distinct_intervals"] = int(positive.size)
    out["zero_intervals"] = int(dt.size - positive.size)
    del dt
    if positive.size:
        qs = np.quantile(positive, [0.5, 0.99], overwrite_input=True)
        out["distinct_q"] = [float(v) for v in qs]
    return out
