"""status_mix: outcome mix overall, per process and per host; retry-count distribution."""

from __future__ import annotations

import re

from contracts import Evidence, Finding, na, ok
from contracts.sql import quote_ident as _q

RETRY_WORDS = frozenset({"retry", "retries", "retried", "attempt", "attempts", "rerun", "reruns"})
OTHER = "(other)"


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^0-9A-Za-z]+", spaced.lower()) if w]


def _retry_column(ctx) -> str | None:
    counts = ctx.data.names(role="numeric", semantic=("count", "quantity"))
    return next((n for n in counts if RETRY_WORDS & set(_words(n))), None)


def _rows(status: str, retry: str | None, group: str | None) -> str:
    """Per row: st (status text), r (retry count or NULL), g (group or NULL)."""
    r = f"CAST({_q(retry)} AS DOUBLE)" if retry else "CAST(NULL AS DOUBLE)"
    g = f"CAST({_q(group)} AS VARCHAR)" if group else "CAST(NULL AS VARCHAR)"
    return f"(SELECT CAST({_q(status)} AS VARCHAR) AS st, {r} AS r, {g} AS g FROM data)"


# Per (group, status): jobs, retry values, their sum, and how many are above zero.
_CELLS = "count(*) AS n, count(r) AS rn, sum(r) AS rs, count(*) FILTER (WHERE r > 0) AS rp"


class _Mix:
    """Accumulates (status, counts) cells of one group into its mix."""

    def __init__(self) -> None:
        self.by_status: dict[str | None, int] = {}
        self.rn = 0
        self.rs = 0.0
        self.rp = 0

    def add(self, cell: dict) -> None:
        st = None if cell["st"] is None else str(cell["st"])
        self.by_status[st] = self.by_status.get(st, 0) + int(cell["n"])
        self.rn += int(cell["rn"])
        self.rs += float(cell["rs"] or 0.0)
        self.rp += int(cell["rp"])

    def metrics(
        self, listed: set[str], failing: set[str], retried: set[str], with_retry: bool
    ) -> dict[str, object]:
        jobs = sum(self.by_status.values())
        without = self.by_status.get(None, 0)
        with_status = jobs - without
        counts: dict[str, int] = {}
        failed = retried_n = 0
        for st in sorted(k for k in self.by_status if k is not None):
            n = self.by_status[st]
            key = st if st in listed else OTHER
            counts[key] = counts.get(key, 0) + n
            failed += n if st in failing else 0
            retried_n += n if st in retried else 0
        out: dict[str, object] = {
            "failed": failed,
            "failure_share": failed / with_status if with_status else None,
            "jobs": jobs,
            "retried": retried_n,
            "retried_share": retried_n / with_status if with_status else None,
            "status_counts": dict(sorted(counts.items())),
            "without_status": without,
        }
        if with_retry:
            out["retry_mean"] = self.rs / self.rn if self.rn else None
            out["retry_positive_share"] = self.rp / self.rn if self.rn else None
        return dict(sorted(out.items()))


