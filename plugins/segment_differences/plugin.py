"""segment_differences: a level of a grouping column under which a quantity is far off.

For tables that are not event logs (a sales table, a survey, a sensor table): every
pair of a low-cardinality grouping column and a quantity column, up to ``max_pairs``,
tested on one bounded sample (a seeded hash of the row number) with Kruskal-Wallis and
epsilon-squared, and the most deviant level alone with Vargha-Delaney A, by the rule
group_differences applies to durations (``contracts.effects``). Only large effects are
reported; a column that (nearly) perfectly separates the quantity is a binning of it,
left to redundant_features. Event logs are left to group_differences.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from contracts import QUANTITY_SEMANTICS, Evidence, Finding, na, ok
from contracts.effects import is_large, keep_ppm, kruskal_effect
from contracts.logs import event_log_na
from contracts.sql import quote_ident as _q
from contracts.sql import string_literal as _str_lit


def _settings(ctx) -> dict[str, float]:
    s = ctx.settings
    return {
        "min_epsilon_squared": float(s.get("min_epsilon_squared", 0.26)),
        "min_single_group_a": float(s.get("min_single_group_a", 0.71)),
        "max_epsilon_squared": float(s.get("max_epsilon_squared", 0.95)),
        "max_single_group_a": float(s.get("max_single_group_a", 0.98)),
        "min_tested_share": float(s.get("min_tested_share", 0.8)),
        "alpha": float(s.get("alpha", 0.001)),
        "max_sample": int(s.get("max_sample", 20000)),
        "min_group_size": int(s.get("min_group_size", 30)),
        "max_levels": int(s.get("max_levels", 50)),
        "max_pairs": int(s.get("max_pairs", 200)),
    }


def grouping_columns(ctx, max_levels: int) -> tuple[list[str], list[str]]:
    """Categorical and boolean columns with 2..max_levels values (dataset order), and
    notes on the ones left out."""
    chosen, notes = [], []
    for c in ctx.data.columns:
        if c.role not in ("categorical", "boolean"):
            continue
        if not 2 <= c.distinct_count <= max_levels:
            notes.append(f"{c.name}: {c.distinct_count} distinct values (needs 2..{max_levels})")
            continue
        chosen.append(c.name)
    return chosen, notes


def sample_query(ctx, quantities: list[str], groups: list[str], limit: int) -> str:
    """Up to ``limit`` rows chosen by a seeded hash of the row number."""
    cols = [f"CAST({_q(g)} AS VARCHAR) AS g{i}" for i, g in enumerate(groups)]
    cols += [f"CAST({_q(q)} AS DOUBLE) AS q{i}" for i, q in enumerate(quantities)]
    keep = keep_ppm(ctx.data.rows, limit)
    return (
        f"WITH s AS (SELECT {', '.join(cols)}, hash(rowid, {int(ctx.seed)}) AS h FROM data) "
        f"SELECT * EXCLUDE (h) FROM s WHERE h % 1000000 < {keep} "
        f"ORDER BY h LIMIT {int(limit)}"
    )


def most_deviant(kept: list[str], samples: list[np.ndarray]) -> str:
    """The level whose Vargha-Delaney A against all other kept levels is furthest from
    0.5 (from pooled ranks: A = (R - n(n+1)/2) / (n (N - n))); ties: the first name."""
    pooled = np.concatenate(samples)
    ranks = stats.rankdata(pooled)
    total = pooled.size
    best, best_dev, start = kept[0], -1.0, 0
    for lab, s in zip(kept, samples, strict=True):
        n = s.size
        r = float(ranks[start : start + n].sum())
        start += n
        a = (r - n * (n + 1) / 2) / (n * (total - n)) if total > n else 0.5
        dev = abs(a - 0.5)
        if dev > best_dev:
            best, best_dev = lab, dev
    return best


def compare_pair(quantity: str, group: str, labels: np.ndarray, values: np.ndarray, cfg) -> dict:
    target = f"{quantity}~{group}"
    usable = np.array([lab is not None for lab in labels.tolist()]) & ~np.isnan(values)
    labs = labels[usable]
    vals = values[usable]
    counts: dict[str, int] = {}
    for lab in labs.tolist():
        counts[lab] = counts.get(lab, 0) + 1
    kept = sorted(lab for lab, n in counts.items() if n >= cfg["min_group_size"])
    if len(kept) < 2:
        return {
            "note": f"{target}: skipped, fewer than 2 levels with >= "
            f"{int(cfg['min_group_size'])} sampled rows"
        }
    samples = [vals[labs == lab] for lab in kept]
    pooled = np.concatenate(samples)
    share = pooled.size / labs.size
    if share < cfg["min_tested_share"]:
        return {
            "note": f"{target}: skipped, the {len(kept)} levels with >= "
            f"{int(cfg['min_group_size'])} sampled rows hold {share:.0%} of the rows (needs "
            f"{cfg['min_tested_share']:.0%}): {group} is too fragmented for this table"
        }
    if np.ptp(pooled) == 0:
        return {"note": f"{target}: skipped, every sampled value is the same"}
    worst = most_deviant(kept, samples)
    effect = kruskal_effect(kept, samples, worst, two_sided=True)
    eps2 = effect["epsilon_squared"]
    large = is_large(effect, cfg["min_epsilon_squared"], cfg["min_single_group_a"], cfg["alpha"])
    binning = (
        eps2 >= cfg["max_epsilon_squared"] or effect["single_group_a"] >= cfg["max_single_group_a"]
    )
    mine = samples[kept.index(worst)]
    rest = np.concatenate([s for lab, s in zip(kept, samples, strict=True) if lab != worst])
    note = (
        f"{target}: epsilon^2 {eps2:.3f} (needs >= {cfg['min_epsilon_squared']:g}) or "
        f"{worst} alone A {effect['single_group_a']:.2f} (needs >= "
        f"{cfg['min_single_group_a']:g}), Kruskal-Wallis H {effect['h']:.1f}, "
        f"p = {effect['p_value']:.2g}, {len(kept)} levels, {effect['n']} rows"
        + (
            f"; not reported: epsilon^2 >= {cfg['max_epsilon_squared']:g} or A >= "
            f"{cfg['max_single_group_a']:g}, {group} is defined by {quantity} (a binning, "
            "a threshold or a type that fixes it)"
            if large and binning
            else ""
        )
    )
    return {
        "note": note,
        "passed": large and not binning,
        "target": target,
        "quantity": quantity,
        "group": group,
        "worst": worst,
        "levels": len(kept),
        "worst_sampled_median": float(np.median(mine)),
        "rest_sampled_median": float(np.median(rest)),
        "higher": bool(np.median(mine) >= np.median(rest)),
        **effect,
    }


def run(ctx):
    cfg = _settings(ctx)
    if (not_here := event_log_na(ctx)) is not None:
        return not_here
    quantities = ctx.data.names("numeric", semantic=list(QUANTITY_SEMANTICS))
    groups, notes = grouping_columns(ctx, int(cfg["max_levels"]))
    if not groups or not quantities:
        return na(
            "NOT_APPLICABLE",
            "Needs a grouping column (categorical or boolean, 2 to "
            f"{int(cfg['max_levels'])} values) and a quantity column to compare across it.",
            checked=notes or [f"{len(quantities)} quantity columns, {len(groups)} grouping"],
        )
    pairs = [(q, g) for q in quantities for g in groups if q != g]
    n_pairs = len(pairs)
    pairs = pairs[: int(cfg["max_pairs"])]
    used_q = [q for q in quantities if any(p[0] == q for p in pairs)]
    used_g = [g for g in groups if any(p[1] == g for p in pairs)]
    coverage = (
        f"checked {len(pairs)} of {n_pairs} (quantity, grouping column) pairs: the first "
        f"{int(cfg['max_pairs'])} in dataset order of the quantity columns, then of the "
        "grouping columns"
    )
    query = sample_query(ctx, used_q, used_g, int(cfg["max_sample"]))
    table = ctx.data.sql(query)
    label_cols = {
        g: np.array(table.column(f"g{i}").to_pylist(), dtype=object) for i, g in enumerate(used_g)
    }
    value_cols = {
        q: np.array(
            [np.nan if v is None else v for v in table.column(f"q{i}").to_pylist()], dtype=float
        )
        for i, q in enumerate(used_q)
    }
    checked = [coverage, *notes]
    results = []
    tested = 0
    for q, g in pairs:
        res = compare_pair(q, g, label_cols[g], value_cols[q], cfg)
        checked.append(res["note"])
        tested += "passed" in res
        if res.get("passed"):
            results.append(res)
    metrics = {
        "checked": coverage,
        "pairs_total": n_pairs,
        "pairs_checked": len(pairs),
        "sampled_rows": table.num_rows,
    }
    metrics["pairs_tested"] = tested
    if tested == 0:
        return na(
            "INSUFFICIENT_DATA",
            f"No (quantity, grouping column) pair has two levels with at least "
            f"{int(cfg['min_group_size'])} sampled rows and varying values ({coverage}).",
            checked=checked,
            metrics=metrics,
        )
    if not results:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No grouping column separates a quantity with a large effect (epsilon-squared "
            f">= {cfg['min_epsilon_squared']:g}, or one level alone with A >= "
            f"{cfg['min_single_group_a']:g}) at p < {cfg['alpha']:g} ({coverage}; "
            f"{table.num_rows} sampled rows).",
            checked=checked,
            metrics=metrics,
        )
    findings = sorted((_finding(ctx, res) for res in results), key=lambda f: f.target)
    return ok(findings=findings, metrics={**metrics, "flagged": [f.target for f in findings]})


def _finding(ctx, res) -> Finding:
    q, g, worst = res["quantity"], res["group"], res["worst"]
    qq, gq = _q(q), _q(g)
    summary_sql = (
        f"SELECT CAST({gq} AS VARCHAR) = {_str_lit(worst)} AS is_level, count({qq}) AS n, "
        f"quantile_cont({qq}, 0.5) AS median, avg({qq}) AS mean FROM data "
        f"WHERE {gq} IS NOT NULL AND {qq} IS NOT NULL GROUP BY 1 ORDER BY 1"
    )
    rows = {bool(r["is_level"]): r for r in ctx.data.sql(summary_sql).to_pylist()}
    mine, rest = rows.get(True, {}), rows.get(False, {})
    med, rest_med = _num(mine.get("median")), _num(rest.get("median"))
    ratio = med / rest_med if med is not None and rest_med else None
    eps2, a = float(res["epsilon_squared"]), float(res["single_group_a"])
    p_value = float(res["p_value"])
    way = "higher" if res["higher"] else "lower"
    ratio_text = f" ({ratio:.2f}x)" if ratio is not None and ratio > 0 else ""
    metrics = {
        "quantity": q,
        "group_column": g,
        "level": worst,
        "epsilon_squared": eps2,
        "single_group_a": a,
        "single_group_p_value": float(res["single_group_p_value"]),
        "kruskal_h": float(res["h"]),
        "p_value": p_value,
        "test": "Kruskal-Wallis over the levels (seeded sample), Mann-Whitney U for the level",
        "levels": int(res["levels"]),
        "sampled_rows": int(res["n"]),
        "level_median": med,
        "rest_median": rest_med,
        "level_rows": int(mine.get("n") or 0),
        "rest_rows": int(rest.get("n") or 0),
        "ratio_to_rest": ratio,
        "direction": way,
    }
    return Finding(
        kind="segment_difference",
        title=f"{q} differs by {g}: {worst} is {way}",
        severity="high" if eps2 >= 0.5 or a >= 0.85 else "medium",
        confidence=max(0.0, min(0.99, 1.0 - p_value)),
        target=res["target"],
        what=(
            f"Rows with {g}={worst} have a median {q} of {_fmt(med)}, against {_fmt(rest_med)} "
            f"for the other values of {g}{ratio_text}; across the {int(res['levels'])} values "
            f"the difference is large (epsilon-squared {eps2:.2f}, {worst} alone A {a:.2f} on "
            f"{int(res['n'])} sampled rows)."
        ),
        why=(
            f"A Kruskal-Wallis test separates the {g} groups (H {float(res['h']):.0f}, p = "
            f"{p_value:.2g}) with a large effect size, so {g} matters for {q} far beyond "
            "noise; a difference this size usually has a business cause (pricing, mix, "
            "process) or a recording one (unit, source)."
        ),
        recommendation=(
            f"Find out why {q} is {way} for {g}={worst} (a different price list, product mix, "
            f"unit or data source); report and plan {q} by {g} rather than in one total, and "
            "correct it if it is a recording difference."
        ),
        evidence=Evidence(columns=(q, g), metrics=metrics, query=summary_sql, rows=int(res["n"])),
    )


def _num(value) -> float | None:
    return None if value is None else float(value)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
