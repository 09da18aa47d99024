"""The Dask executor: plugin jobs on a Dask distributed cluster, behind the same
contract as the process pool (:mod:`.base`).

- **Two event loops, one bridge.** Dask's client is asyncio only; the engine runs
  under asyncio or trio. The client (and, without a scheduler address, a
  ``LocalCluster`` of worker processes) lives on its own asyncio loop in a thread
  started with anyio's ``start_blocking_portal``. The executor calls into it with
  ``portal.start_task_soon`` (submit, cancel: never waiting; the jobs placed
  together go in one call, and to the scheduler as one graph per worker and
  priority, not one ``update-graph`` per job) and ``portal.call_async`` (start,
  stop, and one long poll that returns every message queued since the last), so
  neither loop ever blocks on the other and a burst of submissions or completions
  costs one hop.
- **Placement is the executor's.** It knows each worker's threads and pins every
  job to the worker it chose (``workers=[address]``, ``allow_other_workers=False``,
  ``retries=0``): Dask never moves or re-runs a job on its own, so a job that
  began runs at most once. A job goes to the least loaded worker, or to one that
  already holds its code if that one is at most two jobs a thread busier (nothing
  shipped, unpacked and hashed again). Jobs wait in priority order; a worker gets
  up to ``1 + pipeline`` per thread: 2 normally, 65 while recent jobs are under
  20 ms, since a round trip through the scheduler takes tens of milliseconds and a
  worker with short jobs must never wait for its next one. Finished results are
  fetched in batches; while jobs are short a batch waits up to 50 ms for the jobs
  still out (not once none is left), so a fetch, a trip through the scheduler to
  the workers, brings many results rather than one or two.
- **Real starts.** The worker says when a job actually begins (a Dask event,
  forwarded to this client): that is ``JobStarted``, and the timeout runs from it.
- **Lost workers.** The scheduler's ``remove-worker`` event ends the job that was
  running there ``WORKER_CRASHED``, naming the worker's address; jobs it held that
  never began are placed again. Workers that join are used once their library
  versions are checked. With no worker left for ``no_worker_timeout_s``, waiting
  jobs end ``EXECUTOR_UNAVAILABLE`` and the run goes on.
- **Content, never paths.** Code travels as bundles named by hash (the engine's
  worker code once per worker, a plugin folder once per code hash and worker); the
  dataset is published once per fingerprint to the data store (a folder or fsspec
  URL every worker can read) and fetched by each worker into a local copy checked
  against its SHA-256. Artifacts come back in the result with their hashes and are
  written to the run directory as in a local run. See :mod:`.dask_worker`.
- **Versions.** On start, Python, the machine type and the version of every
  library that computes results are compared between the client and each worker; a
  mismatch is a :class:`~engine.errors.ConfigError` naming the package and worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import json
import math
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import anyio
import msgspec
from anyio.abc import TaskGroup
from anyio.from_thread import BlockingPortal

import contracts
from contracts import CONTRACTS_VERSION, DatasetInfo, Failed

from .._worker.job import FROM_WORKER_DECODER, Job, JobEnded, JobOutput
from ..errors import ConfigError, EngineError, EngineInternalError
from . import dask_worker
from .base import JobDone, JobStarted, Reply, Ticket
from .process import WORKER_ENVIRONMENT

RUNTIME_LIBRARIES = (
    "attrs",
    "cloudpickle",
    "dask",
    "distributed",
    "duckdb",
    "fsspec",
    "msgspec",
    "numpy",
    "pyarrow",
)
"""Checked on every worker beside the libraries that compute results: what the
engine's worker code and this executor's worker side run on."""

TaskState = Literal["waiting", "queued", "sent", "running", "done"]
ENGINE_DIR = Path(__file__).resolve().parents[1]


class _Task:
    __slots__ = (
        "attempt",
        "job",
        "key",
        "memory_mb",
        "priority",
        "reply",
        "started_at",
        "state",
        "ticket",
        "timeout_s",
        "worker",
    )

    def __init__(
        self,
        ticket: Ticket,
        job: Job,
        timeout_s: float,
        memory_mb: int | None,
        priority: int,
        reply: Reply,
    ) -> None:
        self.ticket = ticket
        self.job = job
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.priority = priority
        self.reply = reply
        self.state: TaskState = "waiting"
        self.worker: _Worker | None = None
        self.key = ""
        self.attempt = 0
        self.started_at: float | None = None


class _Worker:
    """A Dask worker the executor places jobs on."""

    def __init__(self, address: str, index: int, nthreads: int) -> None:
        self.address = address
        self.index = index
        self.nthreads = max(1, nthreads)
        self.tasks: dict[str, _Task] = {}  # sent or running, by Dask key
        self.shipped: set[str] = set()  # bundle hashes this worker was sent


AFFINITY_SLACK = 2
"""How many more jobs a thread a worker holding a job's code may have than the least
loaded one and still be chosen for it."""


def _load(worker: _Worker) -> tuple[float, int]:
    return len(worker.tasks) / worker.nthreads, worker.index


_Send = tuple[str, bytes, str, int]
"""A placed job for the Dask loop: (key, request, worker address, priority)."""


class _DataRef(msgspec.Struct, frozen=True):
    fingerprint: str
    url: str
    sha256: str


def runtime_bundle() -> tuple[str, bytes, str]:
    """The engine's worker code as one bundle: (hash, bundle, contracts hash).

    ``contracts`` (its Python sources), ``engine/errors.py`` and ``engine/_worker``,
    under an ``engine/__init__.py`` of its own, so a job process imports exactly this
    and nothing of the kernel.
    """
    sdk = dask_worker.read_folder(Path(contracts.__file__).resolve().parent, only=".py")
    files = {f"contracts/{rel}": data for rel, data in sdk.items()}
    files["engine/__init__.py"] = b'"""The engine\'s worker code, shipped by content."""\n'
    files["engine/errors.py"] = (ENGINE_DIR / "errors.py").read_bytes()
    for rel, data in dask_worker.read_folder(ENGINE_DIR / "_worker", only=".py").items():
        files[f"engine/_worker/{rel}"] = data
    digest = dask_worker.tree_digest(files.items())
    return digest, dask_worker.pack(files), dask_worker.contracts_hash(sdk)


