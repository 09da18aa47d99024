"""The run diff of ``engine diff`` (``diff.json``): wire types, rendered as Markdown
and HTML by the engine."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Change = Literal["new", "gone", "changed"]


class RunInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One side of the diff."""

    label: str
    run_id: str
    mode: str
    pre_contract: bool
    status: str
    seed: int
    plan_hash: str
    dataset_fingerprint: str
    plugins: int
    decisions: int


class FindingDelta(msgspec.Struct, frozen=True, kw_only=True):
    """A finding that is new in B, gone from B, or changed between A and B.

    The descriptive fields are B's for ``new`` and ``changed``, A's for ``gone``.
    ``changes`` maps each changed field to ``[value in A, value in B]``.
    """

    change: Change
    lane: Literal["decision", "explanation"]
    plugin_id: str
    finding_id: str
    kind: str
    target: str
    title: str
    severity: str
    confidence: float
    measurement: str
    modeled_impact: float
    impact_unit: str
    confidence_flag: Literal["high", "medium", "low"]
    evidence_flag: Literal["reproducible", "metrics", "none"]
    recommendation: str = ""
    changes: dict[str, list[Any]] = {}


class StatusDelta(msgspec.Struct, frozen=True, kw_only=True):
    """A plugin whose status or reason code differs (``absent``: not in that run)."""

    plugin_id: str
    lane: str
    status_a: str
    status_b: str
    reason_a: str | None = None
    reason_b: str | None = None
    note: str = ""


class RunDiff(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``engine diff`` reports (``diff.json``)."""

    run_a: RunInfo
    run_b: RunInfo
    summary: str
    notes: tuple[str, ...]
    actionable: tuple[FindingDelta, ...]
    status: tuple[StatusDelta, ...]
    explanations: tuple[FindingDelta, ...]
    counts: dict[str, int]
