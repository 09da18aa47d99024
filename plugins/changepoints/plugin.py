"""changepoints: a large, sustained shift in a process's daily median queue wait.

The daily median wait of every process comes from one SQL aggregate (a few thousand
rows however large the table). Each process's series of log daily medians is cut by
binary segmentation with the L2 (Gaussian mean-shift) cost (ruptures); a cut is reported only
when both sides hold at least ``min_segment_days`` days, the median level moves by at
least ``min_relative_shift``, the days on each side sit consistently on their side of
the midpoint, a Mann-Whitney U test separates the two sides, and a step fits the two
segments clearly better than a straight line (a gradual trend is not a changepoint).
When the ``seasonality`` plugin finds a strong weekly rhythm in a process's daily median
wait, its weekday effect is divided out first, so a weekly pattern is never a cut.
"""

from __future__ import annotations

from datetime import date

import msgspec
import numpy as np

from contracts import Evidence, Finding, Impact, Line, Marker, Ok, Rule, Series, na, ok
from contracts.series import evaluate_cut, shift_cuts
from contracts.sql import quote_ident as _q
from contracts.sql import string_literal as _str_lit
from contracts.sql import timestamp_expr
from contracts.units import DAYS_PER_MONTH
from contracts.units import p_text as _p_text

WAIT_FLOOR_S = 1.0  # daily medians below one second are treated as one second (logs)


def daily_query(ctx, roles: dict[str, str], process: str | None = None) -> str:
    """Jobs, median and total wait per process and day of queueing (``process``: one)."""
    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    queued = timestamp_expr(roles["queued"], dtypes.get(roles["queued"], ""))
    started = timestamp_expr(roles["started"], dtypes.get(roles["started"], ""))
    p = _q(roles["process"])
    only = f" AND CAST({p} AS VARCHAR) = {_str_lit(process)}" if process is not None else ""
    return (
        f"WITH ev AS (SELECT CAST({p} AS VARCHAR) AS process, CAST({queued} AS DATE) AS day, "
        f"date_diff('microsecond', {queued}, {started}) / 1e6 AS wait_s "
        f"FROM data WHERE {p} IS NOT NULL{only}) "
        "SELECT process, day, count(*) AS jobs, quantile_cont(wait_s, 0.5) AS median_wait_s, "
        "sum(wait_s) AS total_wait_s FROM ev WHERE wait_s >= 0 AND day IS NOT NULL "
        "GROUP BY process, day ORDER BY process, day"
    )


def _settings(ctx) -> dict[str, float]:
    s = ctx.settings
    return {
        "min_relative_shift": float(s.get("min_relative_shift", 0.5)),
        "min_segment_days": int(s.get("min_segment_days", 7)),
        "min_jobs_per_day": int(s.get("min_jobs_per_day", 5)),
        "alpha": float(s.get("alpha", 0.001)),
        "min_consistency": float(s.get("min_consistency", 0.8)),
        "max_step_to_line_sse": float(s.get("max_step_to_line_sse", 0.8)),
        "penalty_factor": float(s.get("penalty_factor", 3.0)),
        "max_changepoints": int(s.get("max_changepoints", 5)),
    }


def _series(rows: list[dict], min_jobs: int) -> dict[str, list[dict]]:
    by_process: dict[str, list[dict]] = {}
    for r in rows:
        if r["median_wait_s"] is None or int(r["jobs"]) < min_jobs:
            continue
        by_process.setdefault(str(r["process"]), []).append(r)
    return by_process


def weekday_effect(ctx, process: str, series: str) -> list[float] | None:
    """The weekly effect (log scale, Monday first) that ``seasonality`` found strong in
    this process's series, or None (no upstream result, or no strong rhythm)."""
    upstream = ctx.upstream.get("seasonality")
    entry = getattr(upstream, "metrics", {}).get("processes", {}).get(process, {}).get(series)
    if isinstance(upstream, Ok) and entry and entry.get("strong"):
        return [float(v) for v in entry["weekday_effect"]]
    return None


