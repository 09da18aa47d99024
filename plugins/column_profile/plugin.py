"""column_profile: dtype, role, null fraction and distinct count of every column."""

from __future__ import annotations

from contracts import Evidence, Finding, na, ok
from contracts.sql import quote_ident as _q


def run(ctx):
    columns = sorted(ctx.data.columns, key=lambda c: c.name)
    if not columns:
        return na("NOT_APPLICABLE", "The dataset has no columns to profile.", checked=["columns"])

    # The counts were taken when the dataset was normalized (one exact aggregate per
    # column, the query each finding shows): the dataset cannot change after that, so
    # they are read from its description rather than recounted.
    rows = ctx.data.rows
    if rows == 0:
        return na(
            "INSUFFICIENT_DATA",
            "The dataset has no rows, so null fractions and distinct counts are undefined.",
            checked=["row count"],
        )

    per_column: dict[str, dict[str, object]] = {}
    findings = []
    for col in columns:
        c = _q(col.name)
        query = f"SELECT count(*) AS n, count({c}) AS nn, count(DISTINCT {c}) AS nd FROM data"
        distinct = col.distinct_count
        nulls = col.null_count
        null_fraction = nulls / rows
        per_column[col.name] = {
            "dtype": col.dtype,
            "role": col.role,
            "null_count": nulls,
            "null_fraction": null_fraction,
            "distinct_count": distinct,
        }
        findings.append(
            Finding(
                kind="column_profile",
                title=f"Profile of {col.name}",
                severity="info",
                confidence=1.0,
                target=col.name,
                what=(
                    f"{col.name} ({col.dtype}, role {col.role}): {nulls} of {rows} values "
                    f"missing ({null_fraction:.1%}), {distinct} distinct non-null values."
                ),
                why="Null fractions and cardinality decide how a column can be used "
                "(imputation, dropping, grouping, de-duplication keys).",
                evidence=Evidence(
                    columns=(col.name,),
                    metrics={
                        "rows": rows,
                        "null_count": nulls,
                        "null_fraction": null_fraction,
                        "distinct_count": distinct,
                    },
                    query=query,
                    rows=rows,
                ),
            )
        )

    metrics = {
        "rows": rows,
        "column_count": len(columns),
        "columns": per_column,
        "identifier_columns": [c.name for c in columns if c.role == "identifier"],
    }
    return ok(findings=findings, metrics=metrics)
