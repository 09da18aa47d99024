"""retry_hotspots: processes that are retried far more often than the others.

Two per-process measures, both from one SQL aggregate: the share of jobs that were
retried (a retried-like status value, or a retry count above zero) and, when the
dataset has a retry-count column, the mean number of retries per job. A process is a
hotspot when either measure is at least ``min_ratio`` times that of all other
processes together, the absolute excess is material, and the matching test agrees:
a chi-square test of independence on the 2x2 table (process vs rest, retried vs not)
for the share, and a conditional binomial test of the process's share of all retries
against its share of jobs (the exact test of two Poisson rates) for the mean count.
"""

from __future__ import annotations

import math
import re

from scipy import stats

from contracts import Evidence, Finding, Impact, na, ok
from contracts.logs import failure_values as status_values_matching
from contracts.sql import quote_ident as _q
from contracts.sql import string_literal as _str_lit
from contracts.units import DAYS_PER_MONTH
from contracts.units import observed_months as _months
from contracts.units import p_text as _p_text

_POLICY_WORDS = frozenset({"max", "maximum", "limit", "allowed", "policy", "budget"})
_RETRY_WORDS = ("retry", "retries", "retried", "retrys", "rerun", "reruns", "attempt", "attempts")


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^0-9A-Za-z]+", spaced.lower()) if w]


def find_retry_column(ctx, configured: str) -> str | None:
    """The retry-count column: the configured one, or the first count (or quantity)
    column named like retry/retries/attempts (never an identifier or a time)."""
    if configured:
        ctx.data.column(configured)  # raises a clear KeyError when it does not exist
        return configured
    for c in ctx.data.columns:
        words = _words(c.name)
        # "max_retries" or "retry_limit" is a policy setting, not a count of retries
        if any(w in _POLICY_WORDS for w in words):
            continue
        if c.semantic in ("count", "quantity") and any(w in _RETRY_WORDS for w in words):
            return c.name
    return None


