"""The supervisor actor: the plan, the run state, the scheduling rule.

The supervisor owns the plan and the run state and is the only writer of the
event log: every state change is an event it appends and then folds through
:func:`state.apply`. It dispatches ready steps to the executor and receives their
completions on one memory stream; the executor owns where and how jobs run.

The scheduling rule, all of it (:meth:`Supervisor._advance`, ``_admissible``):

1. Ready steps are taken in plan order, which puts priority first: in
   ``two_lane_strict`` the decision lane and the explanation plugins it depends on
   (priority 0) before the rest of the explanation lane (priority 1).
2. A step is submitted while fewer than ``capacity`` jobs are in flight: it then
   starts on a free worker at once.
3. Beyond that, up to ``capacity x (1 + pipeline)`` jobs may be in flight (written
   ahead to busy workers so they never wait for a round trip), but only steps of the
   best priority still unfinished in the plan. A lower-priority job is therefore
   never queued ahead of higher-priority work: while any decision-lane work is
   unfinished, explanation jobs only take workers that are free right now.

4. Among ready steps of one priority, the one heading the longest remaining chain
   of expected run times goes first (the critical path: its own expected time plus
   the longest such chain among its dependents), then plan order. Expected times
   are those of each plugin's newest cached result (:meth:`RunCache.expected_durations`);
   a plugin never run before counts 0, and with the cache off all count 0 (plan
   order alone). This orders dispatch only: the plan, its hash and every result
   are the same whatever the history.

The lanes are the plan's: each step carries its lane, and the lane windows of
DESIGN.md are these admission rules rather than tasks of their own.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
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

from .._executors.base import Completion, Executor, JobDone, JobStarted, Ticket
from .._worker.job import Job, JobOutput
from ..errors import EngineInternalError
from . import ENGINE_VERSION
from .cache import CacheKey, RunCache, cacheable, make_key
from .eventlog import EventLog
from .gates import evaluate_gates
from .manifests import PluginSpec
from .preflight import preflight
from .state import RunState, apply


def plugin_seed(seed: int, plugin_id: str) -> int:
    """A per-plugin seed: stable across processes, independent of plan order.

    The first 8 bytes, big-endian, of ``sha256(f"{seed}\x1f{plugin_id}")``.
    """
    digest = hashlib.sha256(f"{seed}\x1f{plugin_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


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
    stall_timeout_s: float = 900.0
    worker_memory_mb: int | None = None


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
        self._waiting_on: dict[str, int] = {}
        self._ready: list[tuple[int, str]] = []  # (plan order, id): deps done
        # Ready, needing a worker: (priority, -critical path, plan order, id).
        self._admit: list[tuple[int, float, int, str]] = []
        self._critical: dict[str, float] = {}
        self._tickets: dict[str, Ticket] = {}  # in flight, by plugin id
        self._abandoned: set[Ticket] = set()  # ended by the stall guard
        self._unfinished: Counter[int] = Counter()  # steps not done, by priority
        self._last_event = time.monotonic()
        self._artifacts = str(spec.run_dir / "artifacts")

    def _append(self, cls: type[Event], **fields: Any) -> Event:
        # Written at the end of the loop's turn (:meth:`_flush`), with the rest of it.
        event = self._log.append(cls, flush=False, **fields)
        self._last_event = event.mono
        apply(self.state, event)
        if self._on_event is not None:
            self._on_event(event)
        return event

    async def run(self) -> RunState:
        try:
            return await self._run()
        finally:
            self._log.flush()

    async def resume(self, state: RunState) -> RunState:
        """Continue an unfinished run from the fold of its log.

        Plugins that finished keep their results; plugins that were dispatched or
        running when the run died are run again (the reducer puts them back to
        pending when it folds ``RunResumed``).
        """
        try:
            return await self._resume(state)
        finally:
            self._log.flush()

    async def _run(self) -> RunState:
        spec = self.spec
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
            workers=self._executor.capacity,
            select=spec.select,
            settings=spec.settings,
            large_dataset_rows=spec.large_dataset_rows,
            lanes=spec.lanes,
            timeouts=spec.timeouts,
            worker_memory_mb=spec.worker_memory_mb,
            stall_timeout_s=spec.stall_timeout_s,
            cache=self._cache is not None,
        )
        self._append(PlanBuilt, plan=spec.plan)
        return await self._drive()

    async def _resume(self, state: RunState) -> RunState:
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
            workers=self._executor.capacity,
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
                self._release_dependents(step.plugin_id)
            else:
                self._unfinished[step.priority] += 1
        for step in plan.steps:
            if not step.depends_on and self.state.plugins[step.plugin_id].phase == "pending":
                heapq.heappush(self._ready, (step.order, step.plugin_id))

        self._critical = critical_paths(
            plan, self._cache.expected_durations() if self._cache is not None else {}
        )
        send, recv = anyio.create_memory_object_stream[Completion | _Stall](math.inf)
        reply = _reply_to(send)
        async with anyio.create_task_group() as tg, recv, send:
            tg.start_soon(self._watch_for_stalls, send)
            try:
                self._advance(reply)
                while self.state.outstanding():
                    if not self._tickets:
                        raise EngineInternalError("plugins outstanding but nothing in flight")
                    self._log.flush()  # the turn's records, in one write, before waiting
                    message: Completion | _Stall | None = await recv.receive()
                    # Handle everything already waiting, then dispatch once.
                    while message is not None:
                        self._handle(message)
                        try:
                            message = recv.receive_nowait()
                        except anyio.WouldBlock:
                            message = None
                    self._advance(reply)
                self._log.flush()
            finally:
                # Cancelled or broken mid-run: this run's jobs must not outlive it.
                for ticket in list(self._tickets.values()):
                    self._executor.cancel(ticket, "CANCELLED", "the run was cancelled")
            tg.cancel_scope.cancel()

        if self._cache is not None:
            await anyio.to_thread.run_sync(self._cache.flush)
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

    def _handle(self, message: Completion | _Stall) -> None:
        if isinstance(message, _Stall):
            self._stalled()
            return
        pid = message.ticket.plugin_id
        if self._tickets.get(pid) is not message.ticket:
            if message.ticket in self._abandoned:
                return  # a job the stall guard already ended
            raise EngineInternalError(f"completion for {pid!r} from a ticket not in flight")
        if isinstance(message, JobStarted):
            self._append(
                PluginStarted,
                plugin_id=pid,
                worker=message.worker,
                pid=message.pid,
                worker_id=message.worker_id,
                executor=self._executor.name,
            )
        else:
            assert isinstance(message, JobDone)
            del self._tickets[pid]
            self._complete(message.output)

    async def _watch_for_stalls(self, send: MemoryObjectSendStream[Completion | _Stall]) -> None:
        """A timer, not a timeout per wait: when no event was appended for
        ``stall_timeout_s`` while jobs are in flight, tell the supervisor's loop."""
        limit = self.spec.stall_timeout_s
        while True:
            await anyio.sleep(max(0.0, self._last_event + limit - time.monotonic()))
            if time.monotonic() - self._last_event >= limit and self._tickets:
                send.send_nowait(_Stall())
                self._last_event = time.monotonic()  # once per silent period

    def _stalled(self) -> None:
        """Record every job a silent run is waiting on (dispatched or running) and
        end each ``failed``/``STALLED`` here, without waiting for the executor: a
        stall may be the executor's own. It is told to cancel them all the same."""
        if not self._tickets:
            return
        order = {s.plugin_id: s.order for s in self.spec.plan.steps}
        stuck = tuple(sorted(self._tickets, key=order.__getitem__))
        idle = self.spec.stall_timeout_s
        self._append(StallDetected, plugins=stuck, idle_s=idle)
        message = f"stopped by the stall detector: no event for {idle:g}s while it was outstanding"
        for pid in stuck:
            ticket = self._tickets.pop(pid)
            self._abandoned.add(ticket)
            self._executor.cancel(ticket, "STALLED", message)
            result = Failed(reason_code="STALLED", message=message)
            self._complete(JobOutput(plugin_id=pid, result=result))

    def _complete(self, output: JobOutput) -> None:
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
            artifact_sha256=output.artifact_sha256,
        )
        if self._cache is not None and cacheable(output.result, ran=True):
            self._cache.store(self._keys[pid], output.result, output.accesses, output.duration_s)
        self._finished(step)

    def _finished(self, step: PlanStep) -> None:
        self._unfinished[step.priority] -= 1
        self._release_dependents(step.plugin_id)

    def _release_dependents(self, plugin_id: str) -> None:
        for child in self.state.plugins[plugin_id].step.dependents:
            self._waiting_on[child] -= 1
            if self._waiting_on[child] == 0 and self.state.plugins[child].phase == "pending":
                heapq.heappush(self._ready, (self.state.plugins[child].step.order, child))

    def _admissible(self, priority: int) -> bool:
        """The admission rule (module docstring, 2 and 3)."""
        in_flight = len(self._tickets)
        capacity = self._executor.capacity
        if in_flight < capacity:
            return True
        if in_flight >= capacity * (1 + self._executor.pipeline):
            return False
        best = min(p for p, n in self._unfinished.items() if n > 0)
        return priority <= best

    def _advance(self, reply: Callable[[Completion], None]) -> None:
        """Resolve every ready step that needs no worker (an upstream failed, or the
        cache has its result), then dispatch the others in plan order, as admission
        allows. Each step passes the first part once, so this is O(log n) a step."""
        ready, admit = self._ready, self._admit
        while ready:
            order, pid = heapq.heappop(ready)
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
                self._finished(step)
            elif self._cache is None or not self._from_cache(step):
                heapq.heappush(admit, (step.priority, -self._critical[pid], order, pid))
        while admit:
            step = self.state.plugins[admit[0][3]].step
            if not self._admissible(step.priority):
                return
            heapq.heappop(admit)
            self._append(PluginDispatched, plugin_id=step.plugin_id, lane=step.lane)
            self._tickets[step.plugin_id] = self._executor.submit(
                self._job(step),
                timeout_s=step.timeout_s,
                memory_mb=self.spec.worker_memory_mb,
                priority=step.priority,
                reply=reply,
            )

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
            dataset=self.spec.dataset,
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
        self._finished(step)
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
            artifacts_dir=f"{self._artifacts}/{step.plugin_id}",
            data_access=plugin.manifest.data_access,
        )


