"""runtime_survival: Kaplan-Meier run durations, recommended timeouts, and the timeouts
that cut off real work.

Killed jobs and jobs still running at the end of the log are right-censored: they ran
at least that long. SQL counts every process's jobs, killed jobs and how tightly the
killed jobs' durations cluster (a timeout kills at one duration); a seeded sample of
at most ``max_sample`` jobs per process gives the Kaplan-Meier curve
(``scipy.stats.ecdf``) and, when that curve stops above the timeout quantile, a
censored lognormal fit to extrapolate it.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
from scipy import stats

from contracts import Evidence, Finding, Impact, na, ok
from contracts.sql import quote_ident as _q
from contracts.sql import string_literal as _str_lit
from contracts.sql import timestamp_expr
from contracts.units import DAYS_PER_MONTH

CLUSTER_WIDTH = 0.02  # killed durations within 2% of their median are "at the timeout"


def _keep_ppm(count: int, limit: int) -> int:
    """Parts per million of a process's jobs to pre-select (about twice ``limit``)."""
    if count <= 2 * limit:
        return 1_000_000
    return max(1, math.ceil(2 * limit * 1_000_000 / count))


def _settings(ctx) -> dict[str, object]:
    s = ctx.settings
    return {
        "killed_pattern": str(s.get("killed_pattern", "kill|timeout|timed.?out|abort|cancel")),
        "timeout_quantile": float(s.get("timeout_quantile", 0.995)),
        "min_cut_share": float(s.get("min_cut_share", 0.01)),
        "cluster_share": float(s.get("cluster_share", 0.8)),
        "min_killed": int(s.get("min_killed", 10)),
        "max_sample": int(s.get("max_sample", 20000)),
        "min_jobs": int(s.get("min_jobs", 100)),
    }


def _jobs_cte(ctx, roles, killed_values: list[str]) -> str:
    dtypes = {c.name: c.dtype for c in ctx.data.columns}
    s = timestamp_expr(roles["started"], dtypes.get(roles["started"], ""))
    e = timestamp_expr(roles["ended"], dtypes.get(roles["ended"], ""))
    p = _q(roles["process"])
    if roles["status"] is not None and killed_values:
        listed = ", ".join(_str_lit(v) for v in killed_values)
        killed = f"coalesce(CAST({_q(roles['status'])} AS VARCHAR) IN ({listed}), false)"
    else:
        killed = "false"
    # The per-job rows are scanned again where they are used, not materialized: a
    # copy of every job would spill under a worker's memory limit.
    return (
        f"ev AS NOT MATERIALIZED (SELECT CAST({p} AS VARCHAR) AS p, epoch_us({s}) AS s, "
        f"epoch_us({e}) AS e, "
        f"{killed} AS killed, hash({p}, {_q(roles['started'])}, {_q(roles['ended'])}, "
        f"rowid, {{seed}}) AS h FROM data WHERE {p} IS NOT NULL AND {s} IS NOT NULL), "
        "t_end AS (SELECT greatest(max(s), max(e)) AS t1 FROM ev), "
        "jobs AS NOT MATERIALIZED (SELECT p, (coalesce(e, t1) - s) / 1e6 AS d, "
        "e IS NULL AS open_job, killed, h FROM ev, t_end WHERE coalesce(e, t1) >= s)"
    )


def counts_query(cte: str) -> str:
    """Per process: jobs, open jobs, killed jobs and how they cluster at one duration."""
    return (
        f"WITH {cte}, k AS (SELECT p, quantile_cont(d, 0.5) AS cap FROM jobs WHERE killed "
        "AND NOT open_job GROUP BY p) "
        "SELECT jobs.p, count(*) AS jobs, CAST(count_if(open_job) AS BIGINT) AS open_jobs, "
        "CAST(count_if(killed AND NOT open_job) AS BIGINT) AS killed, any_value(k.cap) AS cap, "
        f"CAST(count_if(killed AND NOT open_job AND abs(d - k.cap) <= {CLUSTER_WIDTH} * k.cap "
        "+ 1) AS BIGINT) AS at_cap, "
        "sum(d) FILTER (WHERE killed AND NOT open_job) / 3600 AS killed_hours, "
        "FROM jobs LEFT JOIN k ON k.p = jobs.p GROUP BY jobs.p ORDER BY jobs.p"
    )


