"""The supervisor actor and the lane actors.

The supervisor owns the plan and the run state and is the only writer of the
event log: every state change is an event it appends and then folds through
:func:`state.apply`. Lane actors (decision, explanation; or one ``legacy`` lane)
receive ready steps, run each in their own bounded task group, and report back
over a memory stream. Worker slots are shared by priority: the decision lane and
the explanation plugins it depends on are served first.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from attrs import define, field

from contracts import (
    CONTRACTS_VERSION,
    DatasetInfo,
    Failed,
    Na,
    Plan,
    PlanStep,
    PluginResult,
    stable_hash,
)
from contracts.events import (
    CacheHit,
    CacheMiss,
    DataAccessed,
    Event,
    GateEvaluated,
    PlanBuilt,
    PluginDispatched,
    PluginFinished,
    PluginSpan,
    PluginStarted,
    PreflightFailed,
    RunFinished,
    RunResumed,
    RunStarted,
    StallDetected,
)
from contracts.plan import Mode

from .._executors.process import Executor
from .._worker.run import Job, JobOutput
from ..errors import EngineInternalError
from .cache import CacheKey, RunCache, cacheable, make_key
from .eventlog import EventLog
from .gates import evaluate_gates
from .manifests import PluginSpec
from .preflight import preflight
from .state import RunState, apply

ENGINE_VERSION = "0.1.0"


def plugin_seed(seed: int, plugin_id: str) -> int:
    """A per-plugin seed: stable across processes, independent of plan order."""
    digest = hashlib.sha256(f"{seed}\x1f{plugin_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class PrioritySlots:
    """Worker slots handed out by (priority, arrival); cancellation-safe.

    Explicit ``acquire``/``release`` rather than a context manager: this is on the
    per-plugin hot path.
    """

    def __init__(self, capacity: int) -> None:
        self._free = capacity
        self._waiters: list[list[Any]] = []  # [priority, seq, event, state]
        self._seq = 0

    async def acquire(self, priority: int) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        entry: list[Any] = [priority, self._seq, anyio.Event(), "waiting"]
        self._seq += 1
        heapq.heappush(self._waiters, entry)
        try:
            await entry[2].wait()
        except BaseException:
            if entry[3] == "granted":
                self.release()
            else:
                entry[3] = "cancelled"
            raise

    def release(self) -> None:
        while self._waiters:
            entry = heapq.heappop(self._waiters)
            if entry[3] == "waiting":
                entry[3] = "granted"
                entry[2].set()
                return
        self._free += 1


@define(frozen=True)
class _Started:
    plugin_id: str
    worker: int
    pid: int


@define(frozen=True)
class _Done:
    plugin_id: str
    output: JobOutput


_Message = _Started | _Done


class LaneActor:
    """Runs the steps of one lane, at most ``capacity`` at a time."""

    def __init__(
        self,
        name: str,
        capacity: int,
        slots: PrioritySlots,
        executor: Executor,
        outbox: MemoryObjectSendStream[_Message],
    ) -> None:
        self.name = name
        self.capacity = capacity
        self._slots = slots
        self._executor = executor
        self._outbox = outbox
        self._send, self._recv = anyio.create_memory_object_stream[tuple[PlanStep, Job]](math.inf)

    def submit(self, step: PlanStep, job: Job) -> None:
        self._send.send_nowait((step, job))

    def close(self) -> None:
        self._send.close()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # A fixed set of runner tasks bounds the lane's concurrency and costs no
        # task spawn per plugin.
        with self._send:  # closed here too when the run is cancelled
            async with anyio.create_task_group() as tg:
                with self._recv:
                    for _ in range(self.capacity):
                        tg.start_soon(self._runner, self._recv.clone())
                task_status.started()

    async def _runner(self, inbox: MemoryObjectReceiveStream[tuple[PlanStep, Job]]) -> None:
        with inbox:
            await self._run_all(inbox)

    async def _run_all(self, inbox: MemoryObjectReceiveStream[tuple[PlanStep, Job]]) -> None:
        outbox = self._outbox
        async for step, job in inbox:
            await self._slots.acquire(step.priority)
            try:
                async with self._executor.worker() as worker:

                    def started(index: int, pid: int, plugin_id: str = step.plugin_id) -> None:
                        outbox.send_nowait(_Started(plugin_id, index, pid))

                    output = await worker.run(job, step.timeout_s, started)
            finally:
                self._slots.release()
            outbox.send_nowait(_Done(step.plugin_id, output))


@define(kw_only=True)
class RunSpec:
    """Everything fixed before a run starts."""

    run_id: str
    run_dir: Path
    mode: Mode
    seed: int
    dataset: DatasetInfo
    plugins: Mapping[str, PluginSpec]
    plan: Plan
    plugins_dir: str
    select: tuple[str, ...] = ()
    settings: dict[str, Any] = field(factory=dict)
    large_dataset_rows: int = 1_000_000
    lanes: dict[str, str] = field(factory=dict)
    timeouts: dict[str, float] = field(factory=dict)
    cache: RunCache | None = None
    resume_from: tuple[int, str] = (0, "")
    stall_timeout_s: float = 900.0


class Supervisor:
    """Owns the plan and the run state; the only writer of the event log."""

    def __init__(
        self,
        spec: RunSpec,
        executor: Executor,
        log: EventLog,
        on_event: Callable[[Event], None] | None = None,
        cache: RunCache | None = None,
    ) -> None:
        self.spec = spec
        self._cache = cache
        self._keys: dict[str, CacheKey] = {}
        self.state = RunState()
        self._executor = executor
        self._log = log
        self._on_event = on_event
        self._lanes: dict[str, LaneActor] = {}
        self._waiting_on: dict[str, int] = {}
        self._ready: list[tuple[int, str]] = []
        self._in_flight = 0
        self._last_event = time.monotonic()

    def _append(self, cls: type[Event], **fields: Any) -> Event:
        event = self._log.append(cls, **fields)
        self._last_event = event.mono
        apply(self.state, event)
        if self._on_event is not None:
            self._on_event(event)
        return event

    async def run(self) -> RunState:
        spec = self.spec
        plan = spec.plan
        self._append(
            RunStarted,
            run_id=spec.run_id,
            mode=spec.mode,
            seed=spec.seed,
            engine_version=ENGINE_VERSION,
            contracts_version=CONTRACTS_VERSION,
            dataset=spec.dataset,
            plugins_dir=spec.plugins_dir,
            executor=self._executor.name,
            workers=self._executor.workers,
            select=spec.select,
            settings=spec.settings,
            large_dataset_rows=spec.large_dataset_rows,
            lanes=spec.lanes,
            timeouts=spec.timeouts,
        )
        self._append(PlanBuilt, plan=plan)
        return await self._drive()

    async def resume(self, state: RunState) -> RunState:
        """Continue an unfinished run from the fold of its log.

        Plugins that finished keep their results; plugins that were dispatched or
        running when the run died are run again (the reducer puts them back to
        pending when it folds ``RunResumed``).
        """
        self.state = state
        if state.plan is None:
            self._append(PlanBuilt, plan=self.spec.plan)
        if state.finished is not None:
            return state
        pending = tuple(r.step.plugin_id for r in state.ordered() if r.phase != "done")
        self._append(
            RunResumed,
            pending=pending,
            executor=self._executor.name,
            workers=self._executor.workers,
        )
        return await self._drive()

    async def _drive(self) -> RunState:
        """Preflight what has not ended, then run every remaining step to the end."""
        spec = self.spec
        plan = spec.plan
        for step in plan.steps:
            self._waiting_on[step.plugin_id] = len(step.depends_on)
        for step in plan.steps:
            if self.state.plugins[step.plugin_id].phase == "done":
                continue
            outcome = preflight(spec.plugins[step.plugin_id], spec.dataset, spec.large_dataset_rows)
            if outcome is not None:
                self._append(
                    PreflightFailed,
                    plugin_id=step.plugin_id,
                    lane=step.lane,
                    result=outcome,
                    downstream_affected=_affected(step),
                )
        for step in plan.steps:
            record = self.state.plugins[step.plugin_id]
            if record.phase == "done":
                if self._cache is not None and record.ran and not record.preflight:
                    self._keys[step.plugin_id] = self._key(step)
                self._finished(step.plugin_id)
        for step in plan.steps:
            if not step.depends_on and self.state.plugins[step.plugin_id].phase == "pending":
                heapq.heappush(self._ready, (step.order, step.plugin_id))

        send, recv = anyio.create_memory_object_stream[_Message](math.inf)
        slots = PrioritySlots(self._executor.slots)
        for lane in sorted({s.lane for s in plan.steps}):
            self._lanes[lane] = LaneActor(lane, self._executor.slots, slots, self._executor, send)
        async with anyio.create_task_group() as tg, recv, send:
            for lane_actor in self._lanes.values():
                await tg.start(lane_actor.run)
            # The watchdogs live exactly as long as the plugins they watch.
            watchdogs = anyio.CancelScope()
            tg.start_soon(self._watchdogs, watchdogs)
            self._advance()
            while self.state.outstanding():
                if self._in_flight == 0:
                    raise EngineInternalError("plugins outstanding but nothing in flight")
                message: _Message | None = await recv.receive()
                # Handle everything already waiting, then dispatch once.
                while message is not None:
                    if isinstance(message, _Started):
                        self._append(
                            PluginStarted,
                            plugin_id=message.plugin_id,
                            worker=message.worker,
                            pid=message.pid,
                        )
                    else:
                        self._complete(message.output)
                    try:
                        message = recv.receive_nowait()
                    except anyio.WouldBlock:
                        message = None
                self._advance()
            watchdogs.cancel()
            for lane_actor in self._lanes.values():
                lane_actor.close()

        if self._cache is not None:
            self._cache.flush()
        if self.state.gates is None:
            gates, offenders = evaluate_gates(self.state)
            self._append(
                GateEvaluated,
                gates=gates,
                offenders=offenders,
                passed=gates.total() == 0,
                enforced=spec.mode == "two_lane_strict",
            )
        else:
            gates = self.state.gates.gates
        counts = self.state.status_counts()
        self._append(
            RunFinished, status=run_status(spec.mode, counts, gates.total()), counts=counts
        )
        return self.state

    async def _watchdogs(self, scope: anyio.CancelScope) -> None:
        with scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._executor.watch)
                tg.start_soon(self._watch_for_stalls)

    async def _watch_for_stalls(self) -> None:
        """A timer, not a timeout per wait: fires when no event was appended for
        ``stall_timeout_s`` while plugins are outstanding."""
        limit = self.spec.stall_timeout_s
        while True:
            await anyio.sleep(max(0.0, self._last_event + limit - time.monotonic()))
            if time.monotonic() - self._last_event >= limit and self.state.outstanding():
                self._stalled()

    def _stalled(self) -> None:
        """Record the plugins a silent run is waiting on, and stop them."""
        # Plugins still waiting for a worker slot are not stuck: only running ones.
        stuck = tuple(r.step.plugin_id for r in self.state.ordered() if r.phase == "running")
        self._append(StallDetected, plugins=stuck, idle_s=self.spec.stall_timeout_s)
        self._executor.stop(
            stuck, "STALLED", "stopped by the stall detector: the run made no progress"
        )

    def _complete(self, output: JobOutput) -> None:
        self._in_flight -= 1
        pid = output.plugin_id
        step = self.state.plugins[pid].step
        for access in output.accesses:
            self._append(DataAccessed, plugin_id=pid, access=access)
        for span in output.spans:
            self._append(PluginSpan, plugin_id=pid, span=span)
        affected = () if output.result.__struct_config__.tag == "ok" else _affected(step)
        self._append(
            PluginFinished,
            plugin_id=pid,
            lane=step.lane,
            result=output.result,
            duration_s=output.duration_s,
            downstream_affected=affected,
        )
        if self._cache is not None and cacheable(output.result, ran=True):
            self._cache.store(self._keys[pid], output.result, output.accesses, output.duration_s)
        self._finished(pid)

    def _finished(self, plugin_id: str) -> None:
        for child in self.state.plugins[plugin_id].step.dependents:
            self._waiting_on[child] -= 1
            if self._waiting_on[child] == 0 and self.state.plugins[child].phase == "pending":
                heapq.heappush(self._ready, (self.state.plugins[child].step.order, child))

    def _advance(self) -> None:
        """Dispatch (or resolve) every ready step, in plan order."""
        while self._ready:
            _, pid = heapq.heappop(self._ready)
            record = self.state.plugins[pid]
            if record.phase != "pending":
                continue
            step = record.step
            blocked = self._failed_upstream(step)
            if blocked:
                names = ", ".join(repr(b) for b in blocked)
                self._append(
                    PluginFinished,
                    plugin_id=pid,
                    lane=step.lane,
                    result=Na(
                        reason_code="UPSTREAM_FAILED",
                        explanation=f"Not started because upstream plugin {names} failed.",
                        checked=tuple(blocked),
                    ),
                    ran=False,
                    downstream_affected=_affected(step),
                )
                self._finished(pid)
                continue
            if self._cache is not None and self._from_cache(step):
                continue
            self._append(PluginDispatched, plugin_id=pid, lane=step.lane)
            self._in_flight += 1
            self._lanes[step.lane].submit(step, self._job(step))

    def _key(self, step: PlanStep) -> CacheKey:
        upstream = []
        for dep in step.depends_on:
            known = self._keys.get(dep)
            # A dependency decided without running (preflight, upstream failure) has
            # no key: its outcome stands in for one.
            upstream.append(known.key if known else stable_hash(self.state.plugins[dep].result))
        return make_key(
            step,
            mode=self.spec.mode,
            dataset_fp=self.spec.dataset.fingerprint,
            seed=plugin_seed(self.spec.seed, step.plugin_id),
            upstream_keys=upstream,
        )

    def _from_cache(self, step: PlanStep) -> bool:
        """Look ``step`` up; on a hit, finish it from the cache. Either way, log why."""
        assert self._cache is not None
        pid = step.plugin_id
        key = self._keys[pid] = self._key(step)
        cached, outcome = self._cache.lookup(key)
        if cached is None:
            self._append(CacheMiss, plugin_id=pid, key=key.key, reason=outcome)
            return False
        self._append(CacheHit, plugin_id=pid, key=key.key)
        result = cached.result
        self._append(
            PluginFinished,
            plugin_id=pid,
            lane=step.lane,
            result=result,
            duration_s=cached.duration_s,
            downstream_affected=() if result.__struct_config__.tag == "ok" else _affected(step),
            cached=True,
        )
        self._finished(pid)
        return True

    def _failed_upstream(self, step: PlanStep) -> list[str]:
        """The failed plugins upstream of ``step`` (through UPSTREAM_FAILED chains)."""
        roots: set[str] = set()
        for dep in step.depends_on:
            record = self.state.plugins[dep]
            result = record.result
            if isinstance(result, Failed):
                roots.add(dep)
            elif (
                isinstance(result, Na)
                and result.reason_code == "UPSTREAM_FAILED"
                and not record.ran
            ):
                # Only the engine gives UPSTREAM_FAILED (to plugins it never ran);
                # its ``checked`` names the failed roots.
                roots.update(result.checked)
        return sorted(roots)

    def _job(self, step: PlanStep) -> Job:
        spec = self.spec
        plugin = spec.plugins[step.plugin_id]
        upstream: dict[str, PluginResult] = {}
        for dep in step.depends_on:
            result = self.state.plugins[dep].result
            if result is not None and not isinstance(result, Failed):
                upstream[dep] = result
        return Job(
            run_id=spec.run_id,
            plugin_id=step.plugin_id,
            plugin_dir=str(plugin.directory),
            entrypoint=plugin.manifest.entrypoint,
            code_hash=plugin.code_hash,
            settings=dict(step.settings),
            seed=plugin_seed(spec.seed, step.plugin_id),
            dataset=spec.dataset,
            upstream=upstream,
            artifacts_dir=str(spec.run_dir / "artifacts" / step.plugin_id),
            data_access=plugin.manifest.data_access,
        )


def _affected(step: PlanStep) -> tuple[str, ...]:
    return tuple(sorted(set(step.dependents) | set(step.downstream)))


def run_status(mode: Mode, counts: Mapping[str, int], gate_breaches: int) -> str:
    """Strict: any failed plugin or failed quality gate fails the run.
    Legacy (the pre-contract baseline): permissive, the run is ok."""
    if mode == "legacy":
        return "ok"
    return "failed" if counts.get("failed", 0) or gate_breaches else "ok"
