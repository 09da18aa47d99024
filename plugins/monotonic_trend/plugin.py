"""monotonic_trend: a process whose daily median run time keeps growing (or shrinking).

The daily median run duration (ended - started, by day of start) per process comes
from one SQL aggregate. Mann-Kendall's test is Kendall's tau between the day index
and the value (scipy.stats.kendalltau; with distinct day indexes tau-b is the MK
statistic), the size of the trend is Sen's slope (scipy.stats.theilslopes). A trend
is reported only when it is significant, changes the level by at least
``min_relative_change`` over the observed range, and is not better explained by a
single level shift (a step fits clearly better than a line: that is a changepoint).
"""

from __future__ import annotations

from datetime import date

import numpy as np

from contracts import Evidence, Finding, Impact, Ok, na, ok
from contracts.series import best_step_sse, linear_sse, mann_kendall
from contracts.sql import quote_ident as _q
from contracts.sql import string_literal as _str_lit
from contracts.sql import timestamp_expr
from contracts.units import DAYS_PER_MONTH
from contracts.units import p_text as _p_text

RUN_FLOOR_S = 1.0  # daily medians below one second are treated as one second (logs)


def daily_query(ctx, roles: dict[str, str], process: str | None = None) -> str:
    """Jobs and median run time per process and day of start (``process``: that one)."""
    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    started = timestamp_expr(roles["started"], dtypes.get(roles["started"], ""))
    ended = timestamp_expr(roles["ended"], dtypes.get(roles["ended"], ""))
    p = _q(roles["process"])
    only = f" AND CAST({p} AS VARCHAR) = {_str_lit(process)}" if process is not None else ""
    return (
        f"WITH ev AS (SELECT CAST({p} AS VARCHAR) AS process, CAST({started} AS DATE) AS day, "
        f"date_diff('microsecond', {started}, {ended}) / 1e6 AS run_s "
        f"FROM data WHERE {p} IS NOT NULL{only}) "
        "SELECT process, day, count(*) AS jobs, quantile_cont(run_s, 0.5) AS median_run_s "
        "FROM ev WHERE run_s >= 0 AND day IS NOT NULL "
        "GROUP BY process, day ORDER BY process, day"
    )


def _settings(ctx) -> dict[str, float]:
    s = ctx.settings
    return {
        "min_relative_change": float(s.get("min_relative_change", 0.3)),
        "alpha": float(s.get("alpha", 0.001)),
        "min_days": int(s.get("min_days", 21)),
        "min_jobs_per_day": int(s.get("min_jobs_per_day", 5)),
        "max_step_to_line_sse": float(s.get("max_step_to_line_sse", 0.8)),
        "step_min_segment_days": int(s.get("step_min_segment_days", 7)),
    }


def weekday_effect(ctx, process: str, series: str) -> list[float] | None:
    """The weekly effect (log scale, Monday first) that ``seasonality`` found strong in
    this process's series, or None (no upstream result, or no strong rhythm)."""
    upstream = ctx.upstream.get("seasonality")
    entry = getattr(upstream, "metrics", {}).get("processes", {}).get(process, {}).get(series)
    if isinstance(upstream, Ok) and entry and entry.get("strong"):
        return [float(v) for v in entry["weekday_effect"]]
    return None


def trend(
    points: list[dict], cfg: dict[str, float], effect: list[float] | None = None
) -> dict[str, object]:
    """Mann-Kendall, Sen's slope and the step-versus-line check for one series (with
    ``effect``, by weekday on the log scale, the weekly rhythm is divided out first)."""
    days: list[date] = [p["day"] for p in points]
    raw = np.array([float(p["median_run_s"]) for p in points])
    if effect is not None:
        raw = raw / np.exp(np.array([effect[d.weekday()] for d in days]))
    jobs = np.array([float(p["jobs"]) for p in points])
    x = np.array([float((d - days[0]).days) for d in days])
    mk = mann_kendall(x, raw)
    tau, p_value, slope, intercept = mk["tau"], mk["p_value"], mk["slope"], mk["intercept"]
    start = intercept + slope * float(x[0])
    end = intercept + slope * float(x[-1])
    level = max(start, RUN_FLOOR_S) if start > 0 else max(float(np.median(raw)), RUN_FLOOR_S)
    rel = (end - start) / level
    y = np.log(np.maximum(raw, RUN_FLOOR_S))
    step = best_step_sse(y, int(cfg["step_min_segment_days"]))
    line = linear_sse(x, y)
    step_ratio = (step / line if line > 0 else 1.0) if step is not None else 1.0
    recent = jobs[x >= x[-1] - 27]  # the last four weeks
    return {
        "days": days,
        "n": int(raw.size),
        "tau": tau,
        "p_value": p_value,
        "slope_s_per_day": slope,
        "start": start,
        "end": end,
        "relative_change": rel,
        "span_days": float(x[-1] - x[0]),
        "step_to_line_sse": step_ratio,
        "recent_jobs_per_day": float(np.mean(recent)),
        "median_run_s": float(np.median(raw)),
    }