class _Stall:
    """The stall timer fired (a message to the supervisor's own loop)."""


def _reply_to(
    send: MemoryObjectSendStream[Completion | _Stall],
) -> Callable[[Completion], None]:
    """The executor's ``reply`` for one run: queue the completion; after the run
    ended (stream closed) there is nobody to tell, and the log has everything."""

    def reply(completion: Completion) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            send.send_nowait(completion)

    return reply


def critical_paths(plan: Plan, expected: Mapping[str, float]) -> dict[str, float]:
    """For each step, its expected run time plus the longest such chain among its
    dependents (rule 4 of the module docstring)."""
    steps = {s.plugin_id: s for s in plan.steps}
    found: dict[str, float] = {}
    # Plan order is topological (dependencies first): reversed, each step's
    # dependents are done before it.
    for step in reversed(plan.steps):
        below = (found[d] for d in step.dependents if d in steps)
        found[step.plugin_id] = expected.get(step.plugin_id, 0.0) + max(below, default=0.0)
    return found


def _affected(step: PlanStep) -> tuple[str, ...]:
    return tuple(sorted(set(step.dependents) | set(step.downstream)))


def run_status(mode: Mode, counts: Mapping[str, int], gate_breaches: int) -> str:
    """Strict: any failed plugin or failed quality gate fails the run.
    Legacy (the pre-contract baseline): permissive, the run is ok."""
    if mode == "legacy":
        return "ok"
    return "failed" if counts.get("failed", 0) or gate_breaches else "ok"
