"""queue_bottleneck: the process whose queue wait dominates, confirmed by a rank test."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from contracts import Evidence, Finding, Impact, Ok, QuantileGroup, Quantiles, na, ok
from contracts.sql import quote_ident as _q
from contracts.sql import string_literal as _str_lit
from contracts.sql import timestamp_expr
from contracts.units import DAYS_PER_MONTH
from contracts.units import p_text as _p_text

UPSTREAM = "process_durations"


def _keep_fraction(count: int, limit: int) -> int:
    """Parts per million of a group to pre-select (about twice ``limit`` rows), so that
    only a small candidate set is sorted however large the table."""
    if count <= 2 * limit:
        return 1_000_000
    return max(1, math.ceil(2 * limit * 1_000_000 / count))


def sample_query(
    ctx, roles: dict[str, str], process: str, limit: int, target_n: int, rest_n: int
) -> str:
    """Up to ``limit`` wait times of ``process`` and of the rest, chosen by a seeded
    hash of each event (deterministic, independent of storage order)."""
    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    queued = timestamp_expr(roles["queued"], dtypes.get(roles["queued"], ""))
    started = timestamp_expr(roles["started"], dtypes.get(roles["started"], ""))
    p = _q(roles["process"])
    keep_target = _keep_fraction(target_n, limit)
    keep_rest = _keep_fraction(rest_n, limit)
    return (
        f"WITH ev AS (SELECT CAST({p} AS VARCHAR) = {_str_lit(process)} AS is_target, "
        f"date_diff('microsecond', {queued}, {started}) / 1e6 AS wait_s, "
        f"hash({p}, {_q(roles['queued'])}, {_q(roles['started'])}, {int(ctx.seed)}) AS h "
        f"FROM data WHERE {p} IS NOT NULL) "
        "SELECT is_target, wait_s FROM ev WHERE wait_s >= 0 "
        f"AND h % 1000000 < CASE WHEN is_target THEN {keep_target} ELSE {keep_rest} END "
        f"QUALIFY row_number() OVER (PARTITION BY is_target ORDER BY h, wait_s) <= {limit} "
        "ORDER BY is_target, wait_s"
    )


def wait_chart(processes: dict, names: list[str], top: str) -> Quantiles:
    """The compared processes' wait quantiles (from process_durations), ``top`` marked."""
    qs = ("p50", "p95", "p99")
    return Quantiles(
        title="Queue wait by process",
        value_label="wait (s, log scale)",
        quantiles=qs,
        groups=tuple(
            QuantileGroup(
                label=n,
                values=tuple(processes[n].get(f"wait_{q}_s") for q in qs),
                n=int(processes[n].get("wait_count") or 0),
            )
            for n in names
        ),
        highlight=(top,),
        log_scale=True,
    )


