"""handoff_gaps: the transition A -> B whose hand-off gap dwarfs the others'.

Gaps (start of B - end of A, consecutive steps of a case) are aggregated per transition
in SQL (count, median, p90); a transition is flagged on effect size (median and p90 far
above the other transitions' typical ones, and hours long), confirmed by a one-sided
Mann-Whitney U test on a bounded seeded sample. Target: ``"A->B"``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from contracts import Evidence, Finding, Impact, na, ok
from contracts.cases import ORDER, multi_step_or_na, roles, steps_cte
from contracts.sql import string_literal
from contracts.units import DAYS_PER_MONTH
from contracts.units import p_text as _p_text

ARROW = "->"


def gaps_cte(ctx, cols) -> str:
    """``g(c, t, gap_s, h)``: every hand-off's transition, gap in seconds, sample hash."""
    return (
        f"WITH {steps_cte(ctx, cols)}, tr AS (SELECT c, p AS a, e AS a_end, "
        f"lead(p) OVER w AS b, lead(coalesce(s, q)) OVER w AS b_start, "
        f"lead(coalesce(s, q, e)) OVER w AS b_at FROM ev WINDOW w AS (PARTITION BY c ORDER BY "
        f"{ORDER})), g AS (SELECT c, a || '{ARROW}' || b AS t, "
        "greatest(b_start - a_end, 0) / 1e6 AS gap_s, "
        f"hash(c, a, b, b_at, {int(ctx.seed)}) AS h "
        "FROM tr WHERE b IS NOT NULL AND a_end IS NOT NULL AND b_start IS NOT NULL)"
    )


def stats_query(ctx, cols) -> str:
    return (
        f"{gaps_cte(ctx, cols)} SELECT t, CAST(count(*) AS BIGINT) AS n, "
        "quantile_cont(gap_s, 0.5) AS p50, quantile_cont(gap_s, 0.9) AS p90, "
        "sum(gap_s) / 3600 AS total_h FROM g GROUP BY t ORDER BY t"
    )


def _keep(n: int, limit: int) -> int:
    """Hash threshold (of 1e6) keeping about 1.5x ``limit`` of ``n`` rows."""
    return 1_000_000 if n <= limit else min(1_000_000, int(1.5e6 * limit / n) + 1)


def sample_query(ctx, cols, target: str, compared: list[str], n_t: int, n_r: int, limit: int):
    listed = ", ".join(string_literal(t) for t in compared)
    return (
        f"{gaps_cte(ctx, cols)}, s AS (SELECT t = {string_literal(target)} AS mine, gap_s, h "
        f"FROM g WHERE t IN ({listed})) SELECT mine, gap_s FROM s "
        f"WHERE h % 1000000 < CASE WHEN mine THEN {_keep(n_t, limit)} ELSE {_keep(n_r, limit)} END "
        f"QUALIFY row_number() OVER (PARTITION BY mine ORDER BY h, gap_s) <= {limit} "
        "ORDER BY mine, gap_s"
    )


