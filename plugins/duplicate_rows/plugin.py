"""duplicate_rows: exact duplicate rows over all columns (SQL).

A column with a distinct value in every row (the exact count taken when the dataset was
normalized, under the same equality as ``GROUP BY``) makes every row
distinct, so the grouping pass over all columns is not run: its answer is known.
"""

from __future__ import annotations

from contracts import Evidence, Finding, Ok, na, ok
from contracts.sql import quote_ident as _q

UPSTREAM = "column_profile"


def run(ctx):
    min_surplus = int(ctx.settings.get("min_surplus_rows", 1))
    names = [c.name for c in ctx.data.columns]
    if not names:
        return na("NOT_APPLICABLE", "The dataset has no columns.", checked=["columns"])
    cols = ", ".join(_q(n) for n in names)

    upstream = ctx.upstream.get(UPSTREAM)
    if isinstance(upstream, Ok):
        identifiers = sorted(upstream.metrics.get("identifier_columns", []))
    else:
        identifiers = sorted(c.name for c in ctx.data.columns if c.role == "identifier")

    rows = ctx.data.rows
    # distinct_count counts non-NULL values, so equal to the rows it also means no NULL
    unique = sorted(c.name for c in ctx.data.columns if c.distinct_count == rows)
    if rows > 0 and unique:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No row is an exact copy of another over all {len(names)} columns: "
            f"{unique[0]} holds a distinct value in every row.",
            checked=[
                f"{rows} rows over {len(names)} columns; {unique[0]} has {rows} distinct "
                "values and no NULLs (counted when the dataset was normalized), so all rows "
                "are distinct without a grouping pass"
            ],
            metrics={
                "rows": rows,
                "distinct_rows": rows,
                "surplus_rows": 0,
                "duplicated_groups": 0,
                "max_copies": 1,
            },
        )

    # One grouping pass over all columns: each group is a distinct row, c its copies.
    query = (
        "SELECT coalesce(sum(c), 0) AS n_rows, count(*) AS n_distinct, "
        "count(*) FILTER (WHERE c > 1) AS duplicated_groups, "
        "coalesce(max(c), 0) AS max_copies "
        f"FROM (SELECT count(*) AS c FROM data GROUP BY {cols})"
    )
    r = ctx.data.sql(query).to_pylist()[0]
    rows = int(r["n_rows"])
    distinct = int(r["n_distinct"])
    surplus = rows - distinct
    groups = int(r["duplicated_groups"])
    max_copies = int(r["max_copies"])
    checked = [
        f"{rows} rows over {len(names)} columns, {distinct} distinct rows, "
        f"{surplus} surplus copies (needs >= {min_surplus})"
    ]
    metrics = {
        "rows": rows,
        "distinct_rows": distinct,
        "surplus_rows": surplus,
        "duplicated_groups": groups,
        "max_copies": max_copies,
    }
    if surplus < min_surplus:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No row is an exact copy of another over all {len(names)} columns."
            if surplus == 0
            else f"Only {surplus} surplus duplicate rows (fewer than {min_surplus}).",
            checked=checked,
            metrics=metrics,
        )

    share = surplus / rows
    if identifiers:
        key = identifiers[0]
        recommendation = (
            f"De-duplicate on the identifier {key} (keep one row per {key}) before counting "
            "or summing, and fix the load that writes the copies."
        )
    else:
        recommendation = (
            "De-duplicate with SELECT DISTINCT * before counting or summing (no identifier "
            "column was found), and fix the load that writes the copies."
        )
    finding = Finding(
        kind="duplicate_rows",
        title=f"{surplus} exact duplicate rows",
        severity="high" if share >= 0.05 else "medium" if share >= 0.01 else "low",
        confidence=1.0,
        target="data",
        what=(
            f"{surplus} of {rows} rows ({share:.2%}) are exact copies of another row across "
            f"all {len(names)} columns ({groups} distinct rows appear more than once, up to "
            f"{max_copies} times)."
        ),
        why="Exact duplicates inflate counts, sums and averages weighted by row, and "
        "usually come from a load that ran twice or a join that fanned out.",
        recommendation=recommendation,
        evidence=Evidence(
            columns=tuple(names),
            metrics=metrics
            | {"surplus_share": share, "identifier": identifiers[0] if identifiers else None},
            query=(
                f"SELECT {cols}, count(*) AS copies FROM data GROUP BY ALL "
                f"HAVING count(*) > 1 ORDER BY copies DESC, {cols}"
            ),
            rows=surplus,
        ),
    )
    return ok(findings=[finding], metrics=metrics | {"identifier_columns": identifiers})
