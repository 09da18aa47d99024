"""failure_hotspots: hosts on which jobs fail far more often than on the other hosts.

One SQL aggregate counts jobs and failures (status values matching
``failure_pattern``) per host and process. A host is a hotspot when its failure share
is at least ``min_ratio`` times that of all other hosts together, exceeds it by at
least ``min_rate_diff``, a chi-square test of independence on the 2x2 table (host vs
rest, failed vs not; scipy.stats.chi2_contingency) gives p < alpha, and, when the
dataset has a process column, the ratio still holds after adjusting for the host's mix
of processes (observed failures vs those expected from the other hosts' failure share
of the same processes), so a host that merely runs a failure-prone process is not
blamed for it. A host whose jobs mostly belong to processes that run nowhere else
cannot be separated from its processes and is not reported.
"""

from __future__ import annotations

import math

from scipy import stats

from contracts import Evidence, Finding, Impact, na, ok
from contracts.logs import failure_values as failed_values
from contracts.sql import quote_ident as _q
from contracts.sql import string_literal as _str_lit
from contracts.units import DAYS_PER_MONTH
from contracts.units import observed_months as _months
from contracts.units import p_text as _p_text


def run(ctx):
    min_ratio = float(ctx.settings.get("min_ratio", 3.0))
    min_rate_diff = float(ctx.settings.get("min_rate_diff", 0.01))
    alpha = float(ctx.settings.get("alpha", 0.001))
    min_events = int(ctx.settings.get("min_events", 50))
    min_coverage = float(ctx.settings.get("min_coverage", 0.5))
    pattern = str(
        ctx.settings.get(
            "failure_pattern", "fail|error|abort|crash|timeout|timed.?out|killed|fatal|reject"
        )
    )

    host = ctx.data.event_role("host")
    status = ctx.data.event_role("status")
    process = ctx.data.event_role("process")
    if host is None or status is None:
        return na(
            "NOT_APPLICABLE",
            "Failure hotspots need a host column and a status column; no column was "
            "recognized for "
            + " and ".join(r for r, c in (("host", host), ("status", status)) if c is None)
            + ".",
            checked=[
                f"event role host: {host or 'not found'}",
                f"event role status: {status or 'not found'}",
            ],
        )

    values, failure_values = failed_values(ctx, status, pattern)
    if not failure_values:
        return na(
            "NOT_APPLICABLE",
            f"No value of {status} looks like a failure (pattern {pattern!r}), so failures "
            "cannot be counted.",
            checked=[f"{len(values)} distinct values of {status}: " + ", ".join(values[:20])],
        )

    listed = ", ".join(_str_lit(v) for v in failure_values)
    failed = f"CAST({_q(status)} AS VARCHAR) IN ({listed})"
    proc = f"CAST({_q(process)} AS VARCHAR)" if process else "''"
    query = (
        f"SELECT CAST({_q(host)} AS VARCHAR) AS host, {proc} AS process, count(*) AS n, "
        f"count(*) FILTER (WHERE {failed}) AS failed FROM data "
        f"WHERE {_q(host)} IS NOT NULL AND {_q(status)} IS NOT NULL "
        "GROUP BY ALL ORDER BY host, process"
    )
    cells = ctx.data.sql(query).to_pylist()
    n_h: dict[str, int] = {}
    f_h: dict[str, int] = {}
    n_p: dict[str, int] = {}
    f_p: dict[str, int] = {}
    for c in cells:
        h, p, n, f = c["host"], c["process"] or "", int(c["n"]), int(c["failed"])
        n_h[h] = n_h.get(h, 0) + n
        f_h[h] = f_h.get(h, 0) + f
        n_p[p] = n_p.get(p, 0) + n
        f_p[p] = f_p.get(p, 0) + f
    hosts = sorted(h for h in n_h if n_h[h] >= min_events)
    if len(hosts) < 2:
        return na(
            "INSUFFICIENT_DATA",
            f"Fewer than two hosts have at least {min_events} jobs with a status, so there "
            "are no peers to compare failure shares against.",
            checked=[f"{len(n_h)} hosts, {len(hosts)} with >= {min_events} jobs"],
        )

    total_n, total_f = sum(n_h.values()), sum(f_h.values())
    findings = []
    checked = []
    per_host = {}
    months = None
    for h in hosts:
        n, k = n_h[h], f_h[h]
        rest_n, rest_k = total_n - n, total_f - k
        rate = k / n
        rest_rate = rest_k / rest_n if rest_n else 0.0
        ratio = rate / rest_rate if rest_rate > 0 else (math.inf if rate > 0 else 1.0)
        # expected failures on h from the other hosts' failure share of the same processes
        expected = observed = covered = 0.0
        if process is not None:
            for c in cells:
                if c["host"] != h:
                    continue
                p = c["process"] or ""
                other_n = n_p[p] - int(c["n"])
                if other_n <= 0:
                    continue
                covered += int(c["n"])
                observed += int(c["failed"])
                expected += int(c["n"]) * (f_p[p] - int(c["failed"])) / other_n
        coverage = covered / n if n else 0.0
        adjusted = None
        if process is not None and coverage >= min_coverage:
            adjusted = observed / expected if expected > 0 else (math.inf if observed else 1.0)
        m = {
            "jobs": n,
            "failed": k,
            "failure_share": rate,
            "rest_failure_share": rest_rate,
            "ratio": None if math.isinf(ratio) else ratio,
            "process_adjusted_ratio": None
            if adjusted is None or math.isinf(adjusted)
            else adjusted,
            "process_coverage": coverage,
        }
        per_host[h] = m
        adj_text = "" if adjusted is None else f", process-adjusted {adjusted:.2f}x"
        text = f"{h}: {rate:.2%} failed vs rest {rest_rate:.2%} ({ratio:.2f}x{adj_text})"
        if not (ratio >= min_ratio and rate - rest_rate >= min_rate_diff and rest_n):
            checked.append(text)
            continue
        if process is not None and adjusted is None:
            checked.append(
                text + f"; not assessed: only {coverage:.0%} of its jobs belong to processes "
                "that also run elsewhere, so the host cannot be told apart from its processes"
            )
            continue
        if adjusted is not None and adjusted < min_ratio:
            checked.append(text + f"; explained by its process mix (needs >= {min_ratio:g})")
            continue
        test = stats.chi2_contingency([[k, n - k], [rest_k, rest_n - rest_k]])
        p_value = float(test.pvalue)
        checked.append(text + f"; chi-square {_p_text(p_value)} (needs p < {alpha:g})")
        if not p_value < alpha:
            continue
        if months is None:
            months = _months(ctx) or 0.0
        excess = (rate - rest_rate) * n
        per_month = excess / months if months else excess
        unit = "failed jobs/month" if months else "failed jobs"
        ratio_text = "far more" if math.isinf(ratio) else f"{ratio:.1f}x"
        metrics = m | {
            "chi2": float(test.statistic),
            "p_value": p_value,
            "min_ratio": min_ratio,
            "excess_failures": excess,
            "failure_values": ", ".join(failure_values),
        }
        findings.append(
            Finding(
                kind="failure_hotspot",
                title=f"Jobs on {h} fail {ratio_text} as often as elsewhere",
                severity="high" if rate >= 0.1 else "medium",
                confidence=max(0.0, min(0.99, 1.0 - p_value)),
                target=h,
                what=(
                    f"{k} of {n} jobs on {h} failed ({rate:.1%}) against {rest_rate:.1%} on "
                    f"all other hosts together ({ratio_text}"
                    + (
                        f"; {adjusted:.1f}x after adjusting for its process mix"
                        if adjusted is not None and not math.isinf(adjusted)
                        else ""
                    )
                    + ")."
                ),
                why=(
                    "When the same kinds of job fail far more often on one host, the cause is "
                    "usually the host itself (disk, memory, network, configuration, a bad "
                    f"deployment) rather than the jobs (chi-square {_p_text(p_value)})."
                ),
                recommendation=(
                    f"Drain {h} and check its health (disk, memory, network, software "
                    "versions and configuration against a healthy host); route its jobs "
                    "to the other hosts until its failure share is back near "
                    f"{rest_rate:.1%}."
                ),
                evidence=Evidence(
                    columns=tuple(c for c in (host, status, process) if c is not None),
                    metrics=metrics,
                    query=query,
                    rows=n,
                ),
                measurement="modeled",
                impact=Impact(
                    value=per_month,
                    unit=unit,
                    description=f"failed jobs avoided if {h} failed at the other hosts' rate",
                    assumptions=(
                        f"the excess failures on {h} are caused by the host and stop once "
                        "it is fixed or drained",
                        "job volume and mix stay as observed",
                        "the observed period is representative"
                        + (f"; a month is {DAYS_PER_MONTH:.2f} days" if months else ""),
                    ),
                ),
            )
        )

    metrics = {
        "hosts": per_host,
        "failure_values": failure_values,
        "overall_failure_share": total_f / total_n if total_n else 0.0,
    }
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No host has a failure share at least {min_ratio:g}x that of the other hosts "
            f"({len(hosts)} hosts with >= {min_events} jobs compared; failures are status "
            f"values {', '.join(failure_values)}).",
            checked=checked,
            metrics=metrics,
        )
    return ok(findings=findings, metrics=metrics | {"hotspots": [f.target for f in findings]})
