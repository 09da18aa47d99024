"""seasonality: daily and weekly rhythms of volume and waits (STL / MSTL, statsmodels).

The weekday effects published here are what the changepoint, control-chart, trend and
drift plugins take out of their series when the rhythm is strong, so that a weekly
pattern is never reported as a change. Series and their transforms are defined so that
the consumers can apply the effects directly: ``daily_wait`` and ``daily_run`` are
``ln(max(daily median, 1 s))``, ``daily_volume`` is jobs per day; days are UTC calendar
days of the queue time (wait, volume) or start time (run).
"""

from __future__ import annotations

import warnings
from datetime import date, timedelta

import numpy as np
from statsmodels.tsa.seasonal import MSTL

from contracts import Evidence, Finding, na, ok
from contracts.series import seasonal_strength as strength
from contracts.series import weekly_rhythm as weekly
from contracts.sql import quote_ident as _q
from contracts.sql import timestamp_expr, top_groups

FLOOR_S = 1.0
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _roles(ctx) -> dict[str, str | None]:
    roles = {r: ctx.data.event_role(r) for r in ("process", "queued", "started", "ended")}
    return roles


def run(ctx):
    threshold = float(ctx.settings.get("strong_threshold", 0.6))
    min_weeks = int(ctx.settings.get("min_weeks", 4))
    min_jobs = int(ctx.settings.get("min_jobs_per_day", 5))
    max_processes = int(ctx.settings.get("max_processes", 200))
    min_fill = float(ctx.settings.get("min_hour_fill", 0.1))
    roles = _roles(ctx)
    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    tcol = roles["queued"] or roles["started"] or next(iter(ctx.data.names("timestamp")))

    def ts(col: str) -> str:
        return timestamp_expr(col, dtypes.get(col, ""))

    t = ts(tcol)
    hourly_q = (
        f"SELECT date_trunc('hour', {t}) AS hour, count(*) AS n FROM data "
        f"WHERE {t} IS NOT NULL GROUP BY 1 ORDER BY 1"
    )
    hourly = ctx.data.sql(hourly_q).to_pylist()
    findings = []
    checked = [f"time column {tcol}: {len(hourly)} hours with jobs"]
    metrics: dict[str, object] = {"strong_threshold": threshold, "time_column": tcol}
    hourly_m, why_not = _hourly(hourly, min_weeks, min_fill)
    metrics["hourly_volume"] = hourly_m
    if why_not:
        checked.append(f"hourly volume: not decomposed, {why_not}")
    if hourly_m is not None:
        checked.append(
            f"hourly volume: daily strength {hourly_m['daily_strength']:.2f}, weekly "
            f"{hourly_m['weekly_strength']:.2f}"
        )
        findings.append(
            Finding(
                kind="seasonality",
                title="Daily and weekly rhythm of job volume",
                target="hourly_volume",
                what=(
                    f"Jobs per hour ({tcol}) over {hourly_m['hours']} hours: daily component "
                    f"strength {hourly_m['daily_strength']:.2f}, weekly "
                    f"{hourly_m['weekly_strength']:.2f} (MSTL, periods 24 and 168); busiest "
                    f"hour of the day {hourly_m['peak_hour']:02d}:00 UTC."
                ),
                why="Volume that follows the clock and the calendar explains regular peaks in "
                "load and wait; a changepoint or trend must be judged net of it.",
                evidence=Evidence(
                    columns=(tcol,),
                    metrics={k: v for k, v in hourly_m.items() if not isinstance(v, list)},
                    query=hourly_q,
                    rows=len(hourly),
                ),
            )
        )
    processes: dict[str, dict] = {}
    if roles["process"] is not None:
        series_q, names, total = _process_series(ctx, roles, ts, max_processes)
        metrics["processes_decomposed"] = len(names)
        metrics["processes_total"] = total
        if total > len(names):
            checked.append(
                f"decomposed {len(names)} of {total} processes (the most jobs first; "
                f"max_processes {max_processes})"
            )
        for name in names:
            rows = series_q["rows"].get(name, [])
            if not rows:
                continue
            days = [r["day"] for r in rows]
            out = {}
            for key, col in (
                ("daily_volume", "jobs"),
                ("daily_wait", "wait"),
                ("daily_run", "run"),
            ):
                vals = [
                    None
                    if r[col] is None or (key != "daily_volume" and int(r["jobs"]) < min_jobs)
                    else (
                        float(r[col])
                        if key == "daily_volume"
                        else float(np.log(max(float(r[col]), FLOOR_S)))
                    )
                    for r in rows
                ]
                if key == "daily_volume":
                    days_k, vals = _zero_filled(days, vals)
                else:
                    days_k = days
                w = weekly(days_k, vals, min_weeks)
                if w is not None:
                    w["strong"] = w["strength"] >= threshold
                    out[key] = w
            processes[name] = out
            strong = sorted(k for k, w in out.items() if w["strong"])
            checked.append(
                f"{name}: weekly strength "
                + ", ".join(f"{k} {w['strength']:.2f}" for k, w in sorted(out.items()))
                + (f" (strong: {', '.join(strong)})" if strong else "")
                if out
                else f"{name}: fewer than {min_weeks} weeks of days"
            )
            for k in strong:
                if k == "daily_volume":  # busy weekdays are the norm: metrics only
                    continue
                w = out[k]
                eff = w["weekday_effect"]
                hi, lo = int(np.argmax(eff)), int(np.argmin(eff))
                spread = f"{np.exp(eff[hi] - eff[lo]):.1f}x"
                findings.append(
                    Finding(
                        kind="seasonality",
                        title=f"{name}: strong weekly rhythm in {k.replace('daily_', '')}",
                        target=f"{name}:{k}",
                        what=(
                            f"The weekly component of {name}'s {k} has strength "
                            f"{w['strength']:.2f} (robust STL, period 7, {w['days']} days); "
                            f"{WEEKDAYS[hi]} is highest and {WEEKDAYS[lo]} lowest ({spread} apart)."
                        ),
                        why="A rhythm that repeats every week is not a change: the changepoint, "
                        "control-chart and trend plugins take it out before judging this series.",
                        evidence=Evidence(
                            columns=tuple(c for c in (roles["process"], tcol) if c),
                            metrics={"strength": w["strength"], "days": w["days"]}
                            | {f"effect_{WEEKDAYS[i].lower()}": eff[i] for i in range(7)},
                            query=series_q["query"],
                            rows=w["days"],
                        ),
                    )
                )
    metrics["processes"] = processes
    if not findings:
        return na(
            "INSUFFICIENT_DATA",
            f"No series spans {min_weeks} weeks, so there is no weekly rhythm to measure.",
            checked=checked,
            metrics=metrics,
        )
    # what was looked at, and how it was chosen, as an na says it
    return ok(findings=findings, metrics=metrics | {"checked": checked})


