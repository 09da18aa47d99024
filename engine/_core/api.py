"""The library API: what an async service, the CLI and the tests all call."""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from attrs import define

from contracts import DatasetInfo, Ok, Plan, Report, stable_hash
from contracts.events import Event, PluginFinished
from contracts.plan import Mode

from .._data.ingest import ingest
from .._executors import Executor, make_executor
from .._render import ChartCache, draw_charts, explanation_charts
from .._render.charts import ChartProcess
from ..errors import ConfigError, EngineError
from .artifacts import write_artifacts
from .cache import RESULT_LIBRARIES, ResultCache, RunCache
from .config import ProjectSettings
from .eventlog import LOG_NAME, EventLog, read_log
from .manifests import PluginSpec, SpecCache, load_plugins
from .plan import MODES, build_plan
from .state import RunState, fold
from .supervisor import RunSpec, Supervisor

if TYPE_CHECKING:
    from telemetry.export import ExportStats

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DATA_CACHE = "_datasets"
CACHE_DIR = "_cache"


def new_run_id() -> str:
    """Unique and sortable; never part of the plan, a result or a cache key."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def check_run_id(run_id: str) -> str:
    if not RUN_ID_RE.match(run_id) or run_id in {".", ".."}:
        raise ConfigError(
            f"run id {run_id!r}: use letters, digits, '.', '_' or '-' (no path separators)"
        )
    return run_id


@define(kw_only=True)
class RunResult:
    """A finished run."""

    run_id: str
    run_dir: Path
    status: str
    report: Report
    state: RunState
    telemetry: ExportStats | None = None
    """What the live OTLP export achieved (``None`` without ``otlp_endpoint``)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class RunHandle:
    """A run in progress. ``async for event in handle`` yields every event as the
    supervisor appends it; ``handle.result`` is available once the run finished."""

    def __init__(
        self, run_id: str, run_dir: Path, events: MemoryObjectReceiveStream[Event]
    ) -> None:
        self.run_id = run_id
        self.run_dir = run_dir
        self._events = events
        self._result: RunResult | None = None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        # Iterate inside the ``open_run`` block: the stream closes when it ends.
        async for event in self._events:
            yield event

    @property
    def result(self) -> RunResult:
        if self._result is None:
            raise EngineError(f"run {self.run_id} has not finished")
        return self._result


def _trace_json(run_dir: Path, events: list[Event] | None) -> bytes:
    """``trace.json`` of the run's events (``None``: read back from its log)."""
    from telemetry.export import trace_json
    from telemetry.records import trace_from_events

    return trace_json(
        trace_from_events(events if events is not None else read_log(run_dir / LOG_NAME))
    )