def run(ctx):
    cfg = ctx.settings
    min_ratio = float(cfg.get("min_ratio", 3.0))
    min_gap_h = float(cfg.get("min_gap_hours", 1.0))
    alpha = float(cfg.get("alpha", 0.001))
    min_n = int(cfg.get("min_transitions", 100))
    limit = int(cfg.get("sample", 5000))
    cols = roles(ctx)
    counts, not_here = multi_step_or_na(
        ctx, cols, int(cfg.get("min_cases", 50)), float(cfg.get("min_multi_share", 0.05))
    )
    if not_here is not None:
        return not_here
    query = stats_query(ctx, cols)
    every = ctx.data.sql(query).to_pylist()
    rows = [r for r in every if int(r["n"]) >= min_n]
    checked = [
        f"cases with >= 2 steps: {counts['multi']} of {counts['cases']}",
        f"{len(rows)} of {len(every)} transitions seen >= {min_n} times compared",
    ]
    if len(rows) < 3:
        return na(
            "INSUFFICIENT_DATA",
            "Fewer than three transitions are frequent enough to compare their hand-off gaps.",
            checked=checked,
        )
    days = counts["span_days"]
    months = max(days, 1.0) / DAYS_PER_MONTH
    names = [str(r["t"]) for r in rows]
    findings = []
    for r in rows:
        name = str(r["t"])
        others = [o for o in rows if o["t"] != name]
        peer50 = float(np.median([float(o["p50"]) for o in others]))
        peer90 = float(np.median([float(o["p90"]) for o in others]))
        p50, p90 = float(r["p50"]), float(r["p90"])
        need50 = max(min_ratio * peer50, min_gap_h * 3600.0)
        checked.append(
            f"{name}: median gap {p50:.0f} s, p90 {p90:.0f} s vs the others' {peer50:.0f} s and "
            f"{peer90:.0f} s (needs median >= {need50:.0f} s and p90 >= {min_ratio * peer90:.0f} s)"
        )
        if p50 < need50 or p90 < min_ratio * peer90:
            continue
        n_rest = sum(int(o["n"]) for o in others)
        s_query = sample_query(ctx, cols, name, names, int(r["n"]), n_rest, limit)
        sample = ctx.data.sql(s_query).to_pydict()
        flags = np.asarray(sample["mine"], dtype=bool)
        values = np.asarray(sample["gap_s"], dtype=np.float64)
        mine, rest = values[flags], values[~flags]
        if mine.size < 2 or rest.size < 2:
            continue
        test = stats.mannwhitneyu(mine, rest, alternative="greater")
        p_value = float(test.pvalue)
        a_stat = float(test.statistic) / (mine.size * rest.size)  # Vargha-Delaney A
        checked.append(
            f"{name}: Mann-Whitney U on {mine.size} vs {rest.size} sampled gaps, "
            f"p = {p_value:.2g}, A = {a_stat:.2f} (needs p < {alpha:g})"
        )
        if not p_value < alpha:
            continue
        # hours above the peers' median: the sample's mean excess times the transitions
        excess = float(np.clip(mine - peer50, 0.0, None).mean()) * int(r["n"]) / 3600.0
        findings.append(
            _finding(
                cols, query, r, peer50, peer90, p_value, a_stat, excess, days, months, mine, rest
            )
        )
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            "No hand-off between consecutive steps waits far longer than the others.",
            checked=checked,
        )
    flagged = [f.target for f in findings]
    return ok(findings=findings, metrics={"flagged": flagged, "checked": checked})


def _finding(cols, query, r, peer50, peer90, p_value, a_stat, excess, days, months, mine, rest):
    name = str(r["t"])
    a, _, b = name.partition(ARROW)
    p50, p90 = float(r["p50"]), float(r["p90"])
    saved = excess / months
    metrics = {
        "transitions": int(r["n"]),
        "median_gap_s": p50,
        "p90_gap_s": p90,
        "peers_median_gap_s": peer50,
        "peers_p90_gap_s": peer90,
        "ratio": p50 / peer50 if peer50 > 0 else None,
        "p_value": p_value,
        "vargha_delaney_a": a_stat,
        "sample_transition": int(mine.size),
        "sample_others": int(rest.size),
        "total_gap_hours_per_month": float(r["total_h"]) / months,
        "saved_hours_per_month": saved,
        "span_days": days,
    }
    p_text = _p_text(p_value)
    return Finding(
        kind="handoff_gap",
        title=f"{b} starts a median {p50 / 3600:.1f} h after {a} ends",
        severity="high" if p50 >= 8 * 3600 else "medium",
        confidence=max(0.0, min(0.99, 1.0 - p_value)),
        target=name,
        what=(
            f"{int(r['n'])} hand-offs {a} -> {b}: median gap {p50 / 3600:.1f} h, p90 "
            f"{p90 / 3600:.1f} h, against a median {peer50 / 60:.1f} min (p90 {peer90 / 60:.1f} "
            "min) for the other transitions."
        ),
        why=(
            f"Cases sit idle between {a} and {b} far longer than between any other steps "
            f"({p_text}, one-sided Mann-Whitney U, A = {a_stat:.2f}): {saved:.1f} case hours a "
            "month above the other hand-offs' median gap."
        ),
        recommendation=(
            f"Trigger {b} earlier after {a} (an event or a shorter polling interval instead of "
            "a manual or batched hand-off)."
        ),
        evidence=Evidence(
            columns=tuple(c for c in (cols["case"], cols["process"]) if c),
            metrics=metrics,
            query=query,
            rows=int(r["n"]),
        ),
        measurement="modeled",
        impact=Impact(
            value=saved,
            unit="hours/month",
            description=f"case hours a month saved if no {a} -> {b} gap exceeded the other "
            "transitions' median gap",
            assumptions=(
                f"every gap above the other transitions' median ({peer50:.0f} s) falls to it",
                f"the mean excess is that of the {mine.size} sampled gaps (all of them when "
                "there are no more than the sample size)",
                f"the observed {months:.1f} months are representative; a month is "
                f"{DAYS_PER_MONTH:.2f} days",
            ),
        ),
    )