def _zero_filled(days: list[date], vals: list) -> tuple[list[date], list[float]]:
    first, n = days[0], (days[-1] - days[0]).days + 1
    out = [0.0] * n
    for d, v in zip(days, vals, strict=True):
        out[(d - first).days] = float(v or 0.0)
    return [first + timedelta(days=i) for i in range(n)], out


def _hourly(rows: list[dict], min_weeks: int, min_fill: float) -> tuple[dict | None, str]:
    """MSTL of jobs per hour, or None and why not. The series must span ``min_weeks``
    weeks and have jobs in at least ``min_fill`` of its hours: dates without a time of
    day fill one hour in 24 (4%), monthly or yearly points far fewer, and such series
    have no rhythm within the day to measure (MSTL would only be slow on them)."""
    if not rows:
        return None, "no time stamps"
    first = rows[0]["hour"]
    n = int((rows[-1]["hour"] - first).total_seconds() // 3600) + 1
    if n < 168 * min_weeks:
        return None, f"{n} hours span less than {min_weeks} weeks"
    if len(rows) < min_fill * n:
        return None, (
            f"jobs in {len(rows)} of {n} hours ({len(rows) / n:.1%}; needs {min_fill:.0%}): "
            "too sparse for a rhythm within the day (dates without a time of day?)"
        )
    y = np.zeros(n)
    for r in rows:
        y[int((r["hour"] - first).total_seconds() // 3600)] = float(r["n"])
    if np.ptp(y) == 0:
        return None, "the same count every hour"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = MSTL(y, periods=(24, 168)).fit()
    seasonal = np.asarray(fit.seasonal)
    resid = np.asarray(fit.resid)
    hour_of_day = (np.arange(n) + first.hour) % 24
    daily = seasonal[:, 0]
    profile = [float(np.mean(daily[hour_of_day == h])) for h in range(24)]
    return {
        "hours": n,
        "hours_with_jobs": len(rows),
        "daily_strength": strength(daily, resid),
        "weekly_strength": strength(seasonal[:, 1], resid),
        "peak_hour": int(np.argmax(profile)),
        "hour_of_day_effect": profile,
    }, ""


def _process_series(ctx, roles, ts, max_processes: int):
    p = _q(roles["process"])
    tq = roles["queued"] or roles["started"]
    assert tq is not None or roles["process"] is None
    day_col = ts(tq) if tq else None
    wait = (
        f"date_diff('microsecond', {ts(roles['queued'])}, {ts(roles['started'])}) / 1e6"
        if roles["queued"] and roles["started"]
        else "NULL"
    )
    run = (
        f"date_diff('microsecond', {ts(roles['started'])}, {ts(roles['ended'])}) / 1e6"
        if roles["started"] and roles["ended"]
        else "NULL"
    )
    total = ctx.data.column(roles["process"]).distinct_count
    top, join = top_groups(total, max_processes)
    query = (
        f"WITH ev AS (SELECT CAST({p} AS VARCHAR) AS p, CAST({day_col} AS DATE) AS day, "
        f"CAST({wait} AS DOUBLE) AS w, CAST({run} AS DOUBLE) AS r FROM data "
        f"WHERE {p} IS NOT NULL AND {day_col} IS NOT NULL){top} "
        "SELECT ev.p, day, count(*) AS jobs, quantile_cont(w, 0.5) FILTER (WHERE w >= 0) AS wait, "
        f"quantile_cont(r, 0.5) FILTER (WHERE r >= 0) AS run FROM ev{join} "
        "GROUP BY ev.p, day ORDER BY ev.p, day"
    )
    rows: dict[str, list[dict]] = {}
    for r in ctx.data.sql(query).to_pylist():
        rows.setdefault(r["p"], []).append(r)
    return {"query": query, "rows": rows}, sorted(rows), total
