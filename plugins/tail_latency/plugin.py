"""tail_latency: a process whose slowest runs are far out of proportion to its typical run.

Processes differ in how long they run by design, so the tail is judged by its shape:
p99/p50 of the run duration, compared with the peers' median p99/p50. A process is
reported when its ratio is far above its peers' (``min_ratio_factor``) and its p99 is
also long in absolute terms (``min_p99_factor`` x the peers' median p99). A one-sided
binomial test then checks that more than 1% of its runs exceed the cap its peers'
shape implies (p50 x the peers' median ratio). Quantiles and counts are SQL aggregates.
"""

from __future__ import annotations

import msgspec
import numpy as np
from scipy import stats

from contracts import Evidence, Finding, Impact, QuantileGroup, Quantiles, na, ok
from contracts.sql import quote_ident as _q
from contracts.sql import string_literal as _str_lit
from contracts.sql import timestamp_expr
from contracts.units import DAYS_PER_MONTH
from contracts.units import p_text as _p_text


def _lit(value: float) -> str:
    """A float as an SQL literal that round-trips exactly."""
    return repr(float(value))


def _runs_cte(ctx, roles: dict[str, str]) -> str:
    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    started = timestamp_expr(roles["started"], dtypes.get(roles["started"], ""))
    ended = timestamp_expr(roles["ended"], dtypes.get(roles["ended"], ""))
    p = _q(roles["process"])
    return (
        f"WITH ev AS (SELECT CAST({p} AS VARCHAR) AS process, {started} AS started_ts, "
        f"date_diff('microsecond', {started}, {ended}) / 1e6 AS run_s "
        f"FROM data WHERE {p} IS NOT NULL) "
    )


def quantile_query(ctx, roles: dict[str, str]) -> str:
    return (
        _runs_cte(ctx, roles) + "SELECT process, count(*) AS runs, "
        "quantile_cont(run_s, [0.5, 0.99]) AS q, "
        "date_diff('microsecond', min(started_ts), max(started_ts)) / 86400e6 AS span_days "
        "FROM ev WHERE run_s >= 0 GROUP BY process ORDER BY process"
    )


def tail_query(ctx, roles: dict[str, str], process: str, cap_s: float) -> str:
    return (
        _runs_cte(ctx, roles) + "SELECT count(*) AS runs, "
        f"count(*) FILTER (WHERE run_s > {_lit(cap_s)}) AS over_cap, "
        f"sum(greatest(run_s - {_lit(cap_s)}, 0)) AS excess_s, "
        "quantile_cont(run_s, [0.5, 0.99]) AS q "
        f"FROM ev WHERE run_s >= 0 AND process = {_str_lit(process)}"
    )


def run(ctx):
    min_ratio_factor = float(ctx.settings.get("min_ratio_factor", 3.0))
    min_p99_factor = float(ctx.settings.get("min_p99_factor", 2.0))
    min_runs = int(ctx.settings.get("min_runs", 200))
    alpha = float(ctx.settings.get("alpha", 0.001))

    roles = {r: ctx.data.event_role(r) for r in ("process", "started", "ended")}
    missing = sorted(r for r, col in roles.items() if col is None)
    if missing:
        return na(
            "NOT_APPLICABLE",
            "Needs an event log with process, started and ended columns to measure run "
            f"times; no column was recognized for: {', '.join(missing)}.",
            checked=[f"event role {r}: {roles[r] or 'not found'}" for r in sorted(roles)],
        )

    query = quantile_query(ctx, roles)
    stats_by_process = {}
    span_days = 0.0
    for r in ctx.data.sql(query).to_pylist():
        q = r["q"]
        span_days = max(span_days, float(r["span_days"] or 0.0))
        if int(r["runs"]) >= min_runs and q is not None and q[0] is not None and q[0] > 0:
            stats_by_process[str(r["process"])] = {
                "runs": int(r["runs"]),
                "p50": float(q[0]),
                "p99": float(q[1]),
                "ratio": float(q[1]) / float(q[0]),
            }
    eligible = sorted(stats_by_process)
    if len(eligible) < 3:
        return na(
            "INSUFFICIENT_DATA",
            f"Fewer than three processes have at least {min_runs} runs with a positive median, "
            "so there are not enough peers to judge a tail against.",
            checked=[f"{len(eligible)} processes with >= {min_runs} runs"],
        )

    checked: list[str] = []
    findings = []
    for name in eligible:
        s = stats_by_process[name]
        peers = [stats_by_process[n] for n in eligible if n != name]
        peer_ratio = float(np.median([p["ratio"] for p in peers]))
        peer_p99 = float(np.median([p["p99"] for p in peers]))
        ratio_factor = s["ratio"] / peer_ratio
        p99_factor = s["p99"] / peer_p99 if peer_p99 > 0 else float("inf")
        line = (
            f"{name}: p99/p50 {s['ratio']:.1f} vs peers' median {peer_ratio:.1f} "
            f"({ratio_factor:.1f}x, needs > {min_ratio_factor:g}x); p99 {s['p99']:.0f} s vs "
            f"peers' median p99 {peer_p99:.0f} s ({p99_factor:.1f}x, needs > {min_p99_factor:g}x)"
        )
        if not (ratio_factor > min_ratio_factor and p99_factor > min_p99_factor):
            checked.append(line)
            continue
        cap = s["p50"] * peer_ratio
        tq = tail_query(ctx, roles, name, cap)
        t = ctx.data.sql(tq).to_pylist()[0]
        runs = int(t["runs"])
        over = int(t["over_cap"])
        test = stats.binomtest(over, runs, 0.01, alternative="greater")
        p_value = float(test.pvalue)
        checked.append(f"{line}; {over} of {runs} runs over {cap:.0f} s ({_p_text(p_value)})")
        if not p_value < alpha:
            continue
        found = _finding(
            roles, name, s, peers, peer_ratio, peer_p99, cap, t, p_value, tq, span_days
        )
        findings.append(msgspec.structs.replace(found, charts=(run_chart(stats_by_process, name),)))

    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No process's run-time tail (p99/p50) is more than {min_ratio_factor:g}x its "
            f"peers' with a p99 above {min_p99_factor:g}x theirs ({len(eligible)} processes "
            "compared).",
            checked=checked,
            metrics={"processes_compared": len(eligible)},
        )
    return ok(
        findings=findings,
        metrics={
            "processes_compared": len(eligible),
            "flagged_processes": [f.target for f in findings],
        },
    )


