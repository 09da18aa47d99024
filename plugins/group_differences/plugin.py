"""group_differences: a grouping (host, user, ...) under which jobs take far longer.

For each duration metric of an event log (``wait_s`` = started - queued, ``run_s`` =
ended - started) and each low-cardinality grouping column, a Kruskal-Wallis test
(scipy.stats.kruskal) on a bounded, seeded sample, with epsilon-squared as the effect
size; only large effects are reported. Processes differ in duration by design, so
the process column is never a group, each duration is first turned into its
percentile within its own process (so a host that runs the long processes does not
look slow), and a grouping column that is (nearly) a function of the process (a
module, a sub-step) is left out. Outcome columns (the status) are not groups either:
they are consequences of a run, not something to act on.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.stats import contingency

from contracts import Evidence, Finding, Impact, na, ok
from contracts.effects import is_large, keep_ppm, kruskal_effect
from contracts.sql import quote_ident as _q
from contracts.sql import string_literal as _str_lit
from contracts.sql import timestamp_expr
from contracts.units import DAYS_PER_MONTH

METRIC_TEXT = {"wait_s": "queue wait", "run_s": "run time"}


def metric_exprs(ctx, roles: dict[str, str | None]) -> dict[str, str]:
    dtypes = {c.name: c.dtype for c in ctx.data.columns}

    def ts(role: str) -> str:
        col = roles[role]
        assert col is not None
        return timestamp_expr(col, dtypes.get(col, ""))

    out = {}
    if roles["queued"] is not None:
        out["wait_s"] = f"date_diff('microsecond', {ts('queued')}, {ts('started')}) / 1e6"
    if roles["ended"] is not None:
        out["run_s"] = f"date_diff('microsecond', {ts('started')}, {ts('ended')}) / 1e6"
    return out


def sample_query(ctx, roles, metrics: dict[str, str], groups: list[str], limit: int) -> str:
    """Up to ``limit`` events chosen by a seeded hash of their own values (deterministic,
    independent of storage order)."""
    process = roles["process"]
    proc = f"CAST({_q(process)} AS VARCHAR)" if process is not None else "''"
    hashed = [c for c in (process, roles["queued"], roles["started"], roles["ended"]) if c]
    hashed += [g for g in groups if g not in hashed]
    cols = [f"{proc} AS process"]
    cols += [f"CAST({_q(g)} AS VARCHAR) AS g{i}" for i, g in enumerate(groups)]
    cols += [f"CAST({expr} AS DOUBLE) AS {name}" for name, expr in sorted(metrics.items())]
    hash_args = ", ".join([*(_q(c) for c in hashed), str(int(ctx.seed))])
    out = ["process", *(f"g{i}" for i in range(len(groups))), *sorted(metrics)]
    keep = keep_ppm(ctx.data.rows, limit)
    return (
        f"WITH s AS (SELECT {', '.join(cols)}, hash({hash_args}) AS h FROM data) "
        f"SELECT {', '.join(out)} FROM s WHERE h % 1000000 < {keep} "
        f"ORDER BY h, {', '.join(out)} LIMIT {int(limit)}"
    )


def within_process_percentile(values: np.ndarray, process: np.ndarray, min_n: int):
    """Each value's mid-rank percentile within its process (NaN where not usable), and
    its ratio to the process's sample median (NaN where the median is not positive)."""
    pct = np.full(values.shape, np.nan)
    ratio = np.full(values.shape, np.nan)
    ok_mask = ~np.isnan(values)
    for name in sorted(set(process[ok_mask].tolist())):
        sel = ok_mask & (process == name)
        n = int(sel.sum())
        if n < min_n:
            continue
        v = values[sel]
        pct[sel] = (stats.rankdata(v) - 0.5) / n
        median = float(np.median(v))
        if median > 0:
            ratio[sel] = v / median
    return pct, ratio