def run(ctx):
    min_share = float(ctx.settings.get("min_share", 0.25))
    min_ratio = float(ctx.settings.get("min_ratio", 2.0))
    alpha = float(ctx.settings.get("alpha", 0.01))
    max_sample = int(ctx.settings.get("max_sample", 5000))
    min_events = int(ctx.settings.get("min_events", 5))

    upstream = ctx.upstream.get(UPSTREAM)
    if not isinstance(upstream, Ok):
        reason = getattr(upstream, "reason_code", "missing")
        code = reason if reason in ("NOT_APPLICABLE", "INSUFFICIENT_DATA") else "UPSTREAM_NA"
        return na(
            code,
            f"{UPSTREAM} produced no wait times ({reason}), so queues cannot be compared.",
            checked=[f"upstream {UPSTREAM}: {reason}"],
        )

    processes = upstream.metrics.get("processes", {})
    roles = upstream.metrics.get("roles", {})
    eligible = [
        name
        for name in sorted(processes)
        if int(processes[name].get("wait_count") or 0) >= min_events
        and processes[name].get("wait_p95_s") is not None
    ]
    if len(eligible) < 2:
        return na(
            "INSUFFICIENT_DATA",
            f"Fewer than two processes have at least {min_events} measured waits, so there "
            "are no peers to compare a bottleneck against.",
            checked=[f"{len(processes)} processes, {len(eligible)} with >= {min_events} waits"],
        )

    total_hours = sum(float(processes[n]["total_wait_hours"]) for n in sorted(processes))
    top = min(eligible, key=lambda n: (-float(processes[n]["total_wait_hours"]), n))
    top_m = processes[top]
    top_hours = float(top_m["total_wait_hours"])
    share = top_hours / total_hours if total_hours > 0 else 0.0
    top_p95 = float(top_m["wait_p95_s"])
    peer_p95s = [float(processes[n]["wait_p95_s"]) for n in eligible if n != top]
    peer_p95 = float(np.median(peer_p95s))
    ratio = top_p95 / peer_p95 if peer_p95 > 0 else (math.inf if top_p95 > 0 else 1.0)

    checked = [
        f"largest wait share: {top} with {share:.1%} of {total_hours:.1f} h "
        f"(needs > {min_share:.0%})",
        f"p95 wait of {top}: {top_p95:.0f}s vs peers' median p95 {peer_p95:.0f}s "
        f"(ratio {ratio:.2f}, needs > {min_ratio:g})",
        f"{len(eligible)} processes with >= {min_events} waits compared",
    ]
    base_metrics = {
        "process": top,
        "wait_share": share,
        "p95_wait_s": top_p95,
        "peers_median_p95_wait_s": peer_p95,
        "p95_ratio": None if math.isinf(ratio) else ratio,
    }
    if not (share > min_share and ratio > min_ratio):
        return na(
            "NO_SIGNIFICANT_EFFECT",
            "No process dominates the queue: the largest share of wait time and its p95 "
            "wait are within the configured limits.",
            checked=checked,
            metrics=base_metrics,
        )

    rest_n = sum(int(processes[n].get("wait_count") or 0) for n in sorted(processes) if n != top)
    query = sample_query(ctx, roles, top, max_sample, int(top_m.get("wait_count") or 0), rest_n)
    table = ctx.data.sql(query)
    is_target = np.asarray(table.column("is_target").to_pylist(), dtype=bool)
    waits = np.asarray(table.column("wait_s").to_pylist(), dtype=float)
    target_waits = waits[is_target]
    rest_waits = waits[~is_target]
    if target_waits.size < 2 or rest_waits.size < 2:
        return na(
            "INSUFFICIENT_DATA",
            "Too few wait times were sampled to test the difference.",
            checked=[*checked, f"sample: {target_waits.size} vs {rest_waits.size}"],
            metrics=base_metrics,
        )
    test = stats.mannwhitneyu(target_waits, rest_waits, alternative="greater")
    p_value = float(test.pvalue)
    checked.append(
        f"Mann-Whitney U (one-sided, {top} > rest): U={float(test.statistic):.0f}, "
        f"{_p_text(p_value)} on {target_waits.size} vs {rest_waits.size} waits "
        f"(needs p < {alpha:g})"
    )
    if not p_value < alpha:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"{top} has the largest wait share, but its waits are not significantly longer "
            "than the other processes' in a rank test.",
            checked=checked,
            metrics=base_metrics | {"p_value": p_value},
        )

    span_days = float(upstream.metrics.get("span_days") or 0.0)
    months = max(span_days, 1.0) / DAYS_PER_MONTH
    factor = min(1.0, peer_p95 / top_p95) if top_p95 > 0 else 1.0
    saved_hours = top_hours * (1.0 - factor)
    saved_per_month = saved_hours / months
    ratio_text = "far" if math.isinf(ratio) else f"{ratio:.1f}x"
    metrics = base_metrics | {
        "total_wait_hours": top_hours,
        "all_wait_hours": total_hours,
        "p50_wait_s": top_m.get("wait_p50_s"),
        "events": int(top_m.get("wait_count") or 0),
        "peer_count": len(peer_p95s),
        "mannwhitney_u": float(test.statistic),
        "p_value": p_value,
        "sample_target": int(target_waits.size),
        "sample_rest": int(rest_waits.size),
        "span_days": span_days,
        "saved_hours_per_month": saved_per_month,
    }
    finding = Finding(
        kind="queue_bottleneck",
        title=f"{top} is the queue bottleneck",
        severity="high" if share >= 0.5 else "medium",
        confidence=max(0.0, min(0.99, 1.0 - p_value)),
        target=top,
        what=(
            f"{top} accounts for {share:.0%} of all queue wait ({top_hours:.1f} of "
            f"{total_hours:.1f} h); its p95 wait is {top_p95 / 60:.1f} min, {ratio_text} "
            f"the median p95 of its {len(peer_p95s)} peers ({peer_p95 / 60:.1f} min)."
        ),
        why=(
            f"Its waits are longer than the rest's in a one-sided Mann-Whitney U test "
            f"({_p_text(p_value)}); work queued for {top} sits idle far longer than elsewhere, "
            "which points to too little capacity for this process rather than slow jobs."
        ),
        recommendation=(
            f"Add a worker to {top} or split its queue (e.g. by module or priority) so "
            f"that its p95 wait approaches the peers' {peer_p95 / 60:.1f} min."
        ),
        evidence=Evidence(
            columns=tuple(roles[r] for r in ("process", "queued", "started") if roles.get(r)),
            metrics=metrics,
            query=query,
            rows=int(top_m.get("wait_count") or 0),
        ),
        charts=(wait_chart(processes, eligible, top),),
        measurement="modeled",
        impact=Impact(
            value=saved_per_month,
            unit="hours/month",
            description=f"queue wait saved a month if {top}'s p95 wait fell to the "
            "peers' median p95",
            assumptions=(
                f"all of {top}'s waits shrink in proportion (by {1 - factor:.0%}) so that its "
                "p95 matches the peers' median p95",
                f"the observed {span_days:.1f} days are representative; a month is "
                f"{DAYS_PER_MONTH:.2f} days",
                "the volume of work queued for the process stays the same",
            ),
        ),
    )
    return ok(findings=[finding], metrics=metrics)
