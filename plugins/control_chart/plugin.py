"""control_chart: out-of-control days in a process's daily median queue wait.

An individuals (X) chart per process on the log daily median wait, from one SQL
aggregate. The centre is robust, local and seasonal: a centred running median over
``centre_window_days`` observed days (it follows slow drifts and, being a median,
keeps sharp level shifts sharp: those are changepoints, not strings of violations)
plus the median weekday profile. Sigma comes from the median moving range, so a few
bad days do not widen the limits, split into genuine day-to-day variation and each
day's own sampling error (a quiet day's median of a few jobs moves more). A day
violates when it lies beyond 3 sigma above the centre and its wait is also
practically larger (by ``min_relative_deviation``); a process is reported when it
has a run of consecutive violations or a large enough share of violating days.
"""

from __future__ import annotations

import math
from datetime import date

import msgspec
import numpy as np
from scipy import stats

from contracts import Evidence, Finding, Impact, Line, Ok, Series, na, ok
from contracts.sql import quote_ident as _q
from contracts.sql import string_literal as _str_lit
from contracts.sql import timestamp_expr
from contracts.units import p_text as _p_text

WAIT_FLOOR_S = 1.0  # daily medians below one second are treated as one second (logs)
MR_TO_SIGMA = 0.954  # median |x_i - x_(i-1)| of iid normal values, in sigmas
MAX_LISTED_DAYS = 10


def daily_query(ctx, roles: dict[str, str], process: str | None = None) -> str:
    """Jobs and median wait per process and day of queueing (``process``: only that one)."""
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
        f"stddev_samp(ln(greatest(wait_s, {WAIT_FLOOR_S}))) AS sd_log_wait "
        "FROM ev WHERE wait_s >= 0 AND day IS NOT NULL "
        "GROUP BY process, day ORDER BY process, day"
    )


def running_median(y: np.ndarray, window: int) -> np.ndarray:
    """Centred running median over ``window`` points (truncated at the ends)."""
    half = max(window, 1) // 2
    return np.array(
        [np.median(y[max(0, i - half) : i + half + 1]) for i in range(y.size)], dtype=float
    )


def weekday_profile(r: np.ndarray, weekdays: np.ndarray, min_weeks: int) -> np.ndarray:
    """Per-day weekday effect: the median of ``r`` on the same weekday, when every
    weekday present has at least ``min_weeks`` values (else no weekday effect)."""
    present = sorted(set(weekdays.tolist()))
    profile = np.zeros_like(r)
    if all(int(np.sum(weekdays == w)) >= min_weeks for w in present):
        for w in present:
            sel = weekdays == w
            profile[sel] = np.median(r[sel])
    return profile


def robust_centre(y: np.ndarray, weekdays: np.ndarray, window: int, min_weeks: int):
    """Running-median level plus weekday profile (the level estimated once more after
    taking the weekday profile out, so weekly swings do not leak into it)."""
    level = running_median(y, window)
    profile = weekday_profile(y - level, weekdays, min_weeks)
    level = running_median(y - profile, window)
    profile = weekday_profile(y - level, weekdays, min_weeks)
    return level + profile


def longest_run(flags: np.ndarray) -> tuple[int, int]:
    """Length and start index of the longest run of True values (first one on ties)."""
    best_len, best_start, cur, start = 0, 0, 0, 0
    for i, flag in enumerate(flags.tolist()):
        if flag:
            if cur == 0:
                start = i
            cur += 1
            if cur > best_len:
                best_len, best_start = cur, start
        else:
            cur = 0
    return best_len, best_start


def _settings(ctx) -> dict[str, object]:
    s = ctx.settings
    return {
        "sigma_limit": float(s.get("sigma_limit", 3.0)),
        "min_run": int(s.get("min_run", 3)),
        "min_violation_share": float(s.get("min_violation_share", 0.05)),
        "min_relative_deviation": float(s.get("min_relative_deviation", 0.5)),
        "sides": str(s.get("sides", "upper")),
        "min_days": int(s.get("min_days", 21)),
        "min_jobs_per_day": int(s.get("min_jobs_per_day", 5)),
        "min_weeks_per_weekday": int(s.get("min_weeks_per_weekday", 3)),
        "centre_window_days": int(s.get("centre_window_days", 29)),
        "max_floor_share": float(s.get("max_floor_share", 0.5)),
    }