def analyse(
    points: list[dict], cfg: dict[str, float], effect: list[float] | None = None
) -> tuple[list[dict], int]:
    """Evaluated cuts of one process's series (all of them, passed or not), and n days.
    With ``effect`` (log scale, by weekday) the weekly rhythm is taken out first."""
    days: list[date] = [p["day"] for p in points]
    raw = np.array([float(p["median_wait_s"]) for p in points])
    if effect is not None:
        raw = raw / np.exp(np.array([effect[d.weekday()] for d in days]))
    jobs = np.array([float(p["jobs"]) for p in points])
    x = np.array([float((d - days[0]).days) for d in days])
    y = np.log(np.maximum(raw, WAIT_FLOOR_S))
    m = int(cfg["min_segment_days"])
    if y.size < 2 * m:
        return [], int(y.size)
    cuts = shift_cuts(y, m, cfg["penalty_factor"], int(cfg["max_changepoints"]))
    bounds = [0, *cuts, y.size]
    evaluated = [
        evaluate_cut(
            days, raw, y, x, jobs, bounds[i - 1], bounds[i], bounds[i + 1], cfg, WAIT_FLOOR_S
        )
        for i in range(1, len(bounds) - 1)
    ]
    return evaluated, int(y.size)


def run(ctx):
    cfg = _settings(ctx)
    roles = {r: ctx.data.event_role(r) for r in ("process", "queued", "started")}
    missing = sorted(r for r, col in roles.items() if col is None)
    if missing:
        return na(
            "NOT_APPLICABLE",
            "Needs an event log with process, queued and started columns to measure daily "
            f"queue waits; no column was recognized for: {', '.join(missing)}.",
            checked=[f"event role {r}: {roles[r] or 'not found'}" for r in sorted(roles)],
        )

    query = daily_query(ctx, roles)
    series = _series(ctx.data.sql(query).to_pylist(), int(cfg["min_jobs_per_day"]))
    m = int(cfg["min_segment_days"])
    checked: list[str] = []
    findings = []
    long_enough = 0
    deseasonalized = 0
    for process in sorted(series):
        effect = weekday_effect(ctx, process, "daily_wait")
        deseasonalized += effect is not None
        evaluated, n_days = analyse(series[process], cfg, effect)
        if n_days < 2 * m:
            checked.append(
                f"{process}: {n_days} days with >= {int(cfg['min_jobs_per_day'])} jobs "
                f"(needs {2 * m})"
            )
            continue
        long_enough += 1
        passed = [e for e in evaluated if e["passed"]]
        if not passed:
            checked.append(
                f"{process}: {n_days} days, {len(evaluated)} candidate cut(s), none with a "
                f"sustained shift >= {cfg['min_relative_shift']:.0%}"
                + (
                    f" (largest {max(abs(float(e['relative_shift'])) for e in evaluated):.0%})"
                    if evaluated
                    else ""
                )
            )
            continue
        # the largest move; on a tie, the earliest
        best = max(passed, key=lambda e: abs(float(e["log_ratio"])))
        checked.append(
            f"{process}: shift of {float(best['relative_shift']):+.0%} on {best['date']}"
        )
        found = _finding(ctx, roles, process, best, passed, n_days, effect is not None)
        chart = wait_chart(process, series[process], best)
        findings.append(msgspec.structs.replace(found, charts=(chart,)))

    if long_enough == 0:
        return na(
            "INSUFFICIENT_DATA",
            f"No process has {2 * m} days with at least "
            f"{int(cfg['min_jobs_per_day'])} measured queue waits; there is no "
            "daily series to analyse.",
            checked=checked or ["no process has any day with enough jobs"],
        )
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No process's daily median queue wait shifts by {cfg['min_relative_shift']:.0%} "
            f"or more and stays there for at least {m} days ({long_enough} processes with "
            "enough days checked).",
            checked=checked or ["no process has any day with enough jobs"],
            metrics={"processes_checked": long_enough, "deseasonalized": deseasonalized},
        )
    return ok(
        findings=findings,
        metrics={
            "processes_checked": long_enough,
            "deseasonalized": deseasonalized,
            "flagged_processes": [f.target for f in findings],
        },
    )


def _positive(value) -> float | None:
    return float(value) if value and value > 0 else None


