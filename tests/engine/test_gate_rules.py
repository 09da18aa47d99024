"""Each quality-gate rule on a hand-built run state: the count and the offender's
words for every breach, and no breach for the case beside it."""

from __future__ import annotations

import pytest

from contracts import Failed, Finding, Na, Ok, Plan, PlanStep, PluginResult
from contracts.report import GATE_NAMES, QualityGates
from engine import RunState, evaluate_gates
from engine._core.gates import legacy_skipped
from engine._core.state import PluginRecord


def _step(pid: str, lane: str = "decision", order: int = 0, **kw: object) -> PlanStep:
    return PlanStep(
        plugin_id=pid,
        version="1",
        lane=lane,  # type: ignore[arg-type]
        manifest_lane=lane if lane != "legacy" else "decision",  # type: ignore[arg-type]
        order=order,
        depth=0,
        priority=0,
        **kw,  # type: ignore[arg-type]
    )


def _state(
    *records: tuple[PlanStep, PluginResult | None, bool], mode: str = "two_lane_strict"
) -> RunState:
    steps = tuple(step for step, _, _ in records)
    state = RunState(
        plan=Plan(
            mode=mode,  # type: ignore[arg-type]
            seed=0,
            dataset_schema_hash="",
            lane_policy_version="1",
            steps=steps,
        )
    )
    for step, result, ran in records:
        state.plugins[step.plugin_id] = PluginRecord(step=step, result=result, ran=ran)
    return state


def _gates(
    *records: tuple[PlanStep, PluginResult | None, bool], mode: str = "two_lane_strict"
) -> tuple[dict[str, int], list[tuple[str, str, str]]]:
    gates, offenders = evaluate_gates(_state(*records, mode=mode))
    counts = {name: getattr(gates, name) for name in GATE_NAMES if getattr(gates, name)}
    return counts, [(o.gate, o.plugin_id, o.detail) for o in offenders]


FOUND = Finding(kind="k", title="t", id="f1")


@pytest.mark.parametrize(
    ("lane", "downstream", "breach"),
    [("explanation", (), True), ("explanation", ("d",), False), ("decision", (), False)],
)
def test_an_explanation_must_map_to_a_decision(
    lane: str, downstream: tuple[str, ...], breach: bool
) -> None:
    step = _step("x", lane, downstream=downstream, finding_kinds=("k",))
    counts, offenders = _gates((step, Ok(findings=(FOUND,)), True))
    gate = "nondecision_missing_downstream_count"
    detail = "explanation plugin maps to no decision plugin (downstream is empty)"
    assert (counts, offenders) == (({gate: 1}, [(gate, "x", detail)]) if breach else ({}, []))


def test_a_plugin_without_a_result_is_skipped_and_nothing_else() -> None:
    counts, offenders = _gates((_step("x", "explanation"), None, False))
    # The downstream rule reads the step; every other rule needs a result.
    assert counts == {"nondecision_missing_downstream_count": 1, "skipped_count": 1}
    assert offenders[1] == ("skipped_count", "x", "no result was recorded for this plugin")


@pytest.mark.parametrize("reason", ["NOT_APPLICABLE", "INSUFFICIENT_DATA", "UPSTREAM_FAILED"])
def test_legacy_reports_never_run_na_as_skipped(reason: str) -> None:
    result = Na(reason_code=reason, explanation="why")
    step = _step("x", "legacy")
    assert _gates((step, result, False), mode="legacy") == (
        {"skipped_count": 1},
        [("skipped_count", "x", f"reported as skipped ({reason})")],
    )
    assert legacy_skipped(PluginRecord(step=step, result=result, ran=False))
    # It ran, or it is strict mode, or the reason is not a never-ran one: no breach.
    assert not legacy_skipped(PluginRecord(step=step, result=result, ran=True))
    assert _gates((step, result, True), mode="legacy") == ({}, [])
    assert _gates((step, result, False)) == ({}, [])
    quiet = Na(reason_code="NO_SIGNIFICANT_EFFECT", explanation="why")
    assert _gates((step, quiet, False), mode="legacy") == ({}, [])
    assert not legacy_skipped(PluginRecord(step=step, result=Ok(), ran=False))


