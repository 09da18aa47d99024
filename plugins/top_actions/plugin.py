"""top_actions: every decision merged into ranked actions, in one unit (hours a month).

Findings act on the same thing when they share a target and a lever (``FAMILIES``);
those become one action. Impacts are converted to hours a month where the unit allows
(:func:`hours_per_month`); the action's impact is the largest of its findings', since
they estimate one saving from different angles. Actions with an impact in hours a month
are ranked by it; the others follow by severity and confidence, never mixed in.
"""

from __future__ import annotations

import msgspec

from contracts import Evidence, Finding, Impact, Ok, na, ok
from contracts.units import DAYS_PER_MONTH

SEVERITY = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
# Which lever a finding pulls: same target + same family = one action.
FAMILIES = {
    "queue_bottleneck": "queue wait and capacity",
    "capacity_shortfall": "queue wait and capacity",
    "changepoint": "queue wait and capacity",
    "control_chart_violation": "queue wait and capacity",
    "sla_breach": "queue wait and capacity",
    "concurrency_saturation": "queue wait and capacity",
    "close_spill": "queue wait and capacity",
    "close_contention": "queue wait and capacity",
    "arrival_burst": "queue wait and capacity",
    "tail_latency_hotspot": "run time",
    "trend": "run time",
    "timeout_cutoff": "run time",
    "retry_hotspot": "failures and retries",
    "failure_hotspot": "failures and retries",
    "host_rebalance": "failures and retries",
    "volume_peak": "volume",
    "rework_loop": "rework",
    "handoff_gap": "hand-offs",
}
SPAN_KEYS = ("span_days", "observed_days", "days_charted", "days_in_series")
MERGED_ELSEWHERE = "fdr_control"


def hours_per_month(f: Finding) -> tuple[float | None, str]:
    """The finding's impact in hours a month, and how it was converted (None: it cannot
    be, e.g. rows, events or jobs per hour)."""
    if f.impact is None:
        return None, "no modeled impact"
    unit = f.impact.unit.strip().lower()
    if unit in ("hours/month", "h/month", "hours per month"):
        return float(f.impact.value), "hours/month as modeled"
    if unit in ("hours", "h"):
        for key in SPAN_KEYS:
            days = f.evidence.metrics.get(key)
            if isinstance(days, int | float) and not isinstance(days, bool) and days > 0:
                months = float(days) / DAYS_PER_MONTH
                return float(f.impact.value) / months, (
                    f"{f.impact.value:.4g} hours over {float(days):.0f} observed days, "
                    f"divided by {months:.2f} months"
                )
    return None, f"unit {f.impact.unit!r} is not a time a month"


def _rank_key(action: dict) -> tuple:
    h = action["hours"]
    return (
        0 if h is not None else 1,
        -(h or 0.0),
        SEVERITY.get(action["lead"].severity, 9),
        -action["lead"].confidence,
        action["target"],
        action["family"],
    )


def run(ctx):
    max_actions = int(ctx.settings.get("max_actions", 0))
    checked: list[str] = []
    unconfirmed: dict[str, str] = {}
    fdr = ctx.upstream.get(MERGED_ELSEWHERE)
    if isinstance(fdr, Ok):
        unconfirmed = {f.target: f.title for f in fdr.findings}
    capacity = ctx.upstream.get("capacity_whatif")
    verdicts = dict(getattr(capacity, "metrics", {}).get("verdicts") or {})
    groups: dict[tuple[str, str], list[Finding]] = {}
    for dep in sorted(ctx.upstream):
        result = ctx.upstream[dep]
        status = type(result).__name__.lower()
        if dep == MERGED_ELSEWHERE:
            checked.append(f"{dep}: {status}, {len(unconfirmed)} finding(s) not confirmed")
            continue
        if not isinstance(result, Ok):
            checked.append(f"{dep}: {status} ({getattr(result, 'reason_code', '')})")
            continue
        checked.append(f"{dep}: ok, {len(result.findings)} finding(s)")
        for f in result.findings:
            f = f if f.plugin_id else msgspec.structs.replace(f, plugin_id=dep)
            groups.setdefault((f.target, FAMILIES.get(f.kind, f.kind)), []).append(f)
    if not groups:
        return na(
            "NO_SIGNIFICANT_EFFECT",
            "No decision plugin produced a finding, so there is no action to rank.",
            checked=checked or ["no upstream decision plugin"],
        )
    actions = []
    for (target, family), members in sorted(groups.items()):
        converted = [(hours_per_month(f), f) for f in members]
        with_hours = [(h, how, f) for (h, how), f in converted if h is not None]
        if with_hours:
            h, how, lead = max(with_hours, key=lambda x: (x[0], -SEVERITY[x[2].severity], x[2].id))
        else:
            h, how = None, converted[0][0][1]
            lead = min(members, key=lambda f: (SEVERITY[f.severity], -f.confidence, f.id))
        actions.append(
            {
                "target": target,
                "family": family,
                "members": members,
                "hours": h,
                "how": how,
                "lead": lead,
                "converted": converted,
            }
        )
    actions.sort(key=_rank_key)
    total = len(actions)
    if max_actions and total > max_actions:
        checked.append(f"reported the first {max_actions} of {total} actions (max_actions)")
        actions = actions[:max_actions]
    findings = [_finding(rank, a, unconfirmed, verdicts) for rank, a in enumerate(actions, start=1)]
    ranked = sum(a["hours"] is not None for a in actions)
    return ok(
        findings=findings,
        metrics={
            "actions": total,
            "reported": len(findings),
            "ranked_by_hours": ranked,
            "unranked": len(findings) - ranked,
            "findings_merged": sum(len(a["members"]) for a in actions),
            "checked": checked,
        },
    )


