"""categorical_frequencies: top values, mode share and entropy of categorical columns."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from contracts import Evidence, Finding, na, ok
from contracts.sql import quote_ident as _q


def frequencies_query(column: str, top_k: int) -> str:
    """Every distinct value's count, most frequent first (ties by value); only the
    top ``top_k`` values themselves are returned, the rest as NULL, so a column with
    many distinct values costs one integer per value."""
    return (
        f"WITH g AS (SELECT CAST({_q(column)} AS VARCHAR) AS value, count(*) AS n "
        f"FROM data WHERE {_q(column)} IS NOT NULL GROUP BY 1) "
        f"SELECT CASE WHEN row_number() OVER (ORDER BY n DESC, value) <= {int(top_k)} "
        "THEN value END AS value, n FROM g ORDER BY n DESC, value"
    )


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _describe(counts: np.ndarray, rows: int) -> dict[str, object]:
    non_null = int(counts.sum())
    distinct = int(counts.size)
    entropy = float(stats.entropy(counts, base=2)) if distinct else 0.0
    return {
        "distinct_count": distinct,
        "entropy_bits": entropy,
        "normalized_entropy": entropy / math.log2(distinct) if distinct > 1 else None,
        "non_null": non_null,
        "null_count": rows - non_null,
        "null_fraction": (rows - non_null) / rows if rows else 0.0,
        "constant": distinct <= 1,
    }


def run(ctx):
    top_k = int(ctx.settings.get("top_k", 10))
    max_columns = int(ctx.settings.get("max_columns", 100))
    max_chars = int(ctx.settings.get("max_value_chars", 200))

    candidates = [c.name for c in ctx.data.columns if c.role in ("categorical", "boolean")]
    if not candidates:
        return na(
            "NOT_APPLICABLE",
            "The dataset has no categorical or boolean columns to count values of.",
            checked=["column roles: no column has role 'categorical' or 'boolean'"],
        )
    described = candidates[:max_columns]
    skipped = candidates[max_columns:]
    rows = ctx.data.rows

    per_column: dict[str, dict[str, object]] = {}
    findings = []
    for name in sorted(described):
        query = frequencies_query(name, top_k)
        table = ctx.data.sql(query)
        counts = np.asarray(table.column("n").to_numpy(zero_copy_only=False), dtype=np.int64)
        labels = table.column("value").to_pylist()[:top_k]
        m = _describe(counts, rows)
        non_null = int(m["non_null"])
        top = [
            {"count": int(n), "share": int(n) / non_null, "value": _cut(str(v), max_chars)}
            for v, n in zip(labels, counts[:top_k].tolist(), strict=False)
        ]
        top_count = int(counts[:top_k].sum())
        m |= {
            "role": ctx.data.column(name).role,
            "top": top,
            "top_k_share": top_count / non_null if non_null else None,
            "other_count": non_null - top_count,
            "top_truncated": int(m["distinct_count"]) > top_k,
            "mode": top[0]["value"] if top else None,
            "mode_count": top[0]["count"] if top else 0,
            "mode_share": top[0]["share"] if top else None,
        }
        per_column[name] = dict(sorted(m.items()))

        if not top:
            what = f"{name} has no non-null values."
        else:
            listed = ", ".join(f"{t['value']!r} ({t['share']:.1%})" for t in top[:3])
            norm = m["normalized_entropy"]
            spread = (
                f"; entropy {m['entropy_bits']:.3g} bits ({norm:.0%} of the maximum for "
                f"{m['distinct_count']} values)"
                if norm is not None
                else " (a single value)"
            )
            what = (
                f"{name}: {m['distinct_count']} distinct value(s) over {non_null} non-null rows"
                f" ({m['null_count']} null); most frequent {listed}{spread}."
            )
        evidence = {
            k: v
            for k, v in per_column[name].items()
            if v is None or isinstance(v, int | float | str | bool)
        }
        findings.append(
            Finding(
                kind="categorical_frequencies",
                title=f"Value frequencies of {name}",
                severity="info",
                confidence=1.0,
                target=name,
                what=what,
                why="How concentrated a categorical column is decides whether it can "
                "separate groups at all: a single dominant value carries almost no "
                "information, many rare values make group comparisons unstable.",
                evidence=Evidence(columns=(name,), metrics=evidence, query=query, rows=non_null),
            )
        )

    metrics = {
        "checked": f"{len(described)} of {len(candidates)} categorical/boolean columns"
        + (f" (the first {max_columns} in dataset order)" if skipped else "")
        + f"; the {top_k} most frequent values of each listed, the rest counted",
        "columns": per_column,
        "columns_capped": bool(skipped),
        "columns_skipped": sorted(skipped),
        "rows": rows,
        "top_k": top_k,
    }
    return ok(findings=findings, metrics=metrics)