def _share(x) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def run(ctx):
    max_groups = int(ctx.settings.get("max_groups", 50))
    max_statuses = int(ctx.settings.get("max_statuses", 20))
    fail_re = str(ctx.settings.get("failure_pattern", "fail|error"))
    retried_re = str(ctx.settings.get("retried_pattern", "retr"))
    max_retry = int(ctx.settings.get("max_retry_value", 20))

    status = ctx.data.event_role("status")
    if status is None:
        return na(
            "NOT_APPLICABLE",
            "No column was recognized as the event log's status/outcome column.",
            checked=["event role status: not found"],
        )
    retry = _retry_column(ctx)
    process = ctx.data.event_role("process")
    host = ctx.data.event_role("host")
    rows = ctx.data.rows

    # Every status value with its counts (status columns hold few distinct values);
    # failure-like and retried-like values are classified here, once per value.
    o_query = (
        f"SELECT st, {_CELLS} FROM {_rows(status, retry, None)} GROUP BY st ORDER BY st NULLS LAST"
    )
    cells = ctx.data.sql(o_query).to_pylist()
    fail_rx = re.compile(fail_re, re.IGNORECASE)
    retried_rx = re.compile(retried_re, re.IGNORECASE)
    values = sorted(
        ((str(c["st"]), int(c["n"])) for c in cells if c["st"] is not None),
        key=lambda v: (-v[1], v[0]),
    )
    failing = {v for v, _ in values if fail_rx.search(v)}
    retried = {v for v, _ in values if retried_rx.search(v)}
    listed = {v for v, _ in values[:max_statuses]}
    total = _Mix()
    for c in cells:
        total.add(c)
    overall = total.metrics(listed, failing, retried, retry is not None)
    with_status = int(overall["jobs"]) - int(overall["without_status"])
    if with_status == 0:
        return na(
            "INSUFFICIENT_DATA",
            f"The status column {status} has no values.",
            checked=[f"{status}: {rows} rows, all null"],
        )

    def per_group(column: str | None) -> tuple[dict[str, dict[str, object]], bool, str]:
        if column is None:
            return {}, False, ""
        g = f"CAST({_q(column)} AS VARCHAR)"
        top = ctx.data.sql(
            f"SELECT {g} AS g, count(*) AS n FROM data WHERE {_q(column)} IS NOT NULL "
            f"GROUP BY 1 ORDER BY n DESC, g LIMIT {max_groups + 1}"
        ).to_pylist()
        chosen = [str(t["g"]) for t in top[:max_groups]]
        if not chosen:
            return {}, False, ""
        query = (
            f"SELECT g, st, {_CELLS} FROM {_rows(status, retry, column)} "
            f"WHERE g IN ({', '.join(_lit(c) for c in chosen)}) "
            "GROUP BY g, st ORDER BY g, st NULLS LAST"
        )
        mixes = {c: _Mix() for c in chosen}
        for cell in ctx.data.sql(query).to_pylist():
            mixes[str(cell["g"])].add(cell)
        out = {
            name: mixes[name].metrics(listed, failing, retried, retry is not None)
            for name in sorted(mixes)
        }
        return out, len(top) > max_groups, query

    processes, processes_capped, p_query = per_group(process)
    hosts, hosts_capped, h_query = per_group(host)

    retry_m = None
    r_query = ""
    if retry is not None:
        r = f"CAST({_q(retry)} AS DOUBLE)"
        r_query = (
            f"SELECT CASE WHEN {r} < 0 THEN -1 WHEN {r} >= {max_retry} THEN {max_retry} "
            f"ELSE CAST(floor({r}) AS BIGINT) END AS v, count(*) AS n, max({r}) AS top "
            f"FROM data WHERE {_q(retry)} IS NOT NULL GROUP BY 1 ORDER BY 1"
        )
        got = ctx.data.sql(r_query).to_pylist()
        hist = {int(x["v"]): int(x["n"]) for x in got}
        tops = [float(x["top"]) for x in got if x["top"] is not None]
        value_count = sum(hist.values())
        retry_m = {
            "column": retry,
            "counts": [hist.get(v, 0) for v in range(max_retry + 1)],
            "last_bin_is_at_least": max_retry,
            "max": max(tops) if tops else None,
            "mean": overall.get("retry_mean"),
            "negative_count": hist.get(-1, 0),
            "positive_share": overall.get("retry_positive_share"),
            "value_count": value_count,
            "values": list(range(max_retry + 1)),
        }

    query_all = ";\n".join(q for q in (o_query, p_query, h_query, r_query) if q)

    top = ", ".join(f"{v!r} {n / with_status:.1%}" for v, n in values[:5])
    retry_text = (
        f"; {retry} averages {retry_m['mean']:.2f} retries, {_share(retry_m['positive_share'])} "
        "of jobs retried at least once"
        if retry_m is not None and retry_m["mean"] is not None
        else ""
    )
    findings = [
        Finding(
            kind="status_mix",
            title=f"Outcome mix of {status}",
            severity="info",
            confidence=1.0,
            target=status,
            what=(
                f"{with_status} jobs with a status: {top}; failure-like "
                f"{_share(overall['failure_share'])}, retried-like "
                f"{_share(overall['retried_share'])}{retry_text}."
            ),
            why="The outcome mix is the baseline against which a process or host that "
            "fails or retries unusually often stands out.",
            evidence=Evidence(
                columns=tuple(c for c in (status, retry) if c),
                metrics={k: v for k, v in overall.items() if not isinstance(v, dict)},
                query=query_all,
                rows=with_status,
            ),
        )
    ]
    for name in sorted(processes):
        if name == status:
            continue  # a process named like the status column would reuse its finding id
        m = processes[name]
        retry_part = (
            f", mean {retry} {m['retry_mean']:.2f}" if m.get("retry_mean") is not None else ""
        )
        findings.append(
            Finding(
                kind="status_mix",
                title=f"Outcome mix of {name}",
                severity="info",
                confidence=1.0,
                target=name,
                what=(
                    f"{name}: {m['jobs']} jobs; failure-like {_share(m['failure_share'])} "
                    f"(overall {_share(overall['failure_share'])}), retried-like "
                    f"{_share(m['retried_share'])} (overall "
                    f"{_share(overall['retried_share'])}){retry_part}."
                ),
                why="A process whose jobs fail or are retried far more often than the rest "
                "wastes capacity and delays what depends on it.",
                evidence=Evidence(
                    columns=tuple(c for c in (process, status, retry) if c),
                    metrics={k: v for k, v in m.items() if not isinstance(v, dict)},
                    query=p_query,
                    rows=int(m["jobs"]),
                ),
            )
        )

    metrics = {
        "checked": f"mixes for {len(processes)} process(es) and {len(hosts)} host(s)"
        + (
            f" (the {max_groups} of each with the most jobs; more exist)"
            if processes_capped or hosts_capped
            else ""
        )
        + f"; {min(len(values), max_statuses)} of {len(values)} status values by name",
        "failure_pattern": fail_re,
        "failure_values": sorted(failing),
        "host_column": host,
        "hosts": hosts,
        "hosts_capped": hosts_capped,
        "overall": overall,
        "process_column": process,
        "processes": processes,
        "processes_capped": processes_capped,
        "retried_pattern": retried_re,
        "retried_values": sorted(retried),
        "retry": retry_m,
        "rows": rows,
        "status_column": status,
        "status_values": [
            {"count": n, "share": n / with_status, "value": v} for v, n in values[:max_statuses]
        ],
        "status_values_capped": len(values) > max_statuses,
    }
    return ok(findings=findings, metrics=metrics)