def test_ok_without_findings_breaks_only_in_the_decision_lane() -> None:
    detail = "decision plugin returned ok without findings (should be na with a reason)"
    assert _gates((_step("d"), Ok(), True)) == (
        {"analysis_ok_without_findings_count": 1},
        [("analysis_ok_without_findings_count", "d", detail)],
    )
    assert _gates((_step("e", "explanation", downstream=("d",)), Ok(), True)) == ({}, [])


def test_finding_kinds_blank_undeclared_and_declared() -> None:
    step = _step("d", finding_kinds=("k", "other"))
    findings = (
        Finding(kind=" \t", title="t", id="blank1"),
        Finding(kind="surprise", title="t", id="u1"),
        Finding(kind="k", title="t", id="ok1"),
    )
    assert _gates((step, Ok(findings=findings), True)) == (
        {"blank_kind_findings_count": 1, "undeclared_finding_kind_count": 1},
        [
            ("blank_kind_findings_count", "d", "finding blank1 has a blank kind"),
            (
                "undeclared_finding_kind_count",
                "d",
                "finding kind 'surprise' is not declared in finding_kinds ['k', 'other']",
            ),
        ],
    )


def test_na_needs_an_explanation() -> None:
    assert _gates(
        (_step("d"), Na(reason_code="NO_SIGNIFICANT_EFFECT", explanation=" \n"), True)
    ) == (
        {"na_without_explanation_count": 1},
        [("na_without_explanation_count", "d", "na NO_SIGNIFICANT_EFFECT has no explanation")],
    )
    assert _gates((_step("d"), Na(reason_code="NO_SIGNIFICANT_EFFECT", explanation="x"), True)) == (
        {},
        [],
    )


@pytest.mark.parametrize(
    ("code", "message", "detail"),
    [
        (
            "UNKNOWN_REASON_CODE",
            "na reason code 'X' is not registered",
            "na reason code 'X' is not registered",
        ),
        ("UNKNOWN_REASON_CODE", "", "UNKNOWN_REASON_CODE"),
        ("NOT_IN_THE_REGISTRY", "boom", "boom"),
        ("NO_SIGNIFICANT_EFFECT", "an na code on a failure", "an na code on a failure"),
        ("PLUGIN_ERROR", "  ", "failed PLUGIN_ERROR without a message"),
        ("PLUGIN_ERROR", "", "failed PLUGIN_ERROR without a message"),
    ],
)
def test_a_failure_must_be_registered_and_explained(code: str, message: str, detail: str) -> None:
    result = Failed(reason_code=code, message=message)
    assert _gates((_step("d"), result, True)) == (
        {"unexplained_plugin_count": 1},
        [("unexplained_plugin_count", "d", detail)],
    )


def test_an_explained_registered_failure_breaks_no_gate() -> None:
    assert _gates((_step("d"), Failed(reason_code="PLUGIN_ERROR", message="x"), True)) == ({}, [])


def test_offenders_come_in_plan_order_and_total_adds_every_gate() -> None:
    late = _step("a", order=1)
    early = _step("b", order=0)
    gates, offenders = evaluate_gates(_state((late, Ok(), True), (early, Ok(), True)))
    assert [o.plugin_id for o in offenders] == ["b", "a"]
    assert gates.total() == 2
    every = QualityGates(**{name: i + 1 for i, name in enumerate(GATE_NAMES)})
    assert every.total() == sum(range(1, len(GATE_NAMES) + 1))


def test_a_missing_result_does_not_stop_the_count() -> None:
    counts, offenders = _gates(
        (_step("a", order=0), None, False), (_step("b", order=1), Ok(), True)
    )
    assert counts == {"skipped_count": 1, "analysis_ok_without_findings_count": 1}
    assert [o[1] for o in offenders] == ["a", "b"]
