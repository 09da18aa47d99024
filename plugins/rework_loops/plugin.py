"""rework_loops: the activity that cases repeat far more often than the others.

Per activity: cases having it, cases doing it twice or more, and the time of the
repeats, in one SQL aggregate over the distinct steps (``contracts.cases``). The loop share
gets a Wilson interval (statsmodels); a loop is a decision when the interval's lower
bound clears both ``min_share`` and ``min_ratio`` times the other activities' median
share, so a rare, normal re-check never is.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from contracts import Evidence, Finding, Impact, na, ok
from contracts.cases import multi_step_or_na, roles, steps_cte
from contracts.units import DAYS_PER_MONTH
from contracts.units import p_text as _p_text


def loops_query(ctx, cols) -> str:
    """Per activity: cases with it, cases repeating it, repeats, their hours."""
    return (
        f"WITH {steps_cte(ctx, cols)}, per AS (SELECT c, p, count(*) AS k, "
        "sum(greatest(coalesce(e - s, 0), 0) + greatest(coalesce(s - q, 0), 0)) AS t_us "
        "FROM ev GROUP BY c, p) "
        "SELECT p, CAST(count(*) AS BIGINT) AS cases, CAST(count_if(k >= 2) AS BIGINT) AS loops, "
        "CAST(sum(k - 1) AS BIGINT) AS repeats, "
        "coalesce(sum(t_us * (k - 1) / k) FILTER (WHERE k >= 2), 0) / 3.6e9 AS repeat_h "
        "FROM per GROUP BY p ORDER BY p"
    )


def run(ctx):
    cfg = ctx.settings
    min_share = float(cfg.get("min_share", 0.05))
    min_ratio = float(cfg.get("min_ratio", 3.0))
    confidence = float(cfg.get("confidence", 0.95))
    min_activity = int(cfg.get("min_activity_cases", 100))
    cols = roles(ctx)
    counts, not_here = multi_step_or_na(
        ctx, cols, int(cfg.get("min_cases", 50)), float(cfg.get("min_multi_share", 0.05))
    )
    if not_here is not None:
        return not_here
    query = loops_query(ctx, cols)
    every = ctx.data.sql(query).to_pylist()
    rows = [r for r in every if int(r["cases"]) >= min_activity]
    checked = [
        f"cases with >= 2 steps: {counts['multi']} of {counts['cases']}",
        f"{len(rows)} of {len(every)} activities present in >= {min_activity} cases compared",
    ]
    if len(rows) < 2:
        return na(
            "INSUFFICIENT_DATA",
            "Fewer than two activities occur in enough cases to compare their loop shares.",
            checked=checked,
        )
    days = counts["span_days"]
    months = max(days, 1.0) / DAYS_PER_MONTH
    alpha = 1.0 - confidence
    share = {r["p"]: int(r["loops"]) / int(r["cases"]) for r in rows}
    findings = []
    for r in rows:
        name, n, k = r["p"], int(r["cases"]), int(r["loops"])
        others = [o for o in rows if o["p"] != name]
        peer = float(np.median([share[o["p"]] for o in others]))
        peer_cases = sum(int(o["cases"]) for o in others)
        pooled = sum(int(o["loops"]) for o in others) / peer_cases
        low, high = (float(x) for x in proportion_confint(k, n, alpha=alpha, method="wilson"))
        need = max(min_share, min_ratio * peer)
        checked.append(
            f"{name}: repeated in {k} of {n} cases ({share[name]:.1%}, {confidence:.0%} CI "
            f"{low:.1%}-{high:.1%}) vs the others' median {peer:.1%} (lower bound needs "
            f">= {need:.1%})"
        )
        if k == 0 or low < need:
            continue
        null = min(max(pooled, 0.5 / peer_cases), 1.0 - 1e-12)
        p_value = float(stats.binomtest(k, n, null, alternative="greater").pvalue)
        findings.append(
            _finding(
                cols, query, r, share[name], low, high, peer, pooled, p_value, days, months, cfg
            )
        )
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            "No activity is repeated within its cases far more often than the others.",
            checked=checked,
        )
    return ok(
        findings=findings,
        metrics={"flagged": [f.target for f in findings], "checked": checked},
    )


def _finding(cols, query, r, share, low, high, peer, pooled, p_value, days, months, cfg):
    name, n, k = r["p"], int(r["cases"]), int(r["loops"])
    repeat_h = float(r["repeat_h"]) / months
    saved = repeat_h * max(0.0, 1.0 - peer / share)
    confidence = float(cfg.get("confidence", 0.95))
    metrics = {
        "cases": n,
        "loop_cases": k,
        "repeats": int(r["repeats"]),
        "loop_share": share,
        "ci_low": low,
        "ci_high": high,
        "confidence": confidence,
        "peers_median_share": peer,
        "peers_pooled_share": pooled,
        "p_value": p_value,
        "repeat_hours_per_month": repeat_h,
        "saved_hours_per_month": saved,
        "span_days": days,
    }
    p_text = _p_text(p_value)
    return Finding(
        kind="rework_loop",
        title=f"{share:.0%} of cases with {name} do it again",
        severity="high" if share >= 0.2 else "medium",
        confidence=max(0.0, min(0.99, 1.0 - p_value)),
        target=name,
        what=(
            f"{k} of the {n} cases that have {name} do it twice or more ({share:.1%}, "
            f"{confidence:.0%} interval {low:.1%}-{high:.1%}; {int(r['repeats'])} repeated "
            f"steps); the other activities are repeated in {peer:.1%} of their cases (median)."
        ),
        why=(
            f"A loop this much more frequent than the other activities' ({p_text}, one-sided "
            f"binomial test against their pooled share {pooled:.2%}) is rework: the repeated "
            f"steps take {repeat_h:.1f} h of run and queue time a month."
        ),
        recommendation=(
            f"Remove the loop on {name}: find why cases go through it again (compare looping "
            "with straight cases by variant, user and host) and fix that cause."
        ),
        evidence=Evidence(
            columns=tuple(c for c in (cols["case"], cols["process"]) if c),
            metrics=metrics,
            query=query,
            rows=n,
        ),
        measurement="modeled",
        impact=Impact(
            value=saved,
            unit="hours/month",
            description=f"run and queue-wait hours a month no longer spent repeating {name}",
            assumptions=(
                "a looping case's repeats are (k-1)/k of its run + queue time in the activity",
                f"the loop share falls to the other activities' median ({peer:.1%})",
                f"the observed {months:.1f} months are representative; a month is "
                f"{DAYS_PER_MONTH:.2f} days",
            ),
        ),
    )
