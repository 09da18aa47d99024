"""concurrency_saturation: a host that runs at its concurrency ceiling while work waits.

The running-jobs-over-time curve of each host is a sweep over start and end events
(defined by the one-pass SQL of ``levels_query``, which the evidence shows; computed in
numpy over the jobs of time windows of bounded size, so memory stays small on any
table and a 10M-row log takes seconds instead of half a minute), summarised as seconds
spent at each concurrency level. A host is
saturated when it spends a large share of its observed time at its *sustained
maximum* (the highest level it holds for at least ``level_time_share`` of its time, so
a one-off spike does not count as the ceiling), and its queue waits, compared process
by process with the other hosts, are much longer. A one-sided binomial sign test
(share of the host's jobs waiting longer than the peer median of their process)
confirms the wait excess.

The waits are measured first (one grouping pass): when no host's process-adjusted
waits reach ``min_wait_ratio``, no host can be saturated, and the outcome says so
without sweeping the running-jobs curves (the costly part).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyarrow.compute as pc
from scipy import stats

from contracts import Evidence, Finding, Impact, na, ok
from contracts.sql import quote_ident as _q
from contracts.sql import string_literal as _str_lit
from contracts.sql import timestamp_expr
from contracts.units import DAYS_PER_MONTH
from contracts.units import p_text as _p_text

NO_PROCESS = ""


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"


def _jobs_cte(host: str, started: str, ended: str, prefilter: str = "") -> str:
    """Jobs with a host and a valid run interval, as integer microseconds."""
    return (
        f"jobs AS (SELECT CAST({_q(host)} AS VARCHAR) AS host, epoch_us({started}) AS s, "
        f"epoch_us({ended}) AS e FROM data WHERE {_q(host)} IS NOT NULL{prefilter}), "
        "ok_jobs AS (SELECT host, s, e FROM jobs WHERE s IS NOT NULL AND e IS NOT NULL "
        "AND e >= s)"
    )


def _window_prefilter(raw: tuple[str, str] | None, c0: int, c1: int) -> str:
    """The window condition on the stored started/ended TIMESTAMP columns ``raw`` (so
    DuckDB can skip row groups outside [c0, c1)); nothing without them."""
    if raw is None:
        return ""
    return f" AND {_q(raw[0])} < make_timestamp({c1}) AND {_q(raw[1])} > make_timestamp({c0})"


def hosts_query(host: str, started: str, ended: str) -> str:
    """Per host: jobs with a run interval, first start and last end (microseconds)."""
    return (
        f"WITH {_jobs_cte(host, started, ended)} SELECT host, count(*) AS n, "
        "min(s) AS first_us, max(e) AS last_us FROM ok_jobs GROUP BY host ORDER BY host"
    )


def edges_query(host: str, started: str, ended: str, parts: int) -> str:
    """Start times that split the jobs into ``parts`` chunks of about equal size."""
    qs = ", ".join(repr(i / parts) for i in range(1, parts))
    return (
        f"WITH {_jobs_cte(host, started, ended)} "
        f"SELECT quantile_disc(s, [{qs}]) AS edges FROM ok_jobs"
    )


def levels_query(
    host: str,
    started: str,
    ended: str,
    hosts: list[str],
    c0: int,
    c1: int,
    raw: tuple[str, str] | None = None,
) -> str:
    """Microseconds each host spends at each number of running jobs within [c0, c1).

    A sweep over start (+1) and end (-1) events, offset by the jobs already running
    at ``c0``; every host gets a point at ``c0`` so the stretch before its first event
    in the window is counted too. Over the whole time range in one window this is the
    complete curve; the plugin runs it window by window to bound memory. ``raw`` names
    plain TIMESTAMP started/ended columns, whose window condition is repeated on the
    stored values so DuckDB can skip row groups outside the window.
    """
    prefilter = _window_prefilter(raw, c0, c1)
    if len(hosts) <= 1000:
        hostlist = f"hostlist(host) AS (VALUES {', '.join(f'({_str_lit(h)})' for h in hosts)})"
    else:  # too many to list: derive them (one more scan per window)
        hostlist = "hostlist AS (SELECT DISTINCT host FROM ok_jobs)"
    return (
        f"WITH {_jobs_cte(host, started, ended, prefilter)}, {hostlist}, "
        f"win AS (SELECT host, s, e FROM ok_jobs WHERE s < {c1} AND e > {c0}), "
        f"init AS (SELECT host, count(*) AS n0 FROM win WHERE s < {c0} GROUP BY host), "
        f"ev AS (SELECT host, s AS ts, 1 AS d FROM win WHERE s >= {c0} "
        f"UNION ALL SELECT host, e AS ts, -1 AS d FROM win WHERE e < {c1} "
        f"UNION ALL SELECT host, {c0} AS ts, 0 AS d FROM hostlist), "
        "net AS (SELECT host, ts, sum(d) AS d FROM ev GROUP BY host, ts), "
        "curve AS (SELECT host, ts, "
        "sum(d) OVER (PARTITION BY host ORDER BY ts ROWS UNBOUNDED PRECEDING) AS cum, "
        f"coalesce(lead(ts) OVER (PARTITION BY host ORDER BY ts), {c1}) AS next_ts "
        "FROM net) "
        "SELECT curve.host, CAST(coalesce(init.n0, 0) + cum AS BIGINT) AS running, "
        "sum(next_ts - ts) AS us FROM curve LEFT JOIN init USING (host) "
        "GROUP BY ALL ORDER BY curve.host, running"
    )


def window_query(
    host: str, started: str, ended: str, c0: int, c1: int, raw: tuple[str, str] | None = None
) -> str:
    """The jobs running at some time in [c0, c1): host, start and end in microseconds.
    ``raw`` as in :func:`levels_query`."""
    prefilter = _window_prefilter(raw, c0, c1)
    return (
        f"WITH {_jobs_cte(host, started, ended, prefilter)} "
        f"SELECT host, s, e FROM ok_jobs WHERE s < {c1} AND e > {c0}"
    )


def window_levels(table, hosts: list[str], c0: int, c1: int) -> dict[tuple[str, int], int]:
    """Microseconds each host spends at each number of running jobs within [c0, c1),
    from the window's jobs (``window_query``): the sweep of :func:`levels_query` in
    numpy. Every host gets a point at ``c0`` (so the stretch before its first event in
    the window counts), starts add one and ends remove one; the events are sorted by
    (host, time) as one packed integer key. Events at the same time leave zero-length
    levels between them, which add nothing. Levels with no time are left out."""
    index = {h: i for i, h in enumerate(hosts)}
    n_hosts = len(hosts)
    encoded = pc.dictionary_encode(table.column("host").combine_chunks())
    lookup = np.array([index[h] for h in encoded.dictionary.to_pylist()], dtype=np.int64)
    code = lookup[encoded.indices.to_numpy(zero_copy_only=False)] if lookup.size else lookup
    s = table.column("s").to_numpy()
    e = table.column("e").to_numpy()
    before = s < c0
    running_at_c0 = np.bincount(code[before], minlength=n_hosts)
    starts, ends = ~before, e < c1
    t = np.concatenate([np.full(n_hosts, c0, dtype=np.int64), s[starts], e[ends]])
    c = np.concatenate([np.arange(n_hosts, dtype=np.int64), code[starts], code[ends]])
    kind = np.concatenate(  # 0: the host's point at c0, 1: a start, 2: an end
        [
            np.zeros(n_hosts, dtype=np.int64),
            np.ones(int(starts.sum()), dtype=np.int64),
            np.full(int(ends.sum()), 2, dtype=np.int64),
        ]
    )
    span = c1 - c0
    if n_hosts * span < 2**60:  # (host, time, kind) packed into one int64: a plain sort
        key = ((c * span + (t - c0)) << 2) | kind
        key.sort()
        kind, rest = key & 3, key >> 2
        c = rest // span
        t = rest - c * span + c0
    else:
        order = np.lexsort((t, c))
        t, c, kind = t[order], c[order], kind[order]
    step = (kind == 1).astype(np.int64) - (kind == 2)
    cum = np.cumsum(step)
    first = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])  # each host's first event
    before_block = (cum - step)[first]
    running = running_at_c0[c] + cum - np.repeat(before_block, np.diff(np.r_[first, c.size]))
    following = np.empty_like(t)
    following[:-1] = t[1:]
    following[np.r_[first[1:] - 1, c.size - 1]] = c1  # a host's last level lasts to c1
    width = int(running.max()) + 1
    totals = np.zeros(n_hosts * width, dtype=np.int64)
    np.add.at(totals, c * width + running, following - t)
    keys = np.flatnonzero(totals)
    return {
        (hosts[k // width], k % width): int(v)
        for k, v in zip(keys.tolist(), totals[keys].tolist(), strict=True)
    }


def concurrency_levels(
    ctx,
    host: str,
    started: str,
    ended: str,
    max_chunk_events: int,
    raw: tuple[str, str] | None,
    spans: list[dict] | None = None,
):
    """Seconds per concurrency level for every host, over its own span (first start to
    last end), computed in time windows of about ``max_chunk_events`` start/end events
    so memory stays bounded however large the table. Returns the levels, the jobs per
    host and a single query that reproduces the levels in one pass. ``spans`` are the
    rows of :func:`hosts_query` when the caller has them."""
    if spans is None:
        spans = ctx.data.sql(hosts_query(host, started, ended)).to_pylist()
    if not spans:
        return {}, {}, ""
    hosts = [r["host"] for r in spans]
    t0 = min(int(r["first_us"]) for r in spans)
    t1 = max(int(r["last_us"]) for r in spans) + 1
    total = sum(int(r["n"]) for r in spans)
    parts = max(1, math.ceil(2 * total / max_chunk_events))
    edges = [t0]
    if parts > 1:
        cut = ctx.data.sql(edges_query(host, started, ended, parts)).to_pylist()[0]["edges"]
        edges += sorted({int(c) for c in cut if t0 < int(c) < t1})
    edges.append(t1)
    us: dict[tuple[str, int], int] = {}
    for c0, c1 in itertools.pairwise(edges):
        window = ctx.data.sql(window_query(host, started, ended, c0, c1, raw))
        for key, v in window_levels(window, hosts, c0, c1).items():
            us[key] = us.get(key, 0) + v
    # the windows cover [t0, t1) for every host; before its first start and after its
    # last end a host runs nothing, and that time is not part of its span
    for r in spans:
        outside = (int(r["first_us"]) - t0) + (t1 - int(r["last_us"]))
        us[(r["host"], 0)] = us.get((r["host"], 0), 0) - outside
    levels: dict[str, list[tuple[int, float]]] = {}
    for (h, lvl), v in sorted(us.items()):
        if v > 0:
            levels.setdefault(h, []).append((lvl, v / 1e6))
    jobs = {r["host"]: int(r["n"]) for r in spans}
    return levels, jobs, levels_query(host, started, ended, hosts, t0, t1)


def waits_query(host: str, process: str | None, queued: str, started: str) -> str:
    """Jobs, median wait and total wait per (host, process)."""
    proc = f"CAST({_q(process)} AS VARCHAR)" if process else _str_lit(NO_PROCESS)
    proc_filter = f" AND {_q(process)} IS NOT NULL" if process else ""
    return (
        f"WITH w AS (SELECT CAST({_q(host)} AS VARCHAR) AS host, {proc} AS process, "
        f"date_diff('microsecond', {queued}, {started}) / 1e6 AS wait_s FROM data "
        f"WHERE {_q(host)} IS NOT NULL{proc_filter}) "
        "SELECT host, process, count(*) AS n, quantile_cont(wait_s, 0.5) AS median_wait_s, "
        "sum(wait_s) AS total_wait_s FROM w WHERE wait_s >= 0 "
        "GROUP BY host, process ORDER BY host, process"
    )


def sign_test_query(
    host: str, process: str | None, queued: str, started: str, target: str, peer: dict
) -> str:
    """How many of ``target``'s jobs wait longer than their process's peer median."""
    proc = f"CAST({_q(process)} AS VARCHAR)" if process else _str_lit(NO_PROCESS)
    values = ", ".join(f"({_str_lit(p)}, {float(v)!r})" for p, v in sorted(peer.items()))
    return (
        f"WITH peer(process, peer_median_s) AS (VALUES {values}), "
        f"w AS (SELECT {proc} AS process, "
        f"date_diff('microsecond', {queued}, {started}) / 1e6 AS wait_s FROM data "
        f"WHERE CAST({_q(host)} AS VARCHAR) = {_str_lit(target)}) "
        "SELECT count(*) AS n, count(*) FILTER (WHERE w.wait_s > peer.peer_median_s) AS longer, "
        "count(*) FILTER (WHERE w.wait_s = peer.peer_median_s) AS ties "
        "FROM w JOIN peer USING (process) WHERE w.wait_s >= 0"
    )


def _level_summary(levels: list[tuple[int, float]], level_time_share: float) -> dict:
    """Peak, sustained maximum and the share of time at or above it, for one host."""
    span = sum(sec for _, sec in levels)
    peak = max((lvl for lvl, sec in levels if sec > 0), default=0)
    at_or_above = 0.0
    sustained = 0
    by_level = sorted(levels, reverse=True)
    for lvl, sec in by_level:
        at_or_above += sec
        if lvl > 0 and span > 0 and at_or_above / span >= level_time_share:
            sustained = lvl
            break
    share = 0.0
    if sustained > 0 and span > 0:
        share = sum(sec for lvl, sec in levels if lvl >= sustained) / span
    busy = sum(sec for lvl, sec in levels if lvl > 0)
    return {
        "span_s": span,
        "peak": peak,
        "sustained_max": sustained,
        "saturated_share": share,
        "busy_share": busy / span if span > 0 else 0.0,
        "mean_running": sum(lvl * sec for lvl, sec in levels) / span if span > 0 else 0.0,
    }


def _wait_ratio(h: str, medians: dict) -> tuple[float | None, dict[str, float]]:
    """The process-adjusted wait ratio of host ``h``: its median waits against the
    other hosts' medians of the same processes, weighted by its jobs in each process;
    and those peer medians. ``medians`` maps process -> host -> (jobs, median wait)."""
    num = den = 0.0
    peer: dict[str, float] = {}
    for p in sorted(medians):
        if h not in medians[p]:
            continue
        others = sorted(m for oh, (_, m) in medians[p].items() if oh != h)
        if not others:
            continue
        n_hp, m_hp = medians[p][h]
        peer_med = float(np.median(others))
        peer[p] = peer_med
        num += n_hp * m_hp
        den += n_hp * peer_med
    # peers that start their jobs at once (median wait 0) make any wait "infinitely" long
    return (num / den if den > 0 else (math.inf if num > 0 else None)), peer


def _waits_long(ratio: float | None, peer: dict, min_wait_ratio: float) -> bool:
    return ratio is not None and ratio >= min_wait_ratio and bool(peer)


def _finite_ratio(ratio: float | None) -> float | None:
    return None if ratio is None or math.isinf(ratio) else ratio


def _ratio_text(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}"


def run(ctx):
    min_saturated_share = float(ctx.settings.get("min_saturated_share", 0.25))
    level_time_share = float(ctx.settings.get("level_time_share", 0.01))
    min_wait_ratio = float(ctx.settings.get("min_wait_ratio", 2.0))
    alpha = float(ctx.settings.get("alpha", 0.001))
    min_events = int(ctx.settings.get("min_events", 50))
    min_group_events = int(ctx.settings.get("min_group_events", 10))
    max_chunk_events = int(ctx.settings.get("max_chunk_events", 2_000_000))

    roles = {r: ctx.data.event_role(r) for r in ("host", "process", "queued", "started", "ended")}
    missing = [r for r in ("host", "queued", "started", "ended") if roles[r] is None]
    if missing:
        return na(
            "NOT_APPLICABLE",
            "Concurrency per host needs host, queued, started and ended columns; no column "
            f"was recognized for the event role(s) {', '.join(missing)}.",
            checked=[f"event role {r}: {roles[r] or 'not found'}" for r in sorted(roles)],
        )
    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    ts = {r: timestamp_expr(roles[r], dtypes.get(roles[r], "")) for r in ("queued", "started")}
    ts["ended"] = timestamp_expr(roles["ended"], dtypes.get(roles["ended"], ""))

    spans = ctx.data.sql(hosts_query(roles["host"], ts["started"], ts["ended"])).to_pylist()
    # the hosts the sweep gives levels: those whose jobs span some time
    running = {r["host"] for r in spans if int(r["last_us"]) > int(r["first_us"])}
    wq = waits_query(roles["host"], roles["process"], ts["queued"], ts["started"])
    groups = ctx.data.sql(wq).to_pylist()

    jobs: dict[str, int] = {}
    total_wait: dict[str, float] = {}
    medians: dict[str, dict[str, tuple[int, float]]] = {}
    for g in groups:
        h, p, n = g["host"], g["process"], int(g["n"])
        jobs[h] = jobs.get(h, 0) + n
        total_wait[h] = total_wait.get(h, 0.0) + float(g["total_wait_s"] or 0.0)
        if n >= min_group_events and g["median_wait_s"] is not None:
            medians.setdefault(p, {})[h] = (n, float(g["median_wait_s"]))

    hosts = sorted(h for h in running if jobs.get(h, 0) >= min_events)
    if len(hosts) < 2:
        return na(
            "INSUFFICIENT_DATA",
            f"Fewer than two hosts have at least {min_events} jobs with measurable waits and "
            "run times, so there are no peers to compare saturation against.",
            checked=[
                f"{len(running)} hosts with running jobs, {len(hosts)} with >= {min_events} jobs"
            ],
        )
    ratios = {h: _wait_ratio(h, medians) for h in hosts}
    waiting = [h for h in hosts if _waits_long(*ratios[h], min_wait_ratio)]
    if not waiting:
        # Saturation needs both a ceiling and long waits: with no host's waits long
        # enough, the sweep of running jobs (the costly part) cannot change the outcome.
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No host is saturated: none of the {len(hosts)} hosts has process-adjusted "
            f"waits at least {min_wait_ratio:g}x its peers', so none can be waiting on a "
            "concurrency ceiling; the running-jobs curves were not swept.",
            checked=[
                f"{h}: process-adjusted wait ratio {_ratio_text(ratios[h][0])} "
                f"(needs >= {min_wait_ratio:g})"
                for h in hosts
            ]
            + ["concurrency levels: not swept, since no host's waits qualify"],
            metrics={
                "hosts": {
                    h: {
                        "wait_ratio": _finite_ratio(ratios[h][0]),
                        "jobs": jobs[h],
                        "total_wait_hours": total_wait[h] / 3600,
                    }
                    for h in hosts
                }
            },
        )

    plain = all(dtypes.get(roles[r], "").upper() == "TIMESTAMP" for r in ("started", "ended"))
    per_host, _, lq = concurrency_levels(
        ctx,
        roles["host"],
        ts["started"],
        ts["ended"],
        max_chunk_events,
        (roles["started"], roles["ended"]) if plain else None,
        spans,
    )
    summaries: dict[str, dict] = {}
    checked: list[str] = []
    candidates = []
    for h in hosts:
        s = _level_summary(per_host[h], level_time_share)
        ratio, peer = ratios[h]
        s |= {
            "wait_ratio": _finite_ratio(ratio),
            "jobs": jobs[h],
            "total_wait_hours": total_wait[h] / 3600,
        }
        summaries[h] = s
        checked.append(
            f"{h}: at its sustained maximum of {s['sustained_max']} running jobs "
            f"{s['saturated_share']:.1%} of the time (needs >= {min_saturated_share:.0%}); "
            f"process-adjusted wait ratio {_ratio_text(ratio)} (needs >= {min_wait_ratio:g})"
        )
        if (
            s["sustained_max"] > 0
            and s["saturated_share"] >= min_saturated_share
            and _waits_long(ratio, peer, min_wait_ratio)
        ):
            candidates.append((h, peer, ratio))

    findings = []
    months = None
    for h, peer, ratio in candidates:
        s = summaries[h]
        sq = sign_test_query(roles["host"], roles["process"], ts["queued"], ts["started"], h, peer)
        row = ctx.data.sql(sq).to_pylist()[0]
        n_test = int(row["n"]) - int(row["ties"])
        longer = int(row["longer"])
        if n_test < 1:
            checked.append(f"{h}: no comparable waits for the sign test")
            continue
        test = stats.binomtest(longer, n_test, 0.5, alternative="greater")
        p_value = float(test.pvalue)
        checked.append(
            f"{h}: {longer} of {n_test} jobs wait longer than their process's peer median "
            f"(one-sided binomial sign test, {_p_text(p_value)}, needs p < {alpha:g})"
        )
        if not p_value < alpha:
            continue
        if months is None:
            span_q = (
                f"SELECT date_diff('microsecond', min({ts['started']}), max({ts['started']})) "
                "/ 86400e6 AS span_days FROM data"
            )
            span_days = float(ctx.data.sql(span_q).to_pylist()[0]["span_days"] or 0.0)
            months = max(span_days, 1.0) / DAYS_PER_MONTH
        saved = s["total_wait_hours"] * (1.0 - 1.0 / ratio) / months
        ratio_text = "far longer than" if math.isinf(ratio) else f"{ratio:.1f}x as long as"
        headroom = sorted(
            (o for o in hosts if o != h),
            key=lambda o: (summaries[o]["saturated_share"], o),
        )[:3]
        metrics = {
            "host": h,
            "jobs": int(s["jobs"]),
            "peak_running": int(s["peak"]),
            "sustained_max_running": int(s["sustained_max"]),
            "saturated_share": s["saturated_share"],
            "busy_share": s["busy_share"],
            "mean_running": s["mean_running"],
            "wait_ratio": s["wait_ratio"],
            "total_wait_hours": s["total_wait_hours"],
            "sign_test_jobs": n_test,
            "sign_test_longer": longer,
            "longer_share": longer / n_test,
            "p_value": p_value,
            "min_saturated_share": min_saturated_share,
            "min_wait_ratio": min_wait_ratio,
            "saved_hours_per_month": saved,
        }
        findings.append(
            Finding(
                kind="concurrency_saturation",
                title=f"Host {h} is saturated at {_jobs(s['sustained_max'])} at once",
                severity="high" if s["saturated_share"] >= 0.5 else "medium",
                confidence=max(0.0, min(0.99, 1.0 - p_value)),
                target=h,
                what=(
                    f"{h} runs {_jobs(s['sustained_max'])} at once (its ceiling; peak "
                    f"{s['peak']}) for {s['saturated_share']:.0%} of its observed time, and its "
                    f"jobs wait {ratio_text} the same processes on other hosts "
                    f"({longer / n_test:.0%} of its {n_test} jobs wait longer than their "
                    "process's peer median)."
                ),
                why=(
                    "A host pinned at a fixed number of running jobs while its queue waits "
                    "grow has run out of worker slots: new work cannot start until a slot "
                    f"frees up ({_p_text(p_value)} in a one-sided binomial sign test)."
                ),
                recommendation=(
                    f"Raise the worker-slot limit on {h} above {s['sustained_max']} (or add "
                    f"capacity to it), or route part of its work to hosts with headroom "
                    f"such as {', '.join(headroom)}."
                ),
                evidence=Evidence(
                    columns=tuple(
                        roles[r]
                        for r in ("host", "process", "queued", "started", "ended")
                        if roles[r]
                    ),
                    metrics=metrics,
                    query=lq + ";\n" + sq,
                    rows=int(s["jobs"]),
                ),
                measurement="modeled",
                impact=Impact(
                    value=saved,
                    unit="hours/month",
                    description=f"queue wait saved a month if waits on {h} fell to the "
                    "level of the same processes on other hosts",
                    assumptions=(
                        f"all of {h}'s waits shrink in proportion (by {1 - 1 / ratio:.0%}) "
                        "once it has enough worker slots",
                        "the extra waits are caused by the slot limit, not by the work routed "
                        "to the host",
                        "the observed period is representative; a month is "
                        f"{DAYS_PER_MONTH:.2f} days",
                    ),
                ),
            )
        )

    host_metrics = {h: summaries[h] for h in hosts}
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No host is saturated: none of the {len(hosts)} hosts both sits at its sustained "
            f"maximum concurrency at least {min_saturated_share:.0%} of the time and has "
            f"process-adjusted waits at least {min_wait_ratio:g}x its peers'.",
            checked=checked,
            metrics={"hosts": host_metrics},
        )
    return ok(
        findings=findings,
        metrics={"hosts": host_metrics, "saturated_hosts": [f.target for f in findings]},
    )
