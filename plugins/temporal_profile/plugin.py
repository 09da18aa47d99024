"""temporal_profile: hour-of-day and day-of-week volume of an event log (UTC, SQL)."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
from scipy import stats

from contracts import Evidence, Finding, na, ok
from contracts.sql import quote_ident as _q

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ts(name: str, dtype: str) -> str:
    """Column ``name`` as a TIMESTAMP; zoned values are converted to UTC first."""
    kind = dtype.upper()
    if "TIMESTAMP" in kind and ("TZ" in kind or "TIME ZONE" in kind):
        return f"timezone('UTC', {_q(name)})"
    return f"TRY_CAST({_q(name)} AS TIMESTAMP)"


def _time_column(ctx) -> tuple[str | None, str]:
    for role in ("queued", "started"):
        name = ctx.data.event_role(role)
        if name is not None:
            return name, f"event role {role}"
    stamps = ctx.data.names(role="timestamp")
    return (stamps[0], "first timestamp column") if stamps else (None, "")


def profile_query(ts: str) -> str:
    return (
        f"SELECT isodow(t) AS dow, hour(t) AS hour, count(*) AS n, "
        "CAST(min(t) AS DATE) AS first_day, CAST(max(t) AS DATE) AS last_day "
        f"FROM (SELECT {ts} AS t FROM data) WHERE t IS NOT NULL GROUP BY ALL ORDER BY ALL"
    )


def _uniformity(observed: np.ndarray, expected_weights: np.ndarray) -> dict[str, float] | None:
    """Chi-square goodness of fit against counts proportional to ``expected_weights``,
    over the categories that can occur; Cohen's w = sqrt(chi2 / n) as the effect size."""
    keep = expected_weights > 0
    if keep.sum() < 2:
        return None
    obs = observed[keep].astype(float)
    n = obs.sum()
    if not n > 0:
        return None
    exp = expected_weights[keep] / expected_weights[keep].sum() * n
    test = stats.chisquare(obs, exp)
    chi2 = float(test.statistic)
    return {
        "categories": int(keep.sum()),
        "chi2": chi2,
        "cohens_w": math.sqrt(chi2 / n),
        "p_value": float(test.pvalue),
    }