def sample_query(cte: str, keep: dict[str, int], limit: int) -> str:
    cases = " ".join(f"WHEN {_str_lit(p)} THEN {ppm}" for p, ppm in sorted(keep.items()))
    return (
        f"WITH {cte} SELECT p, d, NOT (open_job OR killed) AS finished FROM jobs "
        f"WHERE h % 1000000 < CASE p {cases} ELSE 0 END "
        f"QUALIFY row_number() OVER (PARTITION BY p ORDER BY h, d) <= {int(limit)} "
        "ORDER BY p, d, finished"
    )


def survival(d: np.ndarray, finished: np.ndarray, q: float) -> dict[str, object]:
    """Kaplan-Meier of one process and its q-quantile (lognormal beyond the curve)."""
    data = stats.CensoredData(uncensored=d[finished], right=d[~finished])
    if not finished.any():
        return {"quantile_s": None, "method": "no finished job", "km_last_survival": 1.0}
    sf = stats.ecdf(data).sf
    probs, times = np.asarray(sf.probabilities), np.asarray(sf.quantiles)
    below = np.flatnonzero(probs <= 1.0 - q)
    out: dict[str, object] = {"km_last_survival": float(probs[-1])}
    if below.size:
        out |= {"quantile_s": float(times[below[0]]), "method": "Kaplan-Meier"}
        return out
    positive = d > 0
    with warnings.catch_warnings():  # optimizer chatter; the fit is checked below
        warnings.simplefilter("ignore")
        shape, _, scale = stats.lognorm.fit(
            stats.CensoredData(uncensored=d[finished & positive], right=d[~finished & positive]),
            floc=0,
        )
    value = float(stats.lognorm.ppf(q, shape, loc=0, scale=scale))
    out |= {
        "quantile_s": value if math.isfinite(value) else None,
        "method": "censored lognormal fit (the Kaplan-Meier curve stops above it)",
        "lognormal_sigma": float(shape),
        "lognormal_median_s": float(scale),
    }
    return out


def run(ctx):
    cfg = _settings(ctx)
    roles = {r: ctx.data.event_role(r) for r in ("process", "started", "ended", "status")}
    killed_values: list[str] = []
    if roles["status"] is not None:
        values = (
            ctx.data.sql(
                f"SELECT DISTINCT CAST({_q(roles['status'])} AS VARCHAR) AS v FROM data "
                f"WHERE {_q(roles['status'])} IS NOT NULL ORDER BY v LIMIT 10000"
            )
            .column("v")
            .to_pylist()
        )
        rx = re.compile(str(cfg["killed_pattern"]), re.IGNORECASE)
        killed_values = [v for v in values if rx.search(v)]
    cte = _jobs_cte(ctx, roles, killed_values).replace("{seed}", str(int(ctx.seed)))
    cq = counts_query(cte)
    counts = [r for r in ctx.data.sql(cq).to_pylist() if int(r["jobs"]) >= int(cfg["min_jobs"])]
    status_text = (
        f"killed statuses: {', '.join(killed_values) or 'none'} (of {roles['status']})"
        if roles["status"] is not None
        else "no status column: only jobs still running at the end are censored"
    )
    checked = [status_text, f"{len(counts)} processes with >= {cfg['min_jobs']} started jobs"]
    if not counts:
        return na(
            "INSUFFICIENT_DATA",
            f"No process has {cfg['min_jobs']} started jobs to build a survival curve from.",
            checked=checked,
        )
    limit = int(cfg["max_sample"])
    sq = sample_query(cte, {r["p"]: _keep_ppm(int(r["jobs"]), limit) for r in counts}, limit)
    table = ctx.data.sql(sq)
    sp = np.asarray(table.column("p").to_pylist(), dtype=object)
    sd = np.asarray(table.column("d").to_numpy(), dtype=float)
    sf = np.asarray(table.column("finished").to_pylist(), dtype=bool)
    span = ctx.data.sql(
        f"WITH {cte} SELECT (max(s) - min(s)) / 86400e6 AS days FROM ev"
    ).to_pylist()[0]
    months = max(float(span["days"] or 0.0), 1.0) / DAYS_PER_MONTH
    q = float(cfg["timeout_quantile"])
    timeouts: dict[str, object] = {}
    findings = []
    for r in counts:
        name = r["p"]
        sel = sp == name
        curve = survival(sd[sel], sf[sel], q)
        timeouts[name] = curve["quantile_s"]
        killed, at_cap, jobs = int(r["killed"]), int(r["at_cap"]), int(r["jobs"])
        cut = at_cap / jobs
        observed = (
            killed >= int(cfg["min_killed"]) and at_cap >= float(cfg["cluster_share"]) * killed
        )
        line = (
            f"{name}: p{q * 100:g} run {curve['quantile_s'] or 0:.0f} s ({curve['method']}, "
            f"sample {int(sel.sum())} of {jobs}); {killed} killed"
        )
        if observed:
            line += f", {at_cap} at {float(r['cap']):.0f} s ({cut:.1%} of jobs cut off)"
        checked.append(line + f", {int(r['open_jobs'])} still running")
        if observed and cut >= float(cfg["min_cut_share"]) and curve["quantile_s"] is not None:
            findings.append(_finding(ctx, roles, cq, r, curve, cut, months, q, int(sel.sum())))
    metrics = {"recommended_timeouts_s": timeouts, "quantile": q, "killed_values": killed_values}
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No process's jobs are killed at one duration on {cfg['min_cut_share']:.0%} or "
            "more of its jobs: no timeout cuts off real work. Recommended timeouts (the "
            f"p{q * 100:g} of run time) are in the metrics.",
            checked=checked,
            metrics=metrics,
        )
    return ok(findings=findings, metrics=metrics | {"flagged": [f.target for f in findings]})


