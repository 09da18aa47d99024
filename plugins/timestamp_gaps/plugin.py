"""timestamp_gaps: stretches of time in which a timestamp column has no events at all.

Per timestamp column, the intervals between consecutive distinct timestamps: their
median and 99th percentile from time_coverage (whose sort of the column finds them),
or from a sort of its own; the gaps beyond the threshold below from the earliest and
latest timestamp of buckets no wider than it (one grouping pass, exact: see
:func:`gaps_over`). A gap is a candidate when it is longer than
``p99_multiple`` times the 99th percentile interval and longer than ``min_gap_hours``.
Scheduled quiet periods are not anomalies: the candidate's window is shifted by whole
periods (weeks when the data spans at least three weeks, else days) and the events in
each shifted copy are counted. The median count is what the window normally holds; a
gap is kept only when seeing no events at all is improbable given that count (Poisson
probability of zero, scipy.stats.poisson, below ``alpha``). A nightly or weekend
shutdown holds (almost) nothing in the other weeks too, so it is dropped; a gap as long
as a whole period cannot be compared and is kept.

Timestamp columns usually move together (queued, started and ended times of the same
jobs), so gaps that overlap those of an earlier column (queued before started before
ended, then dataset order) are reported once, on that column, listing the others.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
from scipy import stats

from contracts import Evidence, Finding, Impact, Ok, na, ok
from contracts.intervals import intervals, values_query
from contracts.sql import quote_ident as _q
from contracts.sql import timestamp_expr

UPSTREAM = "time_coverage"
DAY_US = 86_400 * 1_000_000
WEEK_US = 7 * DAY_US
HOUR_US = 3_600 * 1_000_000


def _iso(us: int) -> str:
    """Microseconds since the epoch as an ISO timestamp (UTC, as stored)."""
    return datetime.fromtimestamp(us / 1e6, tz=UTC).replace(tzinfo=None).isoformat()


def _us(iso: str) -> int:
    """time_coverage's ISO timestamp (whole microseconds) back as microseconds."""
    return (datetime.fromisoformat(iso) - datetime(1970, 1, 1)) // timedelta(microseconds=1)


def _hours(us: float) -> str:
    h = us / HOUR_US
    return f"{h / 24:.1f} days" if h >= 48 else f"{h:.1f} h"


def intervals_query(col: str, dtype: str, top: int) -> str:
    """Interval quantiles between consecutive distinct timestamps, and the largest gaps:
    the SQL of what :func:`sorted_figures` computes (a finding's evidence)."""
    t = timestamp_expr(col, dtype)
    return (
        f"WITH t AS (SELECT DISTINCT epoch_us({t}) AS u FROM data WHERE {t} IS NOT NULL), "
        "d AS MATERIALIZED (SELECT lag(u) OVER (ORDER BY u) AS prev, u FROM t), "
        "q AS (SELECT count(*) AS distinct_n, min(u) AS first_us, max(u) AS last_us, "
        "quantile_cont(u - prev, [0.5, 0.99]) AS q FROM d), "
        f"g AS (SELECT prev AS start_us, u AS end_us, u - prev AS gap_us FROM d "
        f"WHERE prev IS NOT NULL ORDER BY gap_us DESC, start_us LIMIT {int(top)}) "
        "SELECT q.*, list(g ORDER BY g.gap_us DESC, g.start_us) FILTER "
        "(WHERE g.start_us IS NOT NULL) AS gaps FROM q LEFT JOIN g ON true "
        "GROUP BY ALL"
    )


def sorted_figures(ctx, col: str, dtype: str, top: int) -> dict:
    """:func:`intervals_query`'s row, from one read of the column's values sorted in numpy
    (``contracts.intervals``, as time_coverage does)."""
    query = values_query(timestamp_expr(col, dtype))
    r = intervals(ctx.data.sql(query).column("u").to_numpy(), top)
    if r is None:
        return {"distinct_n": 0, "q": None, "first_us": None, "last_us": None, "gaps": []}
    return {
        "distinct_n": r["distinct_intervals"] + 1,
        "q": r["distinct_q"],
        "first_us": r["first_us"],
        "last_us": r["last_us"],
        # the largest intervals include zero ones only when fewer are positive
        "gaps": [
            {"start_us": end - gap, "end_us": end, "gap_us": gap}
            for gap, end in r["gaps"]
            if gap > 0
        ],
    }


