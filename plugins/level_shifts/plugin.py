"""level_shifts: a quantity column whose typical level jumps, or keeps growing, over time.

For tables that are not event logs (a sales table, a sensor table): the median of each
quantity column per period (a day, or a longer period when the table is sparse) of the
table's first timestamp column, from one SQL aggregate. A strong weekly rhythm is taken
out first (robust STL), then the log medians are cut by binary segmentation and gated as
changepoints gates a cut, or tested for a monotonic trend (Mann-Kendall, Sen's slope) as
monotonic_trend does (``contracts.series`` holds the shared rules). Event logs are left to
changepoints and monotonic_trend.
"""

from __future__ import annotations

import math
from datetime import date, datetime

import numpy as np

from contracts import QUANTITY_SEMANTICS, Evidence, Finding, na, ok
from contracts.logs import event_log_na
from contracts.series import (
    best_step_sse,
    evaluate_cut,
    linear_sse,
    mann_kendall,
    shift_cuts,
    weekly_rhythm,
)
from contracts.sql import quote_ident as _q
from contracts.sql import timestamp_expr
from contracts.units import DAYS_PER_MONTH

PERIOD_DAYS = {
    "hour": 1 / 24,
    "day": 1.0,
    "week": 7.0,
    "month": DAYS_PER_MONTH,
    "quarter": 365.25 / 4,
    "year": 365.25,
}
CONSTANT_TEXT = "a constant series"


def _settings(ctx) -> dict[str, float]:
    s = ctx.settings
    return {
        "min_relative_shift": float(s.get("min_relative_shift", 0.5)),
        "min_relative_change": float(s.get("min_relative_change", 0.3)),
        "alpha": float(s.get("alpha", 0.001)),
        "min_consistency": float(s.get("min_consistency", 0.8)),
        "max_step_to_line_sse": float(s.get("max_step_to_line_sse", 0.8)),
        "penalty_factor": float(s.get("penalty_factor", 3.0)),
        "max_changepoints": int(s.get("max_changepoints", 5)),
        "min_segment_periods": int(s.get("min_segment_periods", 7)),
        "min_periods": int(s.get("min_periods", 21)),
        "min_rows_per_period": int(s.get("min_rows_per_period", 5)),
        "min_weekly_strength": float(s.get("min_weekly_strength", 0.6)),
        "max_columns": int(s.get("max_columns", 40)),
    }


def _ts(ctx, column: str) -> str:
    return timestamp_expr(column, ctx.data.column(column).dtype)


def choose_period(ctx, ts: str, cfg) -> tuple[str | None, list[str]]:
    """The finest period in which ``min_periods`` periods, and at least half of the
    periods the span covers, hold ``min_rows_per_period`` rows (hour only for a table
    spanning fewer than ``min_periods`` days)."""
    span = ctx.data.sql(
        f"SELECT date_diff('second', min({ts}), max({ts})) / 86400.0 AS d FROM data"
    ).to_pylist()[0]["d"]
    span_days = float(span or 0.0)
    need, per = int(cfg["min_periods"]), int(cfg["min_rows_per_period"])
    notes = [f"time span {span_days:.1f} days"]
    order = list(PERIOD_DAYS) if span_days < need else list(PERIOD_DAYS)[1:]
    for period in order:
        if span_days / PERIOD_DAYS[period] < need - 1:
            notes.append(f"{period}: the span holds fewer than {need} periods")
            break
        full = ctx.data.sql(
            f"SELECT CAST(count(*) AS BIGINT) AS k FROM (SELECT date_trunc('{period}', {ts}) "
            f"AS p FROM data WHERE {ts} IS NOT NULL GROUP BY 1 HAVING count(*) >= {per})"
        ).to_pylist()[0]["k"]
        total = math.floor(span_days / PERIOD_DAYS[period]) + 1
        wanted = max(need, math.ceil(total / 2))
        notes.append(
            f"{period}: {int(full)} of {total} periods with >= {per} rows (needs {wanted}: "
            f"{need}, and half the span)"
        )
        if int(full) >= wanted:
            return period, notes
    return None, notes