def weekday_effect(ctx, process: str, series: str) -> list[float] | None:
    """The weekly effect (log scale, Monday first) that ``seasonality`` found strong in
    this process's series, or None (no upstream result, or no strong rhythm)."""
    upstream = ctx.upstream.get("seasonality")
    entry = getattr(upstream, "metrics", {}).get("processes", {}).get(process, {}).get(series)
    if isinstance(upstream, Ok) and entry and entry.get("strong"):
        return [float(v) for v in entry["weekday_effect"]]
    return None


def chart(
    points: list[dict], cfg: dict[str, object], effect: list[float] | None = None
) -> dict[str, object]:
    """The individuals chart of one process's daily medians and its violations (with
    ``effect``, by weekday on the log scale, the weekly rhythm is divided out first)."""
    days: list[date] = [p["day"] for p in points]
    raw = np.array([float(p["median_wait_s"]) for p in points])
    if effect is not None:
        raw = raw / np.exp(np.array([effect[d.weekday()] for d in days]))
    jobs = np.array([float(p["jobs"]) for p in points])
    sd = np.array([np.nan if p["sd_log_wait"] is None else float(p["sd_log_wait"]) for p in points])
    y = np.log(np.maximum(raw, WAIT_FLOOR_S))
    weekdays = np.array([d.weekday() for d in days])
    centre = robust_centre(
        y, weekdays, int(cfg["centre_window_days"]), int(cfg["min_weeks_per_weekday"])
    )
    r = y - centre
    # Each day's median carries its own sampling error (log scale, about pi/2 * s^2 / n
    # for the median of n values with log-sd s); the rest of the moving-range sigma is
    # genuine day-to-day variation. A quiet day with few jobs then needs a larger move.
    ok = ~np.isnan(sd) & (jobs > 1)
    pooled = float(np.sum((jobs[ok] - 1) * sd[ok] ** 2) / np.sum(jobs[ok] - 1)) if ok.any() else 0.0
    sampling_var = (math.pi / 2) * pooled / jobs
    sigma_mr = float(np.median(np.abs(np.diff(r)))) / MR_TO_SIGMA if r.size > 1 else 0.0
    between_var = max(sigma_mr**2 - float(np.median(sampling_var)), 0.0)
    sigma_day = np.sqrt(between_var + sampling_var)
    limit = float(cfg["sigma_limit"]) * sigma_day
    min_dev = math.log1p(float(cfg["min_relative_deviation"]))
    upper = (r > limit) & (r >= min_dev)
    lower = (r < -limit) & (r <= -min_dev)
    flags = upper | lower if cfg["sides"] == "both" else upper
    run_len, run_start = longest_run(flags)
    count = int(flags.sum())
    p_single = float(stats.norm.sf(float(cfg["sigma_limit"])))
    if cfg["sides"] == "both":
        p_single *= 2
    p_value = float(stats.binom.sf(count - 1, r.size, p_single)) if count else 1.0
    typical = np.exp(centre)
    excess_hours = float(np.sum(np.where(flags, (raw - typical) * jobs, 0.0))) / 3600.0
    return {
        "days": days,
        "raw": raw,
        "typical": typical,
        "upper": typical * np.exp(np.maximum(limit, min_dev)),
        "flags": flags,
        "n": int(r.size),
        "count": count,
        "share": count / r.size if r.size else 0.0,
        "run_len": run_len,
        "run_start": run_start,
        "sigma": math.sqrt(between_var + float(np.median(sampling_var))),
        "sigma_between": math.sqrt(between_var),
        "p_value": p_value,
        "excess_hours": excess_hours,
    }