def publish_dataset(store: str, info: DatasetInfo) -> _DataRef:
    """Put the normalized dataset in the data store once per fingerprint.

    ``<store>/datasets/<fingerprint>/<sha256>.duckdb``, named by its own hash (two
    clients publishing at once write the same bytes to the same name), then
    ``manifest.json`` naming it: a dataset whose manifest exists is never sent again.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(store)
    base = f"{root.rstrip('/')}/datasets/{info.fingerprint}"
    manifest = f"{base}/manifest.json"
    if fs.exists(manifest):
        sha256 = json.loads(fs.cat_file(manifest))["sha256"]
    else:
        h = hashlib.sha256()
        with open(info.db_path, "rb") as fh:
            while chunk := fh.read(8 << 20):
                h.update(chunk)
        sha256 = h.hexdigest()
        fs.makedirs(base, exist_ok=True)
        target = f"{base}/{sha256}.duckdb"
        if not fs.exists(target):
            tmp = f"{base}/.tmp-{secrets.token_hex(4)}"
            fs.put_file(info.db_path, tmp)
            fs.mv(tmp, target)
        tmp = f"{base}/.tmp-{secrets.token_hex(4)}.json"
        fs.pipe_file(tmp, json.dumps({"sha256": sha256}).encode())
        fs.mv(tmp, manifest)
    url = fs.unstrip_protocol(f"{base}/{sha256}.duckdb")
    return _DataRef(fingerprint=info.fingerprint, url=url, sha256=sha256)


def _check_versions(expected: Mapping[str, str], found: Mapping[str, Mapping[str, str]]) -> None:
    problems = [
        f"{address}: {name} {versions.get(name, 'absent')} (the client has {want})"
        for address, versions in sorted(found.items())
        for name, want in expected.items()
        if versions.get(name) != want
    ]
    if problems:
        raise ConfigError(
            "Dask workers differ from the client in what computes results: "
            + "; ".join(problems)
            + ". Install the client's versions on every worker (docs/distributed.md)."
        )


def _write_artifacts(folder: Path, files: Sequence[tuple[str, str, bytes]]) -> dict[str, str]:
    """Write returned artifact files under ``folder`` (each atomically), checking
    each against its hash; returns ``{path: sha256}``."""
    written: dict[str, str] = {}
    for rel, sha256, data in files:
        parts = rel.split("/")
        if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise EngineError(f"artifact path {rel!r} leaves the artifacts folder")
        if hashlib.sha256(data).hexdigest() != sha256:
            raise EngineError(f"artifact {rel!r} arrived damaged (hash mismatch)")
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        written[rel] = sha256
    return written


class _Remote:
    """The executor's half on the Dask client's own asyncio loop (the portal's)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.client: Any = None
        self.cluster: Any = None
        self._futures: dict[str, Any] = {}
        self._waiters: set[Any] = set()
        self._messages: list[tuple[Any, ...]] = []
        self._finished: list[tuple[str, Any]] = []
        self._gathering: Any = None
        self._flush: Any = None  # set when every job still out has finished
        self._window_s = 0.0  # the gather window (0: fetch at once)
        self._wake: Any = None
        self._libraries: tuple[str, ...] = ()
        self._expected: dict[str, str] = {}

    async def start(
        self,
        scheduler: str | None,
        n_workers: int,
        plugin: Any,
        libraries: tuple[str, ...],
        timeout_s: float,
    ) -> list[tuple[str, int]]:
        """Connect (or start a local cluster), check versions, install the plugin;
        the workers as (address, threads)."""
        import asyncio

        import cloudpickle
        from distributed import Client, LocalCluster

        # The host plugin and the version check travel by value: workers need no
        # engine installed.
        cloudpickle.register_pickle_by_value(dask_worker)
        self._wake = asyncio.Event()
        self._flush = asyncio.Event()
        self._libraries = libraries
        self._expected = dask_worker.worker_environment(libraries)
        if scheduler is None:
            self.cluster = await LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                asynchronous=True,
                host="127.0.0.1",  # one machine: nothing listens beyond it
                dashboard_address=None,
                # The scheduler's HTTP routes (health, metrics) on a port of its own
                # choosing, never the dashboard's well-known one.
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            )
        try:
            self.client = await Client(  # type: ignore[no-untyped-call]
                scheduler or self.cluster,
                asynchronous=True,
                set_as_default=False,
                timeout=timeout_s,
            )
            # Before any job: the subscriptions travel on the same ordered stream.
            self.client.subscribe_topic(self.topic, self._on_started)
            self.client.subscribe_topic("all", self._on_cluster)
            try:
                await self.client.wait_for_workers(1, timeout=timeout_s)
            except TimeoutError:
                raise EngineError(
                    f"no Dask worker joined the scheduler at {self.client.scheduler.address} "
                    f"within {timeout_s:g}s"
                ) from None
            found = await self.client.run(dask_worker.worker_environment, libraries)
            _check_versions(self._expected, found)
            await self.client.register_plugin(
                dask_worker.SchedulerInstaller(plugin.name, plugin.source), name=plugin.name
            )
            await self.client.register_plugin(plugin, name=plugin.name)
            identity = await self.client.scheduler.identity(n_workers=-1)
        except BaseException:
            await self.close()
            raise
        return sorted(
            (address, int(info.get("nthreads", 1)))
            for address, info in identity["workers"].items()
            if address in found
        )

    def submit(self, run_task: Callable[..., Any], jobs: Sequence[_Send]) -> None:
        """Submit every job the executor placed in one pass (one hop between the loops),
        as one graph per worker and priority: the scheduler takes in, and the client
        packs, one ``update-graph`` for them all rather than one per job. Within a
        graph Dask runs the jobs in the order given, which is the executor's."""
        import asyncio

        groups: dict[tuple[str, int], list[tuple[str, bytes]]] = {}
        for key, request, address, priority in jobs:  # in placing order: kept
            groups.setdefault((address, priority), []).append((key, request))
        for (address, priority), batch in groups.items():
            keys = [key for key, _ in batch]
            try:
                futures = self.client.map(
                    run_task,
                    [request for _, request in batch],
                    key=keys,
                    workers=[address],
                    allow_other_workers=False,
                    retries=0,
                    priority=-priority,  # Dask runs higher numbers first
                    pure=False,
                )
            except Exception as exc:
                for key in keys:
                    self._post(("done", key, None, f"{type(exc).__name__}: {exc}"))
                continue
            for key, future in zip(keys, futures, strict=True):
                self._futures[key] = future
                waiter = asyncio.ensure_future(self._result(key, future))
                self._waiters.add(waiter)
                waiter.add_done_callback(self._waiters.discard)

    async def _result(self, key: str, future: Any) -> None:
        """Wait for one job's task; finished results are fetched in batches."""
        from distributed.client import FutureCancelledError

        try:
            await future._state.wait()  # what Future.result waits on, without the fetch
            if future.status == "finished":
                self._finished.append((key, future))
                if self._gathering is None or self._gathering.done():
                    self._gathering = asyncio.ensure_future(self._gather())
                    self._waiters.add(self._gathering)
                    self._gathering.add_done_callback(self._waiters.discard)
                self._check_flush()
                return
            await future.result()  # raises what the task raised
            raise EngineInternalError(f"Dask task {key} ended {future.status}")
        except FutureCancelledError:
            self._post(("done", key, {"status": "cancelled"}, None))
        except Exception as exc:
            self._post(("done", key, None, f"{type(exc).__name__}: {exc}"))
        self._futures.pop(key, None)  # released: the scheduler forgets the key
        self._check_flush()

    def _check_flush(self) -> None:
        if len(self._finished) >= len(self._futures):
            self._flush.set()

    def set_gather_window(self, seconds: float) -> None:
        self._window_s = seconds

    async def _gather(self) -> None:
        """Fetch every finished result, one request per batch (not per job).

        With a gather window (while jobs are short), a batch first waits up to that
        long for the jobs still out, unless none is left: a fetch goes through the
        scheduler to the workers and back, and costs the three of them far more than
        one more result in it does."""
        while self._finished:
            if self._window_s and len(self._finished) < len(self._futures):
                self._flush.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush.wait(), self._window_s)
            batch, self._finished = self._finished, []
            try:
                results = await self.client.gather([f for _, f in batch], errors="raise")
            except Exception as exc:
                for key, _ in batch:
                    self._post(("done", key, None, f"{type(exc).__name__}: {exc}"))
            else:
                for (key, _), result in zip(batch, results, strict=True):
                    self._post(("done", key, result, None))
            for key, _ in batch:
                self._futures.pop(key, None)

    async def cancel(self, keys: Sequence[str]) -> None:
        futures = [self._futures[k] for k in keys if k in self._futures]
        if futures:
            with contextlib.suppress(Exception):
                await self.client.cancel(futures, force=True)

    async def messages(self) -> list[tuple[Any, ...]]:
        """Every message since the last call (waits for one)."""
        while not self._messages:
            self._wake.clear()
            await self._wake.wait()
        messages, self._messages = self._messages, []
        return messages

    def _post(self, message: tuple[Any, ...]) -> None:
        self._messages.append(message)
        self._wake.set()

    def _on_started(self, event: tuple[float, Any]) -> None:
        msg = event[1]
        self._post(("started", msg["key"], msg["worker"], int(msg["pid"])))

    def _on_cluster(self, event: tuple[float, Any]) -> None:
        import asyncio

        msg = event[1]
        action = msg.get("action") if isinstance(msg, dict) else None
        if action == "remove-worker":
            how = "retired" if msg.get("expected") else "lost"
            self._post(("lost", msg["worker"], f"{how}; {msg.get('stimulus_id', '')}"))
        elif action == "add-worker":
            waiter = asyncio.ensure_future(self._admit(msg["worker"]))
            self._waiters.add(waiter)
            waiter.add_done_callback(self._waiters.discard)

    async def _admit(self, address: str) -> None:
        """A worker that joined: used once its versions match."""
        try:
            found = await self.client.run(
                dask_worker.worker_environment, self._libraries, workers=[address]
            )
            _check_versions(self._expected, found)
            identity = await self.client.scheduler.identity(n_workers=-1)
            nthreads = int(identity["workers"][address].get("nthreads", 1))
        except Exception as exc:
            self._post(("excluded", address, f"{type(exc).__name__}: {exc}"))
        else:
            self._post(("joined", address, nthreads))

    async def close(self) -> None:
        for waiter in list(self._waiters):
            waiter.cancel()
        if self.client is not None:
            # Unsubscribed first: the scheduler would send our own leaving to us.
            for topic in (self.topic, "all"):
                with contextlib.suppress(Exception):
                    self.client.unsubscribe_topic(topic)
            with contextlib.suppress(Exception):
                await self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                await self.cluster.close()
        self.client = self.cluster = None


