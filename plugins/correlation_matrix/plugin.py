"""correlation_matrix: Pearson and Spearman correlations between quantity columns.

Only quantity columns (semantic quantity, count or share) are correlated: codes,
clock times and calendar parts correlate with anything ordered like them. With more
than ``max_columns`` of them, the first ``max_columns`` in dataset order are taken and
the outcome says "checked k of n"; redundant_features correlates every pair in SQL.

Correlations need raw values, so they are computed on one bounded reservoir sample of
rows (seeded with the plugin's seed, returned in table order) rather than the whole
table. Each pair uses the sampled rows where both values are finite.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from contracts import QUANTITY_SEMANTICS, Evidence, Finding, na, ok
from contracts.sql import quote_ident as _q


def _num(value):
    """A finite float, or None (SQL NULL, NaN, infinity) so metrics stay JSON-clean."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _sample_seed(seed: int) -> int:
    """DuckDB's REPEATABLE takes a signed 64-bit seed; keep it well inside."""
    return int(seed) % 2_147_483_647


def sample_query(columns: list[str], size: int, seed: int) -> str:
    cols = ", ".join(f"CAST({_q(c)} AS DOUBLE) AS c{i}" for i, c in enumerate(columns))
    return (
        f"SELECT {cols} FROM data USING SAMPLE reservoir({int(size)} ROWS) "
        f"REPEATABLE ({seed}) ORDER BY rowid"
    )


def _pair(a: np.ndarray, b: np.ndarray, min_pairs: int) -> dict[str, object]:
    mask = np.isfinite(a) & np.isfinite(b)
    n = int(mask.sum())
    out: dict[str, object] = {
        "n": n,
        "pearson": None,
        "pearson_p_value": None,
        "spearman": None,
        "spearman_p_value": None,
        "undefined_reason": None,
    }
    if n < min_pairs:
        out["undefined_reason"] = f"fewer than {min_pairs} rows with both values"
        return out
    x, y = a[mask], b[mask]
    if not (np.ptp(x) > 0 and np.ptp(y) > 0):
        out["undefined_reason"] = "a column is constant on these rows"
        return out
    # Correlation is shift-invariant; centring keeps scipy's near-constant check (which
    # compares the spread with the mean) from firing on large offsets.
    x = x - np.median(x)
    y = y - np.median(y)
    pearson = stats.pearsonr(x, y)
    spearman = stats.spearmanr(x, y)
    out["pearson"] = _num(pearson.statistic)
    out["pearson_p_value"] = _num(pearson.pvalue)
    out["spearman"] = _num(spearman.statistic)
    out["spearman_p_value"] = _num(spearman.pvalue)
    return out


def _strength(pair: dict[str, object]) -> float:
    values = [abs(float(pair[k])) for k in ("pearson", "spearman") if pair[k] is not None]
    return max(values) if values else -1.0


def run(ctx):
    sample_size = int(ctx.settings.get("sample_size", 20000))
    max_columns = int(ctx.settings.get("max_columns", 30))
    min_pairs = int(ctx.settings.get("min_pairs", 10))
    strong = float(ctx.settings.get("strong_threshold", 0.7))

    numeric = ctx.data.names(role="numeric", semantic=QUANTITY_SEMANTICS)
    if len(numeric) < 2:
        return na(
            "NOT_APPLICABLE",
            "Correlations need at least two quantity columns (semantic quantity, count or share).",
            checked=[f"quantity columns: {', '.join(numeric) or 'none'}"],
        )
    columns = numeric[:max_columns]
    skipped = numeric[max_columns:]
    query = sample_query(columns, sample_size, _sample_seed(ctx.seed))
    table = ctx.data.sql(query)
    values = [
        np.asarray(table.column(f"c{i}").to_numpy(zero_copy_only=False), dtype=float)
        for i in range(len(columns))
    ]

    pairs: list[dict[str, object]] = []
    for i in range(len(columns)):
        for j in range(i + 1, len(columns)):
            pair = {"a": columns[i], "b": columns[j]} | _pair(values[i], values[j], min_pairs)
            pairs.append(dict(sorted(pair.items())))
    defined = [p for p in pairs if p["pearson"] is not None]
    if not defined:
        return na(
            "INSUFFICIENT_DATA",
            "No pair of numeric columns has enough rows with both values finite and "
            "varying to compute a correlation.",
            checked=[f"{p['a']} ~ {p['b']}: {p['undefined_reason']}" for p in pairs[:50]],
            metrics={"columns": columns, "sample_rows": table.num_rows},
        )

    strong_pairs = sorted(
        (p for p in defined if _strength(p) >= strong),
        key=lambda p: (-_strength(p), columns.index(p["a"]), columns.index(p["b"])),
    )
    findings = []
    for name in columns:
        mine = [p for p in pairs if name in (p["a"], p["b"])]
        best = max(
            (p for p in mine if p["pearson"] is not None),
            key=lambda p: (_strength(p), -columns.index(p["b" if p["a"] == name else "a"])),
            default=None,
        )
        if best is None:
            reasons = sorted({str(p["undefined_reason"]) for p in mine})
            what = f"{name}: no correlation could be computed ({'; '.join(reasons)})."
            metrics = {"pairs_defined": 0}
            cols: tuple[str, ...] = (name,)
        else:
            partner = best["b"] if best["a"] == name else best["a"]
            what = (
                f"{name} correlates most strongly with {partner}: Pearson r = "
                f"{best['pearson']:.3f}, Spearman rho = {best['spearman']:.3f} "
                f"(n = {best['n']} sampled rows)."
            )
            metrics = {
                "pairs_defined": sum(1 for p in mine if p["pearson"] is not None),
                "partner": partner,
                "pearson": best["pearson"],
                "pearson_p_value": best["pearson_p_value"],
                "spearman": best["spearman"],
                "spearman_p_value": best["spearman_p_value"],
                "n": best["n"],
            }
            cols = (name, partner)
        findings.append(
            Finding(
                kind="correlation_matrix",
                title=f"Correlations of {name}",
                severity="info",
                confidence=1.0,
                target=name,
                what=what,
                why="Strongly correlated columns carry overlapping information (one may be "
                "redundant) and can confound comparisons made on either of them.",
                evidence=Evidence(
                    columns=cols,
                    metrics=dict(sorted(metrics.items())),
                    query=query,
                    rows=table.num_rows,
                ),
            )
        )

    metrics = {
        "checked": f"{len(columns)} of {len(numeric)} quantity columns"
        + (f" (the first {max_columns} in dataset order)" if skipped else "")
        + f", {len(pairs)} pairs, on a sample of {table.num_rows} rows",
        "column_order": "dataset",
        "columns": columns,
        "columns_capped": bool(skipped),
        "columns_skipped": skipped,
        "min_pairs": min_pairs,
        "pairs": pairs,
        "sample_rows": table.num_rows,
        "sample_size": sample_size,
        "strong_pairs": [
            {"a": p["a"], "b": p["b"], "pearson": p["pearson"], "spearman": p["spearman"]}
            for p in strong_pairs
        ],
        "strong_threshold": strong,
    }
    return ok(findings=findings, metrics=metrics)