def series_query(ctx, ts: str, period: str, columns: list[str]) -> str:
    cols = ", ".join(
        f"CAST(count({_q(c)}) AS BIGINT) AS n{i}, "
        f"quantile_cont(CAST({_q(c)} AS DOUBLE), 0.5) AS m{i}"
        for i, c in enumerate(columns)
    )
    return (
        f"SELECT CAST(date_trunc('{period}', {ts}) AS TIMESTAMP) AS period, {cols} "
        f"FROM data WHERE {ts} IS NOT NULL GROUP BY 1 ORDER BY 1"
    )


def analyse(periods: list[datetime], counts, medians, period: str, cfg) -> dict:
    """Weekly rhythm, level shift and trend of one column's period medians (all > 0)."""
    x = np.array([(p - periods[0]).total_seconds() / 86400.0 for p in periods])
    y = np.log(np.asarray(medians, dtype=float))
    jobs = np.asarray(counts, dtype=float)
    effect = None
    strength = None
    if period == "day":
        days: list[date] = [p.date() for p in periods]
        weekly = weekly_rhythm(days, [float(v) for v in y], 3)
        if weekly is not None:
            strength = float(weekly["strength"])
            if strength >= cfg["min_weekly_strength"]:
                effect = [float(v) for v in weekly["weekday_effect"]]
                y = y - np.array([effect[d.weekday()] for d in days])
    raw = np.exp(y)
    m = int(cfg["min_segment_periods"])
    if float(x[-1]) >= 2 * 365.25:  # two years or more: a season is never a shift
        m = max(m, math.ceil(365.25 / PERIOD_DAYS[period]))
    cuts = shift_cuts(y, m, cfg["penalty_factor"], int(cfg["max_changepoints"]))
    bounds = [0, *cuts, y.size]
    evaluated = [
        evaluate_cut(periods, raw, y, x, jobs, bounds[i - 1], bounds[i], bounds[i + 1], cfg, 0.0)
        for i in range(1, len(bounds) - 1)
    ]
    passed = [e for e in evaluated if e["passed"]]
    # qualifying cuts both up and down: a cycle or a passing episode, not a lasting change
    both_ways = len({float(e["relative_shift"]) > 0 for e in passed}) > 1
    best = (
        max(passed, key=lambda e: abs(float(e["log_ratio"]))) if passed and not both_ways else None
    )
    mk = mann_kendall(x, raw)
    start = mk["intercept"] + mk["slope"] * float(x[0])
    end = mk["intercept"] + mk["slope"] * float(x[-1])
    level = start if start > 0 else float(np.median(raw))
    rel = (end - start) / level
    step = best_step_sse(y, m)
    line = linear_sse(x, y)
    step_ratio = (step / line if line > 0 else 1.0) if step is not None else 1.0
    trend_passed = (
        abs(rel) >= cfg["min_relative_change"]
        and mk["p_value"] < cfg["alpha"]
        and step_ratio > cfg["max_step_to_line_sse"]
    )
    return {
        "n": int(y.size),
        "min_segment": m,
        "cuts": evaluated,
        "shift": best,
        "both_ways": both_ways,
        "trend": {
            **mk,
            "start": start,
            "end": end,
            "relative_change": rel,
            "step_to_line_sse": step_ratio,
            "passed": trend_passed,
        },
        "weekly_strength": strength,
        "deseasonalized": effect is not None,
        "first": periods[0],
        "last": periods[-1],
    }


