"""The steps of a case log in SQL, shared by the process-mining plugins
(case_variants, rework_loops, handoff_gaps).

A step is one row with a case and an activity (the process role). Exact copies of a
step (same case, activity and times) count once, so duplicated rows are not loops.
Steps are ordered within their case by start time (queue time when there is no start),
then queue time, end time and activity name: a total order on distinct steps.
"""

from __future__ import annotations

from typing import Any

from .results import Na, na
from .sql import quote_ident as _q
from .sql import timestamp_expr

TIME_ROLES = ("queued", "started", "ended")


def roles(ctx: Any) -> dict[str, str | None]:
    """The case, process and time columns (None where the dataset has none)."""
    return {r: ctx.data.event_role(r) for r in ("case", "process", *TIME_ROLES)}


def steps_cte(ctx: Any, cols: dict[str, str | None]) -> str:
    """``ev(c, p, q, s, e, o)``: distinct steps, times in epoch microseconds (NULL when
    the role is missing), ``o`` the ordering time."""
    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    case, proc = cols["case"], cols["process"]
    assert case is not None and proc is not None
    times = []
    for role, alias in zip(TIME_ROLES, ("q", "s", "e"), strict=True):
        col = cols[role]
        expr = f"epoch_us({timestamp_expr(col, dtypes.get(col, ''))})" if col else "NULL::BIGINT"
        times.append(f"{expr} AS {alias}")
    return (
        f"ev AS (SELECT DISTINCT CAST({_q(case)} AS VARCHAR) AS c, "
        f"CAST({_q(proc)} AS VARCHAR) AS p, {', '.join(times)} FROM data "
        f"WHERE {_q(case)} IS NOT NULL AND {_q(proc)} IS NOT NULL)"
    )


ORDER = "coalesce(s, q, e), q, e, p"
"""The order of steps within a case (see the module docstring)."""


def multi_step_query(ctx: Any, cols: dict[str, str | None]) -> str:
    """Cases, steps, cases with at least two steps, steps per case and the span of the
    log in days, in one pass."""
    return (
        f"WITH {steps_cte(ctx, cols)}, n AS (SELECT c, count(*) AS k, "
        "min(coalesce(q, s, e)) AS t0, max(coalesce(e, s, q)) AS t1 FROM ev GROUP BY c) "
        "SELECT CAST(count(*) AS BIGINT) AS cases, CAST(coalesce(sum(k), 0) AS BIGINT) AS steps, "
        "CAST(count_if(k >= 2) AS BIGINT) AS multi, avg(k) AS mean, "
        "quantile_cont(k, 0.5) AS p50, quantile_cont(k, 0.9) AS p90, max(k) AS max, "
        "(max(t1) - min(t0)) / 86400e6 AS span_days FROM n"
    )


def multi_step(
    ctx: Any, cols: dict[str, str | None], min_cases: int, min_share: float
) -> tuple[dict[str, Any], str | None]:
    """``(counts, reason)``: the figures of :func:`multi_step_query` (``cases``, ``steps``,
    ``multi``; ``lengths``: steps per case; ``span_days``), and why the log is not a
    multi-step case log (None when it is)."""
    case = cols["case"]
    info = next((c for c in ctx.data.columns if c.name == case), None)
    if info is not None and info.distinct_count > 0:
        # From the dataset's own counts, before any scan: every case with two or more
        # steps holds a row beyond its first, so at most ``repeated`` cases can have
        # two steps. An event log whose case column is a job id (one row a job) ends
        # here, at no cost, instead of aggregating every row.
        repeated = ctx.data.rows - info.null_count - info.distinct_count
        if repeated < min_cases:
            bound: dict[str, Any] = {"cases": info.distinct_count, "steps": 0, "multi": 0}
            bound |= {"lengths": {}, "span_days": 0.0}
            return bound, (
                f"cases with >= 2 steps: at most {max(repeated, 0)} of {info.distinct_count} "
                f"(rows beyond the first of each {case} value; needs >= {min_cases}): the "
                "cases are single steps, so there is no flow to mine"
            )
    row = ctx.data.sql(multi_step_query(ctx, cols)).to_pylist()[0]
    counts: dict[str, Any] = {k: int(row[k] or 0) for k in ("cases", "steps", "multi")}
    counts["lengths"] = {k: float(row[k] or 0.0) for k in ("mean", "p50", "p90", "max")}
    counts["span_days"] = float(row["span_days"] or 0.0)
    cases, multi = counts["cases"], counts["multi"]
    text = f"cases with >= 2 steps: {multi} of {cases}"
    if cases == 0:
        return counts, "no row has both a case and an activity"
    if multi < min_cases or multi < min_share * cases:
        return counts, (
            f"{text} (needs >= {min_cases} and >= {min_share:.0%} of cases): the cases are "
            "single steps, so there is no flow to mine"
        )
    return counts, None


def multi_step_or_na(
    ctx: Any, cols: dict[str, str | None], min_cases: int, min_share: float
) -> tuple[dict[str, Any], Na | None]:
    """:func:`multi_step`, with the NOT_APPLICABLE result a plugin returns when the log
    is not a multi-step case log (None when it is)."""
    counts, reason = multi_step(ctx, cols, min_cases, min_share)
    if reason is None:
        return counts, None
    return counts, na("NOT_APPLICABLE", f"Not a multi-step case log: {reason}.", checked=[reason])