def run_chart(stats_by_process: dict, name: str) -> Quantiles:
    """Every compared process's median and p99 run time, ``name`` marked."""
    return Quantiles(
        title="Run time by process: median and p99",
        value_label="run time (s, log scale)",
        quantiles=("p50", "p99"),
        groups=tuple(
            QuantileGroup(label=n, values=(s["p50"], s["p99"]), n=s["runs"])
            for n, s in sorted(stats_by_process.items())
        ),
        highlight=(name,),
        log_scale=True,
    )


def _finding(roles, name, s, peers, peer_ratio, peer_p99, cap, t, p_value, query, span_days):
    runs = int(t["runs"])
    over = int(t["over_cap"])
    excess_hours = float(t["excess_s"] or 0.0) / 3600.0
    months = max(span_days, 1.0) / DAYS_PER_MONTH
    per_month = excess_hours / months
    ratio_factor = s["ratio"] / peer_ratio
    metrics = {
        "runs": runs,
        "p50_run_s": s["p50"],
        "p99_run_s": s["p99"],
        "p99_p50_ratio": s["ratio"],
        "peers_median_ratio": peer_ratio,
        "peers_median_p99_s": peer_p99,
        "ratio_factor": ratio_factor,
        "p99_factor": s["p99"] / peer_p99 if peer_p99 > 0 else None,
        "peer_count": len(peers),
        "cap_s": cap,
        "runs_over_cap": over,
        "share_over_cap": over / runs if runs else 0.0,
        "excess_run_hours": excess_hours,
        "excess_run_hours_per_month": per_month,
        "span_days": span_days,
        "p_value": p_value,
        "test": "one-sided binomial: share of runs over the cap > 1%",
    }
    return Finding(
        kind="tail_latency_hotspot",
        title=f"{name} has a long run-time tail (p99 {ratio_factor:.1f}x peers' shape)",
        severity="high" if ratio_factor >= 5 else "medium",
        confidence=max(0.0, min(0.99, 1.0 - p_value)),
        target=name,
        what=(
            f"{name}'s p99 run time is {s['p99']:.0f} s, {s['ratio']:.1f}x its median of "
            f"{s['p50']:.0f} s, while its {len(peers)} peers' p99 is a median "
            f"{peer_ratio:.1f}x their median; {over} of {runs} runs ({over / runs:.1%}) "
            f"exceed the {cap:.0f} s that shape would imply."
        ),
        why=(
            "Its typical run is ordinary but a minority of runs take many times longer, "
            f"far more often than the 1% the peers' shape allows ({_p_text(p_value)}, "
            "binomial test): stuck jobs, lock waits, retries inside the run or a few "
            "oversized inputs, not a uniformly slow process."
        ),
        recommendation=(
            f"Pull {name}'s runs longer than {cap:.0f} s and look for what they share "
            "(input size, host, time of day, locks); set a watchdog/timeout near "
            f"{cap:.0f} s with a retry, and split oversized inputs so the tail matches its "
            "peers'."
        ),
        evidence=Evidence(
            columns=(roles["process"], roles["started"], roles["ended"]),
            metrics=metrics,
            query=query,
            rows=over,
        ),
        measurement="modeled",
        impact=Impact(
            value=per_month,
            unit="hours/month",
            description=f"run time a month above the {cap:.0f} s cap that {name}'s tail costs",
            assumptions=(
                "runs over the cap would finish at the cap if the tail had the peers' shape",
                f"the observed {span_days:.1f} days are representative; a month is "
                f"{DAYS_PER_MONTH:.2f} days",
            ),
        ),
    )
