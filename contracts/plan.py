"""The plan: a frozen, deterministic ordering of the plugin steps."""

from __future__ import annotations

from typing import Any, Literal

from ._base import Wire

Mode = Literal["two_lane_strict", "legacy"]
StepLane = Literal["decision", "explanation", "legacy"]


class PlanStep(Wire, frozen=True):
    plugin_id: str
    version: str
    lane: StepLane
    manifest_lane: Literal["decision", "explanation"]
    order: int
    depth: int
    priority: int
    depends_on: tuple[str, ...] = ()
    downstream: tuple[str, ...] = ()
    dependents: tuple[str, ...] = ()
    settings: dict[str, Any] = {}
    timeout_s: float = 300.0
    code_hash: str = ""
    finding_kinds: tuple[str, ...] = ()
    decision_capable: bool = False


class Plan(Wire, frozen=True):
    mode: Mode
    seed: int
    dataset_schema_hash: str
    lane_policy_version: str
    steps: tuple[PlanStep, ...]
    plan_hash: str = ""
