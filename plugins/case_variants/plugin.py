"""case_variants: the variants of a case log, their frequencies and the directly-follows
counts, all in DuckDB aggregates (see ``contracts.cases`` for what a step is and its order)."""

from __future__ import annotations

from contracts import Evidence, Finding, na, ok
from contracts.cases import ORDER, multi_step_or_na, roles, steps_cte

SHOWN_CHARS = 400  # a variant's sequence as listed (grouping uses the whole sequence)


def run(ctx):
    cfg = ctx.settings
    max_variants = int(cfg.get("max_variants", 10))
    max_pairs = int(cfg.get("max_pairs", 30))
    cols = roles(ctx)
    if not any(cols[r] for r in ("queued", "started", "ended")):
        return na(
            "NOT_APPLICABLE",
            "The case log has no queue, start or end time, so its steps have no order.",
            checked=[f"case column {cols['case']}, activity column {cols['process']}"],
        )
    counts, not_here = multi_step_or_na(
        ctx, cols, int(cfg.get("min_cases", 50)), float(cfg.get("min_share", 0.05))
    )
    if not_here is not None:
        return not_here
    ev = steps_cte(ctx, cols)
    lengths = counts["lengths"]
    variants_q = (
        f"WITH {ev}, v AS (SELECT c, string_agg(p, ' -> ' ORDER BY {ORDER}) AS variant, "
        "count(*) AS k FROM ev GROUP BY c) "
        f"SELECT left(variant, {SHOWN_CHARS}) AS variant, length(variant) AS chars, "
        "CAST(count(*) AS BIGINT) AS cases, any_value(k) AS steps, "
        "CAST(count(*) OVER () AS BIGINT) AS n_variants FROM v GROUP BY variant "
        f"ORDER BY cases DESC, variant LIMIT {max_variants}"
    )
    vrows = ctx.data.sql(variants_q).to_pylist()
    pairs_q = (
        f"WITH {ev}, t AS (SELECT p AS a, lead(p) OVER (PARTITION BY c ORDER BY {ORDER}) AS b "
        "FROM ev) SELECT a, b, CAST(count(*) AS BIGINT) AS n, "
        "CAST(count(*) OVER () AS BIGINT) AS n_pairs FROM t WHERE b IS NOT NULL "
        f"GROUP BY a, b ORDER BY n DESC, a, b LIMIT {max_pairs}"
    )
    prows = ctx.data.sql(pairs_q).to_pylist()
    cases = counts["cases"]
    n_variants = int(vrows[0]["n_variants"]) if vrows else 0
    n_pairs = int(prows[0]["n_pairs"]) if prows else 0
    variants = [
        {
            "variant": str(r["variant"]) + ("..." if int(r["chars"]) > SHOWN_CHARS else ""),
            "cases": int(r["cases"]),
            "share": int(r["cases"]) / cases,
            "steps": int(r["steps"]),
        }
        for r in vrows
    ]
    pairs = [{"from": str(r["a"]), "to": str(r["b"]), "count": int(r["n"])} for r in prows]
    checked = [
        f"cases with >= 2 steps: {counts['multi']} of {cases}",
        f"variants: the top {len(variants)} of {n_variants} (most cases first, ties by sequence)",
        f"directly-follows pairs: the top {len(pairs)} of {n_pairs} (most frequent first)",
    ]
    top = variants[0]
    metrics = {
        "cases": cases,
        "steps": counts["steps"],
        "multi_step_cases": counts["multi"],
        "steps_per_case": lengths,
        "variants_total": n_variants,
        "variants": variants,
        "directly_follows_total": n_pairs,
        "directly_follows": pairs,
        "checked": checked,
    }
    case_col, proc_col = cols["case"], cols["process"]
    assert case_col is not None and proc_col is not None
    finding = Finding(
        kind="case_variants",
        title=(
            f"{n_variants} variants over {cases} cases; the most common covers {top['share']:.0%}"
        ),
        severity="info",
        confidence=1.0,
        target=case_col,
        what=(
            f"{cases} cases ({counts['steps']} distinct steps, median {lengths['p50']:g} and at "
            f"most {lengths['max']:g} per case) follow {n_variants} variants; the most common "
            f"({top['cases']} cases, {top['share']:.1%}) is {top['variant']}. {n_pairs} distinct "
            "directly-follows pairs."
        ),
        why=(
            "Variants and directly-follows counts show how cases really flow: which steps are "
            "repeated (rework) and which hand-offs the cases pass, the ground of the rework "
            "and hand-off decisions."
        ),
        evidence=Evidence(
            columns=(case_col, proc_col),
            metrics={
                "cases": cases,
                "steps": counts["steps"],
                "multi_step_cases": counts["multi"],
                "variants_total": n_variants,
                "top_variant_share": top["share"],
                "directly_follows_total": n_pairs,
            },
            query=variants_q,
            rows=counts["steps"],
        ),
    )
    return ok(findings=[finding], metrics=metrics)
