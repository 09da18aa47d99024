"""amount_distribution: first-digit frequencies and log10 histogram of amount columns."""

from __future__ import annotations

import math
import re

from contracts import Evidence, Finding, na, ok
from contracts.charts import first_digit_bars
from contracts.sql import quote_ident as _q

BENFORD = [math.log10(1 + 1 / d) for d in range(1, 10)]
"""Benford's expected share of first significant digit d = 1..9."""

# |x| below this would underflow 10**floor(log10|x|); such values are counted, not binned.
_TINY = 1e-300


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return [w for w in re.split(r"[^0-9A-Za-z]+", spaced.lower()) if w]


def _num(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def summary_query(column: str) -> str:
    x = f"CAST({_q(column)} AS DOUBLE)"
    nz = "x <> 0 AND isfinite(x)"
    return (
        f"WITH v AS (SELECT {x} AS x FROM data WHERE {_q(column)} IS NOT NULL) "
        "SELECT count(*) AS n, CAST(count_if(NOT isfinite(x)) AS BIGINT) AS non_finite, "
        "CAST(count_if(x = 0) AS BIGINT) AS zeros, "
        "CAST(count_if(x < 0 AND isfinite(x)) AS BIGINT) AS negatives, "
        "CAST(count_if(isfinite(x) AND x = round(x)) AS BIGINT) AS whole, "
        f"min(abs(x)) FILTER (WHERE {nz}) AS min_abs, max(abs(x)) FILTER (WHERE {nz}) AS max_abs, "
        f"quantile_cont(abs(x), [0.01, 0.5, 0.99]) FILTER (WHERE {nz}) AS q FROM v"
    )


def digits_query(column: str, bins_per_decade: int) -> str:
    """First significant digit and log10 bin of every non-zero finite |x|.

    The mantissa |x| / 10^floor(log10|x|) is rounded to 13 decimals before its integer
    part is taken, so that decimal values stored inexactly (0.3 is 0.29999...) get the
    digit they were written with; a rounding of log10 across a power of ten is undone.
    """
    x = f"abs(CAST({_q(column)} AS DOUBLE))"
    b = int(bins_per_decade)
    return (
        f"WITH a AS (SELECT {x} AS x FROM data WHERE isfinite({x}) AND {x} >= {_TINY}), "
        "l AS (SELECT log10(x) AS lg, x / pow(10, floor(log10(x))) AS m FROM a), "
        "r AS (SELECT lg, round(CASE WHEN m < 1 THEN m * 10 WHEN m >= 10 THEN m / 10 "
        "ELSE m END, 13) AS r FROM l), "
        "d AS (SELECT CASE WHEN r >= 10 THEN 1 ELSE CAST(floor(r) AS INTEGER) END AS digit, "
        f"CAST(floor(lg * {b}) AS BIGINT) AS bin FROM r) "
        "SELECT digit, bin, count(*) AS n FROM d GROUP BY GROUPING SETS ((digit), (bin)) "
        "ORDER BY digit NULLS LAST, bin NULLS LAST"
    )


def run(ctx):
    words = {w.strip().lower() for w in str(ctx.settings.get("name_words", "amount")).split(",")}
    words.discard("")
    bpd = int(ctx.settings.get("bins_per_decade", 4))

    numeric = ctx.data.names(role="numeric", semantic="quantity")
    amounts = [n for n in numeric if "*" in words or words & set(_words(n))]
    if not amounts:
        return na(
            "NOT_APPLICABLE",
            "No quantity column is named like an amount (the name_words setting lists the "
            "words looked for).",
            checked=[f"numeric column {n}: not amount-like" for n in numeric]
            or ["no numeric columns"],
        )

    per_column: dict[str, dict[str, object]] = {}
    findings = []
    for name in sorted(amounts):
        s_query = summary_query(name)
        s = ctx.data.sql(s_query).to_pylist()[0]
        d_query = digits_query(name, bpd)
        cells = ctx.data.sql(d_query).to_pylist()
        digits = [0] * 9
        bins: list[tuple[int, int]] = []
        for c in cells:
            if c["digit"] is not None:
                digits[int(c["digit"]) - 1] = int(c["n"])
            elif c["bin"] is not None:
                bins.append((int(c["bin"]), int(c["n"])))
        n = int(s["n"])
        finite = n - int(s["non_finite"])
        nonzero = finite - int(s["zeros"])
        counted = sum(digits)
        q = s["q"] or [None, None, None]
        min_abs, max_abs = _num(s["min_abs"]), _num(s["max_abs"])
        oom = math.log10(max_abs) - math.log10(min_abs) if min_abs and max_abs else None
        robust = math.log10(q[2]) - math.log10(q[0]) if q[0] and q[2] else None
        m: dict[str, object] = {
            "abs_max": max_abs,
            "abs_min": min_abs,
            "abs_p01": _num(q[0]),
            "abs_p50": _num(q[1]),
            "abs_p99": _num(q[2]),
            "digit_values": counted,
            "first_digit_counts": digits,
            "first_digit_shares": [c / counted for c in digits] if counted else None,
            "log10_bin_counts": [c for _, c in bins],
            "log10_bin_starts": [b / bpd for b, _ in bins],
            "log10_bin_width": 1 / bpd,
            "negative_count": int(s["negatives"]),
            "non_finite_count": int(s["non_finite"]),
            "nonzero_count": nonzero,
            "orders_of_magnitude": oom,
            "orders_of_magnitude_p01_p99": robust,
            "tiny_count": nonzero - counted,
            "values": n,
            "whole_number_share": int(s["whole"]) / finite if finite else None,
            "zero_count": int(s["zeros"]),
        }
        per_column[name] = m
        if counted == 0:
            what = f"{name}: no non-zero finite values ({n} values, {m['zero_count']} zeros)."
        else:
            shares = m["first_digit_shares"]
            spread = (
                f" spanning {oom:.1f} orders of magnitude ({robust:.1f} between p01 and p99)"
                if oom is not None and robust is not None
                else ""
            )
            what = (
                f"{name}: {counted} non-zero values{spread}; first digit 1 in "
                f"{shares[0]:.1%} (Benford {BENFORD[0]:.1%}), 9 in {shares[8]:.1%} "
                f"(Benford {BENFORD[8]:.1%}); {m['negative_count']} negative, "
                f"{m['zero_count']} zero; {m['whole_number_share']:.0%} whole numbers."
            )
        findings.append(
            Finding(
                kind="amount_distribution",
                title=f"Digits and magnitudes of {name}",
                severity="info",
                confidence=1.0,
                target=name,
                what=what,
                why="Naturally occurring amounts that span several orders of magnitude "
                "follow Benford's first-digit law; digit frequencies far from it, or a "
                "narrow magnitude range, tell whether a Benford test is meaningful.",
                evidence=Evidence(
                    columns=(name,),
                    metrics={
                        k: v
                        for k, v in m.items()
                        if v is None or isinstance(v, int | float | str | bool)
                    }
                    | {f"first_digit_{i + 1}": c for i, c in enumerate(digits)},
                    query=s_query + ";\n" + d_query,
                    rows=counted,
                ),
                charts=(first_digit_bars(f"First digits of {name}", digits),) if counted else (),
            )
        )

    metrics = {
        "amount_columns": sorted(amounts),
        "benford_expected_shares": BENFORD,
        "bins_per_decade": bpd,
        "columns": per_column,
        "name_words": sorted(words),
    }
    return ok(findings=findings, metrics=metrics)