def wait_chart(process: str, points: list[dict], best: dict) -> Series:
    """The daily medians analysed, the change date and the level on each side."""
    when = best["date"].isoformat()
    return Series(
        title=f"Daily median queue wait of {process}",
        y_label="median wait (s)",
        x=tuple(p["day"].isoformat() for p in points),
        lines=(
            Line(label="daily median", values=tuple(float(p["median_wait_s"]) for p in points)),
        ),
        markers=(Marker(at=when, label=f"change on {when}"),),
        rules=(
            Rule(value=float(best["before"]), label="level before", end=when),
            Rule(value=float(best["after"]), label="level after", start=when),
        ),
        log_y=True,
    )


def _finding(ctx, roles, process, best, passed, n_days, deseasonalized) -> Finding:
    before = float(best["before"])
    after = float(best["after"])
    rel = float(best["relative_shift"])
    p_value = float(best["p_value"])
    up = after > before
    when = best["date"].isoformat()
    per_day = float(best["jobs_per_day_after"])
    hours_per_month = abs(after - before) * per_day * DAYS_PER_MONTH / 3600.0
    others = [e for e in passed if e is not best]
    metrics = {
        "change_date": when,
        "before_median_wait_s": before,
        "after_median_wait_s": after,
        "relative_shift": rel,
        "ratio": after / before,
        "days_before": int(best["days_before"]),
        "days_after": int(best["days_after"]),
        "segment_first_day": best["first_day"].isoformat(),
        "segment_last_day": best["last_day"].isoformat(),
        "consistency": float(best["consistency"]),
        "step_to_line_sse": float(best["step_to_line_sse"]),
        "p_value": p_value,
        "test": "Mann-Whitney U (two-sided) on daily medians before vs after",
        "days_in_series": n_days,
        "deseasonalized": deseasonalized,
        "jobs_per_day_after": per_day,
        "other_changepoints": ", ".join(
            f"{e['date'].isoformat()} ({float(e['relative_shift']):+.0%})" for e in others
        ),
    }
    if up:
        recommendation = (
            f"Find what changed for {process} around {when} (a deployment, a new upstream "
            "feed, a cut in workers or a schedule change) and restore capacity: add workers "
            f"or move its schedule so the daily median wait returns to about {before:.0f} s "
            f"(now {after:.0f} s)."
        )
        severity = "high" if rel >= 1.0 else "medium"
        impact_text = f"queue wait a month added since {when}, at the recent volume"
    else:
        recommendation = (
            f"Confirm what improved {process}'s queue around {when} (added workers, a "
            "schedule or priority change) and keep it in place; document it so it is not "
            f"reverted (daily median wait fell from {before:.0f} s to {after:.0f} s)."
        )
        severity = "low"
        impact_text = f"queue wait a month saved since {when}, at the recent volume"
    return Finding(
        kind="changepoint",
        title=f"{process}: queue wait {'rose' if up else 'fell'} {abs(rel):.0%} on {when}",
        severity=severity,
        confidence=max(0.0, min(0.99, (1.0 - p_value) * float(best["consistency"]))),
        target=process,
        what=(
            f"The daily median queue wait of {process} moved from {before:.0f} s over "
            f"{int(best['days_before'])} days to {after:.0f} s over the next "
            f"{int(best['days_after'])} days ({rel:+.0%}) starting {when}."
        ),
        why=(
            f"A step fits the daily medians better than a gradual trend "
            f"(squared-error ratio {float(best['step_to_line_sse']):.2f}), "
            f"{float(best['consistency']):.0%} of days on each side stay on their side of "
            f"the midpoint, and a Mann-Whitney U test separates them ({_p_text(p_value)}): "
            "a lasting change in the process or its capacity, not day-to-day noise."
        ),
        recommendation=recommendation,
        evidence=Evidence(
            columns=(roles["process"], roles["queued"], roles["started"]),
            metrics=metrics,
            query=daily_query(ctx, roles, process),
            rows=n_days,
        ),
        measurement="modeled",
        impact=Impact(
            value=hours_per_month,
            unit="hours/month",
            description=impact_text,
            assumptions=(
                f"every job's wait moved by the change in the daily median "
                f"({after - before:+.0f} s)",
                f"the volume after the change ({per_day:.0f} jobs a day with a measured "
                f"wait) continues; a month is {DAYS_PER_MONTH:.2f} days",
            ),
        ),
    )
