"""Quality gates: the fail-closed rules, counted from the folded run state.

A pure function of the state (and so of the event log alone): the supervisor
records the result as a ``GateEvaluated`` event, and ``engine check`` recomputes
it from the log and compares.
"""

from __future__ import annotations

from contracts import Failed, Na, Ok, is_registered
from contracts.report import Offender, QualityGates

from .state import PluginRecord, RunState

# na reasons that mean "never ran": a legacy (pre-contract) report shows these as skipped.
NOT_RUN_REASONS = frozenset({"NOT_APPLICABLE", "INSUFFICIENT_DATA", "UPSTREAM_FAILED"})


def legacy_skipped(record: PluginRecord) -> bool:
    """Whether a legacy report shows this plugin as ``skipped``."""
    result = record.result
    return isinstance(result, Na) and not record.ran and result.reason_code in NOT_RUN_REASONS


def evaluate_gates(state: RunState) -> tuple[QualityGates, tuple[Offender, ...]]:
    """Count every gate and name every offender, in plan order."""
    counts = dict.fromkeys(QualityGates.__struct_fields__, 0)
    offenders: list[Offender] = []
    legacy = state.plan is not None and state.plan.mode == "legacy"

    def breach(gate: str, plugin_id: str, detail: str) -> None:
        counts[gate] += 1
        offenders.append(Offender(gate=gate, plugin_id=plugin_id, detail=detail))

    for record in state.ordered():
        step = record.step
        pid = step.plugin_id
        result = record.result
        if step.manifest_lane == "explanation" and not step.downstream:
            breach(
                "nondecision_missing_downstream_count",
                pid,
                "explanation plugin maps to no decision plugin (downstream is empty)",
            )
        if result is None:
            breach("skipped_count", pid, "no result was recorded for this plugin")
            continue
        if legacy and legacy_skipped(record):
            breach("skipped_count", pid, f"reported as skipped ({result.reason_code})")  # type: ignore[union-attr]
        if isinstance(result, Ok):
            if step.manifest_lane == "decision" and not result.findings:
                breach(
                    "analysis_ok_without_findings_count",
                    pid,
                    "decision plugin returned ok without findings (should be na with a reason)",
                )
            for finding in result.findings:
                if not finding.kind.strip():
                    breach(
                        "blank_kind_findings_count", pid, f"finding {finding.id} has a blank kind"
                    )
                elif finding.kind not in step.finding_kinds:
                    breach(
                        "undeclared_finding_kind_count",
                        pid,
                        f"finding kind {finding.kind!r} is not declared in finding_kinds "
                        f"{list(step.finding_kinds)}",
                    )
        elif isinstance(result, Na):
            if not result.explanation.strip():
                breach(
                    "na_without_explanation_count",
                    pid,
                    f"na {result.reason_code} has no explanation",
                )
        elif isinstance(result, Failed):
            if result.reason_code == "UNKNOWN_REASON_CODE" or not is_registered(
                result.reason_code, "failed"
            ):
                breach("unexplained_plugin_count", pid, result.message or result.reason_code)
            elif not result.message.strip():
                breach(
                    "unexplained_plugin_count",
                    pid,
                    f"failed {result.reason_code} without a message",
                )
    return QualityGates(**counts), tuple(offenders)
