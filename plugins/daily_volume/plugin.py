"""daily_volume: jobs per day and daily median wait/run time, overall and per process."""

from __future__ import annotations

import math
from datetime import date, timedelta

from contracts import Evidence, Finding, na, ok
from contracts.sql import quote_ident as _q


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ts(name: str, dtype: str) -> str:
    """Column ``name`` as a TIMESTAMP; zoned values are converted to UTC first."""
    kind = dtype.upper()
    if "TIMESTAMP" in kind and ("TZ" in kind or "TIME ZONE" in kind):
        return f"timezone('UTC', {_q(name)})"
    return f"TRY_CAST({_q(name)} AS TIMESTAMP)"


def _num(value):
    """A finite float rounded to the microsecond, or None."""
    if value is None:
        return None
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None


def _events(ctx, roles: dict[str, str | None], day_col: str) -> str:
    """A subquery with p (process), day, wait_s and run_s (NULL where not measurable)."""
    dtypes = {c.name: c.dtype for c in ctx.data.columns}

    def ts(role: str) -> str | None:
        col = roles[role]
        return _ts(col, dtypes[col]) if col else None

    q, s, e = ts("queued"), ts("started"), ts("ended")
    wait = f"date_diff('microsecond', {q}, {s}) / 1e6" if q and s else "NULL"
    run = f"date_diff('microsecond', {s}, {e}) / 1e6" if s and e else "NULL"
    return (
        f"(SELECT CAST({_q(roles['process'])} AS VARCHAR) AS p, "
        f"CAST({_ts(day_col, dtypes[day_col])} AS DATE) AS day, "
        f"CAST({wait} AS DOUBLE) AS wait_s, CAST({run} AS DOUBLE) AS run_s FROM data)"
    )


MEDIANS = (
    "quantile_cont(wait_s, 0.5) FILTER (WHERE wait_s >= 0) AS median_wait_s, "
    "quantile_cont(run_s, 0.5) FILTER (WHERE run_s >= 0) AS median_run_s"
)


def _range(values: list) -> tuple[float, float] | None:
    seen = [v for v in values if v is not None]
    return (min(seen), max(seen)) if seen else None