def _finding(ctx, roles, query, r, curve, cut, months, q, sampled) -> Finding:
    name, cap = r["p"], float(r["cap"])
    rec = math.ceil(float(curve["quantile_s"]) / 60.0) * 60.0
    lost = float(r["killed_hours"] or 0.0) / months
    metrics = {
        "observed_timeout_s": cap,
        "killed": int(r["killed"]),
        "killed_at_timeout": int(r["at_cap"]),
        "jobs": int(r["jobs"]),
        "cut_share": cut,
        "recommended_timeout_s": rec,
        "quantile": q,
        "method": str(curve["method"]),
        "km_last_survival": float(curve["km_last_survival"]),
        "sample": sampled,
        "killed_run_hours_per_month": lost,
    }
    for key in ("lognormal_sigma", "lognormal_median_s"):
        if key in curve:
            metrics[key] = float(curve[key])
    cols = tuple(
        c for c in (roles["process"], roles["started"], roles["ended"], roles["status"]) if c
    )
    return Finding(
        kind="timeout_cutoff",
        title=f"{name}'s {cap / 60:.0f}-min timeout kills {cut:.1%} of its jobs mid-run",
        severity="high" if cut >= 0.05 else "medium",
        confidence=0.9,
        target=name,
        what=(
            f"{int(r['at_cap'])} of {int(r['jobs'])} jobs of {name} were stopped at "
            f"{cap:.0f} s of running ({cut:.1%}); the survival curve of its run times "
            f"(censoring the killed jobs) puts the p{q * 100:g} at "
            f"{float(curve['quantile_s']):.0f} s ({curve['method']})."
        ),
        why=(
            "The killed jobs pile up at one duration, so a time limit stopped them, not a "
            "failure; they were still working and must run again, which wastes "
            f"{lost:.1f} h of run time a month."
        ),
        recommendation=(
            f"Raise {name}'s timeout from {cap:.0f} s to {rec:.0f} s (the p{q * 100:g} of its "
            "run time), or split its largest jobs so they finish within the limit."
        ),
        evidence=Evidence(columns=cols, metrics=metrics, query=query, rows=int(r["jobs"])),
        measurement="modeled",
        impact=Impact(
            value=lost,
            unit="hours/month",
            description=f"run time a month spent on {name} jobs that were killed at the timeout",
            assumptions=(
                "every killed job is rerun from the start, so its run time until the kill is lost",
                f"the observed {months:.1f} months are representative; a month is "
                f"{DAYS_PER_MONTH:.2f} days",
            ),
        ),
    )
