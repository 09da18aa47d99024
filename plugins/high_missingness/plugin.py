"""high_missingness: columns with too many missing values; drop or impute them.

Decides from column_profile alone; missingness_pattern (also in depends_on) is optional
context for the report and may be absent or na.
"""

from __future__ import annotations

from contracts import Evidence, Finding, Impact, Ok, na, ok
from contracts.sql import quote_ident as _q

UPSTREAM = "column_profile"


def _impute_advice(role: str) -> str:
    if role == "numeric":
        return "impute it with the median (and add a was-missing indicator column)"
    if role in ("categorical", "boolean", "text"):
        return "impute it with an explicit 'missing' category (or the mode)"
    if role == "timestamp":
        return "leave rows out of time-based analyses or fill from a related timestamp"
    return "fill it from the source system, or exclude rows without it"


def run(ctx):
    threshold = float(ctx.settings.get("threshold", 0.2))
    drop_threshold = float(ctx.settings.get("drop_threshold", 0.6))
    upstream = ctx.upstream.get(UPSTREAM)
    if not isinstance(upstream, Ok):
        reason = getattr(upstream, "reason_code", "missing")
        code = reason if reason in ("NOT_APPLICABLE", "INSUFFICIENT_DATA") else "UPSTREAM_NA"
        return na(
            code,
            f"{UPSTREAM} produced no profile ({reason}), so null fractions are unknown.",
            checked=[f"upstream {UPSTREAM}: {reason}"],
        )

    profile = upstream.metrics.get("columns", {})
    rows = int(upstream.metrics.get("rows", 0))
    findings = []
    checked = []
    for name in sorted(profile):
        col = profile[name]
        fraction = float(col["null_fraction"])
        nulls = int(col["null_count"])
        checked.append(f"{name}: {fraction:.1%} missing")
        if not fraction > threshold:
            continue
        role = str(col.get("role", ""))
        if fraction > drop_threshold:
            action = "drop"
            recommendation = (
                f"Drop column {name} from analyses (or fix its collection upstream): "
                f"{fraction:.0%} of its values are missing, too many to impute reliably."
            )
            severity = "high"
            confidence = 0.9
        else:
            action = "impute"
            recommendation = f"Keep column {name} but {_impute_advice(role)}."
            severity = "medium"
            confidence = 0.8
        findings.append(
            Finding(
                kind="high_missingness",
                title=f"{name} is {fraction:.0%} missing",
                severity=severity,
                confidence=confidence,
                target=name,
                what=f"{nulls} of {rows} rows ({fraction:.1%}) have no value in {name}.",
                why=(
                    f"Above {threshold:.0%} missing, analyses that use {name} either lose "
                    "those rows or silently treat the gap as information; either biases results."
                ),
                recommendation=recommendation,
                evidence=Evidence(
                    columns=(name,),
                    metrics={
                        "null_fraction": fraction,
                        "null_count": nulls,
                        "rows": rows,
                        "threshold": threshold,
                        "drop_threshold": drop_threshold,
                        "action": action,
                    },
                    query=(
                        f"SELECT count(*) - count({_q(name)}) AS null_count, count(*) AS rows "
                        "FROM data"
                    ),
                    rows=nulls,
                ),
                measurement="modeled",
                impact=Impact(
                    value=float(nulls),
                    unit="rows",
                    description=f"rows whose {name} value would be "
                    + ("dropped with the column" if action == "drop" else "imputed"),
                    assumptions=(
                        f"{name} is used by downstream analyses or reports",
                        "the missing values are not themselves meaningful (not 'not applicable')",
                        "the share of missing values stays as in this dataset",
                    ),
                ),
            )
        )

    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"No column has more than {threshold:.0%} missing values "
            f"({len(profile)} columns checked).",
            checked=checked,
        )
    return ok(
        findings=findings,
        metrics={
            "flagged_columns": [f.target for f in findings],
            "columns_checked": len(profile),
            "threshold": threshold,
            "drop_threshold": drop_threshold,
        },
    )