def run(ctx):
    cfg = _settings(ctx)
    if (not_here := event_log_na(ctx)) is not None:
        return not_here
    stamps = ctx.data.names("timestamp")
    quantities = ctx.data.names("numeric", semantic=list(QUANTITY_SEMANTICS))
    if not stamps or not quantities:
        return na(
            "NOT_APPLICABLE",
            "Needs a timestamp column and a quantity column.",
            checked=[f"{len(stamps)} timestamp columns, {len(quantities)} quantity columns"],
        )
    column_ts = stamps[0]
    ts = _ts(ctx, column_ts)
    limit = int(cfg["max_columns"])
    columns = quantities[:limit]
    coverage = (
        f"checked {len(columns)} of {len(quantities)} quantity columns (the first {limit} in "
        f"dataset order) over {column_ts}, the first timestamp column in dataset order"
        + (f" (not: {', '.join(stamps[1:])})" if len(stamps) > 1 else "")
    )
    period, notes = choose_period(ctx, ts, cfg)
    checked = [coverage, *notes]
    if period is None:
        return na(
            "INSUFFICIENT_DATA",
            f"No period of {column_ts} gives {int(cfg['min_periods'])} periods with at least "
            f"{int(cfg['min_rows_per_period'])} rows: there is no series to analyse.",
            checked=checked,
        )
    query = series_query(ctx, ts, period, columns)
    rows = ctx.data.sql(query).to_pylist()
    findings = []
    tested = 0
    for i, col in enumerate(columns):
        pts = [
            r
            for r in rows
            if r["period"] is not None
            and r[f"m{i}"] is not None
            and int(r[f"n{i}"]) >= int(cfg["min_rows_per_period"])
        ]
        if len(pts) < int(cfg["min_periods"]):
            checked.append(
                f"{col}: {len(pts)} {period}s with >= {int(cfg['min_rows_per_period'])} "
                f"values (needs {int(cfg['min_periods'])})"
            )
            continue
        medians = [float(r[f"m{i}"]) for r in pts]
        if min(medians) <= 0:
            checked.append(f"{col}: a {period} median <= 0, so no relative level; skipped")
            continue
        if max(medians) == min(medians):
            checked.append(f"{col}: {CONSTANT_TEXT} of {period} medians; skipped")
            continue
        tested += 1
        res = analyse(
            [r["period"] for r in pts], [int(r[f"n{i}"]) for r in pts], medians, period, cfg
        )
        t = res["trend"]
        largest = max((abs(float(e["relative_shift"])) for e in res["cuts"]), default=0.0)
        checked.append(
            f"{col}: {res['n']} {period}s (>= {res['min_segment']} on each side of a cut)"
            + (f", weekly rhythm {res['weekly_strength']:.2f}" if res["weekly_strength"] else "")
            + (" (divided out)" if res["deseasonalized"] else "")
            + f"; {len(res['cuts'])} candidate cut(s), largest shift {largest:.0%}"
            + (
                " (qualifying cuts go up and down: a cycle, not reported)"
                if res["both_ways"]
                else ""
            )
            + f"; trend tau {t['tau']:+.2f} (p = {t['p_value']:.2g}), change "
            f"{t['relative_change']:+.0%}, step/line SSE {t['step_to_line_sse']:.2f}"
        )
        sub = series_query(ctx, ts, period, [col])
        if res["shift"] is not None:
            findings.append(_shift_finding(col, column_ts, period, res, sub))
        elif t["passed"]:
            findings.append(_trend_finding(col, column_ts, period, res, sub))
    metrics = {"checked": coverage, "period": period, "columns_tested": tested}
    if tested == 0:
        return na(
            "INSUFFICIENT_DATA",
            f"No quantity column has {int(cfg['min_periods'])} {period}s with enough positive "
            "values: there is no series to analyse.",
            checked=checked,
            metrics=metrics,
        )
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No quantity column's {period} median shifts by {cfg['min_relative_shift']:.0%} "
            f"or more, or trends by {cfg['min_relative_change']:.0%} or more, at p < "
            f"{cfg['alpha']:g} ({tested} columns tested over {column_ts}).",
            checked=checked,
            metrics=metrics,
        )
    findings.sort(key=lambda f: (f.target, f.kind))
    return ok(findings=findings, metrics={**metrics, "flagged": [f.target for f in findings]})


def _iso(value) -> str:
    return value.date().isoformat() if isinstance(value, datetime) else str(value)


