"""event_log_structure: the event-log roles of the columns and their sanity (SQL)."""

from __future__ import annotations

import re

from contracts import Evidence, Finding, na, ok
from contracts.sql import quote_ident as _q

ROLES = ("case", "process", "status", "queued", "started", "ended", "user", "host")
TIME_ROLES = ("queued", "started", "ended")
RETRY_WORDS = frozenset({"retry", "retries", "retried", "attempt", "attempts", "rerun", "reruns"})
RETRIED_STATUS = re.compile(r"retr|rerun|resubmit", re.IGNORECASE)
FAILED_STATUS = re.compile(
    r"fail|error|abort|crash|timeout|timed.?out|kill|exception|reject", re.IGNORECASE
)


def _ts(name: str, dtype: str) -> str:
    """Column ``name`` as a TIMESTAMP; zoned values are converted to UTC first."""
    kind = dtype.upper()
    if "TIMESTAMP" in kind and ("TZ" in kind or "TIME ZONE" in kind):
        return f"timezone('UTC', {_q(name)})"
    return f"TRY_CAST({_q(name)} AS TIMESTAMP)"


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^0-9A-Za-z]+", spaced.lower()) if w]


# (metric name, SQL condition, roles it needs)
CHECKS = (
    ("start_before_queue", "s < q", ("queued", "started")),
    ("end_before_start", "e < s", ("started", "ended")),
    ("end_before_queue", "e < q", ("queued", "ended")),
    ("queued_not_started", "q IS NOT NULL AND s IS NULL", ("queued", "started")),
    ("started_not_ended", "s IS NOT NULL AND e IS NULL", ("started", "ended")),
    ("ended_not_started", "e IS NOT NULL AND s IS NULL", ("started", "ended")),
)


def _events(ctx, roles: dict[str, str | None]) -> str:
    """A subquery with columns q, s, e (timestamps or NULL) and p (process or NULL)."""
    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    parts = []
    for role, alias in (("queued", "q"), ("started", "s"), ("ended", "e")):
        col = roles[role]
        expr = _ts(col, dtypes[col]) if col else "CAST(NULL AS TIMESTAMP)"
        parts.append(f"{expr} AS {alias}")
    p = roles["process"]
    parts.append(f"CAST({_q(p)} AS VARCHAR) AS p" if p else "CAST(NULL AS VARCHAR) AS p")
    return f"(SELECT {', '.join(parts)} FROM data)"


def _checks(roles: dict[str, str | None]) -> list[tuple[str, str]]:
    return [(n, cond) for n, cond, need in CHECKS if all(roles[r] for r in need)]


