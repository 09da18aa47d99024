"""constant_columns: columns that hold one value on (almost) every row; drop them.

The dataset's ingest statistics (distinct and null counts per column) screen the
candidates without reading data; each candidate is then confirmed with one SQL
aggregate that also fetches its value. A column is constant when all of its non-null
values are the same; columns that are mostly missing are left to high_missingness
(one value plus many nulls is a flag, not a constant). With ``min_top_share`` below
1.0, low-cardinality columns whose most common value covers at least that share of
the non-null values are reported as quasi-constant too.
"""

from __future__ import annotations

from contracts import Evidence, Finding, na, ok
from contracts.sql import quote_ident as _q


def constant_query(name: str) -> str:
    c = _q(name)
    return (
        f"SELECT count(*) AS n, count({c}) AS non_null, count(DISTINCT {c}) AS distinct_values, "
        f"CAST(min({c}) AS VARCHAR) AS value FROM data"
    )


def top_query(name: str) -> str:
    c = _q(name)
    return (
        f"SELECT CAST({c} AS VARCHAR) AS value, count(*) AS n FROM data WHERE {c} IS NOT NULL "
        "GROUP BY 1 ORDER BY n DESC, value LIMIT 1"
    )


def run(ctx):
    min_values = int(ctx.settings.get("min_values", 20))
    max_null_fraction = float(ctx.settings.get("max_null_fraction", 0.2))
    min_top_share = float(ctx.settings.get("min_top_share", 1.0))
    max_quasi_distinct = int(ctx.settings.get("max_quasi_distinct", 10))
    rows = ctx.data.rows

    checked: list[str] = []
    findings = []
    for col in ctx.data.columns:
        name = col.name
        non_null = rows - col.null_count
        null_fraction = col.null_count / rows if rows else 1.0
        if col.distinct_count == 0:
            checked.append(f"{name}: no values at all (left to high_missingness)")
            continue
        if non_null < min_values:
            checked.append(f"{name}: {non_null} non-null values (needs {min_values})")
            continue
        quasi = min_top_share < 1.0 and 2 <= col.distinct_count <= max_quasi_distinct
        if col.distinct_count != 1 and not quasi:
            checked.append(f"{name}: {col.distinct_count} distinct values")
            continue
        if null_fraction > max_null_fraction:
            checked.append(
                f"{name}: {col.distinct_count} distinct value(s) but {null_fraction:.0%} "
                f"missing (above {max_null_fraction:.0%}: a presence flag, not a constant)"
            )
            continue
        if col.distinct_count == 1:
            query = constant_query(name)
            r = ctx.data.sql(query).to_pylist()[0]
            if int(r["distinct_values"]) != 1:
                checked.append(f"{name}: {int(r['distinct_values'])} distinct values")
                continue
            value, top_count, share = r["value"], int(r["non_null"]), 1.0
        else:
            query = top_query(name)
            r = ctx.data.sql(query).to_pylist()[0]
            value, top_count = r["value"], int(r["n"])
            share = top_count / non_null
            if share < min_top_share:
                checked.append(
                    f"{name}: most common value covers {share:.2%} (needs {min_top_share:.2%})"
                )
                continue
        checked.append(f"{name}: constant ({share:.2%} of non-null values are {value!r})")
        findings.append(_finding(col, rows, non_null, value, top_count, share, query))

    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            "No column holds a single value: every column with enough values has at least "
            f"two distinct ones ({len(ctx.data.columns)} columns checked).",
            checked=checked,
        )
    return ok(
        findings=findings,
        metrics={
            "flagged_columns": [f.target for f in findings],
            "columns_checked": len(ctx.data.columns),
        },
    )


def _finding(col, rows, non_null, value, top_count, share, query) -> Finding:
    name = col.name
    nulls = rows - non_null
    strict = share >= 1.0
    null_text = f" ({nulls} rows are empty)" if nulls else ""
    if strict:
        what = f"Every non-null value of {name} is {value!r}{null_text}, over {rows} rows."
        title = f"{name} is constant ({value!r})"
    else:
        what = (
            f"{top_count} of {non_null} non-null values of {name} ({share:.2%}) are "
            f"{value!r}{null_text}."
        )
        title = f"{name} is almost constant ({share:.1%} {value!r})"
    return Finding(
        kind="constant_column",
        title=title,
        severity="low",
        confidence=0.95 if strict else 0.8,
        target=name,
        what=what,
        why=(
            "A column with one value carries no information: it cannot separate rows, "
            "explain differences or feed a model, yet it costs storage and attention; a "
            "field that should vary but does not often means the extract fills a default."
        ),
        recommendation=(
            f"Drop {name} from analyses and models (or keep it only as dataset metadata); "
            f"if it is supposed to vary, check the extract or form that fills it with "
            f"{value!r}."
        ),
        evidence=Evidence(
            columns=(name,),
            metrics={
                "rows": rows,
                "non_null": non_null,
                "null_count": nulls,
                "distinct_values": col.distinct_count,
                "value": value,
                "top_share": share,
                "dtype": col.dtype,
                "role": col.role,
            },
            query=query,
            rows=rows,
        ),
    )
