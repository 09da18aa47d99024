"""segment_differences: a level of a grouping column under which a quantity is far off.

For tables that are not event logs (a sales table, a survey, a sensor table): every
pair of a low-cardinality grouping column and a quantity column, up to ``max_pairs``,
tested on one bounded sample (a seeded hash of the row number) with Kruskal-Wallis and
epsilon-squared, and the most deviant level alone with Vargha-Delaney A, by the rule
group_differences applies to durations (``contracts.effects``). Only large effects are
reported; a column that (nearly) perfectly separates the quantity is a binning of it,
left to redundant_features, and a level on which the quantity is (nearly) one value at
the table's minimum or maximum is defined by it ("no rain" days, storms without
storm-force winds). Two kinds of quantity are not compared at all, each found with SQL
aggregates over the whole table: a property of a unit measured repeatedly over time (a
non-numeric column that keys the rows with a time column and holds nearly all the
quantity's variance: the rows are pseudo-replicates of its levels), and a label
encoding of a categorical column (small whole numbers in one-to-one correspondence
with its levels: a difference of codes). Event logs are left to group_differences.
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
        "max_level_mode_share": float(s.get("max_level_mode_share", 0.85)),
        "min_unit_variance_share": float(s.get("min_unit_variance_share", 0.99)),
        "min_code_match": float(s.get("min_code_match", 0.99)),
    }


_TIME_SEMANTICS = ("calendar_part", "timestamp")
_UNIT_ROLES = ("categorical", "identifier", "text", "boolean")


def _time_columns(ctx) -> list[tuple[str, int]]:
    """Columns that place a row in time, with their distinct counts: timestamps, and
    numbers read as a calendar part (a year, a month) or a point in time, whose
    values repeat (at most rows / 2 distinct: in a panel every period holds several
    units; dataset order)."""
    rows = int(ctx.data.rows)
    return [
        (c.name, int(c.distinct_count))
        for c in ctx.data.columns
        if (c.role == "timestamp" or (c.role == "numeric" and c.semantic in _TIME_SEMANTICS))
        and 2 <= c.distinct_count <= rows // 2
    ]


def _unit_columns(ctx) -> list:
    """Non-numeric columns whose levels repeat (2 .. rows / 2 distinct values): the
    candidates for the unit a quantity belongs to (dataset order)."""
    rows = int(ctx.data.rows)
    return [
        c for c in ctx.data.columns if c.role in _UNIT_ROLES and 2 <= c.distinct_count <= rows // 2
    ]


def panel_units(ctx) -> dict[str, str]:
    """``{unit column: time column}`` for every unit column that, with a time column,
    identifies each row (count(distinct (unit, time)) = the rows where both are set,
    and those are all the rows): a panel, each unit measured once per period."""
    rows = int(ctx.data.rows)
    times = _time_columns(ctx)
    found: dict[str, str] = {}
    for unit in _unit_columns(ctx):
        for t, t_distinct in times:
            if unit.distinct_count * t_distinct < rows:  # cannot key the rows
                continue
            u, tq = _q(unit.name), _q(t)
            # a cheap necessary test first: a key's HyperLogLog estimate is the row
            # count within its few-percent error
            approx = ctx.data.sql(
                f"SELECT approx_count_distinct(hash({u}, {tq})) AS k FROM data"
            ).to_pylist()[0]["k"]
            if int(approx or 0) < 0.9 * rows:
                continue
            # and exact on the rows of one period in 16 (a key of the table is a key of
            # every subset of its periods; a repeated pair shows up there 1 time in 16)
            part = ctx.data.sql(
                f"SELECT count(DISTINCT ({u}, {tq})) AS k, count(*) AS n FROM data "
                f"WHERE {u} IS NOT NULL AND {tq} IS NOT NULL AND hash({tq}) % 16 = 0"
            ).to_pylist()[0]
            if int(part["k"]) != int(part["n"]):
                continue
            row = ctx.data.sql(
                f"SELECT count(DISTINCT ({u}, {tq})) AS k, count(*) AS n FROM data "
                f"WHERE {u} IS NOT NULL AND {tq} IS NOT NULL"
            ).to_pylist()[0]
            if int(row["n"]) == rows and int(row["k"]) == rows:
                found[unit.name] = t
                break
    return found


def unit_variance_share(ctx, quantity: str, unit: str) -> float | None:
    """The share of the quantity's variance that lies between the unit's levels
    (1 - within-level sum of squares / total sum of squares, one-way), None when the
    quantity does not vary."""
    u, v = _q(unit), _q(quantity)
    row = ctx.data.sql(
        f"WITH d AS (SELECT {u} AS u, CAST({v} AS DOUBLE) AS v FROM data "
        f"WHERE {u} IS NOT NULL AND {v} IS NOT NULL AND isfinite(CAST({v} AS DOUBLE))), "
        "w AS (SELECT count(*) * var_pop(v) AS ss FROM d GROUP BY u) "
        "SELECT (SELECT sum(ss) FROM w) AS within, "
        "(SELECT count(*) * var_pop(v) FROM d) AS total"
    ).to_pylist()[0]
    total = row["total"]
    if total is None or float(total) <= 0.0:
        return None
    return max(0.0, 1.0 - float(row["within"] or 0.0) / float(total))


def code_of(ctx, quantity: str, cfg) -> tuple[str, float] | None:
    """The categorical column the quantity is a label encoding of, with the share of
    rows the one-to-one correspondence holds for (the smaller of the two directions),
    or None. A label encoding: whole numbers in a dense range (max - min + 1 <= 2 x
    the distinct values, as codes 1..k are), each level of the column at (almost)
    one value and each value at (almost) one level."""
    info = next(c for c in ctx.data.columns if c.name == quantity)
    if not 2 <= info.distinct_count <= int(cfg["max_levels"]):
        return None
    v = f"CAST({_q(quantity)} AS DOUBLE)"
    stats_row = ctx.data.sql(
        f"SELECT count(DISTINCT {v}) AS k, min({v}) AS lo, max({v}) AS hi, "
        f"count_if({v} <> round({v})) AS fractional FROM data "
        f"WHERE {v} IS NOT NULL AND isfinite({v})"
    ).to_pylist()[0]
    k = int(stats_row["k"] or 0)
    if k < 2 or int(stats_row["fractional"] or 0) > 0:
        return None
    if float(stats_row["hi"]) - float(stats_row["lo"]) + 1.0 > 2.0 * k:
        return None
    best: tuple[str, float] | None = None
    for c in ctx.data.columns:
        if c.name == quantity or c.role not in ("categorical", "boolean", "text"):
            continue
        if not k / 2 <= c.distinct_count <= 2 * k:
            continue
        u = _q(c.name)
        row = ctx.data.sql(
            f"WITH c AS (SELECT {u} AS u, {v} AS v, count(*) AS n FROM data "
            f"WHERE {u} IS NOT NULL AND {v} IS NOT NULL GROUP BY 1, 2) "
            "SELECT (SELECT sum(m) FROM (SELECT max(n) AS m FROM c GROUP BY u)) AS by_u, "
            "(SELECT sum(m) FROM (SELECT max(n) AS m FROM c GROUP BY v)) AS by_v, "
            "(SELECT sum(n) FROM c) AS total"
        ).to_pylist()[0]
        total = float(row["total"] or 0)
        if total <= 0:
            continue
        match = min(float(row["by_u"]), float(row["by_v"])) / total
        if match >= cfg["min_code_match"] and (best is None or match > best[1]):
            best = (c.name, match)
    return best


def structural_skips(ctx, quantities: list[str], cfg) -> dict[str, list[tuple[str, str]]]:
    """``{quantity: [(column, reason), ...]}``: the columns that make a comparison of
    the quantity across segments meaningless (a pair whose grouping column is that
    column itself is left to the binning rule)."""
    panels = panel_units(ctx)
    out: dict[str, list[tuple[str, str]]] = {}
    for q in quantities:
        reasons: list[tuple[str, str]] = []
        for unit, t in sorted(panels.items()):
            share = unit_variance_share(ctx, q, unit)
            if share is not None and share >= cfg["min_unit_variance_share"]:
                reasons.append(
                    (
                        unit,
                        f"pseudo-replicated: {q} is a property of {unit} ({unit} and {t} "
                        f"key the rows, and {share:.2%} of {q}'s variance lies between "
                        f"{unit}'s levels; compared only below "
                        f"{cfg['min_unit_variance_share']:.0%}): "
                        f"the unit is {unit}, repeated over {t}, not the row",
                    )
                )
        code = code_of(ctx, q, cfg)
        if code is not None:
            reasons.append(
                (
                    code[0],
                    f"a code: {q} holds small whole numbers that match the levels of "
                    f"{code[0]} one to one ({code[1]:.1%} of the rows; compared only below "
                    f"{cfg['min_code_match']:.0%}): a difference of codes, not of amounts",
                )
            )
        if reasons:
            out[q] = reasons
    return out


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


def point_mass(
    mine: np.ndarray, rest: np.ndarray, pooled: np.ndarray, max_share: float
) -> tuple[float, float, str] | None:
    """(value, share, "lowest" | "highest") when at least ``max_share`` of the level's
    values are one value, the pooled minimum or maximum, while the other levels vary:
    the level is read from the quantity ("no rain", "no storm-force winds"). Ties
    between modal values: the smallest."""
    if mine.size == 0 or np.ptp(rest) == 0:
        return None
    values, counts = np.unique(mine, return_counts=True)
    top = int(np.argmax(counts))  # np.unique sorts: the first maximum is the smallest
    value, share = float(values[top]), float(counts[top]) / float(mine.size)
    if share < max_share:
        return None
    if value == float(pooled.min()):
        return value, share, "lowest"
    if value == float(pooled.max()):
        return value, share, "highest"
    return None


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
    point = point_mass(mine, rest, pooled, cfg["max_level_mode_share"])
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
        + (
            f"; not reported: {point[1]:.0%} of the {worst} rows are at {quantity} = "
            f"{point[0]:g}, the {point[2]} sampled value (needs < "
            f"{cfg['max_level_mode_share']:.0%}): "
            f"{group}={worst} is defined by that value of {quantity}"
            if large and not binning and point is not None
            else ""
        )
    )
    return {
        "note": note,
        "passed": large and not binning and point is None,
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
    skips = structural_skips(ctx, used_q, cfg)
    skipped: dict[str, int] = {}
    skipped_by_q: dict[str, list] = {}
    withheld: list[str] = []
    results = []
    tested = 0
    for q, g in pairs:
        reason = next((why for col, why in skips.get(q, []) if col != g), None)
        if reason is not None:
            kind = reason.partition(":")[0]
            skipped[kind] = skipped.get(kind, 0) + 1
            skipped_by_q.setdefault(q, [reason, 0])[1] += 1
            checked.append(f"{q}~{g}: skipped, {reason}")
            continue
        res = compare_pair(q, g, label_cols[g], value_cols[q], cfg)
        checked.append(res["note"])
        tested += "passed" in res
        if res.get("passed"):
            results.append(res)
        elif "; not reported: " in res["note"]:
            withheld.append(res["note"])
    if skipped:
        coverage += "; " + ", ".join(
            f"{n} skipped as {kind}" for kind, n in sorted(skipped.items())
        )
        checked[0] = coverage
    metrics = {
        "checked": coverage,
        "pairs_total": n_pairs,
        "pairs_checked": len(pairs),
        "pairs_skipped": sum(skipped.values()),
        "skipped": [
            f"{q} ({int(n)} pairs): {why}"
            for q, (why, n) in sorted(skipped_by_q.items(), key=lambda kv: used_q.index(kv[0]))
        ],
        "not_reported": withheld,
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
