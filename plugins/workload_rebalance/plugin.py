"""workload_rebalance: a process that fails on one host but not on its other hosts.

One SQL aggregate counts jobs and failures per process x host. A Poisson GLM
(statsmodels; log link, offset ln jobs, Pearson chi-square scale) of failures ~
process + host separates what a process brings (its own failure rate) from what a host
brings (a failure rate for every process on it), so a host that runs failure-prone
processes is not blamed, and a host that fails for every process is a host effect,
which is failure_hotspots' finding, not this one. What neither main effect explains is
a process x host interaction: each cell is refitted with an indicator of its own, whose
rate ratio is how much more the process fails there than process and host predict. A
large, significant ratio is a decision: move the process to the host where the model
predicts it fails least.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from statsmodels.genmod.families import Poisson
from statsmodels.genmod.generalized_linear_model import GLM

from contracts import Evidence, Finding, Impact, na, ok
from contracts.logs import failure_values as failed_values
from contracts.sql import quote_ident as _q
from contracts.sql import string_literal as _str_lit
from contracts.units import observed_months as _months
from contracts.units import p_text as _p_text

DEFAULT_PATTERN = "fail|error|abort|crash|timeout|timed.?out|killed|fatal|reject"


def _design(cells: list[dict], procs: list[str], hosts: list[str]) -> np.ndarray:
    """Intercept, process dummies (first left out), host dummies (first left out)."""
    x = np.zeros((len(cells), 1 + len(procs) - 1 + len(hosts) - 1))
    x[:, 0] = 1.0
    for i, c in enumerate(cells):
        pi, hi = procs.index(c["process"]), hosts.index(c["host"])
        if pi > 0:
            x[i, pi] = 1.0
        if hi > 0:
            x[i, len(procs) - 1 + hi] = 1.0
    return x


def _fit(y: np.ndarray, x: np.ndarray, jobs: np.ndarray):
    model = GLM(y, x, family=Poisson(), offset=np.log(jobs))
    return model.fit(scale="X2")


def run(ctx):
    s = ctx.settings
    pattern = str(s.get("failure_pattern", DEFAULT_PATTERN))
    min_jobs = int(s.get("min_jobs", 100))
    min_ratio = float(s.get("min_ratio", 3.0))
    min_per_month = float(s.get("min_failures_per_month", 5.0))
    alpha = float(s.get("alpha", 0.001))
    max_cells = int(s.get("max_cells", 2000))
    process, host, status = (ctx.data.event_role(r) for r in ("process", "host", "status"))

    values, failure_values = failed_values(ctx, status, pattern)
    if not failure_values:
        return na(
            "NOT_APPLICABLE",
            f"No value of {status} looks like a failure (pattern {pattern!r}), so failures "
            "cannot be counted.",
            checked=[f"{len(values)} distinct values of {status}: " + ", ".join(values[:20])],
        )
    failed = f"CAST({_q(status)} AS VARCHAR) IN ({', '.join(_str_lit(v) for v in failure_values)})"
    query = (
        f"SELECT CAST({_q(process)} AS VARCHAR) AS process, CAST({_q(host)} AS VARCHAR) AS host, "
        "CAST(count(*) AS BIGINT) AS n, "
        f"CAST(count(*) FILTER (WHERE {failed}) AS BIGINT) AS failed "
        f"FROM data WHERE {_q(process)} IS NOT NULL AND {_q(host)} IS NOT NULL "
        f"AND {_q(status)} IS NOT NULL GROUP BY ALL ORDER BY process, host"
    )
    all_cells = ctx.data.sql(query).to_pylist()
    cells = [c for c in all_cells if int(c["n"]) >= min_jobs]
    fails_p: dict[str, int] = {}
    fails_h: dict[str, int] = {}
    for c in cells:
        fails_p[c["process"]] = fails_p.get(c["process"], 0) + int(c["failed"])
        fails_h[c["host"]] = fails_h.get(c["host"], 0) + int(c["failed"])
    # a process or host without a single failure has no finite rate to fit
    cells = [c for c in cells if fails_p[c["process"]] > 0 and fails_h[c["host"]] > 0]
    procs = sorted({c["process"] for c in cells})
    hosts = sorted({c["host"] for c in cells})
    checked = [
        f"{len(cells)} of {len(all_cells)} process x host cells with >= {min_jobs} jobs "
        f"(processes and hosts with at least one failure): {len(procs)} processes on "
        f"{len(hosts)} hosts; failures: status in {', '.join(failure_values)}"
    ]
    if len(hosts) < 2 or len(procs) < 1 or len(cells) < len(procs) + len(hosts) + 2:
        return na(
            "INSUFFICIENT_DATA",
            "Too few process x host cells with enough jobs to separate host effects from "
            "the process mix.",
            checked=checked,
        )
    y = np.array([float(c["failed"]) for c in cells])
    jobs = np.array([float(c["n"]) for c in cells])
    base_x = _design(cells, procs, hosts)
    base = _fit(y, base_x, jobs)
    host_rr = {h: 1.0 for h in hosts}
    for i, h in enumerate(hosts[1:], start=1):
        host_rr[h] = float(math.exp(float(base.params[len(procs) - 1 + i])))
    hosts_of: dict[str, list[int]] = {}
    for i, c in enumerate(cells):
        hosts_of.setdefault(c["process"], []).append(i)
    testable = [i for i, c in enumerate(cells) if len(hosts_of[c["process"]]) >= 2]
    testable = sorted(testable, key=lambda i: (-jobs[i], cells[i]["process"], cells[i]["host"]))
    if len(testable) > max_cells:
        checked.append(
            f"tested {max_cells} of {len(testable)} cells (those with the most jobs first)"
        )
        testable = testable[:max_cells]
    if not testable:
        return na(
            "INSUFFICIENT_DATA",
            "No process runs on two or more hosts with enough jobs, so no host can be "
            "compared with another for the same process.",
            checked=checked,
        )
    months = _months(ctx) or 0.0
    level = alpha / len(testable)
    checked.append(
        f"Poisson GLM failures ~ process + host (offset ln jobs, Pearson scale "
        f"{float(base.scale):.2f}); host rate ratios vs {hosts[0]}: "
        + ", ".join(f"{h} {host_rr[h]:.2f}" for h in hosts)
        + f"; {len(testable)} cells tested, each needs rate ratio >= {min_ratio:g}, one-sided "
        f"p < {level:.2g} and >= {min_per_month:g} failed jobs/month avoided"
    )
    findings = []
    for i in sorted(testable, key=lambda i: (cells[i]["process"], cells[i]["host"])):
        c = cells[i]
        ind = np.zeros((len(cells), 1))
        ind[i, 0] = 1.0
        x = np.hstack([base_x, ind])
        fit = _fit(y, x, jobs)
        gamma, se = float(fit.params[-1]), float(fit.bse[-1])
        if not (math.isfinite(gamma) and math.isfinite(se) and se > 0):
            continue
        rr = math.exp(min(gamma, 700.0))
        z = gamma / se
        p = float(stats.norm.sf(z))
        if not (rr >= min_ratio and p < level):
            continue
        fitted = np.asarray(fit.predict(x, offset=np.log(jobs))) / jobs  # rate per job
        # where would it fail least: the model's rate of this process on its other hosts
        others = [k for k in hosts_of[c["process"]] if k != i]
        dest = min(others, key=lambda k: (float(fitted[k]), cells[k]["host"]))
        rate_here = float(c["failed"]) / float(c["n"])
        rate_dest = float(fitted[dest])
        avoided = max(0.0, rate_here - rate_dest) * float(c["n"])
        per_month = avoided / months if months else avoided
        text = (
            f"{c['process']} on {c['host']}: {int(c['failed'])} of {int(c['n'])} failed "
            f"({rate_here:.2%}), {rr:.1f}x what process and host predict (z = {z:.1f}, "
            f"{_p_text(p)}); on {cells[dest]['host']} the model predicts {rate_dest:.2%}: "
            f"{per_month:.1f} failed jobs/month avoided"
        )
        checked.append(text)
        if per_month < min_per_month:
            continue
        users = _users(ctx, c, process, host, failed)
        findings.append(
            _finding(
                users,
                c,
                cells[dest],
                rr,
                z,
                p,
                rate_here,
                rate_dest,
                per_month,
                months,
                host_rr,
                fit,
                query,
                (process, host, status),
                failure_values,
            )
        )
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            "No process fails on one host far more than its own rate and that host's rate "
            "predict: failures follow the process mix and the hosts' overall effects.",
            checked=checked,
        )
    return ok(
        findings=findings,
        metrics={
            "host_rate_ratios": {h: host_rr[h] for h in hosts},
            "pearson_scale": float(base.scale),
            "cells_tested": len(testable),
            "checked": checked,
        },
    )


def _users(ctx, c: dict, process: str, host: str, failed: str) -> dict:
    """Who submits the failing pairing's jobs (user role, when there is one): the user
    with the most failures there and that user's share of them (attribution only)."""
    user = ctx.data.event_role("user")
    if user is None:
        return {}
    rows = ctx.data.sql(
        f"SELECT CAST({_q(user)} AS VARCHAR) AS u, CAST(count(*) AS BIGINT) AS n, "
        f"CAST(count(*) FILTER (WHERE {failed}) AS BIGINT) AS f FROM data "
        f"WHERE CAST({_q(process)} AS VARCHAR) = {_str_lit(c['process'])} "
        f"AND CAST({_q(host)} AS VARCHAR) = {_str_lit(c['host'])} AND {_q(user)} IS NOT NULL "
        "GROUP BY 1 "
        "ORDER BY f DESC, n DESC, u LIMIT 100000"
    ).to_pylist()
    total = sum(int(r["f"]) for r in rows)
    if not rows or total == 0:
        return {}
    top = rows[0]
    return {
        "users_in_cell": len(rows),
        "top_user": top["u"],
        "top_user_failure_share": int(top["f"]) / total,
    }


