"""Units and wording the plugins share: a month of days, a p-value in words, and the
months a log's timestamps span (the denominator of every "hours a month" impact)."""

from __future__ import annotations

from typing import Any

from .sql import timestamp_expr

DAYS_PER_MONTH = 365.25 / 12
"""A calendar month on average (a Julian year over twelve)."""


def p_text(p: float) -> str:
    """A p-value as a report says it (below double precision's smallest normal
    numbers it is an upper bound, not a value)."""
    return "p < 1e-300" if p < 1e-300 else f"p = {p:.2g}"


def observed_months(ctx: Any) -> float | None:
    """The span of the first of the queued, started and ended timestamps the log has,
    in months (at least one day); None when it has none of them, or they are all null."""
    for role in ("queued", "started", "ended"):
        col = ctx.data.event_role(role)
        if col is None:
            continue
        t = timestamp_expr(col, ctx.data.column(col).dtype)
        row = ctx.data.sql(
            f"SELECT date_diff('microsecond', min({t}), max({t})) / 86400e6 AS d FROM data"
        ).to_pylist()[0]
        if row["d"] is not None:
            return max(float(row["d"]), 1.0) / DAYS_PER_MONTH
    return None