def bucket_query(col: str, dtype: str, first_us: int, width_us: int) -> str:
    """Earliest and latest timestamp in each bucket of ``width_us`` from ``first_us``."""
    return (
        f"WITH t AS ({values_query(timestamp_expr(col, dtype))}) "
        f"SELECT (u - {int(first_us)}) // {int(width_us)} AS b, min(u) AS lo, max(u) AS hi "
        "FROM t GROUP BY b ORDER BY b"
    )


MAX_BUCKETS = 1_000_000
"""Above this many buckets the gaps are found by sorting the column instead."""


def gaps_over(ctx, col: str, dtype: str, first_us: int, last_us: int, threshold: float, k: int):
    """The ``k`` longest gaps longer than ``threshold`` between consecutive distinct
    timestamps (longest first, then earliest), without sorting the column: in buckets
    no wider than the threshold, two timestamps of one bucket are closer than it, so
    such a gap runs from the latest timestamp of a bucket to the earliest of the next
    non-empty one. ``None`` when that would take more than MAX_BUCKETS buckets."""
    width = max(1, int(threshold))
    if (last_us - first_us) // width + 1 > MAX_BUCKETS:
        return None
    rows = ctx.data.sql(bucket_query(col, dtype, first_us, width)).to_pylist()
    gaps = [
        {"start_us": int(a["hi"]), "end_us": int(b["lo"]), "gap_us": int(b["lo"]) - int(a["hi"])}
        for a, b in itertools.pairwise(rows)
        if int(b["lo"]) - int(a["hi"]) > threshold
    ]
    return sorted(gaps, key=lambda g: (-g["gap_us"], g["start_us"]))[:k]


def _from_coverage(upstream, col: str, dtype: str) -> dict | None:
    """time_coverage's figures of ``col`` that this plugin needs (its sort of the column
    found the intervals between distinct timestamps too), or ``None``."""
    plain = timestamp_expr(col, dtype) == f"TRY_CAST({_q(col)} AS TIMESTAMP)"
    if not isinstance(upstream, Ok) or not plain:
        return None  # zoned: time_coverage reads them in UTC, this plugin as they are
    m = upstream.metrics.get("columns", {}).get(col)
    if not isinstance(m, dict) or "distinct_interval_p99_us" not in m:
        return None
    return m


def recurrence_query(col: str, dtype: str, start_us: int, end_us: int, period_us: int) -> str:
    """Events per period-shifted copy ``k`` of the open window (start, end)."""
    t = timestamp_expr(col, dtype)
    return (
        f"WITH t AS (SELECT epoch_us({t}) - {int(start_us)} AS o FROM data "
        f"WHERE {t} IS NOT NULL) "
        f"SELECT CAST(floor(o / {int(period_us)}) AS BIGINT) AS k, count(*) AS n FROM t "
        f"WHERE ((o % {int(period_us)}) + {int(period_us)}) % {int(period_us)} "
        f"BETWEEN 1 AND {int(end_us - start_us) - 1} GROUP BY k ORDER BY k"
    )


