"""fdr_control: decision findings whose p-value does not survive multiple testing.

Every upstream decision plugin tests many hypotheses (per process, host, column), and
the fleet as a whole tests many more, so some findings with p < 0.05 are expected by
chance alone. This plugin collects ``evidence.metrics["p_value"]`` from every finding
of its upstream results (na results and missing upstreams are skipped), applies the
Benjamini-Hochberg procedure (scipy.stats.false_discovery_control) at ``alpha``, and
reports each finding whose adjusted p-value (q-value) is above ``alpha``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from contracts import Evidence, Finding, Ok, na, ok
from contracts.results import finding_id


def _p_value(finding: Finding) -> float | None:
    value = finding.evidence.metrics.get("p_value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        return None
    return value


def run(ctx):
    alpha = float(ctx.settings.get("alpha", 0.05))

    tested: list[tuple[str, Finding, float]] = []
    checked: list[str] = []
    for dep in sorted(ctx.upstream):
        result = ctx.upstream[dep]
        if not isinstance(result, Ok):
            checked.append(f"{dep}: {getattr(result, 'reason_code', 'no result')}, no findings")
            continue
        with_p = 0
        for f in result.findings:
            p = _p_value(f)
            if p is None:
                continue
            with_p += 1
            tested.append((dep, f, p))
        checked.append(f"{dep}: {len(result.findings)} finding(s), {with_p} with a p-value")

    if not tested:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            "No upstream decision finding carries a p-value, so there is nothing to "
            f"correct for multiple testing ({len(ctx.upstream)} upstream result(s) checked).",
            checked=checked or ["upstream results: none"],
        )

    # a stable order so the procedure's tie handling and the output never depend on
    # dict order
    tested.sort(key=lambda t: (t[0], t[1].kind, t[1].target))
    p = np.array([t[2] for t in tested], dtype=float)
    q = stats.false_discovery_control(p, method="bh")
    m = len(tested)
    ranks = {i: r + 1 for r, i in enumerate(np.argsort(p, kind="stable"))}

    findings = []
    for i, (dep, f, p_value) in enumerate(tested):
        q_value = float(q[i])
        if q_value <= alpha:
            continue
        fid = f.id or finding_id(f.plugin_id or dep, f.kind, f.target)
        source = f.plugin_id or dep
        findings.append(
            Finding(
                kind="fdr_not_significant",
                title=f"{source} finding on {f.target!r} is not significant after FDR control",
                severity="low",
                confidence=0.9,
                target=fid,
                what=(
                    f'The {f.kind} finding of {source} on {f.target!r} ("{f.title}") has '
                    f"p = {p_value:.3g}; after the Benjamini-Hochberg correction across the "
                    f"{m} p-values of the fleet's decision findings its q-value is "
                    f"{q_value:.3g}, above the false discovery rate {alpha:g}."
                ),
                why=(
                    f"When {m} hypotheses are tested at once, some small p-values are expected "
                    "by chance; keeping the expected share of false discoveries at "
                    f"{alpha:.0%} leaves this one unconfirmed."
                ),
                recommendation=(
                    f"Treat the {f.kind} finding on {f.target!r} as unconfirmed: do not act on "
                    "it alone; re-test it on new data (or a longer period) before committing "
                    "effort, and give priority to the findings that survive the correction."
                ),
                evidence=Evidence(
                    columns=f.evidence.columns,
                    metrics={
                        "p_value": p_value,
                        "q_value": q_value,
                        "alpha": alpha,
                        "rank": ranks[i],
                        "tests": m,
                        "upstream_plugin": source,
                        "upstream_kind": f.kind,
                        "upstream_target": f.target,
                        "upstream_finding_id": fid,
                    },
                    query=f.evidence.query or "-- p-values from upstream findings; no data query",
                    rows=f.evidence.rows,
                ),
            )
        )

    survivors = m - len(findings)
    metrics = {"tests": m, "survivors": survivors, "alpha": alpha}
    if not findings:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            f"All {m} upstream finding p-values survive the Benjamini-Hochberg correction at "
            f"a false discovery rate of {alpha:g}.",
            checked=[*checked, f"{m} p-values checked, {survivors} survive"],
            metrics=metrics,
        )
    return ok(
        findings=findings,
        metrics=metrics | {"not_significant": [f.target for f in findings]},
    )
