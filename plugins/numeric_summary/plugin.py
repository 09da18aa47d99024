"""numeric_summary: location, spread and quantiles of every quantity column (SQL).

Means and quantiles of identifiers, clock times (HHMM), calendar parts or numeric
timestamps mean nothing, so only columns whose semantic is quantity, count or share
are summarized; the others are listed with their semantic.
"""

from __future__ import annotations

import math

from scipy import stats

from contracts import QUANTITY_SEMANTICS, Evidence, Finding, na, ok
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


def summary_query(column: str) -> str:
    x = f"CAST({_q(column)} AS DOUBLE)"
    qs = ", ".join(str(p) for _, p in QUANTILES)
    return (
        f"SELECT count({x}) AS count, avg({x}) AS mean, stddev_samp({x}) AS std, "
        f"min({x}) AS min, quantile_cont({x}, [{qs}]) AS quantiles, max({x}) AS max, "
        f"mad({x}) AS mad FROM data"
    )


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
    for name in numeric:
        query = summary_query(name)
        row = ctx.data.sql(query).to_pylist()[0]
        quantiles = row["quantiles"] or [None] * len(QUANTILES)
        stats_ = {
            "count": int(row["count"]),
            "mean": _num(row["mean"]),
            "std": _num(row["std"]),
            "min": _num(row["min"]),
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
            what = (
                f"{name}: n={stats_['count']}, median {stats_['p50']:.4g} "
                f"(IQR {stats_['p25']:.4g} to {stats_['p75']:.4g}), mean {stats_['mean']:.4g}, "
                f"range {stats_['min']:.4g} to {stats_['max']:.4g}, MAD {mad:.4g}."
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
