"""The plugin manifest (``plugins/<id>/plugin.yaml``), decoded strictly."""

from __future__ import annotations

from typing import Literal

from ._base import StrictWire

Lane = Literal["decision", "explanation"]
DataAccessMode = Literal["sql", "batched", "bounded", "unbounded"]
ColumnRole = Literal["timestamp", "numeric", "categorical", "identifier", "text", "boolean"]
ColumnSemantic = Literal[
    "quantity",
    "count",
    "share",
    "identifier",
    "clock_time",
    "calendar_part",
    "timestamp",
]
"""What the values of a numeric column mean (inferred at ingestion; rules in
``engine/_data/ingest.py`` and ``docs/contracts.md``)."""
QUANTITY_SEMANTICS: tuple[ColumnSemantic, ...] = ("quantity", "count", "share")
"""The semantics whose values are magnitudes: the only ones that quantity analyses
(outliers, shape, drift, correlation) may judge."""
EventRole = Literal["case", "process", "status", "queued", "started", "ended", "user", "host"]
SettingType = Literal["int", "float", "str", "bool"]


class SettingSpec(StrictWire, frozen=True):
    """One setting: its type, default and bounds (the settings schema)."""

    type: SettingType
    default: bool | int | float | str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    description: str = ""


class ColumnRequirement(StrictWire, frozen=True):
    """A column needed by name, by inferred role, or by event-log role; ``semantic``
    (when not empty) further restricts it to columns with one of these semantics."""

    name: str | None = None
    role: ColumnRole | None = None
    event_role: EventRole | None = None
    semantic: tuple[ColumnSemantic, ...] = ()
    min_count: int = 1


class Requires(StrictWire, frozen=True):
    """Hard requirements: a mismatch makes the plugin ``failed`` without starting it."""

    columns: tuple[ColumnRequirement, ...] = ()
    min_rows: int = 0


class AppliesWhen(StrictWire, frozen=True):
    """Applicability: a mismatch ends the plugin ``na``/``NOT_APPLICABLE`` (or
    ``INSUFFICIENT_DATA`` for rows) without starting it."""

    columns: tuple[ColumnRequirement, ...] = ()
    min_rows: int = 0


class Manifest(StrictWire, frozen=True):
    """Everything the engine knows about a plugin before running it."""

    id: str
    version: str
    lane: Lane
    entrypoint: str = "plugin:run"
    description: str = ""
    decision_capable: bool = False
    diagnostic_only: bool = False
    requires_downstream_mapping: bool = False
    depends_on: tuple[str, ...] = ()
    downstream: tuple[str, ...] = ()
    requires: Requires = Requires()
    applies_when: AppliesWhen = AppliesWhen()
    data_access: DataAccessMode = "sql"
    settings: dict[str, SettingSpec] = {}
    finding_kinds: tuple[str, ...] = ()
    timeout_s: float = 300.0