def run(ctx):
    max_hosts = int(ctx.settings.get("max_hosts", 50))
    time_col, why_col = _time_column(ctx)
    if time_col is None:
        return na(
            "NOT_APPLICABLE",
            "The dataset has no timestamp column to build a daily or weekly profile from.",
            checked=["event roles queued/started and column role 'timestamp': none found"],
        )
    ts = _ts(time_col, ctx.data.column(time_col).dtype)
    query = profile_query(ts)
    rows = ctx.data.sql(query).to_pylist()
    if not rows:
        return na(
            "INSUFFICIENT_DATA",
            f"{time_col} has no values (all null or unparseable).",
            checked=[f"{time_col}: 0 values"],
        )
    week_hour = np.zeros((7, 24), dtype=np.int64)
    for r in rows:
        week_hour[int(r["dow"]) - 1, int(r["hour"])] = int(r["n"])
    first = min(r["first_day"] for r in rows)
    last = max(r["last_day"] for r in rows)
    days = (last - first).days + 1
    occurrences = np.zeros(7, dtype=np.int64)
    for i in range(min(days, 7)):
        occurrences[(first + timedelta(days=i)).weekday()] += (days - i + 6) // 7
    total = int(week_hour.sum())
    hours = week_hour.sum(axis=0)
    weekdays = week_hour.sum(axis=1)
    peak_hour = int(np.argmax(hours))
    trough_hour = int(np.argmin(hours))
    day_mean = [int(c) / int(o) if o else None for c, o in zip(weekdays, occurrences, strict=True)]
    covered = [i for i, v in enumerate(day_mean) if v is not None]
    peak_day = max(covered, key=lambda i: (day_mean[i], -i))
    trough_day = min(covered, key=lambda i: (day_mean[i], i))

    metrics: dict[str, object] = {
        "day_of_week": weekdays.tolist(),
        "day_of_week_labels": list(DAYS),
        "day_of_week_mean_per_day": day_mean,
        "day_of_week_occurrences": occurrences.tolist(),
        "day_uniformity": _uniformity(weekdays, occurrences.astype(float)),
        "days_covered": days,
        "first_date": first.isoformat(),
        "hour_of_day": hours.tolist(),
        "hour_of_day_mean_per_day": (hours / days).tolist(),
        "hour_of_day_share": (hours / total).tolist(),
        "hour_uniformity": _uniformity(hours, np.ones(24)),
        "last_date": last.isoformat(),
        "peak_day": DAYS[peak_day],
        "peak_hour": peak_hour,
        "peak_hour_share": float(hours[peak_hour] / total),
        "peak_to_mean_hour_ratio": float(hours[peak_hour] / (total / 24)),
        "rows": total,
        "time_column": time_col,
        "time_column_source": why_col,
        "timezone": "UTC",
        "trough_day": DAYS[trough_day],
        "trough_hour": trough_hour,
        "week_hour": week_hour.tolist(),
        "weekend_share": float(weekdays[5:].sum() / total),
    }

    host = ctx.data.event_role("host")
    hosts: dict[str, dict[str, object]] = {}
    host_query = ""
    if host is not None and max_hosts > 0:
        h = f"CAST({_q(host)} AS VARCHAR)"
        top = ctx.data.sql(
            f"SELECT {h} AS host, count(*) AS n FROM data WHERE {_q(host)} IS NOT NULL "
            f"AND {ts} IS NOT NULL GROUP BY 1 ORDER BY n DESC, host LIMIT {max_hosts + 1}"
        ).to_pylist()
        chosen = [str(r["host"]) for r in top[:max_hosts]]
        metrics["hosts_capped"] = len(top) > max_hosts
        metrics["checked"] = f"hour-of-day profiles for {len(chosen)} host(s)" + (
            f" (the {max_hosts} busiest; more exist)" if len(top) > max_hosts else ""
        )
        if chosen:
            listed = ", ".join(_lit(c) for c in chosen)
            host_query = (
                f"SELECT {h} AS host, hour({ts}) AS hour, count(*) AS n FROM data "
                f"WHERE {ts} IS NOT NULL AND {h} IN ({listed}) GROUP BY ALL ORDER BY ALL"
            )
            profile: dict[str, np.ndarray] = {c: np.zeros(24, dtype=np.int64) for c in chosen}
            for r in ctx.data.sql(host_query).to_pylist():
                profile[str(r["host"])][int(r["hour"])] = int(r["n"])
            for name in sorted(profile):
                counts = profile[name]
                hosts[name] = {
                    "hour_of_day": counts.tolist(),
                    "peak_hour": int(np.argmax(counts)),
                    "rows": int(counts.sum()),
                }
        metrics["host_column"] = host
        metrics["hosts"] = hosts

    hu = metrics["hour_uniformity"]
    flat_text = (
        f"; the hourly profile departs from flat with Cohen's w = {hu['cohens_w']:.2f}"
        if hu is not None
        else ""
    )
    finding = Finding(
        kind="temporal_profile",
        title=f"Daily and weekly rhythm of {time_col}",
        severity="info",
        confidence=1.0,
        target=time_col,
        what=(
            f"{total} events of {time_col} over {days} days (UTC): busiest hour "
            f"{peak_hour:02d}:00 ({metrics['peak_hour_share']:.1%} of events, "
            f"{metrics['peak_to_mean_hour_ratio']:.2f}x the hourly mean), quietest "
            f"{trough_hour:02d}:00; busiest weekday {DAYS[peak_day]}, quietest "
            f"{DAYS[trough_day]}; {metrics['weekend_share']:.1%} on weekends{flat_text}."
        ),
        why="Load that bunches into a few hours or days is what saturates workers and "
        "queues; a flat profile points to other causes of waiting.",
        evidence=Evidence(
            columns=(time_col,) if host is None else (time_col, host),
            metrics={
                "days_covered": days,
                "hour_uniformity_cohens_w": None if hu is None else hu["cohens_w"],
                "hour_uniformity_p_value": None if hu is None else hu["p_value"],
                "peak_day": DAYS[peak_day],
                "peak_hour": peak_hour,
                "peak_hour_share": metrics["peak_hour_share"],
                "peak_to_mean_hour_ratio": metrics["peak_to_mean_hour_ratio"],
                "rows": total,
                "weekend_share": metrics["weekend_share"],
            },
            query=query + (";\n" + host_query if host_query else ""),
            rows=total,
        ),
    )
    return ok(findings=[finding], metrics=dict(sorted(metrics.items())))