def run(ctx):
    min_ratio = float(ctx.settings.get("min_ratio", 3.0))
    min_share_diff = float(ctx.settings.get("min_share_diff", 0.01))
    min_mean_diff = float(ctx.settings.get("min_mean_diff", 0.05))
    alpha = float(ctx.settings.get("alpha", 0.001))
    min_events = int(ctx.settings.get("min_events", 50))
    pattern = str(ctx.settings.get("retried_pattern", "retr|rerun|resubmit|requeue"))
    configured = str(ctx.settings.get("retry_column", ""))

    process = ctx.data.event_role("process")
    status = ctx.data.event_role("status")
    retry_col = find_retry_column(ctx, configured)
    if process is None or (status is None and retry_col is None):
        return na(
            "NOT_APPLICABLE",
            "Retry hotspots need a process column and either a status column or a "
            "retry-count column; "
            + (
                "no process column was recognized."
                if process is None
                else "neither a status nor a retry-count column was found."
            ),
            checked=[
                f"event role process: {process or 'not found'}",
                f"event role status: {status or 'not found'}",
                f"retry-count column: {retry_col or 'not found'}",
            ],
        )

    retried_values: list[str] = []
    if status is not None:
        _, retried_values = status_values_matching(ctx, status, pattern)

    # An attempts column counts the first run too: retries = attempts - its minimum (1).
    retries = None
    offset = 0.0
    if retry_col is not None:
        x = f"TRY_CAST({_q(retry_col)} AS DOUBLE)"
        lo = ctx.data.sql(f"SELECT min({x}) AS lo FROM data").to_pylist()[0]["lo"]
        if lo is not None and "attempt" in "".join(_words(retry_col)) and lo >= 1:
            offset = float(lo)
        retries = f"greatest({x} - {offset!r}, 0)" if offset else f"greatest({x}, 0)"
    if retries is None and not retried_values:
        return na(
            "NOT_APPLICABLE",
            f"There is no retry-count column and no value of {status} looks like a retry "
            f"(pattern {pattern!r}), so retries cannot be counted.",
            checked=[f"status values of {status}", "retry-count column: not found"],
        )

    conditions = []
    if retried_values:
        listed = ", ".join(_str_lit(v) for v in retried_values)
        conditions.append(f"CAST({_q(status)} AS VARCHAR) IN ({listed})")
    if retries is not None:
        conditions.append(f"coalesce({retries}, 0) > 0")
    retried = " OR ".join(conditions)
    rsum = f"sum(coalesce({retries}, 0))" if retries is not None else "NULL"
    rcount = f"count({retries})" if retries is not None else "NULL"
    query = (
        f"SELECT CAST({_q(process)} AS VARCHAR) AS process, count(*) AS n, "
        f"count(*) FILTER (WHERE {retried}) AS retried, "
        f"{rsum} AS retries, {rcount} AS counted "
        f"FROM data WHERE {_q(process)} IS NOT NULL GROUP BY process ORDER BY process"
    )
    rows = ctx.data.sql(query).to_pylist()
    eligible = [r for r in rows if int(r["n"]) >= min_events]
    if len(eligible) < 2:
        return na(
            "INSUFFICIENT_DATA",
            f"Fewer than two processes have at least {min_events} jobs, so there are no "
            "peers to compare retry rates against.",
            checked=[f"{len(rows)} processes, {len(eligible)} with >= {min_events} jobs"],
        )

    total_n = sum(int(r["n"]) for r in rows)
    total_retried = sum(int(r["retried"]) for r in rows)
    total_retries = sum(float(r["retries"] or 0.0) for r in rows) if retries is not None else 0.0
    months = None
    findings = []
    checked = []
    per_process = {}
    for r in eligible:
        name, n, k = r["process"], int(r["n"]), int(r["retried"])
        rest_n, rest_k = total_n - n, total_retried - k
        share = k / n
        rest_share = rest_k / rest_n if rest_n else 0.0
        share_ratio = share / rest_share if rest_share > 0 else (math.inf if share > 0 else 1.0)
        m: dict = {
            "jobs": n,
            "retried": k,
            "retried_share": share,
            "rest_share": rest_share,
            "share_ratio": None if math.isinf(share_ratio) else share_ratio,
        }
        mean = rest_mean = mean_ratio = None
        if retries is not None:
            tot = float(r["retries"] or 0.0)
            mean = tot / n
            rest_mean = (total_retries - tot) / rest_n if rest_n else 0.0
            mean_ratio = mean / rest_mean if rest_mean > 0 else (math.inf if mean > 0 else 1.0)
            m |= {
                "retries": tot,
                "mean_retries": mean,
                "rest_mean_retries": rest_mean,
                "mean_ratio": None if math.isinf(mean_ratio) else mean_ratio,
            }
        per_process[name] = m
        text = f"{name}: retried {share:.2%} vs rest {rest_share:.2%}"
        if mean is not None:
            text += f"; mean retries {mean:.3f} vs rest {rest_mean:.3f}"
        checked.append(text)

        triggers = []
        if share_ratio >= min_ratio and share - rest_share >= min_share_diff and rest_n:
            table = [[k, n - k], [rest_k, rest_n - rest_k]]
            p = float(stats.chi2_contingency(table).pvalue)
            checked.append(f"{name}: chi-square on retried share, {_p_text(p)}")
            if p < alpha:
                triggers.append(("share", p))
        if (
            mean is not None
            and mean_ratio >= min_ratio
            and mean - rest_mean >= min_mean_diff
            and total_retries >= 1
            and rest_n
        ):
            tot = round(float(r["retries"] or 0.0))
            p = float(
                stats.binomtest(
                    tot, round(total_retries), n / total_n, alternative="greater"
                ).pvalue
            )
            checked.append(f"{name}: binomial test on retry count, {_p_text(p)}")
            if p < alpha:
                triggers.append(("mean", p))
        if not triggers:
            continue

        # the share (chi-square) is the primary measure; the mean count only when the
        # share alone does not make the process a hotspot
        measure, p_value = triggers[0]
        if months is None:
            months = _months(ctx)
        if measure == "share":
            excess = (share - rest_share) * n
            ratio_text = "all" if math.isinf(share_ratio) else f"{share_ratio:.1f}x"
            what = (
                f"{share:.1%} of {name}'s {n} jobs were retried against {rest_share:.1%} "
                f"for all other processes together ({ratio_text})."
            )
            unit_what = "retried jobs"
        else:
            excess = (mean - rest_mean) * n
            ratio_text = "all" if math.isinf(mean_ratio) else f"{mean_ratio:.1f}x"
            what = (
                f"{name} averages {mean:.2f} retries per job against {rest_mean:.2f} for all "
                f"other processes together ({ratio_text}; {share:.1%} of its jobs retried)."
            )
            unit_what = "retries"
        per_month = excess / months if months else excess
        unit = f"{unit_what}/month" if months else unit_what
        metrics = {k2: v for k2, v in m.items()} | {
            "measure": measure,
            "p_value": p_value,
            "min_ratio": min_ratio,
            "excess": excess,
        }
        findings.append(
            Finding(
                kind="retry_hotspot",
                title=f"{name} is retried {ratio_text} as often as other processes",
                severity="high" if share >= 0.2 else "medium",
                confidence=max(0.0, min(0.99, 1.0 - p_value)),
                target=name,
                what=what,
                why=(
                    "Retries cost a second run of the job and delay its result; a process "
                    "that retries far more often than its peers usually has one recurring "
                    "cause (a flaky dependency, a timeout set too low, bad input) rather "
                    f"than bad luck ({_p_text(p_value)})."
                ),
                recommendation=(
                    f"Group {name}'s retried jobs by error message, host and input to find "
                    "the recurring cause; fix it or tune the job (timeout, resources, "
                    "idempotent inputs) so its retry rate approaches the "
                    f"{rest_share:.1%} of the other processes."
                ),
                evidence=Evidence(
                    columns=tuple(c for c in (process, status, retry_col) if c is not None),
                    metrics=metrics,
                    query=query,
                    rows=n,
                ),
                measurement="modeled",
                impact=Impact(
                    value=per_month,
                    unit=unit,
                    description=f"{unit_what} avoided if {name} retried at the rate of the "
                    "other processes",
                    assumptions=(
                        f"{name}'s excess retries have a fixable common cause",
                        "the job volume of the process stays the same",
                        "the observed period is representative"
                        + (f"; a month is {DAYS_PER_MONTH:.2f} days" if months else ""),
                    ),
                ),
            )
        )

    summary_metrics = {
        "processes": per_process,
        "retried_values": retried_values,
        "retry_column": retry_col,
        "overall_retried_share": total_retried / total_n if total_n else 0.0,
    }
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No process is retried at least {min_ratio:g}x as often as the others "
            f"({len(eligible)} processes with >= {min_events} jobs compared).",
            checked=checked,
            metrics=summary_metrics,
        )
    return ok(
        findings=findings, metrics=summary_metrics | {"hotspots": [f.target for f in findings]}
    )