def _shift_finding(col: str, ts_col: str, period: str, res: dict, query: str) -> Finding:
    best = res["shift"]
    before, after = float(best["before"]), float(best["after"])
    rel, p_value = float(best["relative_shift"]), float(best["p_value"])
    when = _iso(best["date"])
    up = after > before
    metrics = {
        "change_date": when,
        "period": period,
        "timestamp_column": ts_col,
        "before_median": before,
        "after_median": after,
        "relative_shift": rel,
        "ratio": after / before,
        "periods_before": int(best["days_before"]),
        "periods_after": int(best["days_after"]),
        "consistency": float(best["consistency"]),
        "step_to_line_sse": float(best["step_to_line_sse"]),
        "p_value": p_value,
        "test": f"Mann-Whitney U (two-sided) on {period} medians before vs after",
        "periods_in_series": int(res["n"]),
        "deseasonalized": bool(res["deseasonalized"]),
    }
    return Finding(
        kind="level_shift",
        title=f"{col} shifted {'up' if up else 'down'} {abs(rel):.0%} around {when}",
        severity="high" if abs(math.log(after / before)) >= math.log(2.0) else "medium",
        confidence=max(0.0, min(0.99, 1.0 - p_value)),
        target=col,
        what=(
            f"The {period} median of {col} moved from about {before:.4g} to {after:.4g} "
            f"({rel:+.0%}) around {when} ({ts_col}), and stayed there."
        ),
        why=(
            f"Binary segmentation of the log {period} medians puts a cut there; "
            f"{float(best['consistency']):.0%} of the {period}s on each side sit on their side "
            f"of the midpoint, a Mann-Whitney U test separates them (p = {p_value:.2g}), and a "
            "single step fits far better than a straight line: a change at one moment, not a "
            "drift."
        ),
        recommendation=(
            f"Find what changed around {when} (a price list, a supplier, a unit or rounding "
            f"rule, a new data source or sensor calibration) and decide whether the new level "
            f"of {col} is intended; if not, fix the cause and correct the values since {when}."
        ),
        evidence=Evidence(columns=(col, ts_col), metrics=metrics, query=query, rows=int(res["n"])),
    )


def _trend_finding(col: str, ts_col: str, period: str, res: dict, query: str) -> Finding:
    t = res["trend"]
    start, end = float(t["start"]), float(t["end"])
    rel, p_value = float(t["relative_change"]), float(t["p_value"])
    first, last = _iso(res["first"]), _iso(res["last"])
    up = rel > 0
    metrics = {
        "kendall_tau": float(t["tau"]),
        "p_value": p_value,
        "test": f"Mann-Kendall (scipy.stats.kendalltau on time vs {period} median)",
        "sens_slope_per_day": float(t["slope"]),
        "trend_start": start,
        "trend_end": end,
        "relative_change": rel,
        "first_period": first,
        "last_period": last,
        "period": period,
        "timestamp_column": ts_col,
        "periods_tested": int(res["n"]),
        "step_to_line_sse": float(t["step_to_line_sse"]),
        "deseasonalized": bool(res["deseasonalized"]),
    }
    return Finding(
        kind="quantity_trend",
        title=f"{col} trends {'up' if up else 'down'} {abs(rel):.0%}",
        severity="high" if abs(rel) >= 1.0 else "medium",
        confidence=max(0.0, min(0.99, 1.0 - p_value)),
        target=col,
        what=(
            f"The {period} median of {col} moved from about {start:.4g} to {end:.4g} between "
            f"{first} and {last} ({rel:+.0%}; Sen's slope {float(t['slope']):+.4g} a day over "
            f"{int(res['n'])} {period}s of {ts_col})."
        ),
        why=(
            f"A Mann-Kendall test finds a monotonic trend (tau {float(t['tau']):+.2f}, "
            f"p = {p_value:.2g}), and a straight line fits at least as well as a single level "
            "shift: the level drifts steadily rather than changing once."
        ),
        recommendation=(
            f"Confirm whether the steady {'growth' if up else 'decline'} of {col} is expected "
            "(growth, inflation, ageing equipment, a slow leak in a process); plan with the "
            f"trend rather than the average, and alert when a {period}'s median leaves the "
            "trend line."
        ),
        evidence=Evidence(columns=(col, ts_col), metrics=metrics, query=query, rows=int(res["n"])),
    )
