"""time_coverage: span, sampling intervals, gaps and rows per day of timestamp columns."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import numpy as np

from contracts import Evidence, Finding, na, ok
from contracts.intervals import intervals, values_query
from contracts.sql import quote_ident as _q

_EPOCH = datetime(1970, 1, 1)


def _ts(name: str, dtype: str) -> str:
    """Column ``name`` as a TIMESTAMP; zoned values are converted to UTC first."""
    kind = dtype.upper()
    if "TIMESTAMP" in kind and ("TZ" in kind or "TIME ZONE" in kind):
        return f"timezone('UTC', {_q(name)})"
    return f"TRY_CAST({_q(name)} AS TIMESTAMP)"


def _iso(us: float) -> str:
    return (_EPOCH + timedelta(microseconds=round(us))).isoformat()


def _duration(seconds: float) -> str:
    """A duration for people: seconds, minutes, hours or days."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.3g} s"


def intervals_query(ts: str, top: int) -> str:
    """The SQL of the interval figures :func:`contracts.intervals.intervals` computes (a
    finding's evidence: one window over the sorted column)."""
    return (
        f"WITH t AS (SELECT epoch_us({ts}) AS u FROM data WHERE {ts} IS NOT NULL), "
        "d AS (SELECT u, u - lag(u) OVER (ORDER BY u) AS dt FROM t) "
        "SELECT count(*) AS n, min(u) AS first_us, max(u) AS last_us, count(dt) AS intervals, "
        "CAST(count_if(dt = 0) AS BIGINT) AS zero_intervals, "
        "quantile_cont(dt, [0.5, 0.9, 0.99]) AS q, avg(dt) AS mean_dt, "
        # the intervals between distinct timestamps are the positive ones (for
        # timestamp_gaps, which would sort the column again to find them)
        "count_if(dt > 0) AS distinct_intervals, "
        "quantile_cont(dt, [0.5, 0.99]) FILTER (WHERE dt > 0) AS distinct_q, "
        f"max(dt, {int(top)}) AS gap_us, max_by(u, dt, {int(top)}) AS gap_end_us FROM d"
    )


def daily_query(ts: str) -> str:
    return (
        f"SELECT CAST({ts} AS DATE) AS day, count(*) AS n FROM data "
        f"WHERE {ts} IS NOT NULL GROUP BY 1 ORDER BY 1"
    )


def _daily(first: date, dense: np.ndarray, max_days: int) -> dict[str, object]:
    total = int(dense.size)
    width = max(1, math.ceil(total / max_days))
    buckets = math.ceil(total / width)
    padded = np.zeros(buckets * width, dtype=np.int64)
    padded[:total] = dense
    counts = padded.reshape(buckets, width).sum(axis=1)
    return {
        "days_spanned": total,
        "days_with_rows": int((dense > 0).sum()),
        "days_without_rows": int((dense == 0).sum()),
        "rows_per_day_max": int(dense.max()),
        "rows_per_day_median": float(np.median(dense)),
        "rows_per_day_min": int(dense.min()),
        "daily_counts": {
            "bucket_days": width,
            "counts": counts.tolist(),
            "start": first.isoformat(),
        },
    }


def run(ctx):
    max_columns = int(ctx.settings.get("max_columns", 20))
    max_days = int(ctx.settings.get("max_days", 400))
    top = int(ctx.settings.get("top_gaps", 5))

    stamps = ctx.data.names(role="timestamp")
    if not stamps:
        return na(
            "NOT_APPLICABLE",
            "The dataset has no timestamp columns whose coverage could be described.",
            checked=["column roles: no column has role 'timestamp'"],
        )
    described = stamps[:max_columns]
    skipped = stamps[max_columns:]

    per_column: dict[str, dict[str, object]] = {}
    findings = []
    for name in sorted(described):
        ts = _ts(name, ctx.data.column(name).dtype)
        query = intervals_query(ts, top)
        r = intervals(ctx.data.sql(values_query(ts)).column("u").to_numpy(), top)
        if r is None:
            per_column[name] = {"rows": 0}
            continue
        n = int(r["n"])
        first_us, last_us = int(r["first_us"]), int(r["last_us"])
        span_us = last_us - first_us
        q = r["q"] or [None, None, None]
        dq = r["distinct_q"] or [None, None]
        m: dict[str, object] = {
            "rows": n,
            "null_count": ctx.data.rows - n,
            "first": _iso(first_us),
            "last": _iso(last_us),
            "span_seconds": span_us / 1e6,
            "span_days": span_us / 86400e6,
            "q25_time": _iso(first_us + 0.25 * span_us),
            "q75_time": _iso(first_us + 0.75 * span_us),
            "intervals": int(r["intervals"]),
            "zero_intervals": int(r["zero_intervals"]),
            "median_interval_s": None if q[0] is None else float(q[0]) / 1e6,
            "p90_interval_s": None if q[1] is None else float(q[1]) / 1e6,
            "p99_interval_s": None if q[2] is None else float(q[2]) / 1e6,
            "mean_interval_s": None if r["mean_dt"] is None else float(r["mean_dt"]) / 1e6,
            "distinct_timestamps": int(r["distinct_intervals"]) + 1,
            "distinct_interval_p50_us": None if dq[0] is None else float(dq[0]),
            "distinct_interval_p99_us": None if dq[1] is None else float(dq[1]),
            "largest_gaps": [
                {"end": _iso(end), "seconds": dt / 1e6, "start": _iso(end - dt)}
                for dt, end in r["gaps"]
            ],
        }
        d_query = daily_query(ts)
        m |= _daily(r["first_day"], r["per_day"], max_days)
        gaps = m["largest_gaps"]
        m["max_gap_s"] = gaps[0]["seconds"] if gaps else None
        per_column[name] = dict(sorted(m.items()))

        median = m["median_interval_s"]
        interval_text = (
            f"median interval {_duration(median)} (p99 {_duration(m['p99_interval_s'])}), "
            f"largest gap {_duration(gaps[0]['seconds'])} from {gaps[0]['start']} to "
            f"{gaps[0]['end']}"
            if median is not None and gaps
            else "a single distinct instant"
        )
        findings.append(
            Finding(
                kind="time_coverage",
                title=f"Time coverage of {name}",
                severity="info",
                confidence=1.0,
                target=name,
                what=(
                    f"{name}: {n} values from {m['first']} to {m['last']} "
                    f"({m['span_days']:.1f} days); {interval_text}; rows on "
                    f"{m['days_with_rows']} of {m['days_spanned']} days "
                    f"(median {m['rows_per_day_median']:.0f} per day)."
                ),
                why="The span and regularity of a time column bound every trend, drift and "
                "gap analysis: empty days and long gaps are either outages or missing data.",
                evidence=Evidence(
                    columns=(name,),
                    metrics={
                        k: v
                        for k, v in per_column[name].items()
                        if v is None or isinstance(v, int | float | str | bool)
                    },
                    query=query + ";\n" + d_query,
                    rows=n,
                ),
            )
        )

    if not findings:
        return na(
            "INSUFFICIENT_DATA",
            "Every timestamp column is empty (all values null or unparseable).",
            checked=[f"{c}: no values" for c in sorted(per_column)],
        )
    metrics = {
        "checked": f"{len(described)} of {len(stamps)} timestamp columns"
        + (f" (the first {max_columns} in dataset order)" if skipped else ""),
        "columns": per_column,
        "columns_capped": bool(skipped),
        "columns_skipped": sorted(skipped),
        "max_days": max_days,
    }
    return ok(findings=findings, metrics=metrics)
