"""missingness_pattern: which columns are missing, together, per row and over time (SQL)."""

from __future__ import annotations

from datetime import datetime, timedelta

from contracts import Evidence, Finding, Line, Series, ok
from contracts.sql import quote_ident as _q

_EPOCH = datetime(1970, 1, 1)


def _ts(name: str, dtype: str) -> str:
    """Column ``name`` as a TIMESTAMP; zoned values are converted to UTC first."""
    kind = dtype.upper()
    if "TIMESTAMP" in kind and ("TZ" in kind or "TIME ZONE" in kind):
        return f"timezone('UTC', {_q(name)})"
    return f"TRY_CAST({_q(name)} AS TIMESTAMP)"


def _iso(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=int(us))).isoformat()


def _time_column(ctx) -> str | None:
    for role in ("queued", "started"):
        name = ctx.data.event_role(role)
        if name is not None:
            return name
    stamps = ctx.data.names(role="timestamp")
    return stamps[0] if stamps else None


def counts_query(names: list[str]) -> str:
    cols = ", ".join(f"count({_q(c)}) AS nn{i}" for i, c in enumerate(names))
    return f"SELECT count(*) AS rows, {cols} FROM data"


def pairs_query(names: list[str]) -> str:
    parts = [
        f"CAST(count_if({_q(a)} IS NULL AND {_q(b)} IS NULL) AS BIGINT) AS p{i}_{j}"
        for i, a in enumerate(names)
        for j, b in enumerate(names)
        if i < j
    ]
    return f"SELECT {', '.join(parts)} FROM data"


def row_nulls_query(names: list[str]) -> str:
    total = " + ".join(f"CAST({_q(c)} IS NULL AS INTEGER)" for c in names)
    return f"SELECT {total} AS missing, count(*) AS n FROM data GROUP BY 1 ORDER BY 1"


def over_time_query(ts: str, names: list[str], t0: int, span: int, buckets: int) -> str:
    # (offset in microseconds) x buckets can pass 2^63 for spans of centuries: HUGEINT then.
    wide = "HUGEINT" if span * buckets >= 2**62 else "BIGINT"
    offset = f"CAST(epoch_us({ts}) - {t0} AS {wide})"
    bucket = (
        f"CAST(least(({offset} * {buckets}) // {span}, {buckets - 1}) AS BIGINT)" if span else "0"
    )
    nulls = ", ".join(
        f"CAST(count_if({_q(c)} IS NULL) AS BIGINT) AS z{i}" for i, c in enumerate(names)
    )
    return (
        f"SELECT {bucket} AS bucket, count(*) AS n{', ' + nulls if nulls else ''} "
        f"FROM data WHERE {ts} IS NOT NULL GROUP BY 1 ORDER BY 1"
    )


def missing_chart(name: str, over_time: dict | None) -> tuple[Series, ...]:
    """The column's missing share per time bucket (none without a time column)."""
    if over_time is None or name not in over_time["null_fraction"]:
        return ()
    return (
        Series(
            title=f"Missing share of {name} over {over_time['time_column']}",
            y_label="share of rows missing",
            x=tuple(over_time["bucket_starts"]),
            lines=(Line(label=name, values=tuple(over_time["null_fraction"][name])),),
            step=True,
        ),
    )


