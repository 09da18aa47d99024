"""Every event of a run, in one module.

Each event is a frozen, keyword-only msgspec Struct with an explicit tag in the
``type`` field. Rules (see ``docs/schema-evolution.md``): a tag, once written to
disk, never changes meaning and is never reused; new fields get defaults; a field's
type never changes.

Every record carries ``seq`` (0, 1, 2, ...), ``prev`` (the SHA-256 of the previous
record's bytes, ``GENESIS`` for the first), the wall-clock time and the monotonic
time. Times travel in events so that folding the log needs no clock.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ._base import freeze
from .dataset import DataAccess, DatasetInfo, SpanRecord
from .plan import Mode, Plan, StepLane
from .report import Offender, QualityGates
from .results import PluginResult

GENESIS = "0" * 64
RunStatus = Literal["ok", "failed"]


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    seq: int
    prev: str
    wall: float
    mono: float

    def __post_init__(self) -> None:
        # Deep-immutable: every dict and list an event holds (the engine's own
        # settings, a plugin's metrics) is copied into a container that refuses
        # changes, so nothing can alter an event after it was appended.
        freeze(self)


class RunStarted(_Event, frozen=True, tag="run_started"):
    run_id: str
    mode: Mode
    seed: int
    engine_version: str
    contracts_version: str
    dataset: DatasetInfo
    plugins_dir: str
    executor: str
    workers: int
    select: tuple[str, ...] = ()
    settings: dict[str, Any] = {}
    large_dataset_rows: int = 1_000_000
    lanes: dict[str, str] = {}
    timeouts: dict[str, float] = {}
    # Settings that decide outcomes (RESOURCE_LIMIT, STALLED, cache hits), recorded
    # so the log proves them and a resume uses the same. None: not recorded (a log
    # written before they were).
    worker_memory_mb: int | None = None
    stall_timeout_s: float | None = None
    cache: bool | None = None


class PlanBuilt(_Event, frozen=True, tag="plan_built"):
    plan: Plan


class PreflightFailed(_Event, frozen=True, tag="preflight_failed"):
    """A plugin ended before it was started: its declared requirements or
    applicability did not match the dataset. Terminal for that plugin."""

    plugin_id: str
    lane: StepLane
    result: PluginResult
    downstream_affected: tuple[str, ...] = ()


class PluginDispatched(_Event, frozen=True, tag="plugin_dispatched"):
    plugin_id: str
    lane: StepLane


class PluginStarted(_Event, frozen=True, tag="plugin_started"):
    """The plugin's job actually began on a worker. ``worker`` is the executor's
    index of that worker, ``pid`` its process id, ``worker_id`` a name a person can
    find it by (``process/1 pid 4242``, ``dask tcp://10.0.0.5:40331 pid 4242``;
    empty in logs written before it existed), ``executor`` the executor's name
    (``process``, ``inline``, ``dask``; empty in older logs)."""

    plugin_id: str
    worker: int
    pid: int
    worker_id: str = ""
    executor: str = ""


class DataAccessed(_Event, frozen=True, tag="data_accessed"):
    plugin_id: str
    access: DataAccess


class PluginSpan(_Event, frozen=True, tag="plugin_span"):
    """A child span the plugin opened in its worker (``ctx.span``)."""

    plugin_id: str
    span: SpanRecord


class PluginFinished(_Event, frozen=True, tag="plugin_finished"):
    """Terminal for a plugin. ``ran`` is false when the engine resolved it without
    starting it (a dependency failed); ``cached`` is true when the result was
    reused from an earlier run (then ``duration_s`` is that run's)."""

    plugin_id: str
    lane: StepLane
    result: PluginResult
    duration_s: float = 0.0
    ran: bool = True
    downstream_affected: tuple[str, ...] = ()
    cached: bool = False
    # SHA-256 of each artifact file by path, when the executor moved the files to
    # the run directory (dask); empty otherwise.
    artifact_sha256: dict[str, str] = {}


class RunResumed(_Event, frozen=True, tag="run_resumed"):
    """The run continues after an interruption. ``pending`` are the plugins that had
    not finished; any that were dispatched or running are started again."""

    pending: tuple[str, ...] = ()
    executor: str = ""
    workers: int = 0


class StallDetected(_Event, frozen=True, tag="stall_detected"):
    """No event for ``idle_s`` seconds while plugins were outstanding; the plugins
    named here are stopped and end ``failed``/``STALLED``."""

    plugins: tuple[str, ...]
    idle_s: float


class CacheHit(_Event, frozen=True, tag="cache_hit"):
    plugin_id: str
    key: str


class CacheMiss(_Event, frozen=True, tag="cache_miss"):
    """``reason``: absent, code_changed, engine_changed, environment_changed,
    settings_changed, dataset_changed, schema_changed, policy_changed, seed_changed
    or upstream_changed (the first component of the key that differs)."""

    plugin_id: str
    key: str
    reason: str


class GateEvaluated(_Event, frozen=True, tag="gate_evaluated"):
    """The quality gates folded from the run, just before it finishes.
    ``enforced`` is true in ``two_lane_strict``: then a failed gate fails the run."""

    gates: QualityGates
    offenders: tuple[Offender, ...] = ()
    passed: bool = True
    enforced: bool = True


class RunFinished(_Event, frozen=True, tag="run_finished"):
    status: RunStatus
    counts: dict[str, int] = {}


Event = (
    RunStarted
    | PlanBuilt
    | PreflightFailed
    | PluginDispatched
    | PluginStarted
    | DataAccessed
    | PluginFinished
    | RunFinished
    | GateEvaluated
    | CacheHit
    | CacheMiss
    | RunResumed
    | StallDetected
    | PluginSpan
)
"""The tagged union of every event type."""

EVENT_TYPES: tuple[type[_Event], ...] = (
    RunStarted,
    PlanBuilt,
    PreflightFailed,
    PluginDispatched,
    PluginStarted,
    DataAccessed,
    PluginFinished,
    RunFinished,
    GateEvaluated,
    CacheHit,
    CacheMiss,
    RunResumed,
    StallDetected,
    PluginSpan,
)

DECODER: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
ENCODER = msgspec.json.Encoder(order="deterministic")


def event_tag(cls: type[_Event]) -> str:
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str)
    return tag
