"""numeric_summary: location, spread and quantiles of every quantity column.

Means and quantiles of identifiers, clock times (HHMM), calendar parts or numeric
timestamps mean nothing, so only columns whose semantic is quantity, count or share
are summarized; the others are listed with their semantic.

Count, mean, standard deviation, minimum and maximum are one SQL aggregate. The
quantiles and the MAD are order statistics: for a column whose values are all finite
they come from one read of the column in numpy (a selection in place for each, where
SQL sorted twice), for a column holding NaN or infinity from SQL (DuckDB orders NaN
above every number; numpy's quantiles do not order it). A finding's evidence is the
SQL that computes the same figures (:func:`summary_query`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from contracts import QUANTITY_SEMANTICS, Evidence, Finding, na, ok
from contracts.robust import median_mad, read_into
from contracts.sql import quote_ident as _q

QUANTILES = (("p01", 0.01), ("p25", 0.25), ("p50", 0.5), ("p75", 0.75), ("p99", 0.99))

# A normal distribution's MAD is sigma * Phi^-1(3/4); dividing by it puts the MAD on
# the sigma scale (the same constant as scipy's ``median_abs_deviation(scale="normal")``).
_NORMAL_MAD = float(stats.norm.ppf(0.75))


def _num(value):
    """A float, or None for SQL NULL / NaN (so metrics stay JSON-clean)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _text(value) -> str:
    return "undefined" if value is None else f"{value:.4g}"


def summary_query(column: str) -> str:
    x = f"CAST({_q(column)} AS DOUBLE)"
    qs = ", ".join(str(p) for _, p in QUANTILES)
    return (
        f"SELECT count({x}) AS count, avg({x}) AS mean, stddev_samp({x}) AS std, "
        f"min({x}) AS min, quantile_cont({x}, [{qs}]) AS quantiles, max({x}) AS max, "
        f"mad({x}) AS mad FROM data"
    )


def moments_query(column: str) -> str:
    """The aggregates of :func:`summary_query` that need no sort, and the count of
    values that are not finite."""
    x = f"CAST({_q(column)} AS DOUBLE)"
    return (
        f"SELECT count({x}) AS count, avg({x}) AS mean, stddev_samp({x}) AS std, "
        f"min({x}) AS min, max({x}) AS max, count_if(NOT isfinite({x})) AS non_finite "
        "FROM data"
    )


def order_statistics(values: np.ndarray) -> tuple[list[float], float]:
    """The :data:`QUANTILES` (linear interpolation, as ``quantile_cont``) and the MAD
    (``mad()``: the median of the absolute deviations from the median) of finite
    ``values``, which are reordered and overwritten (no column-sized copy)."""
    quantiles = np.quantile(values, [p for _, p in QUANTILES], overwrite_input=True)
    return [float(q) for q in quantiles], median_mad(values)[1]


def _summary(ctx, name: str, buffer: np.ndarray) -> dict[str, object]:
    """The figures of :func:`summary_query` for column ``name``; ``buffer`` (a row per
    dataset row) holds the values while they are selected in."""
    row = ctx.data.sql(moments_query(name)).to_pylist()[0]
    if int(row["count"]) == 0 or int(row["non_finite"]) > 0:
        return row | ctx.data.sql(summary_query(name)).to_pylist()[0]
    x = f"CAST({_q(name)} AS DOUBLE)"
    column = ctx.data.sql(f"SELECT {x} AS x FROM data WHERE {x} IS NOT NULL").column("x")
    quantiles, mad = order_statistics(read_into(buffer, column.chunks))
    return row | {"quantiles": quantiles, "mad": mad}


def run(ctx):
    numeric = sorted(ctx.data.names(role="numeric", semantic=QUANTITY_SEMANTICS))
    others = {
        c.name: c.semantic
        for c in ctx.data.columns
        if c.role == "numeric" and c.name not in set(numeric)
    }
    if not numeric:
        return na(
            "NOT_APPLICABLE",
            "The dataset has no quantity columns (semantic quantity, count or share) to summarize.",
            checked=[f"{n}: semantic {s}" for n, s in others.items()]
            or ["column roles: no column has role 'numeric'"],
        )

    per_column: dict[str, dict[str, object]] = {}
    findings = []
    buffer = np.empty(ctx.data.rows, dtype=np.float64)
    for name in numeric:
        query = summary_query(name)
        row = _summary(ctx, name, buffer)
        quantiles = row["quantiles"] or [None] * len(QUANTILES)
        stats_ = {
            "count": int(row["count"]),
            "mean": _num(row["mean"]),
            "std": _num(row["std"]),
            "min": _num(row["min"]),
            "non_finite_count": int(row["non_finite"] or 0),
        }
        for (label, _), value in zip(QUANTILES, quantiles, strict=True):
            stats_[label] = _num(value)
        stats_["max"] = _num(row["max"])
        mad = _num(row["mad"])
        stats_["mad"] = mad
        stats_["mad_normal"] = None if mad is None else mad / _NORMAL_MAD
        per_column[name] = stats_

        if stats_["count"] == 0:
            what = f"{name} has no non-null values."
        else:
            g = {k: _text(v) for k, v in stats_.items()}
            what = (
                f"{name}: n={stats_['count']}, median {g['p50']} (IQR {g['p25']} to "
                f"{g['p75']}), mean {g['mean']}, range {g['min']} to {g['max']}, MAD {g['mad']}."
            )
            if stats_["non_finite_count"]:
                what += (
                    f" {stats_['non_finite_count']} value(s) are NaN or infinite: figures "
                    "they make undefined are left out (NaN sorts above every number)."
                )
        findings.append(
            Finding(
                kind="numeric_summary",
                title=f"Distribution of {name}",
                severity="info",
                confidence=1.0,
                target=name,
                what=what,
                why="Robust location and spread (median, MAD, quantiles) are the baseline "
                "that outlier and shift checks compare against.",
                evidence=Evidence(
                    columns=(name,),
                    metrics=dict(stats_),
                    query=query,
                    rows=stats_["count"],
                ),
            )
        )

    return ok(
        findings=findings,
        metrics={
            "columns": per_column,
            "checked": f"{len(numeric)} of {len(numeric) + len(others)} numeric columns "
            "(those whose semantic is quantity, count or share)",
            "not_summarized": others,
        },
    )