def run(ctx):
    cfg = _settings(ctx)
    roles = {r: ctx.data.event_role(r) for r in ("process", "queued", "started")}
    missing = sorted(r for r, col in roles.items() if col is None)
    if missing:
        return na(
            "NOT_APPLICABLE",
            "Needs an event log with process, queued and started columns to chart daily "
            f"queue waits; no column was recognized for: {', '.join(missing)}.",
            checked=[f"event role {r}: {roles[r] or 'not found'}" for r in sorted(roles)],
        )

    query = daily_query(ctx, roles)
    series: dict[str, list[dict]] = {}
    for row in ctx.data.sql(query).to_pylist():
        if row["median_wait_s"] is not None and int(row["jobs"]) >= int(cfg["min_jobs_per_day"]):
            series.setdefault(str(row["process"]), []).append(row)

    min_days = int(cfg["min_days"])
    min_run = int(cfg["min_run"])
    min_share = float(cfg["min_violation_share"])
    checked: list[str] = []
    findings = []
    charted = 0
    for process in sorted(series):
        points = series[process]
        if len(points) < min_days:
            checked.append(f"{process}: {len(points)} days with enough jobs (needs {min_days})")
            continue
        at_floor = sum(float(pt["median_wait_s"]) < WAIT_FLOOR_S for pt in points) / len(points)
        if at_floor > float(cfg["max_floor_share"]):
            # most jobs start at once: the daily median sits at the clock's floor and its
            # moving range is zero, so any busy day would break a meaningless limit
            checked.append(
                f"{process}: daily median wait under {WAIT_FLOOR_S:g} s on {at_floor:.0%} of "
                f"days (more than {float(cfg['max_floor_share']):.0%}): not charted, the "
                "median does not measure this queue"
            )
            continue
        charted += 1
        effect = weekday_effect(ctx, process, "daily_wait")
        c = chart(points, cfg, effect)
        by_run = c["run_len"] >= min_run
        by_share = c["count"] >= min_run and c["share"] >= min_share
        checked.append(
            f"{process}: {c['count']} of {c['n']} days beyond the limit "
            f"({c['share']:.1%}), longest run {c['run_len']}"
        )
        if by_run or by_share:
            found = _finding(ctx, roles, process, c, cfg)
            findings.append(msgspec.structs.replace(found, charts=(wait_chart(process, c),)))

    if charted == 0:
        return na(
            "INSUFFICIENT_DATA",
            f"No process has a daily series to chart: {min_days} days with at least "
            f"{int(cfg['min_jobs_per_day'])} measured queue waits and a median wait of at "
            "least a second on most of them.",
            checked=checked or ["no process has any day with enough jobs"],
        )
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No process's daily median queue wait has a run of {min_run} or more days, or "
            f"{min_share:.0%} of its days, beyond {float(cfg['sigma_limit']):g} sigma of its "
            f"running weekday-aware centre and at least "
            f"{float(cfg['min_relative_deviation']):.0%} above it "
            f"({charted} processes charted).",
            checked=checked or ["no process has any day with enough jobs"],
            metrics={"processes_charted": charted},
        )
    return ok(
        findings=findings,
        metrics={"processes_charted": charted, "flagged_processes": [f.target for f in findings]},
    )


def wait_chart(process: str, c: dict[str, object]) -> Series:
    """The chart as judged: daily medians, centre, upper limit, the violating days."""
    flags = c["flags"]
    return Series(
        title=f"Control chart of {process}'s daily median queue wait",
        y_label="median wait (s)",
        x=tuple(d.isoformat() for d in c["days"]),
        lines=(
            Line(label="daily median", values=tuple(float(v) if v > 0 else None for v in c["raw"])),
            Line(label="centre", values=tuple(float(v) for v in c["typical"])),
            Line(label="upper control limit", values=tuple(float(v) for v in c["upper"])),
        ),
        highlight=tuple(i for i in range(len(flags)) if flags[i]),
        log_y=True,
    )


