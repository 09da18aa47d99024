"""benford_amounts: amount columns whose first digits do not follow Benford's law.

Naturally occurring amounts that span several orders of magnitude have first
significant digits close to Benford's law, P(d) = log10(1 + 1/d). Digit counts and
the spread of the values come from SQL aggregates over every positive value (no
sampling). A column is tested only when it is amount-like (its name), has enough
positive values, and its bulk spans enough orders of magnitude (both the central 98%
and, robust to a few outliers, the central 90%): narrow distributions are not
expected to follow Benford. Conformity is judged by Nigrini's mean absolute deviation
of the digit proportions (the effect size) with scipy.stats.chisquare for the test.
"""

from __future__ import annotations

import math
import re

import msgspec
import numpy as np
from scipy import stats

from contracts import Evidence, Finding, Impact, na, ok
from contracts.charts import first_digit_bars
from contracts.sql import quote_ident as _q
from contracts.units import p_text as _p_text

DIGITS = tuple(range(1, 10))
BENFORD = np.log10(1.0 + 1.0 / np.arange(1, 10))
DEFAULT_WORDS = (
    "amount,amt,price,cost,total,value,revenue,payment,paid,invoice,balance,fee,charge,"
    "spend,sales,salary,wage,income,expense,debit,credit,subtotal,tax,usd,eur,gbp,money,"
    "fare,premium,claim"
)