def run(ctx):
    max_processes = int(ctx.settings.get("max_processes", 50))
    max_days = int(ctx.settings.get("max_days", 400))
    roles = {r: ctx.data.event_role(r) for r in ("process", "queued", "started", "ended")}
    day_role = "queued" if roles["queued"] else "started" if roles["started"] else None
    if roles["process"] is None or day_role is None:
        return na(
            "NOT_APPLICABLE",
            "Daily volumes per process need a process column and a queue or start time.",
            checked=[f"event role {r}: {roles[r] or 'not found'}" for r in sorted(roles)],
        )
    day_col = roles[day_role]
    assert day_col is not None
    events = _events(ctx, roles, day_col)
    series = ["jobs"]
    if roles["queued"] and roles["started"]:
        series.append("median_wait_s")
    if roles["started"] and roles["ended"]:
        series.append("median_run_s")

    o_query = (
        f"SELECT day, count(*) AS jobs FROM {events} "
        "WHERE day IS NOT NULL GROUP BY day ORDER BY day"
    )
    days = ctx.data.sql(o_query).to_pylist()
    if not days:
        return na(
            "INSUFFICIENT_DATA",
            f"{day_col} has no values, so no job can be placed on a day.",
            checked=[f"{day_col}: 0 values"],
        )
    first: date = days[0]["day"]
    last: date = days[-1]["day"]
    cutoff = max(first, last - timedelta(days=max_days - 1))
    n_days = (last - cutoff).days + 1
    by_day = {r["day"]: r for r in days}
    dense = [cutoff + timedelta(days=i) for i in range(n_days)]
    overall: dict[str, list] = {"days": [d.isoformat() for d in dense]}
    overall["jobs"] = [int(by_day[d]["jobs"]) if d in by_day else 0 for d in dense]

    t_query = (
        f"SELECT p, count(*) AS n FROM {events} WHERE p IS NOT NULL AND day IS NOT NULL "
        f"AND day >= DATE '{cutoff.isoformat()}' GROUP BY 1 ORDER BY n DESC, p "
        f"LIMIT {max_processes + 1}"
    )
    top = ctx.data.sql(t_query).to_pylist()
    chosen = [str(t["p"]) for t in top[:max_processes]]
    if not chosen:
        return na(
            "INSUFFICIENT_DATA",
            f"No job in the kept days has a process ({roles['process']} is empty there).",
            checked=[f"{roles['process']}: no values from {cutoff.isoformat()}"],
        )
    p_query = (
        f"SELECT p, day, count(*) AS jobs, {MEDIANS} FROM {events} "
        f"WHERE p IN ({', '.join(_lit(c) for c in chosen)}) "
        f"AND day >= DATE '{cutoff.isoformat()}' GROUP BY p, day ORDER BY p, day"
    )
    per: dict[str, dict[str, list]] = {c: {k: [] for k in ["days", *series]} for c in chosen}
    for r in ctx.data.sql(p_query).to_pylist():
        s = per[str(r["p"])]
        s["days"].append(r["day"].isoformat())
        s["jobs"].append(int(r["jobs"]))
        for key in series[1:]:
            s[key].append(_num(r[key]))

    processes: dict[str, dict[str, object]] = {}
    findings = []
    cols = tuple(
        c for c in (roles["process"], roles["queued"], roles["started"], roles["ended"]) if c
    )
    for name in sorted(per):
        s = per[name]
        total = sum(s["jobs"])
        active = len(s["days"])
        m: dict[str, object] = dict(s) | {
            "active_days": active,
            "jobs_per_active_day_max": max(s["jobs"]),
            "jobs_per_active_day_mean": total / active,
            "jobs_per_active_day_min": min(s["jobs"]),
            "total_jobs": total,
        }
        processes[name] = dict(sorted(m.items()))
        parts = [
            f"{name}: {total} jobs on {active} of {n_days} days ({total / active:.1f} per "
            f"active day, range {min(s['jobs'])} to {max(s['jobs'])})"
        ]
        ev: dict[str, object] = {
            "active_days": active,
            "days": n_days,
            "jobs_per_active_day_max": max(s["jobs"]),
            "jobs_per_active_day_mean": total / active,
            "jobs_per_active_day_min": min(s["jobs"]),
            "total_jobs": total,
        }
        for key, label in (("median_wait_s", "wait"), ("median_run_s", "run time")):
            span = _range(s.get(key, []))
            if span is not None:
                parts.append(f"daily median {label} {span[0]:.0f} to {span[1]:.0f} s")
                ev[f"{key}_min"], ev[f"{key}_max"] = span
        findings.append(
            Finding(
                kind="daily_volume",
                title=f"Daily volume of {name}",
                severity="info",
                confidence=1.0,
                target=name,
                what="; ".join(parts) + ".",
                why="Day-by-day volume and waits are the series in which shifts, trends and "
                "out-of-control days of a process show up.",
                evidence=Evidence(
                    columns=cols, metrics=dict(sorted(ev.items())), query=p_query, rows=total
                ),
            )
        )

    process_count = int(ctx.data.column(roles["process"]).distinct_count)
    metrics = {
        "checked": f"per-process series for {len(chosen)} of {process_count} processes"
        + (f" (the {max_processes} with the most jobs)" if len(top) > max_processes else "")
        + f"; {n_days} days"
        + (
            f" (the latest {max_days}; {(cutoff - first).days} earlier days dropped)"
            if cutoff > first
            else ""
        ),
        "day_column": day_col,
        "day_role": day_role,
        "days_capped": cutoff > first,
        "days_dropped": (cutoff - first).days,
        "first_day": cutoff.isoformat(),
        "last_day": last.isoformat(),
        "max_days": max_days,
        "overall": overall,
        "overall_is_dense": True,
        "process_count": process_count,
        "processes": processes,
        "processes_are_dense": False,
        "processes_capped": len(top) > max_processes,
        "roles": {r: roles[r] for r in sorted(roles)},
        "series": series,
        "timezone": "UTC",
    }
    return ok(findings=findings, metrics=metrics)