def _settings(ctx) -> dict[str, float]:
    s = ctx.settings
    return {
        "min_epsilon_squared": float(s.get("min_epsilon_squared", 0.26)),
        "min_single_group_a": float(s.get("min_single_group_a", 0.71)),
        "alpha": float(s.get("alpha", 0.001)),
        "max_sample": int(s.get("max_sample", 20000)),
        "min_group_size": int(s.get("min_group_size", 30)),
        "max_groups": int(s.get("max_groups", 50)),
        "max_process_association": float(s.get("max_process_association", 0.8)),
        "min_process_sample": int(s.get("min_process_sample", 20)),
    }


def group_columns(ctx, roles, max_groups: int) -> tuple[list[str], list[str]]:
    """Candidate grouping columns (dataset order) and why others were left out."""
    excluded = {
        roles[r]: r
        for r in ("process", "status", "case", "queued", "started", "ended")
        if roles[r] is not None
    }
    event_groups = {roles[r] for r in ("host", "user") if roles[r] is not None}
    chosen, notes = [], []
    for c in ctx.data.columns:
        if c.name in excluded:
            if excluded[c.name] in ("process", "status"):
                notes.append(f"{c.name}: not a group (the {excluded[c.name]} column)")
            continue
        if not (c.role in ("categorical", "boolean") or c.name in event_groups):
            continue
        if not 2 <= c.distinct_count <= max_groups:
            notes.append(f"{c.name}: {c.distinct_count} distinct values (needs 2..{max_groups})")
            continue
        chosen.append(c.name)
    return chosen, notes


def run(ctx):
    cfg = _settings(ctx)
    roles = {
        r: ctx.data.event_role(r)
        for r in ("process", "status", "case", "queued", "started", "ended", "host", "user")
    }
    if roles["started"] is None or (roles["queued"] is None and roles["ended"] is None):
        return na(
            "NOT_APPLICABLE",
            "Needs an event log with a started column and a queued or ended column to "
            "measure durations.",
            checked=[f"event role {r}: {roles[r] or 'not found'}" for r in sorted(roles)],
        )
    groups, notes = group_columns(ctx, roles, int(cfg["max_groups"]))
    if not groups:
        return na(
            "NOT_APPLICABLE",
            "No grouping column (categorical or boolean, 2 to "
            f"{int(cfg['max_groups'])} values, other than the process and status) to compare "
            "durations across.",
            checked=notes or ["no categorical or boolean columns"],
        )

    exprs = metric_exprs(ctx, roles)
    query = sample_query(ctx, roles, exprs, groups, int(cfg["max_sample"]))
    table = ctx.data.sql(query)
    process = np.array(
        ["" if v is None else v for v in table.column("process").to_pylist()], dtype=object
    )
    n_processes = len(set(process.tolist()))
    checked = list(notes)
    results = []
    for metric in sorted(exprs):
        raw = np.array(
            [np.nan if v is None or v < 0 else v for v in table.column(metric).to_pylist()],
            dtype=float,
        )
        pct, ratio = within_process_percentile(raw, process, int(cfg["min_process_sample"]))
        for i, group in enumerate(groups):
            labels = np.array(
                ["" if v is None else v for v in table.column(f"g{i}").to_pylist()], dtype=object
            )
            has = np.array([v is not None for v in table.column(f"g{i}").to_pylist()])
            usable = has & ~np.isnan(pct)
            res = _test(metric, group, labels, process, pct, ratio, usable, n_processes, cfg)
            checked.append(res["note"])
            if res.get("passed"):
                results.append(res)

    if not results:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No grouping column separates durations (within each process) with a large "
            f"effect (epsilon-squared >= {cfg['min_epsilon_squared']:g}) and Kruskal-Wallis "
            f"p < {cfg['alpha']:g} ({len(groups)} grouping columns, {len(exprs)} metrics, "
            f"{table.num_rows} sampled events).",
            checked=checked,
            metrics={"sampled_events": table.num_rows, "group_columns": groups},
        )
    findings = [_finding(ctx, roles, exprs, res, query, table.num_rows) for res in results]
    findings.sort(key=lambda f: f.target)
    return ok(
        findings=findings,
        metrics={
            "sampled_events": table.num_rows,
            "group_columns": groups,
            "flagged": [f.target for f in findings],
        },
    )