def _words(name: str) -> list[str]:
    """Lower-case words of a column name: split on non-alphanumerics and camelCase."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return [w for w in re.split(r"[^0-9A-Za-z]+", spaced.lower()) if w]


def is_amount_like(name: str, words: frozenset[str]) -> bool:
    if "*" in words:
        return True
    return any(w in words or (w.endswith("s") and w[:-1] in words) for w in _words(name))


def _positive(column: str) -> str:
    x = f"TRY_CAST({_q(column)} AS DOUBLE)"
    return f"SELECT {x} AS x FROM data WHERE {x} > 0 AND isfinite({x})"


def spread_query(column: str) -> str:
    return (
        f"WITH v AS ({_positive(column)}) SELECT count(*) AS n, "
        "quantile_cont(x, [0.01, 0.05, 0.95, 0.99]) AS q FROM v"
    )


def digits_query(column: str) -> str:
    """First significant digit counts; the CASE repairs log10 rounding at exact powers."""
    return (
        f"WITH v AS ({_positive(column)}), "
        "d AS (SELECT floor(x / pow(10, floor(log10(x)))) AS d0 FROM v) "
        "SELECT CAST(CASE WHEN d0 >= 10 THEN 1 WHEN d0 < 1 THEN 9 ELSE d0 END AS INTEGER) "
        "AS digit, count(*) AS n FROM d GROUP BY digit ORDER BY digit"
    )


def run(ctx):
    min_values = int(ctx.settings.get("min_values", 1000))
    min_orders = float(ctx.settings.get("min_orders", 2.0))
    min_central_orders = float(ctx.settings.get("min_central_orders", 1.4))
    max_mad = float(ctx.settings.get("max_mad", 0.015))
    alpha = float(ctx.settings.get("alpha", 0.001))
    same_corr = float(ctx.settings.get("same_amount_corr", 0.99))
    words = frozenset(
        w.strip().lower()
        for w in str(ctx.settings.get("amount_words", DEFAULT_WORDS)).split(",")
        if w.strip()
    )

    numeric = ctx.data.names(role="numeric", semantic="quantity")
    candidates = [n for n in numeric if is_amount_like(n, words)]
    if not candidates:
        return na(
            "NOT_APPLICABLE",
            "No quantity column looks like an amount (by name), so there is nothing to test "
            "against Benford's law.",
            checked=[f"numeric columns: {', '.join(numeric) or 'none'}"],
        )

    checked: list[str] = []
    findings = []
    tested = 0
    too_narrow = 0
    for name in candidates:
        spread = ctx.data.sql(spread_query(name)).to_pylist()[0]
        n = int(spread["n"])
        if n < min_values or spread["q"] is None:
            checked.append(f"{name}: {n} positive values (needs {min_values})")
            continue
        q01, q05, q95, q99 = (float(v) for v in spread["q"])
        orders = math.log10(q99 / q01)
        central = math.log10(q95 / q05)
        if orders < min_orders or central < min_central_orders:
            checked.append(
                f"{name}: spans {orders:.2f} orders of magnitude (p1..p99, needs "
                f"{min_orders:g}) and {central:.2f} (p5..p95, needs {min_central_orders:g}); "
                "too narrow to expect Benford"
            )
            too_narrow += 1
            continue
        tested += 1
        dq = digits_query(name)
        counts_by_digit = {int(r["digit"]): int(r["n"]) for r in ctx.data.sql(dq).to_pylist()}
        counts = np.array([counts_by_digit.get(d, 0) for d in DIGITS], dtype=float)
        total = float(counts.sum())
        observed = counts / total
        mad = float(np.mean(np.abs(observed - BENFORD)))
        test = stats.chisquare(counts, f_exp=BENFORD / BENFORD.sum() * total)
        chi2, p_value = float(test.statistic), float(test.pvalue)
        checked.append(
            f"{name}: MAD {mad:.4f} (nonconformity above {max_mad:g}), chi-square "
            f"{chi2:.1f} ({_p_text(p_value)}) on {int(total)} values spanning {orders:.1f} "
            "orders of magnitude"
        )
        if mad > max_mad and p_value < alpha:
            findings.append(
                _finding(name, counts, observed, mad, chi2, p_value, orders, central, dq, max_mad)
            )

    if tested == 0:
        if too_narrow:
            return na(
                "NOT_APPLICABLE",
                "No amount-like column spans enough orders of magnitude for Benford's law to "
                f"be expected (p1..p99 >= {min_orders:g} and p5..p95 >= {min_central_orders:g} "
                "orders).",
                checked=checked,
            )
        return na(
            "INSUFFICIENT_DATA",
            f"No amount-like column has the {min_values} positive values a first-digit test needs.",
            checked=checked,
        )
    findings, folded = fold_same_amounts(ctx, findings, same_corr)
    checked += folded
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No amount column departs from Benford's law beyond Nigrini's nonconformity "
            f"level (MAD > {max_mad:g}) with chi-square p < {alpha:g} ({tested} of "
            f"{len(candidates)} amount-like columns were eligible).",
            checked=checked,
            metrics={"columns_tested": tested},
        )
    return ok(
        findings=findings,
        metrics={
            "columns_tested": tested,
            "flagged_columns": [f.target for f in findings],
            "same_amounts": folded,
        },
    )


def same_amount_query(first: str, second: str) -> str:
    """Correlation of the log values of two columns (1.0: one is the other in another
    unit or currency, e.g. ``amount_eur = amount * 0.92``)."""
    a, b = f"TRY_CAST({_q(first)} AS DOUBLE)", f"TRY_CAST({_q(second)} AS DOUBLE)"
    return (
        f"SELECT corr(ln({a}), ln({b})) AS r, count(*) AS n FROM data "
        f"WHERE {a} > 0 AND {b} > 0 AND isfinite({a}) AND isfinite({b})"
    )


def fold_same_amounts(ctx, findings: list[Finding], min_corr: float):
    """Keep one finding per group of flagged columns that hold the same amounts (log
    correlation >= ``min_corr``): the first in dataset order, naming the others."""
    kept: list[Finding] = []
    notes: list[str] = []
    for f in findings:
        host = None
        for i, k in enumerate(kept):
            r = ctx.data.sql(same_amount_query(k.target, f.target)).to_pylist()[0]["r"]
            if r is not None and float(r) >= min_corr:
                host = i
                notes.append(
                    f"{f.target}: same amounts as {k.target} (log correlation {float(r):.4f}); "
                    f"reported with {k.target}"
                )
                break
        if host is None:
            kept.append(f)
            continue
        k = kept[host]
        kept[host] = msgspec.structs.replace(
            k,
            what=f"{k.what} {f.target} holds the same amounts in another unit and fails "
            f"the same way (MAD {float(f.evidence.metrics['mad']):.3f}).",
            evidence=msgspec.structs.replace(
                k.evidence,
                columns=(*k.evidence.columns, f.target),
                metrics={
                    **k.evidence.metrics,
                    f"same_amounts_{f.target}_mad": f.evidence.metrics["mad"],
                },
            ),
        )
    return kept, notes


def _finding(name, counts, observed, mad, chi2, p_value, orders, central, query, max_mad):
    total = float(counts.sum())
    expected_counts = BENFORD * total
    excess = np.maximum(counts - expected_counts, 0.0)
    excess_rows = float(excess.sum())
    over = [d for d, e in zip(DIGITS, excess, strict=True) if e > 0]
    top = sorted(DIGITS, key=lambda d: (-(observed[d - 1] - BENFORD[d - 1]), d))[:2]
    top_text = ", ".join(
        f"{d} ({observed[d - 1]:.1%} vs {BENFORD[d - 1]:.1%} expected)" for d in top
    )
    metrics: dict[str, object] = {
        "values": int(total),
        "mad": mad,
        "mad_threshold": max_mad,
        "chi_square": chi2,
        "p_value": p_value,
        "orders_of_magnitude_p1_p99": orders,
        "orders_of_magnitude_p5_p95": central,
        "most_over_represented_digit": top[0],
        "excess_rows": excess_rows,
    }
    for d in DIGITS:
        metrics[f"observed_share_{d}"] = float(observed[d - 1])
        metrics[f"benford_share_{d}"] = float(BENFORD[d - 1])
    return Finding(
        kind="benford_violation",
        title=f"{name}: first digits do not follow Benford's law",
        severity="high" if mad > 2 * max_mad else "medium",
        confidence=max(0.0, min(0.99, 1.0 - p_value)),
        target=name,
        what=(
            f"Over {int(total)} positive values of {name}, the first-digit proportions are "
            f"{mad:.3f} away from Benford's on average (MAD; nonconformity above "
            f"{max_mad:g}); most over-represented: {top_text}."
        ),
        why=(
            f"Amounts spanning {orders:.1f} orders of magnitude normally follow Benford's "
            f"law closely; a chi-square test rejects it (chi-square {chi2:.0f}, "
            f"{_p_text(p_value)}). Excess first digits point to invented, rounded, "
            "duplicated or threshold-dodging entries (for example amounts kept just under "
            "an approval limit), or to a process that writes amounts in a narrow band."
        ),
        recommendation=(
            f"Audit {name}: pull the rows whose amount starts with {top[0]}"
            + (f" or {top[1]}" if len(top) > 1 else "")
            + " and check a sample against source documents (invoices, approvals); "
            "group them by user and day to see who or what enters them, and look for "
            "values just below approval limits and for repeated identical amounts."
        ),
        charts=(first_digit_bars(f"First digits of {name}", [int(c) for c in counts]),),
        evidence=Evidence(
            columns=(name,),
            metrics=metrics,
            query=query,
            rows=int(total),
        ),
        measurement="modeled",
        impact=Impact(
            value=excess_rows,
            unit="rows",
            description=f"rows of {name} on over-represented first digits "
            f"({', '.join(str(d) for d in over)}) beyond Benford's expectation: the review set",
            assumptions=(
                f"the genuine amounts of {name} follow Benford's law",
                "the rows in excess of Benford's expectation are the ones worth reviewing",
            ),
        ),
    )