class DaskExecutor:
    """Plugin jobs on a Dask cluster, behind the executor contract (:mod:`.base`).

    Args:
        scheduler: the scheduler's address (``tcp://host:8786``); ``None`` starts a
            ``LocalCluster`` of ``workers`` processes (one thread each) on this machine.
        workers: local cluster size (default: the CPU count, at most 8); ignored with
            a scheduler address (the cluster has the workers it has).
        data_store: a folder or fsspec URL every worker can read, where datasets are
            published; required with a scheduler address (default without one: a
            temporary folder removed on exit).
        libraries: checked on every worker beside :data:`RUNTIME_LIBRARIES`.
        start_timeout_s: how long to wait for the scheduler and a first worker.
        no_worker_timeout_s: with no worker left, how long waiting jobs wait for one
            to join before they end ``EXECUTOR_UNAVAILABLE``.
        gather_window_s: while recent jobs are short (under ``short_job_s``), how
            long finished results wait for others before one fetch brings them all.
    """

    name = "dask"

    def __init__(
        self,
        scheduler: str | None = None,
        *,
        workers: int | None = None,
        data_store: str | None = None,
        libraries: Sequence[str] = (),
        pipeline: int = 1,
        short_pipeline: int = 64,
        short_job_s: float = 0.02,
        gather_window_s: float = 0.05,
        start_timeout_s: float = 120.0,
        no_worker_timeout_s: float = 60.0,
    ) -> None:
        if scheduler is not None and data_store is None:
            raise ConfigError(
                f"scheduler {scheduler}: the dask executor needs a data store (a folder "
                "or URL every worker can read: --data-store / data_store:)"
            )
        if workers is not None and workers < 1:
            raise ConfigError(f"workers: must be at least 1, got {workers}")
        self.scheduler = scheduler
        self._n_workers = workers or max(1, min(os.cpu_count() or 1, 8))
        self.data_store = data_store
        self._libraries = tuple(sorted(set(RUNTIME_LIBRARIES) | set(libraries)))
        self._pipeline = pipeline
        self._short_pipeline = short_pipeline
        self._short_job_s = short_job_s
        self._gather_window_s = gather_window_s
        self._recent_s = math.inf
        self._start_timeout_s = start_timeout_s
        self._no_worker_timeout_s = no_worker_timeout_s
        self._id = secrets.token_hex(4)
        self._remote = _Remote(topic=f"engine-job-began-{self._id}")
        self._portal: BlockingPortal | None = None
        self._portal_cm: contextlib.AbstractContextManager[BlockingPortal] | None = None
        self._tg: TaskGroup | None = None
        self._seq = itertools.count()
        self._tasks: dict[int, _Task] = {}  # not done, by ticket seq
        self._by_key: dict[str, _Task] = {}
        self._backlog: list[tuple[int, int, _Task]] = []
        self._waiting: list[_Task] = []  # for their code bundle or dataset
        self._workers: dict[str, _Worker] = {}
        self._indices = itertools.count()
        self._runtime: tuple[str, bytes, str] = ("", b"", "")
        self._bundles: dict[str, bytes | Failed] = {}  # by code hash
        self._datasets: dict[str, _DataRef | Failed] = {}  # by fingerprint
        self._prepare_wake = anyio.Event()
        self._place_wake = anyio.Event()
        self._workers_changed = anyio.Event()
        self._tmp_store: str | None = None
        self._host = ""  # the worker plugin's name
        self._run_task: Callable[..., Any] = dask_worker.run_task
        self._encoder = msgspec.msgpack.Encoder()
        self._unavailable: str | None = None  # why jobs cannot be placed now
        self.excluded: dict[str, str] = {}
        """Workers that joined but are not used (their versions differ), and why."""

    @property
    def capacity(self) -> int:
        return max(1, sum(w.nthreads for w in self._workers.values()))

    @property
    def pipeline(self) -> int:
        return self._short_pipeline if self._recent_s < self._short_job_s else self._pipeline

    def worker_addresses(self) -> list[str]:
        """The workers jobs are placed on (for tools and tests)."""
        return sorted(self._workers)

    # -- lifecycle

    async def __aenter__(self) -> Self:
        if self._tg is not None:
            raise EngineInternalError("DaskExecutor entered twice")
        from anyio.from_thread import start_blocking_portal

        if self.data_store is None:
            self._tmp_store = tempfile.mkdtemp(prefix="engine-dask-store-")
            self.data_store = self._tmp_store
        self._runtime = await anyio.to_thread.run_sync(runtime_bundle)
        cm = start_blocking_portal("asyncio", name=f"engine-dask-{self._id}")
        self._portal = await anyio.to_thread.run_sync(cm.__enter__)
        self._portal_cm = cm
        source = Path(dask_worker.__file__).read_text(encoding="utf-8")
        name = f"_engine_dask_host_{hashlib.sha256(source.encode()).hexdigest()[:12]}"
        plugin = dask_worker.HostPlugin(name, source, WORKER_ENVIRONMENT)
        # The same module here, so a job's function pickles by reference to it.
        self._run_task = dask_worker.install(name, source).run_task
        try:
            workers = await self._portal.call_async(
                self._remote.start,
                self.scheduler,
                self._n_workers,
                plugin,
                self._libraries,
                self._start_timeout_s,
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._close_portal()
            raise
        for address, nthreads in workers:
            self._add_worker(address, nthreads)
        self._host = plugin.name
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self._pump)
        tg.start_soon(self._placer)
        tg.start_soon(self._prepare)
        tg.start_soon(self._watch_workers)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tg, self._tg = self._tg, None
        if tg is None:
            return
        tg.cancel_scope.cancel()
        await tg.__aexit__(exc_type, exc, tb)
        with anyio.CancelScope(shield=True):
            await self._close_portal()
        for task in list(self._tasks.values()):
            self._fail(task, "EXECUTOR_UNAVAILABLE", "the executor was closed")

    async def _close_portal(self) -> None:
        portal, cm = self._portal, self._portal_cm
        self._portal = self._portal_cm = None
        if portal is not None:
            with contextlib.suppress(Exception):
                await portal.call_async(self._remote.close)
        if cm is not None:
            await anyio.to_thread.run_sync(cm.__exit__, None, None, None)
        if self._tmp_store is not None:
            await anyio.to_thread.run_sync(shutil.rmtree, self._tmp_store, True)
            self._tmp_store = None

    # -- the contract

    def submit(
        self, job: Job, *, timeout_s: float, memory_mb: int | None, priority: int, reply: Reply
    ) -> Ticket:
        if self._tg is None:
            raise EngineInternalError("DaskExecutor.submit() outside `async with`")
        seq = next(self._seq)
        ticket = Ticket(seq, job.run_id, job.plugin_id)
        task = _Task(ticket, job, timeout_s, memory_mb, priority, reply)
        self._tasks[seq] = task
        if job.code_hash in self._bundles and job.dataset.fingerprint in self._datasets:
            self._queue(task)
            self._place_wake.set()  # once for a burst of submissions: one hop, in priority order
        else:
            self._waiting.append(task)
            self._prepare_wake.set()
        return ticket

    def cancel(self, ticket: Ticket, reason: str, message: str) -> None:
        task = self._tasks.get(ticket.seq)
        if task is None or task.ticket is not ticket:
            return
        remote = task.state in ("sent", "running")
        self._fail(task, reason, message)
        if remote:
            self._call(self._remote.cancel, [task.key])

    # -- materials: code bundles and published datasets, prepared off the loop

    async def _prepare(self) -> None:
        while True:
            await self._prepare_wake.wait()
            self._prepare_wake = anyio.Event()
            waiting = [t for t in self._waiting if t.state == "waiting"]
            codes = {t.job.code_hash: t.job.plugin_dir for t in waiting}
            datasets = {t.job.dataset.fingerprint: t.job.dataset for t in waiting}
            codes = {h: d for h, d in codes.items() if h not in self._bundles}
            datasets = {f: i for f, i in datasets.items() if f not in self._datasets}
            bundles, refs = await anyio.to_thread.run_sync(self._materials, codes, datasets)
            self._bundles.update(bundles)
            self._datasets.update(refs)
            self._waiting = [t for t in self._waiting if t.state == "waiting"]
            for task in list(self._waiting):
                bundle = self._bundles.get(task.job.code_hash)
                ref = self._datasets.get(task.job.dataset.fingerprint)
                if bundle is None or ref is None:
                    continue
                self._waiting.remove(task)
                problem = next((m for m in (bundle, ref) if isinstance(m, Failed)), None)
                if problem is not None:
                    self._fail(task, problem.reason_code, problem.message)
                else:
                    self._queue(task)
            self._place()

    def _materials(
        self, codes: Mapping[str, str], datasets: Mapping[str, DatasetInfo]
    ) -> tuple[dict[str, bytes | Failed], dict[str, _DataRef | Failed]]:
        """Read and check plugin folders; publish datasets (in a worker thread)."""
        prefix = dask_worker.code_prefix(CONTRACTS_VERSION, self._runtime[2])
        bundles: dict[str, bytes | Failed] = {}
        for digest, folder in codes.items():
            try:
                files = dask_worker.read_folder(Path(folder))
            except OSError as exc:
                bundles[digest] = Failed(reason_code="IMPORT_ERROR", message=str(exc))
                continue
            found = dask_worker.tree_digest(files.items(), prefix)
            if found != digest:
                bundles[digest] = Failed(
                    reason_code="IMPORT_ERROR",
                    message=f"{folder}: the plugin folder changed since the plan was built "
                    f"(code hash {digest[:12]}, now {found[:12]}); not run",
                )
            else:
                bundles[digest] = dask_worker.pack(files)
        refs: dict[str, _DataRef | Failed] = {}
        for fingerprint, info in datasets.items():
            assert self.data_store is not None
            try:
                refs[fingerprint] = publish_dataset(self.data_store, info)
            except Exception as exc:
                refs[fingerprint] = Failed(
                    reason_code="EXECUTOR_UNAVAILABLE",
                    message=f"the dataset could not be published to the data store "
                    f"{self.data_store}: {type(exc).__name__}: {exc}",
                )
        return bundles, refs

    # -- placing jobs on workers

    def _queue(self, task: _Task) -> None:
        task.state = "queued"
        heapq.heappush(self._backlog, (task.priority, task.ticket.seq, task))

    def _place(self) -> None:
        backlog = self._backlog
        if not self._workers and self._unavailable is not None:
            for _, _, task in backlog:
                if task.state == "queued":
                    self._fail(task, "EXECUTOR_UNAVAILABLE", self._unavailable)
            backlog.clear()
        outbox: list[_Send] = []
        while backlog:
            task = backlog[0][2]
            if task.state != "queued":
                heapq.heappop(backlog)
                continue
            worker = self._choose(task.job.code_hash)
            if worker is None:
                break
            heapq.heappop(backlog)
            self._send(task, worker, outbox)
        if outbox:
            self._call(self._remote.submit, self._run_task, outbox)

    def _choose(self, code_hash: str) -> _Worker | None:
        """The least loaded worker with room, or one that already holds the job's code
        and is at most ``AFFINITY_SLACK`` jobs a thread busier: a plugin placed where
        its code is costs no bundle sent, unpacked and hashed again, and its job process
        has it imported already (a fleet run twice would otherwise ship about half its
        plugins again, to the other worker)."""
        workers = list(self._workers.values())
        idle = [w for w in workers if len(w.tasks) < w.nthreads]
        if not idle:
            room = 1 + self.pipeline
            idle = [w for w in workers if len(w.tasks) < w.nthreads * room]
        if not idle:
            return None
        least = min(idle, key=_load)
        if code_hash in least.shipped:
            return least
        bound = _load(least)[0] + AFFINITY_SLACK
        holders = [w for w in idle if code_hash in w.shipped and _load(w)[0] <= bound]
        return min(holders, key=_load) if holders else least

    def _send(self, task: _Task, worker: _Worker, outbox: list[_Send]) -> None:
        task.attempt += 1
        task.key = f"engine-{self._id}-{task.ticket.seq}-{task.attempt}"
        task.state = "sent"
        task.worker = worker
        worker.tasks[task.key] = task
        self._by_key[task.key] = task
        job = task.job
        ref = self._datasets[job.dataset.fingerprint]
        assert isinstance(ref, _DataRef)
        runtime_hash, runtime, _ = self._runtime
        request: dict[str, Any] = {
            "host": self._host,
            "topic": self._remote.topic,
            "job": job,
            "code_hash": job.code_hash,
            "contracts_version": CONTRACTS_VERSION,
            "runtime_hash": runtime_hash,
            "data": ref,
            "timeout_s": task.timeout_s,
            "memory_mb": task.memory_mb,
        }
        if runtime_hash not in worker.shipped:
            request["runtime"] = runtime
            worker.shipped.add(runtime_hash)
        if job.code_hash not in worker.shipped:
            request["code"] = self._bundles[job.code_hash]
            worker.shipped.add(job.code_hash)
        outbox.append((task.key, self._encoder.encode(request), worker.address, task.priority))

    def _call(self, func: Callable[..., Any], *args: Any) -> None:
        """Start ``func`` on the Dask loop without waiting for it."""
        if self._portal is not None:
            with contextlib.suppress(RuntimeError):  # the portal is stopping
                self._portal.start_task_soon(func, *args)

    def _detach(self, task: _Task) -> None:
        if task.worker is not None:
            task.worker.tasks.pop(task.key, None)
        self._by_key.pop(task.key, None)
        task.worker = None

    def _fail(self, task: _Task, code: str, message: str, pid: int = 0) -> None:
        duration = 0.0 if task.started_at is None else anyio.current_time() - task.started_at
        output = JobOutput(
            plugin_id=task.ticket.plugin_id,
            result=Failed(reason_code=code, message=message),
            duration_s=duration,
            pid=pid,
        )
        self._finish(task, output)

    def _finish(
        self, task: _Task, output: JobOutput, artifacts: Sequence[tuple[str, str, bytes]] = ()
    ) -> None:
        self._detach(task)
        task.state = "done"
        self._tasks.pop(task.ticket.seq, None)
        if not artifacts:
            task.reply(JobDone(task.ticket, output))
        elif self._tg is not None:
            # Written off the loop before the job is done (a cancel meanwhile finds it
            # done already).
            self._tg.start_soon(self._deliver, task, output, artifacts)

    async def _placer(self) -> None:
        while True:
            await self._place_wake.wait()
            self._place_wake = anyio.Event()
            self._place()

    # -- what the Dask loop tells

    async def _pump(self) -> None:
        assert self._portal is not None
        while True:
            for message in await self._portal.call_async(self._remote.messages):
                getattr(self, f"_on_{message[0]}")(*message[1:])
            self._place()

    def _on_started(self, key: str, address: str, pid: int) -> None:
        task = self._by_key.get(key)
        if task is None or task.state != "sent" or task.worker is None:
            return
        task.state = "running"
        task.started_at = anyio.current_time()
        task.reply(JobStarted(task.ticket, task.worker.index, pid, f"dask {address} pid {pid}"))

    def _on_done(self, key: str, outcome: Any, error: str | None) -> None:
        task = self._by_key.get(key)
        if task is None or task.state == "done":
            return
        result: dict[str, Any] | None = None
        if isinstance(outcome, dict):  # cancelled, from this side
            result = outcome
        elif isinstance(outcome, bytes):
            try:
                result = msgspec.msgpack.decode(outcome, type=dict[str, Any])
            except msgspec.DecodeError as exc:
                error = f"undecodable outcome: {exc}"
        worker = task.worker
        status = result.get("status") if result is not None else None
        if status == "ended":
            assert result is not None
            self._ended(task, result)
        elif status == "verdict":
            assert result is not None
            self._fail(task, result["code"], result["message"], int(result.get("pid", 0)))
        elif status == "refused":
            assert result is not None
            self._fail(task, result["code"], result["message"])
        elif status == "missing" and worker is not None and task.attempt < 3:
            # The worker no longer has a bundle it was sent (its copy did not hash to
            # its name, or was removed): send it with the job again. The job never began.
            assert result is not None
            lost = self._runtime[0] if result.get("what") == "runtime" else task.job.code_hash
            worker.shipped.discard(lost)
            self._detach(task)
            self._queue(task)
        else:
            code = "WORKER_CRASHED" if task.state == "running" else "EXECUTOR_UNAVAILABLE"
            where = worker.address if worker is not None else "?"
            self._fail(task, code, f"the Dask task on {where} failed: {error or result}")

    def _ended(self, task: _Task, result: dict[str, Any]) -> None:
        try:
            message = FROM_WORKER_DECODER.decode(result["frame"])
        except msgspec.DecodeError as exc:
            self._fail(task, "WORKER_CRASHED", f"undecodable output from the worker: {exc}")
            return
        if not isinstance(message, JobEnded):
            self._fail(task, "WORKER_CRASHED", "the worker sent no job output")
            return
        output = msgspec.structs.replace(message.output, pid=int(result.get("pid", 0)))
        self._observe(output.duration_s)
        self._finish(task, output, result.get("artifacts") or ())

    async def _deliver(
        self, task: _Task, output: JobOutput, artifacts: Sequence[tuple[str, str, bytes]]
    ) -> None:
        folder = Path(task.job.artifacts_dir)
        try:
            hashes = await anyio.to_thread.run_sync(_write_artifacts, folder, artifacts)
        except (OSError, EngineError) as exc:
            failed = Failed(
                reason_code="EXECUTOR_UNAVAILABLE",
                message=f"the plugin's artifacts could not be written to {folder}: {exc}",
            )
            output = msgspec.structs.replace(output, result=failed)
        else:
            output = msgspec.structs.replace(output, artifact_sha256=hashes)
        task.reply(JobDone(task.ticket, output))

    def _on_lost(self, address: str, why: str) -> None:
        worker = self._workers.pop(address, None)
        if worker is None:
            return
        self._workers_changed.set()
        keys = list(worker.tasks)
        for task in list(worker.tasks.values()):
            if task.state == "running":
                self._fail(
                    task,
                    "WORKER_CRASHED",
                    f"Dask worker {address} left the cluster while the job ran ({why})",
                )
            else:  # never began there: safe to place again
                self._detach(task)
                self._queue(task)
        self._call(self._remote.cancel, keys)

    def _on_joined(self, address: str, nthreads: int) -> None:
        self.excluded.pop(address, None)
        self._add_worker(address, nthreads)

    def _on_excluded(self, address: str, why: str) -> None:
        self.excluded[address] = why

    def _add_worker(self, address: str, nthreads: int) -> None:
        if address not in self._workers:
            self._workers[address] = _Worker(address, next(self._indices), nthreads)
            self._workers_changed.set()

    async def _watch_workers(self) -> None:
        """With no worker left: waiting jobs get ``no_worker_timeout_s`` for one to
        join; after that they, and jobs submitted until one joins, end
        ``EXECUTOR_UNAVAILABLE``."""
        while True:
            await self._workers_changed.wait()
            self._workers_changed = anyio.Event()
            if self._workers:
                self._unavailable = None
                continue
            with anyio.move_on_after(self._no_worker_timeout_s):
                while not self._workers:
                    await self._workers_changed.wait()
                    self._workers_changed = anyio.Event()
            if not self._workers:
                self._unavailable = (
                    f"no Dask worker left on the cluster for {self._no_worker_timeout_s:g}s"
                )
                self._place()

    def _observe(self, duration_s: float) -> None:
        short = self._recent_s < self._short_job_s
        self._recent_s = (
            duration_s if math.isinf(self._recent_s) else 0.8 * self._recent_s + 0.2 * duration_s
        )
        if short != (self._recent_s < self._short_job_s):
            self._call(self._remote.set_gather_window, 0.0 if short else self._gather_window_s)