def run(ctx):
    cfg = _settings(ctx)
    roles = {r: ctx.data.event_role(r) for r in ("process", "started", "ended")}
    missing = sorted(r for r, col in roles.items() if col is None)
    if missing:
        return na(
            "NOT_APPLICABLE",
            "Needs an event log with process, started and ended columns to measure daily "
            f"run times; no column was recognized for: {', '.join(missing)}.",
            checked=[f"event role {r}: {roles[r] or 'not found'}" for r in sorted(roles)],
        )

    query = daily_query(ctx, roles)
    series: dict[str, list[dict]] = {}
    for row in ctx.data.sql(query).to_pylist():
        if row["median_run_s"] is not None and int(row["jobs"]) >= int(cfg["min_jobs_per_day"]):
            series.setdefault(str(row["process"]), []).append(row)

    min_days = int(cfg["min_days"])
    min_rel = float(cfg["min_relative_change"])
    alpha = float(cfg["alpha"])
    max_ratio = float(cfg["max_step_to_line_sse"])
    checked: list[str] = []
    findings = []
    tested = 0
    for process in sorted(series):
        points = series[process]
        if len(points) < min_days:
            checked.append(f"{process}: {len(points)} days with enough jobs (needs {min_days})")
            continue
        tested += 1
        t = trend(points, cfg, weekday_effect(ctx, process, "daily_run"))
        checked.append(
            f"{process}: tau {t['tau']:+.2f} ({_p_text(float(t['p_value']))}), Sen's slope "
            f"{float(t['slope_s_per_day']):+.2f} s/day, change {float(t['relative_change']):+.0%} "
            f"over {float(t['span_days']):.0f} days, step/line SSE "
            f"{float(t['step_to_line_sse']):.2f}"
        )
        if (
            abs(float(t["relative_change"])) >= min_rel
            and float(t["p_value"]) < alpha
            and float(t["step_to_line_sse"]) > max_ratio
        ):
            findings.append(_finding(ctx, roles, process, t))

    if tested == 0:
        return na(
            "INSUFFICIENT_DATA",
            f"No process has {min_days} days with at least "
            f"{int(cfg['min_jobs_per_day'])} measured run times; there is no "
            "daily series to analyse.",
            checked=checked or ["no process has any day with enough jobs"],
        )
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No process's daily median run time trends by {min_rel:.0%} or more over the "
            f"observed range with Mann-Kendall p < {alpha:g} ({tested} processes tested).",
            checked=checked or ["no process has any day with enough jobs"],
            metrics={"processes_tested": tested},
        )
    return ok(
        findings=findings,
        metrics={"processes_tested": tested, "flagged_processes": [f.target for f in findings]},
    )


def _finding(ctx, roles, process, t) -> Finding:
    start, end = float(t["start"]), float(t["end"])
    rel = float(t["relative_change"])
    p_value = float(t["p_value"])
    days = t["days"]
    first, last = days[0].isoformat(), days[-1].isoformat()
    up = rel > 0
    per_day = float(t["recent_jobs_per_day"])
    hours_per_month = abs(end - start) * per_day * DAYS_PER_MONTH / 3600.0
    slope = float(t["slope_s_per_day"])
    metrics = {
        "kendall_tau": float(t["tau"]),
        "p_value": p_value,
        "test": "Mann-Kendall (scipy.stats.kendalltau on day index vs daily median run)",
        "sens_slope_s_per_day": slope,
        "trend_start_s": start,
        "trend_end_s": end,
        "relative_change": rel,
        "first_day": first,
        "last_day": last,
        "days_tested": int(t["n"]),
        "span_days": float(t["span_days"]),
        "step_to_line_sse": float(t["step_to_line_sse"]),
        "recent_jobs_per_day": per_day,
        "median_run_s": float(t["median_run_s"]),
    }
    if up:
        recommendation = (
            f"Profile {process}: its median run time grows by {slope:.1f} s a day "
            f"({start:.0f} s to {end:.0f} s since {first}). Look for inputs that keep growing "
            "(tables without archiving or purging, unindexed lookups, accumulating "
            f"backlogs), fix the growth, and alert when a day's median run exceeds "
            f"{end * 1.2:.0f} s."
        )
        severity = "high" if rel >= 1.0 else "medium"
        impact_text = f"run time a month added by the trend since {first}, at the recent volume"
    else:
        recommendation = (
            f"Confirm why {process} keeps getting faster ({start:.0f} s to {end:.0f} s since "
            f"{first}: shrinking inputs, an optimisation, or work silently skipped) and check "
            "its outputs are still complete."
        )
        severity = "low"
        impact_text = f"run time a month saved by the trend since {first}, at the recent volume"
    return Finding(
        kind="trend",
        title=f"{process}: run time trends {'up' if up else 'down'} {abs(rel):.0%}",
        severity=severity,
        confidence=max(0.0, min(0.99, 1.0 - p_value)),
        target=process,
        what=(
            f"The daily median run time of {process} moved from about {start:.0f} s to "
            f"{end:.0f} s between {first} and {last} ({rel:+.0%}; Sen's slope "
            f"{slope:+.2f} s a day over {int(t['n'])} days)."
        ),
        why=(
            f"A Mann-Kendall test finds a monotonic trend (tau {float(t['tau']):+.2f}, "
            f"{_p_text(p_value)}), and a straight line fits at least as well as a single "
            "level shift: the run time drifts steadily, which points to growing inputs or "
            "degrading resources rather than one change."
        ),
        recommendation=recommendation,
        evidence=Evidence(
            columns=(roles["process"], roles["started"], roles["ended"]),
            metrics=metrics,
            query=daily_query(ctx, roles, process),
            rows=int(t["n"]),
        ),
        measurement="modeled",
        impact=Impact(
            value=hours_per_month,
            unit="hours/month",
            description=impact_text,
            assumptions=(
                f"every job's run time moved by the trend's change ({end - start:+.0f} s)",
                f"the recent volume ({per_day:.0f} jobs a day) continues; a month is "
                f"{DAYS_PER_MONTH:.2f} days",
                "the trend is linear over the observed range (Sen's slope)",
            ),
        ),
    )
