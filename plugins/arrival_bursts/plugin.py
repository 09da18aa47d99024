"""arrival_bursts: processes whose jobs arrive in bursts, and the queue wait it costs.

Queue times are counted per minute within each clock hour. Given an hour's total n,
Poisson arrivals at a rate that is constant within the hour fall into its 60 minutes
as a multinomial, so sum (c - n/60)^2 / (n/60) is chi-square with 59 degrees of
freedom whatever the hour's rate: summed over hours, it tests for over-dispersion with
every hour-to-hour rhythm (daily, weekly) conditioned away. The index of dispersion is
that sum over its degrees of freedom (1 for Poisson, below 1 for an even, cron-like
schedule). In SQL: per hour, 60 * sum(c^2) / n - n.

A burst minute is one whose count a Poisson at the process's expected rate for that
hour of the week (the interquartile mean over the weeks, so that the bursts themselves
do not set the bar) would reach with probability at most ``burst_alpha``, and at least
``min_burst_jobs``; consecutive burst minutes are one burst. The cost: the burst jobs'
mean queue wait minus that of the process's other jobs, times the burst jobs a month.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from contracts import Evidence, Finding, Impact, na, ok
from contracts.sql import quote_ident as _q
from contracts.sql import string_literal, timestamp_expr
from contracts.units import DAYS_PER_MONTH

MINUTE_US = 60_000_000
HOURS_PER_WEEK = 168
MONDAY_SHIFT = 72  # epoch hour 0 is a Thursday 00:00: (h + 72) % 168 == 0 on Mondays 00:00
MIN_MARKS = 12  # fewer distinct minute-of-hour marks: queue times too coarse for minutes
FLOOR_PER_HOUR = 0.5  # expected jobs an hour never taken below this


def _settings(ctx) -> dict[str, float]:
    s = ctx.settings
    return {
        "min_dispersion": float(s.get("min_dispersion", 1.5)),
        "min_share": float(s.get("min_share", 0.05)),
        "min_hours_per_month": float(s.get("min_hours_per_month", 5.0)),
        "min_burst_jobs": int(s.get("min_burst_jobs", 5)),
        "burst_alpha": float(s.get("burst_alpha", 1e-5)),
        "alpha": float(s.get("alpha", 0.001)),
        "min_jobs": int(s.get("min_jobs", 200)),
        "max_candidates": int(s.get("max_candidates", 20)),
    }


def _events_cte(ctx, roles: dict[str, str], where: str = "") -> str:
    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    q = timestamp_expr(roles["queued"], dtypes.get(roles["queued"], ""))
    s = timestamp_expr(roles["started"], dtypes.get(roles["started"], ""))
    p = _q(roles["process"])
    return (
        f"ev AS (SELECT CAST({p} AS VARCHAR) AS p, epoch_us({q}) AS t, epoch_us({s}) AS s "
        f"FROM data WHERE {p} IS NOT NULL AND {q} IS NOT NULL{where}), "
        f"mins AS (SELECT p, t // {MINUTE_US} AS m, count(*) AS c FROM ev GROUP BY p, m), "
        "hrs AS (SELECT p, m // 60 AS h, sum(c) AS n, sum(c * c) AS s2 FROM mins GROUP BY p, h)"
    )


def dispersion_query(ctx, roles: dict[str, str]) -> str:
    """Per process: jobs, hours with jobs and the summed chi-square statistic."""
    return (
        f"WITH {_events_cte(ctx, roles)} "
        "SELECT p, CAST(sum(n) AS BIGINT) AS jobs, CAST(count(*) AS BIGINT) AS hours, "
        "CAST(sum(60.0 * s2 / n - n) AS DOUBLE) AS stat FROM hrs GROUP BY p ORDER BY p"
    )


def _how(h: str) -> str:
    return f"(({h}) + {MONDAY_SHIFT}) % {HOURS_PER_WEEK}"


def run(ctx):
    cfg = _settings(ctx)
    roles = {r: ctx.data.event_role(r) for r in ("process", "queued", "started")}
    span_q = (
        f"WITH {_events_cte(ctx, roles)} SELECT min(t) AS t0, max(t) AS t1, "
        f"CAST(count(DISTINCT (t // {MINUTE_US}) % 60) AS BIGINT) AS marks FROM ev"
    )
    span = ctx.data.sql(span_q).to_pylist()[0]
    if span["t0"] is None:
        return na(
            "INSUFFICIENT_DATA",
            "No job has both a process and a queue time.",
            checked=[f"rows with {roles['process']} and {roles['queued']} set: 0"],
        )
    if int(span["marks"]) < MIN_MARKS:
        return na(
            "NOT_APPLICABLE",
            f"Queue times fall on only {span['marks']} distinct minutes of the hour (needs "
            f">= {MIN_MARKS}): they are too coarse to count arrivals per minute.",
            checked=[f"distinct minute-of-hour marks of {roles['queued']}: {span['marks']}"],
        )
    t0, t1 = int(span["t0"]), int(span["t1"])
    days = (t1 - t0) / 86400e6
    weeks = days / 7.0
    if weeks < 2.0:
        return na(
            "INSUFFICIENT_DATA",
            f"The queue times span {days:.1f} days; the expected rate per hour of the week "
            "needs at least two weeks.",
            checked=[f"span of {roles['queued']}: {days:.1f} days (needs >= 14)"],
        )
    query = dispersion_query(ctx, roles)
    all_rows = ctx.data.sql(query).to_pylist()
    rows = [r for r in all_rows if int(r["jobs"]) >= cfg["min_jobs"]]
    checked = [
        f"{len(rows)} of {len(all_rows)} processes with >= {cfg['min_jobs']} queued jobs; "
        f"{days:.1f} days; dispersion of per-minute counts within hours (1 = Poisson)"
    ]
    if not rows:
        return na(
            "INSUFFICIENT_DATA",
            f"No process has {cfg['min_jobs']} queued jobs to test its arrivals.",
            checked=checked,
        )
    tested = []
    for r in rows:
        df = 59.0 * int(r["hours"])
        stat = max(0.0, float(r["stat"]))
        index = stat / df
        p_value = float(stats.chi2.sf(stat, df))
        tested.append((r["p"], int(r["jobs"]), index, p_value, df))
    candidates = sorted(
        (t for t in tested if t[2] >= cfg["min_dispersion"] and t[3] < cfg["alpha"]),
        key=lambda t: (-t[2], t[0]),
    )
    for name, jobs, index, p_value, _ in sorted(tested):
        checked.append(
            f"{name}: {jobs} jobs, dispersion index {index:.2f} (needs >= "
            f"{cfg['min_dispersion']:g}), chi-square p = {p_value:.2g}"
        )
    skipped = candidates[cfg["max_candidates"] :]
    if skipped:
        checked.append(
            f"examined {cfg['max_candidates']} of {len(candidates)} over-dispersed processes "
            f"(largest index first); not examined: {', '.join(t[0] for t in skipped)}"
        )
    months = max(days, 1.0) / DAYS_PER_MONTH
    findings = []
    for name, jobs, index, p_value, df in candidates[: cfg["max_candidates"]]:
        found = _examine(ctx, roles, cfg, name, jobs, index, p_value, df, t0, t1, months)
        checked.append(found[1])
        if found[0] is not None:
            findings.append(found[0])
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            "No process's jobs arrive in bursts that cost enough queue wait to act on "
            "(index of dispersion, share of jobs in bursts and the burst jobs' extra wait "
            "all have to clear their thresholds).",
            checked=checked,
        )
    findings.sort(key=lambda f: (-float(f.impact.value if f.impact else 0.0), f.target))
    return ok(
        findings=findings,
        metrics={
            "flagged": [f.target for f in findings],
            "checked": checked,
            "span_days": days,
        },
    )


def _thresholds(ctx, roles, cfg, name: str, t0: int, t1: int) -> dict[int, int]:
    """The burst count of each hour of the week: the Poisson count at the process's
    expected rate (interquartile mean over the weeks, zero hours included) that is
    reached with probability <= burst_alpha, and at least min_burst_jobs."""
    h0, h1 = t0 // (60 * MINUTE_US), t1 // (60 * MINUTE_US)
    q = (
        f"WITH {_events_cte(ctx, roles)} SELECT h, CAST(n AS BIGINT) AS n FROM hrs "
        f"WHERE p = {string_literal(name)} ORDER BY h"
    )
    counts = np.zeros(h1 - h0 + 1, dtype=np.float64)
    for r in ctx.data.sql(q).to_pylist():
        counts[int(r["h"]) - h0] = float(r["n"])
    hours = np.arange(h0, h1 + 1, dtype=np.int64)
    how = (hours + MONDAY_SHIFT) % HOURS_PER_WEEK
    out = {}
    for k in range(HOURS_PER_WEEK):
        week_counts = counts[how == k]
        rate = float(stats.trim_mean(week_counts, 0.25)) if week_counts.size else 0.0
        per_minute = max(rate, FLOOR_PER_HOUR) / 60.0
        limit = int(stats.poisson.isf(cfg["burst_alpha"], per_minute)) + 1
        out[k] = max(cfg["min_burst_jobs"], limit)
    return out


def burst_cte(ctx, roles, name: str, thresholds: dict[int, int]) -> str:
    values = ", ".join(f"({k}, {thresholds[k]})" for k in sorted(thresholds))
    where = f" AND CAST({_q(roles['process'])} AS VARCHAR) = {string_literal(name)}"
    return (
        f"WITH {_events_cte(ctx, roles, where)}, "
        f"thr(how, k) AS (VALUES {values}), "
        f"bm AS (SELECT mins.m, mins.c FROM mins JOIN thr ON thr.how = {_how('mins.m // 60')} "
        "WHERE mins.c >= thr.k), "
        "runs AS (SELECT m, c, m - row_number() OVER (ORDER BY m) AS g FROM bm), "
        "bursts AS (SELECT min(m) AS m0, sum(c) AS size FROM runs GROUP BY g)"
    )


def _examine(ctx, roles, cfg, name, jobs, index, p_value, df, t0, t1, months):
    thresholds = _thresholds(ctx, roles, cfg, name, t0, t1)
    cte = burst_cte(ctx, roles, name, thresholds)
    marks_q = (
        f"{cte} SELECT CAST(m0 % 60 AS BIGINT) AS mark, CAST(count(*) AS BIGINT) AS bursts, "
        "CAST(sum(size) AS BIGINT) AS jobs, CAST(max(size) AS BIGINT) AS largest "
        "FROM bursts GROUP BY 1 ORDER BY 1"
    )
    wait_q = (
        f"{cte} SELECT bm.m IS NOT NULL AS in_burst, CAST(count(*) AS BIGINT) AS jobs, "
        "CAST(count(ev.s) FILTER (WHERE ev.s >= ev.t) AS BIGINT) AS waited, "
        "avg((ev.s - ev.t) / 1e6) FILTER (WHERE ev.s >= ev.t) AS mean_wait_s, "
        "median((ev.s - ev.t) / 1e6) FILTER (WHERE ev.s >= ev.t) AS median_wait_s "
        f"FROM ev LEFT JOIN bm ON bm.m = ev.t // {MINUTE_US} GROUP BY 1 ORDER BY 1"
    )
    marks = ctx.data.sql(marks_q).to_pylist()
    waits = {bool(r["in_burst"]): r for r in ctx.data.sql(wait_q).to_pylist()}
    n_bursts = sum(int(r["bursts"]) for r in marks)
    burst_jobs = sum(int(r["jobs"]) for r in marks)
    share = burst_jobs / jobs if jobs else 0.0
    inside, outside = waits.get(True), waits.get(False)
    excess = 0.0
    if inside and outside and None not in (inside["mean_wait_s"], outside["mean_wait_s"]):
        excess = float(inside["mean_wait_s"]) - float(outside["mean_wait_s"])
    waited = int(inside["waited"]) if inside else 0
    hours = max(0.0, excess) * waited / 3600.0 / months
    line = (
        f"{name}: {n_bursts} bursts holding {burst_jobs} of {jobs} jobs ({share:.1%}, needs "
        f">= {cfg['min_share']:.0%}); burst jobs wait {excess:+.0f} s on average vs the "
        f"others = {hours:.1f} h/month (needs >= {cfg['min_hours_per_month']:g})"
    )
    if share < cfg["min_share"] or hours < cfg["min_hours_per_month"] or n_bursts == 0:
        return None, line
    top = sorted(marks, key=lambda r: (-int(r["jobs"]), int(r["mark"])))[:3]
    top_share = sum(int(r["jobs"]) for r in top) / burst_jobs
    largest = max(int(r["largest"]) for r in marks)
    mean_size = burst_jobs / n_bursts
    per_month = burst_jobs / months
    marks_txt = ", ".join(f":{int(r['mark']):02d} ({int(r['jobs'])} jobs)" for r in top)
    metrics = {
        "dispersion_index": index,
        "chi2_df": df,
        "p_value": p_value,
        "jobs": jobs,
        "bursts": n_bursts,
        "burst_jobs": burst_jobs,
        "share_in_bursts": share,
        "mean_burst_size": mean_size,
        "largest_burst": largest,
        "bursts_per_day": n_bursts / max((t1 - t0) / 86400e6, 1.0),
        "top_minute_marks": ",".join(f"{int(r['mark']):02d}" for r in top),
        "top_marks_share": top_share,
        "burst_mean_wait_s": float(inside["mean_wait_s"]) if inside else None,
        "other_mean_wait_s": float(outside["mean_wait_s"]) if outside else None,
        "burst_median_wait_s": float(inside["median_wait_s"])
        if inside and inside["median_wait_s"] is not None
        else None,
        "other_median_wait_s": float(outside["median_wait_s"])
        if outside and outside["median_wait_s"] is not None
        else None,
        "excess_wait_s": excess,
        "burst_jobs_per_month": per_month,
        "wait_hours_per_month": hours,
        "burst_threshold_min": min(thresholds.values()),
        "burst_threshold_max": max(thresholds.values()),
    }
    finding = Finding(
        kind="arrival_burst",
        title=f"{name}'s jobs arrive in bursts of about {mean_size:.0f}",
        severity="high" if share >= 0.25 else "medium",
        confidence=max(0.0, min(0.99, 1.0 - p_value)),
        target=name,
        what=(
            f"{burst_jobs} of {jobs} jobs of {name} ({share:.0%}) arrived in {n_bursts} bursts "
            f"(mean {mean_size:.0f} jobs, largest {largest}, within a minute or a few), far "
            f"beyond its own rate for the hour of the week; per-minute counts are "
            f"{index:.1f}x as dispersed as Poisson arrivals. The bursts start most often at "
            f"{marks_txt} past the hour ({top_share:.0%} of burst jobs at these marks)."
        ),
        why=(
            f"Jobs that arrive together wait for each other: burst jobs waited {excess:.0f} s "
            f"longer on average than {name}'s other jobs, {hours:.1f} h of queue wait a month "
            "that an even arrival stream would not cause."
        ),
        recommendation=(
            f"Stagger the triggering schedule of {name}: spread what submits its bursts "
            "(batch triggers, upstream hand-offs, cron entries at the same minute) over "
            "the hour, or rate-limit its submission."
        ),
        evidence=Evidence(
            columns=(roles["process"], roles["queued"], roles["started"]),
            metrics=metrics,
            query=wait_q,
            rows=jobs,
        ),
        measurement="modeled",
        impact=Impact(
            value=hours,
            unit="hours/month",
            description=f"queue wait a month caused by {name}'s bursts",
            assumptions=(
                "a burst job would wait as long as the process's other jobs (mean) if its "
                "arrival were spread out",
                f"the observed {months:.1f} months are representative; a month is "
                f"{DAYS_PER_MONTH:.2f} days",
            ),
        ),
    )
    return finding, line
