"""What the plugins ask of an event log: is the table one, and which status values
are failures. Shared so that plugins that must agree (segment_differences and
level_shifts stand aside for an event log; failure_hotspots and workload_rebalance
count the same failures) decide by one rule."""

from __future__ import annotations

import re
from typing import Any

from .results import Na, na
from .sql import quote_ident as _q

EVENT_LOG_TEXT = "an event log: covered by group_differences/changepoints/monotonic_trend"


def is_event_log(ctx: Any) -> bool:
    """An event log with measurable durations: a started column and a queued or ended one."""
    data = ctx.data
    return data.event_role("started") is not None and (
        data.event_role("queued") is not None or data.event_role("ended") is not None
    )


def event_log_na(ctx: Any) -> Na | None:
    """NOT_APPLICABLE for a plugin of tables that are not event logs, when this one is."""
    if not is_event_log(ctx):
        return None
    return na(
        "NOT_APPLICABLE",
        f"The table is {EVENT_LOG_TEXT}.",
        checked=[
            f"event role {r}: {ctx.data.event_role(r) or 'not found'}"
            for r in ("ended", "queued", "started")
        ],
    )


def failure_values(ctx: Any, status: str, pattern: str) -> tuple[list[str], list[str]]:
    """The distinct values of column ``status`` (at most 10,000, sorted) and those of
    them the regular expression ``pattern`` (case-insensitive) calls failures."""
    values = (
        ctx.data.sql(
            f"SELECT DISTINCT CAST({_q(status)} AS VARCHAR) AS v FROM data "
            f"WHERE {_q(status)} IS NOT NULL ORDER BY v LIMIT 10000"
        )
        .column("v")
        .to_pylist()
    )
    rx = re.compile(pattern, re.IGNORECASE)
    return values, [v for v in values if rx.search(v)]