def _finding(
    users,
    c,
    d,
    rr,
    z,
    p,
    rate_here,
    rate_dest,
    per_month,
    months,
    host_rr,
    fit,
    query,
    columns,
    failure_values,
) -> Finding:
    name, src, dst = c["process"], c["host"], d["host"]
    unit = "failed jobs/month" if months else "failed jobs"
    metrics = {
        "from_host": src,
        "to_host": dst,
        "jobs": int(c["n"]),
        "failed": int(c["failed"]),
        "failure_rate": rate_here,
        "predicted_rate_to_host": rate_dest,
        "observed_rate_to_host": float(d["failed"]) / float(d["n"]),
        "interaction_rate_ratio": rr,
        "z": z,
        "p_value": p,
        "host_rate_ratio_from": host_rr[src],
        "host_rate_ratio_to": host_rr[dst],
        "failures_avoided_per_month": per_month,
        "pearson_scale": float(fit.scale),
        "failure_values": ", ".join(failure_values),
        **users,
    }
    who = (
        f" Its failures there come from {users['users_in_cell']} users; the most, "
        f"{users['top_user']}, has {users['top_user_failure_share']:.0%} of them."
        if users
        else ""
    )
    return Finding(
        kind="host_rebalance",
        measurement="modeled",
        title=f"Move {name} from {src} to {dst}",
        severity="high" if rr >= 10 else "medium",
        confidence=max(0.0, min(0.99, 1.0 - p)),
        target=name,
        what=f"{name}'s jobs on {src} fail {rate_here:.1%} ({int(c['failed'])} of "
        f"{int(c['n'])}), {rr:.1f}x what {name}'s own rate and {src}'s rate for every other "
        f"process predict; on {dst} the model predicts {rate_dest:.2%} for it.{who}",
        why=f"{src} is not bad for every process (host rate ratio {host_rr[src]:.2f}) and "
        f"{name} is not bad everywhere: the failures belong to this pairing.",
        recommendation=f"Route {name}'s jobs from {src} to {dst}, and look for what {src} "
        f"lacks for {name} (configuration, drivers, data access).",
        evidence=Evidence(columns=columns, metrics=metrics, query=query, rows=int(c["n"])),
        impact=Impact(
            value=per_month,
            unit=unit,
            description=f"failed {name} jobs avoided a month on {dst}",
            assumptions=(
                "Poisson GLM failures ~ process + host + this cell, offset ln jobs",
                f"on {dst} {name} fails at the model's rate for that pairing",
            ),
        ),
    )
