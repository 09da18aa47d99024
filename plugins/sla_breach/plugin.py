"""sla_breach: the process whose jobs miss their turnaround far more often than peers'.

Turnaround is ended - queued. The threshold is ``threshold_s`` when set, else
``multiple`` times the process's own median turnaround: processes differ by design,
so each is held to its own typical time, and the other processes say which share of
breaches is normal. The breach share gets a Wilson interval (statsmodels); a hotspot
is a process whose lower bound clears both ``min_share`` and ``min_ratio`` times the
peers' median share. One SQL aggregate, with the threshold computed in it.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from contracts import Evidence, Finding, Impact, na, ok
from contracts.sql import quote_ident as _q
from contracts.sql import timestamp_expr
from contracts.units import DAYS_PER_MONTH
from contracts.units import p_text as _p_text


def breach_query(ctx, roles: dict[str, str], threshold_s: float, multiple: float) -> str:
    """Per process: turnarounds, threshold, breaches and the excess beyond it (hours).
    A job still open at the end of the log is a breach once it is past the threshold."""
    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    q = timestamp_expr(roles["queued"], dtypes.get(roles["queued"], ""))
    e = timestamp_expr(roles["ended"], dtypes.get(roles["ended"], ""))
    p = _q(roles["process"])
    limit = f"{float(threshold_s)!r}" if threshold_s > 0 else f"{float(multiple)!r} * m.med"
    # The per-job rows are scanned again where they are used, not materialized: a
    # copy of every job would spill under a worker's memory limit.
    return (
        f"WITH ev AS NOT MATERIALIZED (SELECT CAST({p} AS VARCHAR) AS p, epoch_us({q}) AS q, "
        f"epoch_us({e}) AS e "
        f"FROM data WHERE {p} IS NOT NULL AND {q} IS NOT NULL), "
        "t_end AS (SELECT greatest(max(q), max(e)) AS t1 FROM ev), "
        "done AS NOT MATERIALIZED (SELECT p, (e - q) / 1e6 AS t FROM ev WHERE e >= q), "
        "m AS (SELECT p, quantile_cont(t, 0.5) AS med, count(*) AS n FROM done GROUP BY p), "
        f"thr AS (SELECT p, n, med, {limit} AS limit_s FROM m), "
        "open_jobs AS (SELECT ev.p, (t_end.t1 - ev.q) / 1e6 AS t FROM ev, t_end "
        "WHERE ev.e IS NULL) "
        "SELECT thr.p, thr.n AS jobs, thr.med AS median_s, thr.limit_s, "
        "CAST(count(d.t) FILTER (WHERE d.t > thr.limit_s) AS BIGINT) AS breaches, "
        "coalesce(sum(d.t - thr.limit_s) FILTER (WHERE d.t > thr.limit_s), 0) / 3600 "
        "AS excess_h, "
        "(SELECT CAST(count(*) AS BIGINT) FROM open_jobs o WHERE o.p = thr.p "
        "AND o.t > thr.limit_s) AS open_breaches "
        "FROM thr LEFT JOIN done d ON d.p = thr.p "
        "GROUP BY thr.p, thr.n, thr.med, thr.limit_s ORDER BY thr.p"
    )


def _settings(ctx) -> dict[str, float]:
    s = ctx.settings
    return {
        "threshold_s": float(s.get("threshold_s", 0.0)),
        "multiple": float(s.get("multiple", 5.0)),
        "min_share": float(s.get("min_share", 0.08)),
        "min_ratio": float(s.get("min_ratio", 3.0)),
        "confidence": float(s.get("confidence", 0.95)),
        "min_jobs": int(s.get("min_jobs", 100)),
    }


def run(ctx):
    cfg = _settings(ctx)
    roles = {r: ctx.data.event_role(r) for r in ("process", "queued", "ended")}
    span_q = (
        "SELECT date_diff('microsecond', min({q}), max({q})) / 86400e6 AS days FROM data".format(
            q=timestamp_expr(roles["queued"], ctx.data.column(roles["queued"]).dtype)
        )
    )
    query = breach_query(ctx, roles, cfg["threshold_s"], cfg["multiple"])
    rows = [r for r in ctx.data.sql(query).to_pylist() if int(r["jobs"]) >= cfg["min_jobs"]]
    rule = (
        f"turnaround > {cfg['threshold_s']:g} s"
        if cfg["threshold_s"] > 0
        else f"turnaround > {cfg['multiple']:g}x the process's median"
    )
    checked = [f"{len(rows)} processes with >= {cfg['min_jobs']} turnarounds; breach: {rule}"]
    if len(rows) < 3:
        return na(
            "INSUFFICIENT_DATA",
            "Fewer than three processes have enough finished jobs to compare breach shares.",
            checked=checked,
        )
    days = float(ctx.data.sql(span_q).to_pylist()[0]["days"] or 0.0)
    months = max(days, 1.0) / DAYS_PER_MONTH
    alpha = 1.0 - cfg["confidence"]
    shares = {}
    for r in rows:
        k = int(r["breaches"]) + int(r["open_breaches"])
        n = int(r["jobs"]) + int(r["open_breaches"])
        shares[r["p"]] = (k, n, k / n)
    findings = []
    for r in rows:
        name = r["p"]
        k, n, share = shares[name]
        peer = float(np.median([shares[o][2] for o in sorted(shares) if o != name]))
        low, high = (float(x) for x in proportion_confint(k, n, alpha=alpha, method="wilson"))
        need = max(cfg["min_share"], cfg["min_ratio"] * peer)
        checked.append(
            f"{name}: {k} of {n} over {float(r['limit_s']):.0f} s ({share:.1%}, "
            f"{cfg['confidence']:.0%} CI {low:.1%}-{high:.1%}) vs peers' median {peer:.1%} "
            f"(lower bound needs >= {need:.1%})"
        )
        if low < need:  # not even the interval's low end clears the bar
            continue
        p_value = float(stats.binomtest(k, n, max(peer, 1e-12), alternative="greater").pvalue)
        findings.append(
            _finding(ctx, roles, query, r, k, n, share, low, high, peer, p_value, months, cfg)
        )
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No process breaches its turnaround threshold ({rule}) far more often than its peers.",
            checked=checked,
        )
    return ok(findings=findings, metrics={"flagged": [f.target for f in findings], "rule": rule})


def _finding(ctx, roles, query, r, k, n, share, low, high, peer, p_value, months, cfg) -> Finding:
    name, limit = r["p"], float(r["limit_s"])
    excess = float(r["excess_h"]) / months
    # breaches down to the peers' share: that part of the excess turnaround goes away
    saved = excess * max(0.0, 1.0 - peer / share)
    metrics = {
        "threshold_s": limit,
        "median_turnaround_s": float(r["median_s"]),
        "breaches": k,
        "jobs": n,
        "open_breaches": int(r["open_breaches"]),
        "breach_share": share,
        "ci_low": low,
        "ci_high": high,
        "confidence": cfg["confidence"],
        "peers_median_share": peer,
        "p_value": p_value,
        "excess_hours_per_month": excess,
        "saved_hours_per_month": saved,
    }
    return Finding(
        kind="sla_breach",
        title=f"{name} misses its {limit / 60:.0f}-min turnaround on {share:.0%} of jobs",
        severity="high" if share >= 0.2 else "medium",
        confidence=max(0.0, min(0.99, 1.0 - p_value)),
        target=name,
        what=(
            f"{k} of {n} jobs of {name} took longer than {limit:.0f} s from queue to end "
            f"({share:.1%}, {cfg['confidence']:.0%} interval {low:.1%}-{high:.1%}); the other "
            f"processes breach their own thresholds on {peer:.1%} of jobs (median)."
        ),
        why=(
            f"A breach share this far above the peers' ({_p_text(p_value)}, one-sided "
            "binomial test) is a recurring cause in this process, not the normal spread of "
            f"turnaround: {excess:.1f} h a month are spent beyond the threshold."
        ),
        recommendation=(
            f"Find what holds the slow jobs of {name} (compare breaching with on-time jobs by "
            "queue wait, run time, host and time of day) and fix that cause first."
        ),
        evidence=Evidence(
            columns=(roles["process"], roles["queued"], roles["ended"]),
            metrics=metrics,
            query=query,
            rows=n,
        ),
        measurement="modeled",
        impact=Impact(
            value=saved,
            unit="hours/month",
            description=f"turnaround beyond the threshold saved a month if {name} breached "
            "no more often than its peers",
            assumptions=(
                f"breaches fall to the peers' median share ({peer:.1%}) and each removed "
                "breach saves its excess over the threshold",
                f"the observed {months:.1f} months are representative; a month is "
                f"{DAYS_PER_MONTH:.2f} days",
            ),
        ),
    )