def _finding(rank: int, a: dict, unconfirmed: dict[str, str], verdicts: dict) -> Finding:
    lead: Finding = a["lead"]
    members: list[Finding] = sorted(a["members"], key=lambda f: (f.plugin_id, f.kind, f.id))
    plugins = sorted({f.plugin_id for f in members})
    notes = []
    for f in members:
        if f.id in unconfirmed:
            notes.append(f"{f.plugin_id}'s finding is not confirmed after FDR control")
    verdict = verdicts.get(a["target"])
    kinds = {f.kind for f in members}
    if (
        verdict
        and verdict != "fits"
        and "queue_bottleneck" in kinds
        and "capacity_shortfall" not in kinds
    ):
        notes.append(
            "capacity_whatif's queueing model does not explain these waits by worker capacity "
            f"({verdict}): find what holds the jobs before adding workers"
        )
    estimates = "; ".join(
        f"{f.plugin_id}: " + (f"{h:.1f} h/month ({how})" if h is not None else how)
        for (h, how), f in sorted(a["converted"], key=lambda x: (x[1].plugin_id, x[1].id))
    )
    metrics = {
        "rank": rank,
        "action_target": a["target"],
        "family": a["family"],
        "kinds": ",".join(sorted(kinds)),
        "plugins": ",".join(plugins),
        "finding_ids": ",".join(f.id for f in members),
        "hours_per_month": a["hours"],
        "conversion": a["how"],
        "estimates": estimates,
        "notes": " | ".join(notes),
    }
    others = [f for f in members if f is not lead]
    also = (
        " Also: " + " ".join(f"[{f.plugin_id}] {f.recommendation}" for f in others)
        if others
        else ""
    )
    if a["hours"] is not None:
        impact = Impact(
            value=a["hours"],
            unit="hours/month",
            description=f"the largest of {len(members)} estimate(s): {lead.plugin_id}'s "
            f"({a['how']})",
            assumptions=(
                "the merged findings estimate the same saving from different angles, so the "
                "largest is taken, not their sum",
                *(lead.impact.assumptions if lead.impact else ()),
            ),
        )
        measurement = "modeled"
    else:
        impact, measurement = lead.impact, lead.measurement
    return Finding(
        kind="top_action",
        title=f"#{rank}: {lead.title}",
        severity=min((f.severity for f in members), key=lambda s: SEVERITY[s]),
        confidence=max(f.confidence for f in members),
        what=f"{len(members)} finding(s) on {a['target']} ({a['family']}) from "
        f"{', '.join(plugins)}. {lead.what}",
        why=lead.why + (" Note: " + "; ".join(notes) + "." if notes else ""),
        recommendation=lead.recommendation + also,
        target=f"{a['family']}:{a['target']}",
        evidence=Evidence(
            columns=tuple(sorted({c for f in members for c in f.evidence.columns})),
            metrics=metrics,
            query=lead.evidence.query or "-- merged from upstream findings; no query of its own",
            rows=lead.evidence.rows,
        ),
        measurement=measurement,
        impact=impact,
    )