def _test(metric, group, labels, process, pct, ratio, usable, n_processes, cfg):
    target = f"{metric}~{group}"
    if n_processes >= 2:
        _, table = contingency.crosstab(labels[usable], process[usable])
        if table.shape[0] >= 2 and table.shape[1] >= 2:
            v = float(contingency.association(table, method="cramer"))
        else:
            v = 0.0
        if v >= cfg["max_process_association"]:
            return {
                "note": f"{target}: skipped, {group} is tied to the process "
                f"(Cramer's V {v:.2f} >= {cfg['max_process_association']:g}); "
                "its differences are the processes'"
            }
    else:
        v = 0.0
    counts: dict[str, int] = {}
    for lab in labels[usable].tolist():
        counts[lab] = counts.get(lab, 0) + 1
    kept = sorted(lab for lab, n in counts.items() if n >= cfg["min_group_size"])
    if len(kept) < 2:
        return {
            "note": f"{target}: skipped, fewer than 2 groups with >= "
            f"{int(cfg['min_group_size'])} sampled events"
        }
    samples = [pct[usable & (labels == lab)] for lab in kept]
    pooled = np.concatenate(samples)
    if np.ptp(pooled) == 0:
        return {"note": f"{target}: skipped, every sampled value is the same"}
    medians = {lab: float(np.median(s)) for lab, s in zip(kept, samples, strict=True)}
    worst = max(kept, key=lambda lab: (medians[lab], lab))
    rest_mask = usable & (labels != worst) & np.isin(labels, kept)
    worst_mask = usable & (labels == worst)
    worst_ratio = _nanmedian(ratio[worst_mask])
    rest_ratio = _nanmedian(ratio[rest_mask])
    # the shared rule (contracts.effects): epsilon-squared, or the slowest group alone
    effect = kruskal_effect(kept, samples, worst)
    h, p_value, n = effect["h"], effect["p_value"], effect["n"]
    eps2 = effect["epsilon_squared"]
    single_a, single_p = effect["single_group_a"], effect["single_group_p_value"]
    passed = is_large(effect, cfg["min_epsilon_squared"], cfg["min_single_group_a"], cfg["alpha"])
    note = (
        f"{target}: epsilon^2 {eps2:.3f} (needs >= {cfg['min_epsilon_squared']:g}) or "
        f"{worst} alone A {single_a:.2f} (needs >= {cfg['min_single_group_a']:g}), "
        f"Kruskal-Wallis H {h:.1f}, p = {p_value:.2g}, {len(kept)} groups, {n} events"
    )
    return {
        "note": note,
        "passed": passed,
        "metric": metric,
        "group": group,
        "target": target,
        "epsilon_squared": eps2,
        "single_group_a": single_a,
        "single_group_p_value": single_p,
        "h": h,
        "p_value": p_value,
        "n": n,
        "groups": len(kept),
        "cramers_v": v,
        "worst": worst,
        "worst_pct": medians[worst],
        "rest_pct": float(np.median(pct[rest_mask])) if rest_mask.any() else None,
        "worst_ratio": worst_ratio,
        "rest_ratio": rest_ratio,
        "worst_n": int(worst_mask.sum()),
    }


