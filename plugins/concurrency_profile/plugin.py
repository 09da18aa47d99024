"""concurrency_profile: how many jobs run at once, overall and per host.

A job runs over [started, ended). The number running at an instant T is
``#(started <= T) - #(ended <= T)``. On a grid of instants ``T_k = t0 + k * w`` that
count is exact from two grouped counts: a time x sits at or before T_k exactly when
``ceil((x - t0) / w) <= k``, so counting starts and ends by that grid step and taking
cumulative sums gives the running jobs at every T_k. The SQL is two GROUP BYs over
(host, step) -- no sort of the event log -- and the result has at most
(hosts + 1) x grid_points rows, however many jobs there are.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np

from contracts import Evidence, Finding, Line, Series, na, ok
from contracts.sql import quote_ident as _q

_EPOCH = datetime(1970, 1, 1)
_SECOND = 1_000_000
_DAY = 86_400 * _SECOND


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ts(name: str, dtype: str) -> str:
    """Column ``name`` as a TIMESTAMP; zoned values are converted to UTC first."""
    kind = dtype.upper()
    if "TIMESTAMP" in kind and ("TZ" in kind or "TIME ZONE" in kind):
        return f"timezone('UTC', {_q(name)})"
    return f"TRY_CAST({_q(name)} AS TIMESTAMP)"


def _iso(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=int(us))).isoformat()


def _num(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _jobs(ctx, roles: dict[str, str | None]) -> str:
    """A subquery of jobs: s, e (epoch microseconds), q (or NULL) and h (host or NULL)."""
    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    s = f"epoch_us({_ts(roles['started'], dtypes[roles['started']])})"
    e = f"epoch_us({_ts(roles['ended'], dtypes[roles['ended']])})"
    q = f"epoch_us({_ts(roles['queued'], dtypes[roles['queued']])})" if roles["queued"] else "NULL"
    h = f"CAST({_q(roles['host'])} AS VARCHAR)" if roles["host"] else "CAST(NULL AS VARCHAR)"
    return f"(SELECT {s} AS s, {e} AS e, CAST({q} AS BIGINT) AS q, {h} AS h FROM data)"


VALID = "s IS NOT NULL AND e IS NOT NULL AND e >= s"


def span_query(jobs: str) -> str:
    return (
        f"SELECT count(*) FILTER (WHERE {VALID}) AS jobs, "
        "count(*) FILTER (WHERE e < s) AS negative, "
        "count(*) FILTER (WHERE s IS NOT NULL AND e IS NULL) AS unfinished, "
        f"min(s) FILTER (WHERE {VALID}) AS t_first, max(e) FILTER (WHERE {VALID}) AS t_last, "
        f"sum(CAST(e - s AS DOUBLE)) FILTER (WHERE {VALID}) AS busy_us FROM {jobs}"
    )


def hosts_query(jobs: str, limit: int) -> str:
    return (
        "SELECT h AS host, count(*) AS jobs, sum(CAST(e - s AS DOUBLE)) AS busy_us, "
        "quantile_cont((s - q) / 1e6, [0.5, 0.95]) FILTER (WHERE s >= q) AS wait_q "
        f"FROM {jobs} WHERE {VALID} AND h IS NOT NULL GROUP BY 1 "
        f"ORDER BY jobs DESC, host LIMIT {int(limit)}"
    )


def grid_query(jobs: str, hosts: list[str], t0: int, w: int, k_max: int) -> str:
    if hosts:
        whens = " ".join(f"WHEN {_lit(h)} THEN {i}" for i, h in enumerate(hosts))
        g = f"CASE h {whens} ELSE -1 END"
    else:
        g = "-1"
    step = f"// {w}"
    return (
        f"WITH v AS (SELECT {g} AS g, s - {t0} AS s, e - {t0} AS e FROM {jobs} WHERE {VALID}) "
        "SELECT g, k, CAST(sum(d) AS BIGINT) AS d FROM ("
        f"SELECT g, (s + {w - 1}) {step} AS k, 1 AS d FROM v "
        f"UNION ALL SELECT g, (e + {w - 1}) {step} AS k, -1 AS d FROM v) "
        f"WHERE k < {k_max} GROUP BY g, k ORDER BY g, k"
    )


def _series(levels: np.ndarray, t0: int, w: int, max_levels: int) -> dict[str, object]:
    peak = int(levels.max())
    p50, p95, p99 = np.percentile(levels, [50, 95, 99], method="inverted_cdf")
    out: dict[str, object] = {
        "busy_share": float(np.mean(levels > 0)),
        "mean": float(levels.mean()),
        "p50": int(p50),
        "p95": int(p95),
        "p99": int(p99),
        "peak": peak,
        "peak_first_at": _iso(t0 + int(np.argmax(levels)) * w),
        "share_at_peak": float(np.mean(levels == peak)),
        "share_at_or_above_p95": float(np.mean(levels >= p95)),
    }
    if peak <= max_levels:
        out["level_shares"] = (np.bincount(levels, minlength=peak + 1) / levels.size).tolist()
    else:
        out["level_shares"] = None
    return out


def _daily_peaks(levels: np.ndarray, t0: int, w: int, max_days: int) -> dict[str, object]:
    instants = t0 + np.arange(levels.size, dtype=np.int64) * w
    day = instants // _DAY
    first = int(day[0])
    idx = day - first
    n_days = int(idx[-1]) + 1
    peaks = np.full(n_days, -1, dtype=np.int64)
    np.maximum.at(peaks, idx, levels)
    keep = min(n_days, max_days)
    kept = peaks[n_days - keep :]
    start = first + n_days - keep
    return {
        "days_capped": n_days > keep,
        "peaks": [None if p < 0 else int(p) for p in kept.tolist()],
        "start": (_EPOCH + timedelta(days=start)).date().isoformat(),
    }


CHART_POINTS = 1000


def running_chart(levels: np.ndarray, t0: int, w: int) -> Series:
    """Running jobs over time: the grid's maximum in each of at most CHART_POINTS
    intervals (so every peak stays visible), as steps."""
    size = max(1, math.ceil(levels.size / CHART_POINTS))
    peaks = [int(levels[i : i + size].max()) for i in range(0, levels.size, size)]
    start = datetime(1970, 1, 1) + timedelta(microseconds=t0)
    x = tuple((start + timedelta(microseconds=i * size * w)).isoformat() for i in range(len(peaks)))
    label = "running jobs" if size == 1 else f"most running jobs per {size * w // _SECOND} s"
    return Series(
        title="Running jobs over time",
        y_label="jobs running at once",
        x=x,
        lines=(Line(label=label, values=tuple(float(v) for v in peaks)),),
        step=True,
    )


def run(ctx):
    grid_points = int(ctx.settings.get("grid_points", 20000))
    max_hosts = int(ctx.settings.get("max_hosts", 50))
    max_levels = int(ctx.settings.get("max_levels", 100))
    max_days = int(ctx.settings.get("max_days", 400))

    roles = {r: ctx.data.event_role(r) for r in ("queued", "started", "ended", "host")}
    if roles["started"] is None or roles["ended"] is None:
        missing = [r for r in ("started", "ended") if roles[r] is None]
        return na(
            "NOT_APPLICABLE",
            "Running jobs need start and end times; no column was recognized for the "
            f"event role(s) {', '.join(missing)}.",
            checked=[f"event role {r}: {roles[r] or 'not found'}" for r in sorted(roles)],
        )
    jobs = _jobs(ctx, roles)
    s_query = span_query(jobs)
    span = ctx.data.sql(s_query).to_pylist()[0]
    n_jobs = int(span["jobs"])
    checked = [
        f"{n_jobs} jobs with start and end",
        f"{int(span['negative'])} ending before they start",
        f"{int(span['unfinished'])} started without an end",
    ]
    if n_jobs == 0 or int(span["t_last"]) <= int(span["t_first"]):
        return na(
            "INSUFFICIENT_DATA",
            "No job has a start and a later end, so nothing was ever running.",
            checked=checked,
        )
    t_first, t_last = int(span["t_first"]), int(span["t_last"])
    t0 = t_first - t_first % _SECOND
    w = max(1, math.ceil((t_last - t0) / grid_points / _SECOND)) * _SECOND
    k_max = math.ceil((t_last - t0) / w)

    hosts: list[dict] = []
    h_query = ""
    if roles["host"] is not None and max_hosts > 0:
        h_query = hosts_query(jobs, max_hosts + 1)
        hosts = ctx.data.sql(h_query).to_pylist()
    hosts_capped = len(hosts) > max_hosts
    hosts = hosts[:max_hosts]
    names = [str(h["host"]) for h in hosts]

    g_query = grid_query(jobs, names, t0, w, k_max)
    grid = ctx.data.sql(g_query)
    g = np.asarray(grid.column("g").to_numpy(), dtype=np.int64)
    k = np.asarray(grid.column("k").to_numpy(), dtype=np.int64)
    d = np.asarray(grid.column("d").to_numpy(), dtype=np.int64)
    deltas = np.zeros((len(names) + 1, k_max), dtype=np.int64)
    deltas[g + 1, k] = d  # (g, k) pairs are unique after the GROUP BY; row 0 = other hosts
    levels = np.cumsum(deltas, axis=1)
    overall = levels.sum(axis=0)

    window_us = t_last - t_first
    overall_m = _series(overall, t0, w, max_levels) | {
        "jobs": n_jobs,
        "mean_running_exact": float(span["busy_us"]) / window_us,
    }
    per_host: dict[str, dict[str, object]] = {}
    for i, h in enumerate(hosts):
        wait_q = h["wait_q"] or [None, None]
        m = _series(levels[i + 1], t0, w, max_levels) | {
            "jobs": int(h["jobs"]),
            "mean_running_exact": float(h["busy_us"]) / window_us,
            "wait_p50_s": _num(wait_q[0]),
            "wait_p95_s": _num(wait_q[1]),
        }
        per_host[names[i]] = dict(sorted(m.items()))

    query = ";\n".join(q for q in (s_query, h_query, g_query) if q)
    findings = []
    overall_target = "data" if "data" not in per_host else "data (all hosts)"
    findings.append(
        Finding(
            kind="concurrency_profile",
            title="Running jobs over time",
            severity="info",
            confidence=1.0,
            target=overall_target,
            what=(
                f"Up to {overall_m['peak']} jobs ran at once (first at "
                f"{overall_m['peak_first_at']}); p95 {overall_m['p95']}, mean "
                f"{overall_m['mean_running_exact']:.2f}; at the peak "
                f"{overall_m['share_at_peak']:.2%} of the time, idle "
                f"{1 - overall_m['busy_share']:.1%} (sampled every {w // _SECOND} s)."
            ),
            why="How many jobs run at once, and how close to its maximum that stays, shows "
            "whether work waits for free capacity.",
            evidence=Evidence(
                columns=tuple(c for c in (roles["started"], roles["ended"]) if c),
                metrics={k_: v for k_, v in sorted(overall_m.items()) if not isinstance(v, list)},
                query=query,
                rows=n_jobs,
            ),
            charts=(running_chart(overall, t0, w),),
        )
    )
    for name in sorted(per_host):
        m = per_host[name]
        wait = (
            f"; queue wait p50 {m['wait_p50_s']:.0f} s, p95 {m['wait_p95_s']:.0f} s"
            if m["wait_p50_s"] is not None and m["wait_p95_s"] is not None
            else ""
        )
        findings.append(
            Finding(
                kind="concurrency_profile",
                title=f"Running jobs on {name}",
                severity="info",
                confidence=1.0,
                target=name,
                what=(
                    f"{name}: up to {m['peak']} jobs at once, p95 {m['p95']}, mean "
                    f"{m['mean_running_exact']:.2f}; at its peak {m['share_at_peak']:.2%} of "
                    f"the time, busy {m['busy_share']:.1%}{wait}."
                ),
                why="A host that sits at its maximum concurrency most of the time is "
                "capacity-bound: jobs routed to it wait for a free slot.",
                evidence=Evidence(
                    columns=tuple(
                        c for c in (roles["host"], roles["started"], roles["ended"]) if c
                    ),
                    metrics={k_: v for k_, v in m.items() if not isinstance(v, list)},
                    query=query,
                    rows=int(m["jobs"]),
                ),
            )
        )

    metrics = {
        "checked": f"the overall series and per-host series for {len(hosts)} host(s)"
        + (f" (the {max_hosts} with the most jobs; more exist)" if hosts_capped else ""),
        "daily_peak": _daily_peaks(overall, t0, w, max_days),
        "first_start": _iso(t_first),
        "grid_instants": k_max,
        "host_column": roles["host"],
        "hosts": dict(sorted(per_host.items())),
        "hosts_capped": hosts_capped,
        "jobs": n_jobs,
        "jobs_ending_before_start": int(span["negative"]),
        "jobs_without_end": int(span["unfinished"]),
        "last_end": _iso(t_last),
        "overall": dict(sorted(overall_m.items())),
        "resolution_s": w // _SECOND,
        "roles": {r: roles[r] for r in sorted(roles)},
    }
    return ok(findings=findings, metrics=metrics)
