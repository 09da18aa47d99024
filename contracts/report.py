"""The run's folded artifacts: ``report.json`` and ``run_manifest.json``."""

from __future__ import annotations

from typing import Any, Literal

from ._base import Wire
from .dataset import DataAccess
from .plan import Mode, StepLane
from .results import Finding

PluginStatus = Literal["ok", "failed", "na", "skipped"]
"""``skipped`` appears only in legacy (pre-contract) reports: a plugin that never ran."""

GATE_NAMES = (
    "analysis_ok_without_findings_count",
    "unexplained_plugin_count",
    "blank_kind_findings_count",
    "skipped_count",
    "na_without_explanation_count",
    "nondecision_missing_downstream_count",
    "undeclared_finding_kind_count",
)


class QualityGates(Wire, frozen=True):
    """Counts of contract breaches; in ``two_lane_strict`` any non-zero fails the run."""

    analysis_ok_without_findings_count: int = 0
    unexplained_plugin_count: int = 0
    blank_kind_findings_count: int = 0
    skipped_count: int = 0
    na_without_explanation_count: int = 0
    nondecision_missing_downstream_count: int = 0
    undeclared_finding_kind_count: int = 0

    def total(self) -> int:
        return sum(getattr(self, name) for name in GATE_NAMES)


class Offender(Wire, frozen=True):
    """One plugin breaking one rule."""

    gate: str
    plugin_id: str
    detail: str


class PluginReport(Wire, frozen=True):
    id: str
    version: str
    lane: StepLane
    status: PluginStatus
    reason_code: str | None = None
    explanation: str = ""
    downstream: tuple[str, ...] = ()
    downstream_affected: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()
    metrics: dict[str, Any] = {}
    duration_s: float = 0.0
    ran: bool = True
    preflight: bool = False
    error_type: str = ""
    traceback: str = ""
    data_access: tuple[DataAccess, ...] = ()


class LaneSummary(Wire, frozen=True):
    lane: StepLane
    plugins: int
    ok: int
    failed: int
    na: int
    findings: int
    duration_s: float


class LaneMetrics(Wire, frozen=True):
    """Per-lane figures folded from the run state (``telemetry.metrics``).

    No field is ever null: a ratio whose denominator is zero is ``0.0`` (its
    numerator and denominator are both recorded, so "0 of 0" and "0 of 5" differ).
    ``failed`` is the lane's fail count and ``na`` its NA count.
    """

    lane: StepLane
    plugins: int
    ok: int
    failed: int
    na: int
    ran: int
    cached: int
    preflight_failed: int
    upstream_failed: int
    findings: int
    rows_read: int
    duration_s: float
    actionable_yield: float
    actionable_plugins: int
    decision_plugins_ran: int
    downstream_utilization: float
    explanations_consumed: int
    explanations_ok: int
    cache_hit_rate: float
    cache_hits: int
    cache_lookups: int
    plugins_without_terminal_state: int
    na_without_reason: int
    failed_without_reason: int


class Summary(Wire, frozen=True):
    plugins: int
    ok: int
    failed: int
    na: int
    decisions: int
    explanations: int
    findings: int
    duration_s: float
    lanes: tuple[LaneSummary, ...] = ()
    failed_plugins: tuple[str, ...] = ()
    gates: QualityGates | None = None
    gates_passed: bool = True
    offenders: tuple[Offender, ...] = ()


class PreflightEntry(Wire, frozen=True):
    plugin_id: str
    status: PluginStatus
    reason_code: str
    explanation: str


class Report(Wire, frozen=True):
    run_id: str
    status: Literal["ok", "failed"]
    mode: Mode
    seed: int
    plan_hash: str
    dataset_fingerprint: str
    plugins: tuple[PluginReport, ...]
    summary: Summary
    preflight: tuple[PreflightEntry, ...] = ()
    orchestrator_mode: Mode = "two_lane_strict"
    pre_contract: bool = False
    lane_metrics: tuple[LaneMetrics, ...] = ()


class InputFingerprint(Wire, frozen=True):
    name: str
    kind: Literal["dataset", "plugin"]
    fingerprint: str


class RunManifest(Wire, frozen=True):
    run_id: str
    status: Literal["ok", "failed"]
    mode: Mode
    seed: int
    plan_hash: str
    engine_version: str
    contracts_version: str
    executor: str
    workers: int
    dataset_source: str
    dataset_rows: int
    inputs: tuple[InputFingerprint, ...]
    lanes: tuple[LaneSummary, ...] = ()
    settings: dict[str, Any] = {}
    orchestrator_mode: Mode = "two_lane_strict"
    pre_contract: bool = False
    lane_overrides: dict[str, str] = {}
    timeout_overrides: dict[str, float] = {}
    large_dataset_rows: int = 1_000_000
    gates: QualityGates | None = None
    gates_passed: bool = True
    offenders: tuple[Offender, ...] = ()
    events: int = 0
    last_event_hash: str = ""
    started_wall: float = 0.0
    finished_wall: float = 0.0
    lane_metrics: tuple[LaneMetrics, ...] = ()