def run(ctx):
    p99_multiple = float(ctx.settings.get("p99_multiple", 24.0))
    min_gap_hours = float(ctx.settings.get("min_gap_hours", 6.0))
    alpha = float(ctx.settings.get("alpha", 1e-6))
    min_distinct = int(ctx.settings.get("min_distinct", 100))
    max_gaps = int(ctx.settings.get("max_gaps", 20))

    columns = ctx.data.names("timestamp")
    if not columns:
        return na(
            "NOT_APPLICABLE",
            "There is no timestamp column in which to look for gaps.",
            checked=["timestamp columns: none"],
        )
    role_order = [ctx.data.event_role(r) for r in ("queued", "started", "ended")]
    priority = [c for c in role_order if c in columns]
    columns = priority + [c for c in columns if c not in priority]

    checked: list[str] = []
    per_column: dict[str, dict] = {}
    found: list[tuple[str, list[dict], dict]] = []
    time_coverage = ctx.upstream.get(UPSTREAM)
    for col in columns:
        dtype = ctx.data.column(col).dtype
        query = intervals_query(col, dtype, max_gaps + 1)
        known = _from_coverage(time_coverage, col, dtype)
        if known is None:
            row = sorted_figures(ctx, col, dtype, max_gaps + 1)
        else:  # the same figures, from time_coverage's pass over the sorted column
            first = known.get("first")
            row = {
                "distinct_n": known["distinct_timestamps"] if first else 0,
                "q": None
                if known["distinct_interval_p99_us"] is None
                else [known["distinct_interval_p50_us"], known["distinct_interval_p99_us"]],
                "first_us": _us(first) if first else None,
                "last_us": _us(known["last"]) if first else None,
                "gaps": None,
            }
        distinct_n = int(row["distinct_n"] or 0)
        if distinct_n < min_distinct or row["q"] is None:
            checked.append(
                f"{col}: skipped, {distinct_n} distinct timestamps (needs {min_distinct})"
            )
            continue
        median_us, p99_us = (float(v) for v in row["q"])
        threshold = max(p99_multiple * p99_us, min_gap_hours * HOUR_US)
        first_us, last_us = int(row["first_us"]), int(row["last_us"])
        span = last_us - first_us
        period = WEEK_US if span >= 3 * WEEK_US else DAY_US if span >= 3 * DAY_US else 0
        if row["gaps"] is None:
            row["gaps"] = gaps_over(ctx, col, dtype, first_us, last_us, threshold, max_gaps + 1)
        if row["gaps"] is None:  # too many buckets: sort the column after all
            row = sorted_figures(ctx, col, dtype, max_gaps + 1)
        candidates = [g for g in (row["gaps"] or []) if g["gap_us"] > threshold]
        truncated = len(candidates) > max_gaps
        candidates = candidates[:max_gaps]
        col_info = {
            "distinct_timestamps": distinct_n,
            "median_interval_s": median_us / 1e6,
            "p99_interval_s": p99_us / 1e6,
            "threshold_hours": threshold / HOUR_US,
            "candidate_gaps": len(candidates),
        }
        kept = []
        for g in candidates:
            s, e, gap = int(g["start_us"]), int(g["end_us"]), int(g["gap_us"])
            info = {
                "start_us": s,
                "end_us": e,
                "gap_us": gap,
                "coverage": None,
                "expected": None,
                "p_value": None,
                "periods": 0,
                "query": query,
            }
            if period and gap < period:
                rq = recurrence_query(col, dtype, s, e, period)
                counts = {int(r["k"]): int(r["n"]) for r in ctx.data.sql(rq).to_pylist()}
                ks = [
                    k
                    for k in range(-(span // period) - 1, span // period + 2)
                    if k != 0 and s + k * period >= first_us and e + k * period <= last_us
                ]
                if ks:
                    filled = [counts.get(k, 0) for k in ks]
                    coverage = sum(1 for c in filled if c > 0) / len(ks)
                    expected = float(np.median(filled))
                    info |= {
                        "coverage": coverage,
                        "expected": expected,
                        "periods": len(ks),
                        "p_value": float(stats.poisson.pmf(0, expected)),
                        "query": query + ";\n" + rq,
                    }
                    if not info["p_value"] < alpha:
                        unit = "weeks" if period == WEEK_US else "days"
                        checked.append(
                            f"{col}: gap {_iso(s)} .. {_iso(e)} ({_hours(gap)}) recurs: the "
                            f"same window holds a median of {expected:g} events in the other "
                            f"{len(ks)} {unit} (chance of none {info['p_value']:.2g}, "
                            f"needs < {alpha:g})"
                        )
                        continue
            kept.append(info)
        col_info["gaps"] = len(kept)
        per_column[col] = col_info
        checked.append(
            f"{col}: p99 interval {p99_us / 1e6:.0f}s, threshold {_hours(threshold)}; "
            f"{len(candidates)} longer gap(s){' (more not listed)' if truncated else ''}, "
            f"{len(kept)} not explained by a recurring quiet period"
        )
        if kept:
            found.append((col, kept, col_info))

    # one finding per incident: a column whose gaps all overlap an earlier column's
    groups: list[tuple[str, list[dict], dict, list[str]]] = []
    for col, gaps, info in found:
        for grp in groups:
            if all(any(_overlap(g, h) for h in grp[1]) for g in gaps):
                grp[3].append(col)
                break
        else:
            groups.append((col, gaps, info, []))

    findings = []
    for col, gaps, info, others in groups:
        gaps = sorted(gaps, key=lambda g: (-g["gap_us"], g["start_us"]))
        top = gaps[0]
        missing = sum(g["expected"] or 0.0 for g in gaps)
        listed = "; ".join(
            f"{_iso(g['start_us'])} .. {_iso(g['end_us'])} ({_hours(g['gap_us'])})"
            for g in gaps[:5]
        )
        metrics = {
            "gap_start": _iso(top["start_us"]),
            "gap_end": _iso(top["end_us"]),
            "gap_hours": top["gap_us"] / HOUR_US,
            "gaps": len(gaps),
            "total_gap_hours": sum(g["gap_us"] for g in gaps) / HOUR_US,
            "median_interval_s": info["median_interval_s"],
            "p99_interval_s": info["p99_interval_s"],
            "threshold_hours": info["threshold_hours"],
            "same_window_other_periods_with_events": top["coverage"],
            "periods_compared": top["periods"],
            "expected_events": top["expected"],
            "p_value": top["p_value"],
            "also_in_columns": ", ".join(others),
        }
        measured_missing = top["expected"] is not None
        findings.append(
            Finding(
                kind="timestamp_gap",
                title=f"{col} has no events for {_hours(top['gap_us'])} from "
                f"{_iso(top['start_us'])[:16]}",
                severity="high" if top["gap_us"] >= DAY_US else "medium",
                confidence=0.9 if measured_missing else 0.7,
                target=col,
                what=(
                    f"{col} has {len(gaps)} gap(s) with no events at all, far longer than its "
                    f"typical spacing (p99 interval {info['p99_interval_s']:.0f}s): {listed}."
                    + (f" The same gap appears in {', '.join(others)}." if others else "")
                ),
                why=(
                    "Arrivals do not stop for that long in normal operation"
                    + (
                        f": the same window held a median of {top['expected']:.0f} events in "
                        f"the other {top['periods']} comparable periods "
                        f"(probability of none by chance {top['p_value']:.2g})"
                        if measured_missing
                        else ""
                    )
                    + ". Either the system was down or events were lost in collection; "
                    "rates, trends and capacity figures computed over this span are biased."
                ),
                recommendation=(
                    f"Check the source system and the ingestion pipeline for "
                    f"{_iso(top['start_us'])} .. {_iso(top['end_us'])}; backfill the missing "
                    "events if they exist, otherwise exclude the window from rate, trend and "
                    "capacity analyses and add an alert on arrival silence longer than "
                    f"{_hours(info['threshold_hours'] * HOUR_US)}."
                ),
                evidence=Evidence(
                    columns=(col, *others),
                    metrics=metrics,
                    query=top["query"],
                    rows=0,
                ),
                measurement="modeled" if measured_missing else "measured",
                impact=Impact(
                    value=missing,
                    unit="events",
                    description="events probably missing from the gap(s)",
                    assumptions=(
                        "the gap window would hold as many events as the median of the same "
                        "window in the other comparable periods (weeks or days)",
                        "the volume pattern of the observed period is representative",
                    ),
                )
                if measured_missing
                else None,
            )
        )
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No timestamp column has an unexplained gap longer than {p99_multiple:g}x its "
            f"p99 interval and {min_gap_hours:g} h ({len(columns)} column(s) checked; "
            "recurring quiet periods such as nights and weekends are not gaps).",
            checked=checked,
            metrics={"columns": per_column},
        )
    return ok(findings=findings, metrics={"columns": per_column})


def _overlap(a: dict, b: dict) -> bool:
    """Whether two gaps overlap by at least half of the shorter one."""
    inter = min(a["end_us"], b["end_us"]) - max(a["start_us"], b["start_us"])
    return inter > 0 and inter >= 0.5 * min(a["gap_us"], b["gap_us"])