def run(ctx):
    max_values = int(ctx.settings.get("max_values", 50))
    roles = {r: ctx.data.event_role(r) for r in ROLES}
    found = {r: c for r, c in roles.items() if c is not None}
    if not found:
        return na(
            "NOT_APPLICABLE",
            "No column was recognized for any event-log role (case, process, status, "
            "queue/start/end times, user, host), so this is not an event log.",
            checked=[f"event role {r}: not found" for r in ROLES],
        )
    rows = ctx.data.rows
    info = {c.name: c for c in ctx.data.columns}
    metrics: dict[str, object] = {"roles": {r: roles[r] for r in sorted(roles)}, "rows": rows}
    findings: list[Finding] = []
    events = _events(ctx, roles)
    checks = _checks(roles)

    def finding(role: str, what: str, extra: dict[str, object], query: str) -> None:
        col = roles[role]
        assert col is not None
        findings.append(
            Finding(
                kind="event_log_structure",
                title=f"{col} is the event log's {role} column",
                severity="info",
                confidence=1.0,
                target=col,
                what=what,
                why="Every event-log analysis (waits, run times, retries, failures, "
                "concurrency) rests on reading these columns correctly and on timestamps "
                "that are in order.",
                evidence=Evidence(
                    columns=(col,),
                    metrics={"role": role} | dict(sorted(extra.items())),
                    query=query,
                    rows=rows,
                ),
            )
        )

    # --- ordering sanity of the timestamps
    order_query = ""
    if checks:
        counts = ", ".join(f"CAST(count_if({cond}) AS BIGINT) AS {n}" for n, cond in checks)
        order_query = f"SELECT count(q) AS q, count(s) AS s, count(e) AS e, {counts} FROM {events}"
        r = ctx.data.sql(order_query).to_pylist()[0]
        ordering = {n: int(r[n]) for n, _ in checks}
        metrics["ordering"] = dict(sorted(ordering.items()))
    else:
        ordering = {}
        r = {}
    for role, alias in (("queued", "q"), ("started", "s"), ("ended", "e")):
        col = roles[role]
        if col is None:
            continue
        mine = {n: ordering[n] for n, _, need in CHECKS if n in ordering and role in need}
        values = int(r[alias]) if r else rows - int(info[col].null_count)
        issues = ", ".join(f"{v} {n.replace('_', ' ')}" for n, v in sorted(mine.items()) if v)
        finding(
            role,
            f"{col} holds the {role} time: {values} of {rows} rows have a value"
            + (f"; ordering issues: {issues}." if issues else "; no ordering issues."),
            {"values": values, **mine},
            order_query or f"SELECT count({_q(col)}) FROM data",
        )

    # --- processes
    if roles["process"]:
        col = roles["process"]
        extra = ", ".join(f"CAST(count_if({cond}) AS BIGINT) AS {n}" for n, cond in checks)
        p_query = (
            f"SELECT p AS process, count(*) AS events{', ' + extra if extra else ''} "
            f"FROM {events} WHERE p IS NOT NULL GROUP BY 1 ORDER BY events DESC, process "
            f"LIMIT {max_values}"
        )
        listed = ctx.data.sql(p_query).to_pylist()
        distinct = int(info[col].distinct_count)
        processes = {
            str(x["process"]): dict(
                sorted(({"events": int(x["events"])} | {n: int(x[n]) for n, _ in checks}).items())
            )
            for x in listed
        }
        metrics["processes"] = dict(sorted(processes.items()))
        metrics["process_count"] = distinct
        metrics["processes_capped"] = distinct > len(listed)
        metrics["processes_checked"] = (
            f"{len(listed)} of {distinct} processes listed (the most frequent first)"
        )
        metrics["rows_without_process"] = int(info[col].null_count)
        top = ", ".join(f"{x['process']} ({int(x['events'])})" for x in listed[:3])
        finding(
            "process",
            f"{col} names {distinct} processes; the most frequent are {top}; "
            f"{info[col].null_count} rows have no process.",
            {"process_count": distinct, "rows_without_process": int(info[col].null_count)},
            p_query,
        )

    # --- status values
    if roles["status"]:
        col = roles["status"]
        s_query = (
            f"SELECT CAST({_q(col)} AS VARCHAR) AS value, count(*) AS n FROM data "
            f"WHERE {_q(col)} IS NOT NULL GROUP BY 1 ORDER BY n DESC, value LIMIT {max_values}"
        )
        listed = ctx.data.sql(s_query).to_pylist()
        distinct = int(info[col].distinct_count)
        values = [{"count": int(x["n"]), "value": str(x["value"])} for x in listed]
        metrics["status_values"] = values
        metrics["status_value_count"] = distinct
        metrics["status_values_capped"] = distinct > len(listed)
        metrics["status_values_checked"] = (
            f"{len(listed)} of {distinct} status values listed (the most frequent first)"
        )
        metrics["retried_status_values"] = sorted(
            v["value"] for v in values if RETRIED_STATUS.search(v["value"])
        )
        metrics["failure_status_values"] = sorted(
            v["value"] for v in values if FAILED_STATUS.search(v["value"])
        )
        shown = ", ".join(f"{v['value']!r} ({v['count']})" for v in values[:5])
        failing = metrics["failure_status_values"]
        finding(
            "status",
            f"{col} has {distinct} status values: {shown}"
            + (f" (failure-like: {', '.join(failing)})" if failing else "")
            + ".",
            {"status_value_count": distinct},
            s_query,
        )

    # --- cases
    if roles["case"]:
        col = roles["case"]
        non_null = rows - int(info[col].null_count)
        distinct = int(info[col].distinct_count)
        case = {
            "cases": distinct,
            "events_per_case_mean": non_null / distinct if distinct else None,
            "rows_without_case": int(info[col].null_count),
        }
        c_query = f"SELECT count({_q(col)}) AS events, count(DISTINCT {_q(col)}) AS cases FROM data"
        if distinct < non_null:
            c_query = (
                f"SELECT n AS events, count(*) AS cases FROM (SELECT {_q(col)}, count(*) AS n "
                f"FROM data WHERE {_q(col)} IS NOT NULL GROUP BY 1) GROUP BY 1 ORDER BY 1 LIMIT 100"
            )
            hist = ctx.data.sql(c_query).to_pylist()
            case["events_per_case"] = [
                {"cases": int(h["cases"]), "events": int(h["events"])} for h in hist
            ]
            case["multi_event_cases"] = sum(h["cases"] for h in hist if int(h["events"]) > 1)
        else:
            case["events_per_case"] = [{"cases": distinct, "events": 1}] if distinct else []
            case["multi_event_cases"] = 0
        metrics["cases"] = dict(sorted(case.items()))
        mean = case["events_per_case_mean"]
        finding(
            "case",
            f"{col} identifies {distinct} cases"
            + (f" with {mean:.2f} events per case on average" if mean is not None else "")
            + f"; {case['multi_event_cases']} cases have more than one event.",
            {k: v for k, v in case.items() if not isinstance(v, list)},
            c_query,
        )

    # --- users and hosts
    for role in ("user", "host"):
        col = roles[role]
        if col is None:
            continue
        distinct = int(info[col].distinct_count)
        metrics[f"{role}_count"] = distinct
        finding(
            role,
            f"{col} holds the {role}: {distinct} distinct values, "
            f"{info[col].null_count} rows without one.",
            {"distinct": distinct, "null_count": int(info[col].null_count)},
            f"SELECT count(DISTINCT {_q(col)}) AS distinct_values FROM data",
        )

    # --- a retry-count column
    counts = ctx.data.names(role="numeric", semantic=("count", "quantity"))
    retry = next((n for n in counts if RETRY_WORDS & set(_words(n))), None)
    metrics["retry_column"] = retry
    if retry is not None:
        r_query = (
            f"SELECT count({_q(retry)}) AS n, avg({_q(retry)}) AS mean, max({_q(retry)}) AS max, "
            f"CAST(count_if({_q(retry)} > 0) AS BIGINT) AS positive FROM data"
        )
        rr = ctx.data.sql(r_query).to_pylist()[0]
        n = int(rr["n"])
        metrics["retry"] = {
            "max": None if rr["max"] is None else float(rr["max"]),
            "mean": None if rr["mean"] is None else float(rr["mean"]),
            "positive_share": int(rr["positive"]) / n if n else None,
            "values": n,
        }

    findings.sort(key=lambda f: ROLES.index(f.evidence.metrics["role"]))
    return ok(findings=findings, metrics=dict(sorted(metrics.items())))
