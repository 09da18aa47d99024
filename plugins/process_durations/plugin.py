"""process_durations: queue wait and run time per process of an event log (SQL)."""

from __future__ import annotations

import math

from contracts import Evidence, Finding, QuantileGroup, Quantiles, na, ok
from contracts.sql import quote_ident as _q
from contracts.sql import timestamp_expr

QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def _num(value):
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _durations_sql(process: str, queued: str, started: str, ended: str | None) -> str:
    run = f"date_diff('microsecond', {started}, {ended}) / 1e6" if ended is not None else "NULL"
    qs = ", ".join(str(p) for _, p in QUANTILES)
    return (
        "WITH ev AS ("
        f"SELECT CAST({_q(process)} AS VARCHAR) AS process, "
        f"date_diff('microsecond', {queued}, {started}) / 1e6 AS wait_s, "
        f"CAST({run} AS DOUBLE) AS run_s FROM data WHERE {_q(process)} IS NOT NULL) "
        "SELECT process, count(*) AS events, "
        "count(wait_s) FILTER (WHERE wait_s >= 0) AS wait_count, "
        f"quantile_cont(wait_s, [{qs}]) FILTER (WHERE wait_s >= 0) AS wait_q, "
        "avg(wait_s) FILTER (WHERE wait_s >= 0) AS wait_mean, "
        "sum(wait_s) FILTER (WHERE wait_s >= 0) AS wait_total, "
        "count(*) FILTER (WHERE wait_s < 0) AS wait_negative, "
        "count(run_s) FILTER (WHERE run_s >= 0) AS run_count, "
        f"quantile_cont(run_s, [{qs}]) FILTER (WHERE run_s >= 0) AS run_q, "
        "avg(run_s) FILTER (WHERE run_s >= 0) AS run_mean, "
        "sum(run_s) FILTER (WHERE run_s >= 0) AS run_total, "
        "count(*) FILTER (WHERE run_s < 0) AS run_negative "
        "FROM ev GROUP BY process ORDER BY process"
    )


def run(ctx):
    roles = {r: ctx.data.event_role(r) for r in ("process", "queued", "started", "ended")}
    missing = [r for r in ("process", "queued", "started") if roles[r] is None]
    if missing:
        return na(
            "NOT_APPLICABLE",
            "This is not an event log with queue and start times: no column was recognized "
            f"for the event role(s) {', '.join(missing)}.",
            checked=[f"event role {r}: {roles[r] or 'not found'}" for r in sorted(roles)],
        )

    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    queued = timestamp_expr(roles["queued"], dtypes.get(roles["queued"], ""))
    started = timestamp_expr(roles["started"], dtypes.get(roles["started"], ""))
    ended = (
        timestamp_expr(roles["ended"], dtypes.get(roles["ended"], ""))
        if roles["ended"] is not None
        else None
    )
    query = _durations_sql(roles["process"], queued, started, ended)
    rows = ctx.data.sql(query).to_pylist()

    span_query = (
        f"SELECT min({queued}) AS first, max({queued}) AS last, "
        f"date_diff('microsecond', min({queued}), max({queued})) / 86400e6 AS span_days, "
        f"count(*) FILTER (WHERE {_q(roles['process'])} IS NULL) AS no_process FROM data"
    )
    span = ctx.data.sql(span_query).to_pylist()[0]

    processes: dict[str, dict[str, object]] = {}
    findings = []
    for r in rows:
        wait_q = r["wait_q"] or [None] * len(QUANTILES)
        run_q = r["run_q"] or [None] * len(QUANTILES)
        m: dict[str, object] = {"events": int(r["events"]), "wait_count": int(r["wait_count"])}
        for (label, _), v in zip(QUANTILES, wait_q, strict=True):
            m[f"wait_{label}_s"] = _num(v)
        m["wait_mean_s"] = _num(r["wait_mean"])
        m["total_wait_hours"] = (_num(r["wait_total"]) or 0.0) / 3600.0
        m["negative_wait_count"] = int(r["wait_negative"])
        m["run_count"] = int(r["run_count"])
        for (label, _), v in zip(QUANTILES, run_q, strict=True):
            m[f"run_{label}_s"] = _num(v)
        m["run_mean_s"] = _num(r["run_mean"])
        m["total_run_hours"] = (_num(r["run_total"]) or 0.0) / 3600.0
        m["negative_run_count"] = int(r["run_negative"])
        processes[r["process"]] = m

    valid = [p for p in sorted(processes) if processes[p]["wait_count"]]
    if not valid:
        return na(
            "INSUFFICIENT_DATA",
            "No event has both a queue time and a start time at or after it, so no wait "
            "time can be measured.",
            checked=[
                f"{len(processes)} processes",
                f"columns {roles['queued']}, {roles['started']}",
            ],
        )

    total_wait = sum(float(processes[p]["total_wait_hours"]) for p in sorted(processes))
    for name in valid:
        m = processes[name]
        share = float(m["total_wait_hours"]) / total_wait if total_wait > 0 else 0.0
        run_text = (
            f"; run p50 {m['run_p50_s']:.0f}s, p95 {m['run_p95_s']:.0f}s"
            if m["run_p50_s"] is not None
            else ""
        )
        cols = tuple(
            c
            for c in (roles["process"], roles["queued"], roles["started"], roles["ended"])
            if c is not None
        )
        findings.append(
            Finding(
                kind="process_durations",
                title=f"Wait and run times of {name}",
                severity="info",
                confidence=1.0,
                target=name,
                what=(
                    f"{name}: {m['wait_count']} events; wait p50 {m['wait_p50_s']:.0f}s, "
                    f"p95 {m['wait_p95_s']:.0f}s, p99 {m['wait_p99_s']:.0f}s; "
                    f"{m['total_wait_hours']:.1f} h of total wait ({share:.1%} of all wait)"
                    f"{run_text}."
                ),
                why="Queue waits by process show where work sits idle before it starts; "
                "run times show where it is slow once started.",
                evidence=Evidence(
                    columns=cols,
                    metrics={k: v for k, v in sorted(m.items())} | {"wait_share": share},
                    query=query,
                    rows=int(m["events"]),
                ),
                charts=(
                    Quantiles(
                        title=f"Wait and run time of {name}",
                        value_label="seconds (log scale)",
                        quantiles=tuple(label for label, _ in QUANTILES),
                        groups=tuple(
                            QuantileGroup(
                                label=kind,
                                values=tuple(m[f"{kind}_{label}_s"] for label, _ in QUANTILES),
                                n=int(m[f"{kind}_count"]),
                            )
                            for kind in ("wait", "run")
                        ),
                        log_scale=True,
                    ),
                ),
            )
        )

    metrics = {
        "roles": {k: roles[k] for k in sorted(roles)},
        "processes": processes,
        "process_count": len(processes),
        "total_wait_hours": total_wait,
        "span_days": _num(span["span_days"]),
        "first_queued": None if span["first"] is None else str(span["first"]),
        "last_queued": None if span["last"] is None else str(span["last"]),
        "rows_without_process": int(span["no_process"]),
    }
    return ok(findings=findings, metrics=metrics)