def run(ctx):
    max_cols = int(ctx.settings.get("max_pattern_columns", 30))
    max_pairs = int(ctx.settings.get("max_pairs", 100))
    n_buckets = int(ctx.settings.get("time_buckets", 50))

    names = ctx.data.names()
    order = {n: i for i, n in enumerate(names)}
    c_query = counts_query(names)
    row = ctx.data.sql(c_query).to_pylist()[0]
    rows = int(row["rows"])
    nulls = {n: rows - int(row[f"nn{i}"]) for i, n in enumerate(names)}
    columns = {
        n: {"null_count": nulls[n], "null_fraction": nulls[n] / rows if rows else 0.0}
        for n in sorted(names)
    }
    with_nulls = [n for n in names if nulls[n] > 0]
    pattern = sorted(
        sorted(with_nulls, key=lambda n: (-nulls[n], order[n]))[:max_cols], key=order.get
    )

    # Pairs of columns missing together.
    pairs: list[dict[str, object]] = []
    p_query = ""
    if len(pattern) >= 2:
        p_query = pairs_query(pattern)
        both = ctx.data.sql(p_query).to_pylist()[0]
        for i, a in enumerate(pattern):
            for j, b in enumerate(pattern):
                if i >= j:
                    continue
                k = int(both[f"p{i}_{j}"])
                either = nulls[a] + nulls[b] - k
                expected = nulls[a] * nulls[b] / rows
                pairs.append(
                    {
                        "a": a,
                        "b": b,
                        "both_null": k,
                        "either_null": either,
                        "jaccard": k / either if either else 0.0,
                        "lift": k / expected if expected else None,
                    }
                )
    pairs.sort(key=lambda p: (-float(p["jaccard"]), order[p["a"]], order[p["b"]]))

    # Missing values per row.
    row_hist: list[dict[str, int]] = [{"missing": 0, "rows": rows}]
    r_query = ""
    if with_nulls:
        r_query = row_nulls_query(with_nulls)
        row_hist = [
            {"missing": int(r["missing"]), "rows": int(r["n"])}
            for r in ctx.data.sql(r_query).to_pylist()
        ]

    # Nulls over time.
    over_time: dict[str, object] | None = None
    t_query = ""
    time_col = _time_column(ctx)
    tracked = [n for n in pattern if n != time_col]
    if time_col is not None and tracked:
        ts = _ts(time_col, ctx.data.column(time_col).dtype)
        bounds = ctx.data.sql(
            f"SELECT min(epoch_us({ts})) AS t0, max(epoch_us({ts})) AS t1 FROM data"
        ).to_pylist()[0]
        if bounds["t0"] is not None:
            t0, t1 = int(bounds["t0"]), int(bounds["t1"])
            span = t1 - t0
            buckets = n_buckets if span else 1
            t_query = over_time_query(ts, tracked, t0, span, buckets)
            table = ctx.data.sql(t_query).to_pylist()
            per_bucket = {int(r["bucket"]): r for r in table}
            counts = [int(per_bucket[b]["n"]) if b in per_bucket else 0 for b in range(buckets)]
            fractions: dict[str, list[float | None]] = {}
            for i, name in enumerate(tracked):
                series: list[float | None] = []
                for b in range(buckets):
                    r = per_bucket.get(b)
                    series.append(int(r[f"z{i}"]) / int(r["n"]) if r and int(r["n"]) else None)
                fractions[name] = series
                seen = [f for f in series if f is not None]
                columns[name]["null_fraction_by_time_min"] = min(seen) if seen else None
                columns[name]["null_fraction_by_time_max"] = max(seen) if seen else None
            width = span / buckets if span else 0.0
            over_time = {
                "bucket_seconds": width / 1e6,
                "bucket_starts": [_iso(t0 + round(b * width)) for b in range(buckets)],
                "null_fraction": dict(sorted(fractions.items())),
                "rows": counts,
                "rows_without_time": rows - sum(counts),
                "time_column": time_col,
            }

    findings = []
    for name in sorted(with_nulls):
        c = columns[name]
        partner = next((p for p in pairs if name in (p["a"], p["b"])), None)
        metrics: dict[str, object] = {
            "null_count": c["null_count"],
            "null_fraction": c["null_fraction"],
            "rows": rows,
        }
        text = [f"{name}: {c['null_count']} of {rows} values missing ({c['null_fraction']:.1%})"]
        cols = [name]
        if partner is not None:
            other = partner["b"] if partner["a"] == name else partner["a"]
            text.append(
                f"most often missing together with {other} ({partner['both_null']} rows, "
                f"Jaccard {partner['jaccard']:.2f})"
            )
            metrics |= {
                "co_missing_partner": other,
                "co_missing_rows": partner["both_null"],
                "co_missing_jaccard": partner["jaccard"],
                "co_missing_lift": partner["lift"],
            }
            cols.append(str(other))
        if c.get("null_fraction_by_time_min") is not None and over_time is not None:
            lo, hi = c["null_fraction_by_time_min"], c["null_fraction_by_time_max"]
            text.append(
                f"the missing share ranges {lo:.1%} to {hi:.1%} across "
                f"{len(over_time['rows'])} time buckets of {over_time['time_column']}"
            )
            metrics |= {"null_fraction_by_time_min": lo, "null_fraction_by_time_max": hi}
        findings.append(
            Finding(
                kind="missingness_pattern",
                title=f"Missing values in {name}",
                severity="info",
                confidence=1.0,
                target=name,
                what="; ".join(text) + ".",
                why="Whether values go missing at random, together with other columns, or "
                "only in some periods decides whether dropping or imputing them is safe.",
                evidence=Evidence(
                    columns=tuple(cols),
                    metrics=dict(sorted(metrics.items())),
                    query=";\n".join(q for q in (c_query, p_query, t_query) if q),
                    rows=int(c["null_count"]),
                ),
                charts=missing_chart(name, over_time),
            )
        )
    if not findings:
        findings.append(
            Finding(
                kind="missingness_pattern",
                title="No missing values",
                severity="info",
                confidence=1.0,
                target="data",
                what=f"None of the {len(names)} columns has a missing value in {rows} rows.",
                why="Complete data can be used as it is: no imputation or row dropping "
                "will bias the analyses.",
                evidence=Evidence(
                    columns=tuple(names), metrics={"rows": rows}, query=c_query, rows=rows
                ),
            )
        )

    metrics = {
        "checked": f"null counts of every column; co-missing pairs and nulls over time for "
        f"{len(pattern)} of {len(with_nulls)} columns with nulls"
        + (f" (the {max_cols} with the most nulls)" if len(with_nulls) > len(pattern) else "")
        + f"; {min(len(pairs), max_pairs)} of {len(pairs)} co-missing pairs listed",
        "co_missing": pairs[:max_pairs],
        "co_missing_capped": len(pairs) > max_pairs,
        "columns": {n: dict(sorted(c.items())) for n, c in columns.items()},
        "columns_with_nulls": sorted(with_nulls),
        "over_time": over_time,
        "pattern_columns": pattern,
        "pattern_columns_capped": len(with_nulls) > len(pattern),
        "rows": rows,
        "rows_by_missing_count": row_hist,
        "rows_with_any_missing": sum(h["rows"] for h in row_hist if h["missing"] > 0),
    }
    return ok(findings=findings, metrics=metrics)