def _nanmedian(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(np.median(values)) if values.size else None


def _finding(ctx, roles, exprs, res, sample_sql, sampled) -> Finding:
    metric, group, worst = res["metric"], res["group"], res["worst"]
    what_metric = METRIC_TEXT[metric]
    # the modeled saving: the worst group's total of the metric, scaled down to the others'
    # typical ratio to their process median
    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    started = roles["started"]
    st = timestamp_expr(started, dtypes.get(started, ""))
    totals_sql = (
        f"SELECT count(*) AS events, sum(m) AS total_s, "
        f"date_diff('microsecond', min(st), max(st)) / 86400e6 AS span_days FROM ("
        f"SELECT CAST({exprs[metric]} AS DOUBLE) AS m, {st} AS st, "
        f"CAST({_q(group)} AS VARCHAR) AS g FROM data) "
        f"WHERE m >= 0 AND g = {_str_lit(worst)}"
    )
    span_sql = f"SELECT date_diff('microsecond', min({st}), max({st})) / 86400e6 AS d FROM data"
    totals = ctx.data.sql(totals_sql).to_pylist()[0]
    span_days = float(ctx.data.sql(span_sql).to_pylist()[0]["d"] or 0.0)
    months = max(span_days, 1.0) / DAYS_PER_MONTH
    total_hours = float(totals["total_s"] or 0.0) / 3600.0
    worst_ratio, rest_ratio = res["worst_ratio"], res["rest_ratio"]
    if worst_ratio and rest_ratio and worst_ratio > rest_ratio:
        factor = 1.0 - rest_ratio / worst_ratio
    else:
        factor = 0.0
    saved = total_hours * factor / months
    ratio_text = (
        f"{worst_ratio:.1f}x their process's median (other {group} values: {rest_ratio:.1f}x)"
        if worst_ratio is not None and rest_ratio is not None
        else f"at the {res['worst_pct']:.0%} percentile of their process"
    )
    eps2, p_value = float(res["epsilon_squared"]), float(res["p_value"])
    metrics = {
        "metric": metric,
        "group_column": group,
        "epsilon_squared": eps2,
        "single_group_a": float(res["single_group_a"]),
        "kruskal_h": float(res["h"]),
        "p_value": p_value,
        "test": "Kruskal-Wallis on within-process percentiles (seeded sample)",
        "groups": int(res["groups"]),
        "sampled_events": int(res["n"]),
        "sample_limit_rows": sampled,
        "cramers_v_with_process": float(res["cramers_v"]),
        "worst_group": worst,
        "worst_group_sampled": int(res["worst_n"]),
        "worst_median_percentile": float(res["worst_pct"]),
        "rest_median_percentile": res["rest_pct"],
        "worst_ratio_to_process_median": worst_ratio,
        "rest_ratio_to_process_median": rest_ratio,
        "worst_group_events": int(totals["events"]),
        "worst_group_hours": total_hours,
        "span_days": span_days,
        "saved_hours_per_month": saved,
    }
    if metric == "run_s":
        action = (
            f"Check {group}={worst} for the cause (hardware, CPU throttling, disk or network, "
            "configuration drift, noisy neighbours); drain it or move work away from it until "
            f"fixed, so its runs return to the {rest_ratio or 1.0:.1f}x of the other "
            f"{group} values."
        )
    else:
        action = (
            f"Give {group}={worst} more capacity or route its work to the other {group} values "
            "(rebalance the queue, add workers, review its priority or quota) so its waits "
            "match theirs."
        )
    return Finding(
        kind="group_difference",
        title=f"{what_metric.capitalize()} differs by {group}: {worst} is slowest",
        severity="high" if eps2 >= 0.5 else "medium",
        confidence=max(0.0, min(0.99, 1.0 - p_value)),
        target=res["target"],
        what=(
            f"Jobs with {group}={worst} have a {what_metric} of {ratio_text}; across the "
            f"{int(res['groups'])} values of {group} the difference is large "
            f"(epsilon-squared {eps2:.2f} on {int(res['n'])} sampled jobs)."
        ),
        why=(
            f"Compared within each process (percentiles), so the mix of processes does not "
            f"explain it, a Kruskal-Wallis test separates the {group} groups (H "
            f"{float(res['h']):.0f}, p = {p_value:.2g}) with a large effect size: the "
            f"{group} itself, not the work, makes the difference."
        ),
        recommendation=action,
        evidence=Evidence(
            columns=tuple(
                c
                for c in (group, roles["process"], roles["queued"], roles["started"])
                if c is not None
            )
            if metric == "wait_s"
            else tuple(
                c
                for c in (group, roles["process"], roles["started"], roles["ended"])
                if c is not None
            ),
            metrics=metrics,
            query=sample_sql,
            rows=int(res["n"]),
        ),
        measurement="modeled",
        impact=Impact(
            value=saved,
            unit="hours/month",
            description=f"{what_metric} a month saved if {group}={worst} matched the others",
            assumptions=(
                f"{worst}'s {what_metric}s shrink in proportion to the others' typical ratio "
                "to their process median",
                f"the observed {span_days:.1f} days are representative; a month is "
                f"{DAYS_PER_MONTH:.2f} days",
            ),
        ),
    )