class _BackgroundClose:
    """``log.close()`` (its final sync) in a thread of its own, started at once."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._done = threading.Event()
        self._error: BaseException | None = None
        threading.Thread(target=self._close, name="event-log-close").start()

    def _close(self) -> None:
        try:
            self._log.close()
        except BaseException as exc:
            self._error = exc
        finally:
            self._done.set()

    def synced(self) -> bool:
        """Wait for the close; whether it succeeded."""
        self._done.wait()
        return self._error is None

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error


def _new_log(run_dir: Path) -> EventLog:
    run_dir.mkdir(parents=True)
    return EventLog(run_dir / LOG_NAME)


def check_timeouts(plan: Plan, stall_timeout_s: float) -> None:
    """A plugin allowed to run longer than the stall timeout would end ``STALLED``
    instead of ``TIMEOUT``, by accident: refuse the run instead."""
    long = [
        f"{s.plugin_id} ({s.timeout_s:g}s)" for s in plan.steps if s.timeout_s >= stall_timeout_s
    ]
    if long:
        raise ConfigError(
            f"timeouts: {', '.join(long)} not below stall_timeout_s ({stall_timeout_s:g}s); "
            "lower the plugin timeouts or raise stall_timeout_s"
        )


def prepare_plan(
    plugins_dir: str | Path,
    dataset: DatasetInfo | None = None,
    *,
    mode: Mode = "two_lane_strict",
    seed: int = 0,
    select: Sequence[str] | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    lanes: Mapping[str, str] | None = None,
    timeouts: Mapping[str, float] | None = None,
) -> Plan:
    """Load and validate the manifests and build the plan (no run, no workers)."""
    plugins = load_plugins(plugins_dir)
    return build_plan(
        plugins,
        mode=mode,
        seed=seed,
        dataset_schema=dataset.schema_view() if dataset else (),
        settings=settings,
        select=select,
        lanes=lanes,
        timeouts=timeouts,
    )


class Engine:
    """Runs the plugin fleet over datasets. Use as ``async with Engine(...) as e``.

    The worker pool is started once on entry and reused by every run.

    Args:
        plugins_dir: folder of ``<id>/plugin.yaml`` plugins.
        runs_dir: where run directories (``<runs_dir>/<run_id>/``) are created.
        workers: worker processes (default: the number of CPUs, at most 8); for
            ``dask`` without a scheduler, the local cluster's worker processes.
        executor: ``process`` (default), ``inline`` (debugging, one at a time),
            ``dask`` (a Dask cluster, see ``docs/distributed.md``), or an
            :class:`Executor` instance.
        scheduler: the Dask scheduler's address (``tcp://host:8786``) for
            ``executor="dask"``; without it, a local cluster is started.
        data_store: where the dask executor publishes datasets for its workers (a
            folder or an fsspec URL every worker can read); required with
            ``scheduler``.
        mode: ``two_lane_strict`` (default) or ``legacy``.
        settings: per-plugin setting overrides ``{plugin_id: {name: value}}``.
        large_dataset_rows: above this many rows, plugins that declare only
            unbounded loads are failed before they start.
        lanes: lane overrides for experiments, ``{plugin_id: lane}``.
        timeouts: per-plugin timeout overrides in seconds.
        cache: reuse results whose code, settings, data, policy, seed and
            upstream are unchanged (stored under ``<runs_dir>/_cache``).
        memory_limit_mb: resident memory a plugin's job may add to its worker's
            (``None``: no cap); above it the plugin ends ``RESOURCE_LIMIT``.
            Recorded in ``run_started``; a resume uses the recorded value.
        stall_timeout_s: with plugins outstanding and no event for this long, the
            stall is recorded and the outstanding plugins end ``STALLED``.
        otlp_endpoint: export every run's spans live over OTLP/HTTP to this URL
            (``http://localhost:4318`` or its ``/v1/traces``), and its lane metrics
            at the end. Every run writes ``trace.json`` either way.
    """

    def __init__(
        self,
        *,
        plugins_dir: str | Path = "plugins",
        runs_dir: str | Path = "runs",
        workers: int | None = None,
        executor: str | Executor = "process",
        scheduler: str | None = None,
        data_store: str | Path | None = None,
        mode: Mode = "two_lane_strict",
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        large_dataset_rows: int = 1_000_000,
        lanes: Mapping[str, str] | None = None,
        timeouts: Mapping[str, float] | None = None,
        cache: bool = True,
        memory_limit_mb: int | None = 4096,
        stall_timeout_s: float = 900.0,
        otlp_endpoint: str | None = None,
        trace_file: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode: expected one of {list(MODES)}, got {mode!r}")
        if workers is not None and workers < 1:
            raise ConfigError(f"workers: must be at least 1, got {workers}")
        self.plugins_dir = Path(plugins_dir)
        self.runs_dir = Path(runs_dir)
        self.mode: Mode = mode
        self.settings = {k: dict(v) for k, v in (settings or {}).items()}
        if large_dataset_rows < 0:
            raise ConfigError(f"large_dataset_rows: must be >= 0, got {large_dataset_rows}")
        self.large_dataset_rows = large_dataset_rows
        self.lanes = dict(sorted((lanes or {}).items()))
        self.timeouts = dict(sorted((timeouts or {}).items()))
        if stall_timeout_s <= 0:
            raise ConfigError(f"stall_timeout_s: must be positive, got {stall_timeout_s}")
        self.stall_timeout_s = stall_timeout_s
        if otlp_endpoint is not None:
            from telemetry.export import signal_endpoint

            try:
                signal_endpoint(otlp_endpoint)
            except ValueError as exc:
                raise ConfigError(f"otlp_endpoint: {exc}") from None
        self.otlp_endpoint = otlp_endpoint
        self.trace_file = trace_file
        if memory_limit_mb is not None and memory_limit_mb < 1:
            raise ConfigError(
                f"memory_limit_mb: must be at least 1 (or None), got {memory_limit_mb}"
            )
        self.memory_limit_mb = memory_limit_mb
        self._executor = (
            executor
            if not isinstance(executor, str)
            else make_executor(
                executor,
                workers,
                scheduler=scheduler,
                data_store=None if data_store is None else str(data_store),
                libraries=RESULT_LIBRARIES,
            )
        )
        self._stack: contextlib.AsyncExitStack | None = None
        self._entered = False
        self._specs = SpecCache()
        self._last_plan: tuple[str, Plan] | None = None  # (inputs' hash, plan)
        self.use_cache = cache
        self._store: ResultCache | None = None
        # report.html's charts are drawn in a child process, off this process's GIL
        # (started at the first chart to draw, stopped on exit).
        self._drawer = ChartProcess()

    @classmethod
    def from_settings(
        cls, settings: ProjectSettings, *, executor: str | Executor | None = None, **overrides: Any
    ) -> Engine:
        """An engine configured by project settings (``engine.yaml``); keyword
        arguments override them (for example ``mode`` or ``workers`` from a CLI)."""
        kind = executor or settings.executor
        kwargs: dict[str, Any] = {
            "plugins_dir": settings.plugins_dir,
            "runs_dir": settings.runs_dir,
            "workers": settings.workers,
            "mode": settings.mode,
            "settings": settings.settings,
            "large_dataset_rows": settings.large_dataset_rows,
            "lanes": settings.lanes,
            "timeouts": settings.timeouts,
            "memory_limit_mb": settings.worker_memory_mb,
            "stall_timeout_s": settings.stall_timeout_s,
            "trace_file": settings.trace_file,
        }
        if kind == "dask":  # the file's cluster, unless the caller chose another executor
            kwargs.update(scheduler=settings.scheduler, data_store=settings.data_store)
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(executor=kind, **kwargs)

    @property
    def executor(self) -> Executor:
        return self._executor

    async def __aenter__(self) -> Engine:
        if self.use_cache:
            self._store = await anyio.to_thread.run_sync(ResultCache, self.runs_dir / CACHE_DIR)
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            await stack.enter_async_context(self._executor)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._entered = False
        stack, self._stack = self._stack, None
        try:
            if stack is not None:
                await stack.__aexit__(exc_type, exc, tb)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._drawer.close)
                if self._store is not None:
                    await anyio.to_thread.run_sync(self._store.close)
            self._store = None

    def ingest(self, dataset: str | Path) -> DatasetInfo:
        """Normalize ``dataset`` (cached by content fingerprint under ``runs_dir``)."""
        return ingest(dataset, self.runs_dir / DATA_CACHE)

    def _plan(
        self,
        plugins: tuple[PluginSpec, ...],
        info: DatasetInfo,
        mode: Mode,
        seed: int,
        select: Sequence[str] | None,
    ) -> Plan:
        """:func:`build_plan`, reused while everything it depends on is the same: the
        plugins' code hashes (their manifests included), the schema, and the mode,
        seed, selection and overrides of the run (the plan is a pure function of them)."""
        schema = info.schema_view()
        key = stable_hash(
            {
                "plugins": [(p.id, p.code_hash, str(p.directory)) for p in plugins],
                "schema": schema,
                "mode": mode,
                "seed": seed,
                "select": None if select is None else sorted(select),
                "settings": self.settings,
                "lanes": self.lanes,
                "timeouts": self.timeouts,
            }
        )
        if self._last_plan is not None and self._last_plan[0] == key:
            return self._last_plan[1]
        plan = build_plan(
            plugins,
            mode=mode,
            seed=seed,
            dataset_schema=schema,
            settings=self.settings,
            select=select,
            lanes=self.lanes,
            timeouts=self.timeouts,
        )
        self._last_plan = (key, plan)  # the last one only: a service runs the same fleet
        return plan

    def _prepare(
        self,
        dataset: str | Path,
        seed: int,
        select: Sequence[str] | None,
        mode: Mode,
        run_id: str,
    ) -> RunSpec:
        plugins = load_plugins(self.plugins_dir, cache=self._specs)
        info = self.ingest(dataset)
        plan = self._plan(plugins, info, mode, seed, select)
        check_timeouts(plan, self.stall_timeout_s)
        run_dir = self.runs_dir / run_id
        if run_dir.exists():
            raise ConfigError(f"{run_dir}: run directory already exists")
        return RunSpec(
            run_id=run_id,
            run_dir=run_dir,
            mode=mode,
            seed=seed,
            dataset=info,
            plugins={p.id: p for p in plugins},
            plan=plan,
            plugins_dir=str(self.plugins_dir),
            select=tuple(sorted(select)) if select is not None else (),
            settings={k: dict(v) for k, v in sorted(self.settings.items())},
            large_dataset_rows=self.large_dataset_rows,
            lanes=self.lanes,
            timeouts=self.timeouts,
            cache=RunCache(self._store, [s.plugin_id for s in plan.steps])
            if self._store is not None
            else None,
            stall_timeout_s=self.stall_timeout_s,
            worker_memory_mb=self.memory_limit_mb,
        )

    async def run(
        self,
        dataset: str | Path,
        *,
        seed: int = 0,
        select: Sequence[str] | None = None,
        mode: Mode | None = None,
        run_id: str | None = None,
    ) -> RunResult:
        """Run the fleet over ``dataset`` and return the finished run."""
        async with self.open_run(
            dataset, seed=seed, select=select, mode=mode, run_id=run_id
        ) as handle:
            pass
        return handle.result

    @asynccontextmanager
    async def open_run(
        self,
        dataset: str | Path,
        *,
        seed: int = 0,
        select: Sequence[str] | None = None,
        mode: Mode | None = None,
        run_id: str | None = None,
    ) -> AsyncIterator[RunHandle]:
        """Start a run and yield a handle whose events can be iterated live.

        Configuration, manifest and dataset errors are raised here, before the
        run directory is created. Leaving the block waits for the run to end;
        leaving it with an exception cancels the run (its log stays, unfinished).
        """
        self._require_entered()
        run_id = check_run_id(run_id or new_run_id())
        spec = await anyio.to_thread.run_sync(
            self._prepare, dataset, seed, select, mode or self.mode, run_id
        )
        async with self._drive(spec, None, None) as handle:
            yield handle

    async def resume(self, run_dir: str | Path) -> RunResult:
        """Continue a run that was interrupted (even by SIGKILL) and return it finished.

        A torn last record of the log is cut; every plugin that finished keeps its
        result; the rest run. The run's recorded mode, seed, settings and plugins
        are used (not this engine's): if the plugins or settings changed since the
        run started, the plan hash differs and resuming is refused.
        """
        async with self.open_resume(run_dir) as handle:
            pass
        return handle.result

    @asynccontextmanager
    async def open_resume(self, run_dir: str | Path) -> AsyncIterator[RunHandle]:
        """Like :meth:`open_run`, for :meth:`resume`: iterate the new events live."""
        self._require_entered()
        spec, state, log = await anyio.to_thread.run_sync(self._prepare_resume, Path(run_dir))
        async with self._drive(spec, state, log) as handle:
            yield handle

    def _require_entered(self) -> None:
        if not self._entered:
            raise EngineError("use the engine as `async with Engine(...) as engine:`")

    def _prepare_resume(self, run_dir: Path) -> tuple[RunSpec, RunState, EventLog]:
        # Locked first: a torn tail is cut, and the run continued, by one engine only.
        log, events = EventLog.reopen(run_dir / LOG_NAME)
        try:
            spec, state = self._resume_spec(run_dir, events)
        except BaseException:
            log.close()
            raise
        return spec, state, log

    def _resume_spec(self, run_dir: Path, events: list[Event]) -> tuple[RunSpec, RunState]:
        path = run_dir / LOG_NAME
        state = fold(events)
        started = state.started
        if started is None:
            raise ConfigError(f"{path}: the log has no run_started record; start a new run")
        info = started.dataset
        if not Path(info.db_path).is_file():
            info = self.ingest(info.source)
            if info.fingerprint != started.dataset.fingerprint:
                raise ConfigError(
                    f"{started.dataset.source}: the dataset changed since the run started; "
                    "start a new run"
                )
        plugins = load_plugins(started.plugins_dir, cache=self._specs)
        plan = build_plan(
            plugins,
            mode=started.mode,
            seed=started.seed,
            dataset_schema=info.schema_view(),
            settings=started.settings,
            select=started.select or None,
            lanes=started.lanes,
            timeouts=started.timeouts,
        )
        if state.plan is not None and state.plan.plan_hash != plan.plan_hash:
            raise ConfigError(
                f"{run_dir}: plugins or settings changed since the run started "
                f"(plan {state.plan.plan_hash[:12]} is now {plan.plan_hash[:12]}); "
                "start a new run"
            )
        # What decides outcomes is what the run recorded, not this engine's settings
        # (older logs recorded none of these: then this engine's apply).
        stall_timeout_s = (
            started.stall_timeout_s if started.stall_timeout_s is not None else self.stall_timeout_s
        )
        memory_mb = (  # None is a recorded value too (no cap): test a field it came with
            started.worker_memory_mb
            if started.stall_timeout_s is not None
            else self.memory_limit_mb
        )
        use_cache = self._store is not None and started.cache is not False
        check_timeouts(plan, stall_timeout_s)
        spec = RunSpec(
            run_id=started.run_id,
            run_dir=run_dir,
            mode=started.mode,
            seed=started.seed,
            dataset=info,
            plugins={p.id: p for p in plugins},
            plan=state.plan or plan,
            plugins_dir=started.plugins_dir,
            select=started.select,
            settings={k: dict(v) for k, v in started.settings.items()},
            large_dataset_rows=started.large_dataset_rows,
            lanes=dict(started.lanes),
            timeouts=dict(started.timeouts),
            cache=RunCache(self._store, [s.plugin_id for s in plan.steps])
            if self._store is not None and use_cache
            else None,
            stall_timeout_s=stall_timeout_s,
            worker_memory_mb=memory_mb,
        )
        return spec, state

    @asynccontextmanager
    async def _drive(
        self, spec: RunSpec, state: RunState | None, log: EventLog | None
    ) -> AsyncIterator[RunHandle]:
        send, recv = anyio.create_memory_object_stream[Event](math.inf)
        handle = RunHandle(spec.run_id, spec.run_dir, recv)
        with recv:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._execute, spec, state, log, send, handle)
                yield handle

    async def _execute(
        self,
        spec: RunSpec,
        state: RunState | None,
        log: EventLog | None,
        send: MemoryObjectSendStream[Event],
        handle: RunHandle,
    ) -> None:
        # Imported here, not at the top: worker processes import ``engine`` and never
        # need the OTLP exporter.
        # Its first import (OpenTelemetry, protobuf) takes a while: not on the loop.
        await anyio.to_thread.run_sync(importlib.import_module, "telemetry.export")
        from telemetry.export import LiveTraceExporter
        from telemetry.metrics import export_lane_metrics

        # With an endpoint, each plugin's span is exported as it ends: the loop only
        # hands each event to the exporter's thread, which folds and sends. trace.json
        # is a pure function of the log, built once at the end, off the loop.
        tracer = LiveTraceExporter(self.otlp_endpoint) if self.otlp_endpoint else None
        if state is not None and tracer is not None:
            tracer.prime(await anyio.to_thread.run_sync(read_log, spec.run_dir / LOG_NAME))

        # trace.json is folded after the run from the run's events: kept here as they
        # are appended (a resumed run reads its log back instead, for the part before).
        events: list[Event] | None = [] if self.trace_file and state is None else None

        # Drawn charts are reused like results: not when the cache is off. An
        # explanation plugin's charts are drawn as it finishes, in one thread beside the
        # run (their keys in the page are known then; the chart process starts at the
        # first); report.html takes them from `charts` and draws only the decisions'.
        charts = ChartCache(self.runs_dir / CACHE_DIR / "charts" if spec.cache else None)
        predraw = ThreadPoolExecutor(1, thread_name_prefix="engine-charts")

        def publish(event: Event) -> None:
            if (
                isinstance(event, PluginFinished)
                and event.lane == "explanation"
                and isinstance(event.result, Ok)
                and any(f.charts for f in event.result.findings)
            ):
                drawing = explanation_charts(event.plugin_id, event.result.findings)
                predraw.submit(draw_charts, drawing, charts, self._drawer)
            if events is not None:
                events.append(event)
            if tracer is not None:
                tracer.on_event(event)
            # If the caller stopped listening, the log still has everything.
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                send.send_nowait(event)

        with send:
            if log is None:
                log = await anyio.to_thread.run_sync(_new_log, spec.run_dir)
            try:
                try:
                    supervisor = Supervisor(spec, self._executor, log, publish, spec.cache)
                    state = await (supervisor.run() if state is None else supervisor.resume(state))
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(log.close)  # the final fsync
                    raise
                # The final fsync runs while the report is rendered; the report's
                # files are renamed into place only once the log is on disk.
                closing = _BackgroundClose(log)
                try:
                    await anyio.to_thread.run_sync(predraw.shutdown)  # the charts drawn so far
                    report = await anyio.to_thread.run_sync(
                        write_artifacts,
                        spec.run_dir,
                        state,
                        log.last_hash,
                        charts,
                        self._drawer,
                        closing.synced,
                        # trace.json is a pure function of the log: folded from the
                        # events once, here, into compact records and encoded.
                        functools.partial(_trace_json, spec.run_dir, events)
                        if self.trace_file
                        else None,
                    )
                finally:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(closing.synced)
                closing.raise_error()
            finally:
                predraw.shutdown(wait=False, cancel_futures=True)  # done already, unless it failed
                if tracer is not None:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(tracer.close)
            stats = None
            if tracer is not None:
                stats = tracer.stats
                if not stats.ok:
                    stats.errors.append("lane metrics not sent (the span export failed)")
                elif not await anyio.to_thread.run_sync(
                    lambda: export_lane_metrics(
                        report.lane_metrics, self.otlp_endpoint or "", run_id=spec.run_id
                    )
                ):
                    stats.errors.append("lane metrics export failed")
            handle._result = RunResult(
                run_id=spec.run_id,
                run_dir=spec.run_dir,
                status=report.status,
                report=report,
                state=state,
                telemetry=stats,
            )