def _finding(ctx, roles, process, c, cfg) -> Finding:
    days = c["days"]
    flags = c["flags"]
    bad = [i for i in range(c["n"]) if flags[i]]
    listed = ", ".join(
        f"{days[i].isoformat()} ({c['raw'][i]:.0f} s vs {c['typical'][i]:.0f} s)"
        for i in bad[:MAX_LISTED_DAYS]
    )
    if len(bad) > MAX_LISTED_DAYS:
        listed += f", ... ({len(bad) - MAX_LISTED_DAYS} more)"
    worst = max(bad, key=lambda i: (c["raw"][i] / c["typical"][i], -i))
    worst_ratio = float(c["raw"][worst] / c["typical"][worst])
    run_text = (
        f"{c['run_len']} consecutive days from {days[c['run_start']].isoformat()}"
        if c["run_len"] >= 2
        else "no consecutive days"
    )
    typical_now = float(c["typical"][-1])
    ucl_s = typical_now * max(
        math.exp(float(cfg["sigma_limit"]) * c["sigma"]),
        1.0 + float(cfg["min_relative_deviation"]),
    )
    p_value = float(c["p_value"])
    metrics = {
        "violations": c["count"],
        "days_charted": c["n"],
        "violation_share": float(c["share"]),
        "longest_run": c["run_len"],
        "longest_run_start": days[c["run_start"]].isoformat(),
        "first_violation": days[bad[0]].isoformat(),
        "last_violation": days[bad[-1]].isoformat(),
        "worst_day": days[worst].isoformat(),
        "worst_median_wait_s": float(c["raw"][worst]),
        "worst_ratio_to_centre": worst_ratio,
        "sigma_log_typical_day": float(c["sigma"]),
        "sigma_log_between_days": float(c["sigma_between"]),
        "sigma_limit": float(cfg["sigma_limit"]),
        "current_centre_wait_s": typical_now,
        "current_upper_limit_s": ucl_s,
        "violation_days": listed,
        "excess_wait_hours": float(c["excess_hours"]),
        "p_value": p_value,
        "test": "binomial tail of the violation count under an in-control normal chart",
    }
    return Finding(
        kind="control_chart_violation",
        title=f"{process}: {c['count']} out-of-control days of queue wait",
        severity="high" if c["run_len"] >= 5 or worst_ratio >= 3 else "medium",
        confidence=max(0.0, min(0.99, 1.0 - p_value)),
        target=process,
        what=(
            f"On {c['count']} of {c['n']} days ({c['share']:.0%}; {run_text}) the daily "
            f"median queue wait of {process} was beyond the control limit of its running, "
            f"weekday-aware centre, up to {worst_ratio:.1f}x on {days[worst].isoformat()}. "
            f"Days: {listed}."
        ),
        why=(
            f"Beyond {float(cfg['sigma_limit']):g} sigma of a robust, weekday-aware centre "
            "(sigma from the median moving range, widened on days with few jobs) and at least "
            f"{float(cfg['min_relative_deviation']):.0%} above it, these days are not "
            f"ordinary variation ({_p_text(p_value)} for this many violations in an "
            "in-control chart): something specific (an outage, a backlog, a blocked "
            "upstream feed) held the queue up."
        ),
        recommendation=(
            f"Review incidents, deployments and upstream delays for {process} on the listed "
            f"days (starting with {days[worst].isoformat()}), fix the cause, and alert when "
            f"its daily median wait exceeds {ucl_s:.0f} s (the current upper control limit)."
        ),
        evidence=Evidence(
            columns=(roles["process"], roles["queued"], roles["started"]),
            metrics=metrics,
            query=daily_query(ctx, roles, process),
            rows=c["n"],
        ),
        measurement="modeled",
        impact=Impact(
            value=float(c["excess_hours"]),
            unit="hours",
            description=f"extra queue wait of {process} on the out-of-control days",
            assumptions=(
                "each job on an out-of-control day waited the excess of that day's median "
                "over the centre",
                "without the special cause the day would have been at its centre (running "
                "median plus weekday profile)",
            ),
        ),
    )
