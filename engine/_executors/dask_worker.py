"""What runs inside a Dask worker for the distributed executor.

Nothing here imports the engine, so a Dask worker needs the libraries (whose
versions the client checks) but not the engine installed, and never a path shared
with the client. The client registers :class:`HostPlugin` (pickled by value: a few
hundred bytes) carrying this module's source; on each worker it installs the source
as a module named after its hash and starts that module's :class:`EngineHost`
(:class:`SchedulerInstaller` does the same on the scheduler, which unpickles every
task graph). Jobs are :func:`run_task` of that module, pickled by reference to it:
a task carries its request, not a function's code.

- **Code by content.** A *bundle* is a msgpack map ``{relative path: bytes}``. The
  engine's worker code (the ``contracts`` package, ``engine/errors.py`` and
  ``engine/_worker``) is one bundle, a plugin folder another, each named by its hash
  (:func:`tree_digest`; a plugin's is its code hash, the one the plan carries). The
  client sends a bundle with the first job that needs it on a worker; the worker
  unpacks it under its local directory (to a temporary name, verified, then renamed),
  and hashes the files again before any new job process imports them. A copy that
  does not hash to its name (stale, tampered, half-written) is deleted and never
  imported; without a bundle in hand the worker answers ``missing`` and the client
  sends it.
- **Data by content.** The normalized dataset is read from the data store by the URL
  the client published it under, copied to ``data/<fingerprint>-<sha256>.duckdb``
  while hashing, checked against the SHA-256 the client recorded, and renamed into
  place: a local copy is complete and right, or absent.
- **A job process per running job.** Plugins run in a child process started from
  the unpacked engine worker code (``python -P``, with the process pool's
  environment: ``PYTHONHASHSEED=0``, one math thread), speaking the process pool's
  frames (``RunJob``/``JobBegan``/``JobEnded``). The Dask worker's own process stays
  responsive (heartbeats are never starved by a plugin), and this module is the
  job's watchdog: the timeout runs from ``JobBegan``; the memory cap (the smaller of
  the job's cap and the Dask worker's ``memory_limit``) counts what the job adds to
  its process; a job past either, or cancelled by the client, has its process
  killed, and the next job gets a fresh one. ``JobBegan`` is forwarded to the client
  at once as a Dask event (``log_event``), which is how the stall guard and the
  ``plugin_started`` event see the real start.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec
from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

WATCH_INTERVAL_S = 0.1
"""How often a running job is looked at (timeout, memory, cancellation)."""

START_TIMEOUT_S = 120.0
"""How long a new job process may take to import its libraries and say it is ready."""

SKIP_DIRS = frozenset({"__pycache__"})

# Started from the unpacked engine worker code: that copy, and no installed engine,
# is what the job process imports (``-P``: no current directory on the path).
_BOOT = """
import sys
root = sys.argv[1]
sys.path.insert(0, root)
import contracts, engine
for module in (contracts, engine):
    if not module.__file__.startswith(root):
        raise SystemExit(f"{module.__name__} imported from {module.__file__}, not {root}")
from multiprocessing.connection import Connection
from engine._worker.run import worker_main
worker_main(Connection(int(sys.argv[2])))
"""


# -- content: bundles and their digests (used by the client too)


def tree_digest(files: Iterable[tuple[str, bytes]], prefix: bytes = b"") -> str:
    """SHA-256 over ``prefix`` and each (path, bytes) in path order: the path, a NUL,
    the file's own SHA-256. The same digest as the plan's code hash
    (``engine/_core/manifests.py``); a test checks that they agree."""
    h = hashlib.sha256(prefix)
    for rel, data in sorted(files):
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def code_prefix(contracts_version: str, contracts_hash: str) -> bytes:
    """What a plugin's code hash starts from: the SDK it runs on."""
    return f"contracts={contracts_version}:{contracts_hash}\n".encode()


def folder_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix path, path) of every file of ``folder``, without bytecode."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        base = Path(dirpath)
        for name in sorted(filenames):
            if not name.endswith((".pyc", ".pyo")):
                path = base / name
                yield path.relative_to(folder).as_posix(), path


def read_folder(folder: Path, only: str = "") -> dict[str, bytes]:
    """Every file of ``folder`` (those ending in ``only``, if given), by path."""
    return {rel: p.read_bytes() for rel, p in folder_files(folder) if rel.endswith(only)}


def pack(files: Mapping[str, bytes]) -> bytes:
    return msgspec.msgpack.encode(dict(sorted(files.items())))


def unpack(bundle: bytes) -> dict[str, bytes]:
    files = msgspec.msgpack.decode(bundle, type=dict[str, bytes])
    for rel in files:
        parts = rel.split("/")
        if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"bundle path {rel!r} leaves its folder")
    return files


def contracts_hash(files: Mapping[str, bytes]) -> str:
    """The hash of the contracts package's Python sources (paths relative to it)."""
    return tree_digest((rel, data) for rel, data in files.items() if rel.endswith(".py"))


def worker_environment(libraries: Sequence[str]) -> dict[str, str]:
    """Python, the machine type and the version of each library (``absent``)."""
    import importlib.metadata
    import platform

    found = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "machine": platform.machine(),
    }
    for name in libraries:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def rss_bytes(pid: int) -> int:
    """Resident memory of a process in bytes (0 when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def exit_description(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _digest_folder(folder: Path, prefix: bytes = b"") -> str:
    return tree_digest(((rel, p.read_bytes()) for rel, p in folder_files(folder)), prefix)


def _write_tree(final: Path, files: Mapping[str, bytes], expected: str, prefix: bytes) -> None:
    """Write ``files`` under a temporary name beside ``final``, check that what is on
    disk hashes to ``expected``, and rename it into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{secrets.token_hex(4)}"
    try:
        for rel, data in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        got = _digest_folder(tmp, prefix)
        if got != expected:
            raise _Refused("EXECUTOR_UNAVAILABLE", f"unpacked to {got[:12]}, not {expected[:12]}")
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # another thread won the race with the same content
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _Refused(Exception):
    """The worker cannot run the job (a reason code and a message for the client)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Child:
    """One job process, started from one engine worker code bundle."""

    def __init__(self, process: subprocess.Popen[bytes], conn: Connection, runtime: str) -> None:
        self.process = process
        self.conn = conn
        self.pid = process.pid
        self.runtime = runtime
        self.imported: set[str] = set()  # code hashes this process has been given
        self.seq = 0
        # One poll set for the process's life (``Connection.poll`` builds a selector
        # per call, twice a job).
        self.poller = select.poll()
        self.poller.register(conn.fileno(), select.POLLIN)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self.conn.close()


def install(name: str, source: str) -> Any:
    """The module ``name`` made from ``source`` (made once per process)."""
    import types

    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        exec(compile(source, f"<{name}>", "exec"), module.__dict__)
        sys.modules[name] = module
    return module


class HostPlugin(WorkerPlugin):
    """Installs this module on a worker (by its source) and runs its host there.

    Args:
        name: the installed module's name, which carries the source's hash: clients
            with different engine versions can share a cluster.
        source: this module's source.
        environment: set for job processes (``PYTHONHASHSEED=0``, one math thread).
    """

    def __init__(self, name: str, source: str, environment: Mapping[str, str]) -> None:
        self.name = name
        self.source = source
        self.environment = dict(environment)

    def setup(self, worker: Any) -> None:
        self.host = install(self.name, self.source).EngineHost(self.environment)
        self.host.setup(worker)

    def teardown(self, worker: Any) -> None:
        self.host.teardown(worker)


class SchedulerInstaller(SchedulerPlugin):
    """Installs this module on the scheduler too: it unpickles every task graph, so
    it must resolve :func:`run_task` by name as the workers do."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source

    async def start(self, scheduler: Any) -> None:
        install(self.name, self.source)


class EngineHost:
    """The engine's side of one Dask worker: code and data caches, job processes."""

    def __init__(self, environment: Mapping[str, str]) -> None:
        self.environment = dict(environment)

    def setup(self, worker: Any) -> None:
        self.worker = worker
        self.root = Path(worker.local_directory) / "engine"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # code and runtime folders, the idle list
        self._data_locks: dict[str, threading.Lock] = {}
        self._idle: list[_Child] = []
        self._contracts: dict[str, str] = {}  # runtime hash -> contracts hash
        # Job processes are started from one long-lived thread: a child asks to die
        # with the thread that started it (PR_SET_PDEATHSIG), and task threads come
        # and go.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="engine-spawn")

    def teardown(self, worker: Any) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for child in idle:
            child.kill()
        self._spawner.shutdown(wait=False)

    # -- one job

    def run(self, request: Mapping[str, Any]) -> dict[str, Any]:
        from distributed.worker import thread_state  # type: ignore[attr-defined]

        key = str(thread_state.key)
        try:
            runtime = self._runtime(request["runtime_hash"], request.get("runtime"))
            if runtime is None:
                return {"status": "missing", "what": "runtime"}
            data = self._dataset(request["data"])
            child: _Child | None = None
            for _ in range(2):  # a process that exited after its last job never began this
                child = self._child(request["runtime_hash"], runtime)
                code = self._code(child, request)
                if code is None:
                    self._release(child)
                    return {"status": "missing", "what": "code"}
                outcome = self._execute(child, key, request, code, data)
                if outcome is not None:
                    return outcome
            raise _Refused("EXECUTOR_UNAVAILABLE", "job processes exit before they begin")
        except _Refused as exc:
            return {"status": "refused", "code": exc.code, "message": f"{self._where()}: {exc}"}

    def _where(self) -> str:
        return f"Dask worker {self.worker.address}"

    def _runtime(self, digest: str, bundle: bytes | None) -> Path | None:
        final = self.root / "runtime" / digest
        with self._lock:
            if digest in self._contracts:
                return final
            if final.is_dir() and _digest_folder(final) != digest:
                shutil.rmtree(final)  # never started from
            if not final.is_dir():
                if bundle is None:
                    return None
                _write_tree(final, unpack(bundle), digest, b"")
            files = read_folder(final / "contracts", only=".py")
            self._contracts[digest] = contracts_hash(files)
        return final

    def _code(self, child: _Child, request: Mapping[str, Any]) -> Path | None:
        """The plugin folder for ``child``, hashed again unless ``child`` already
        imported it (a process never imports a code hash twice)."""
        digest: str = request["code_hash"]
        final = self.root / "code" / digest
        if digest in child.imported:
            return final
        prefix = code_prefix(request["contracts_version"], self._contracts[child.runtime])
        with self._lock:
            if final.is_dir() and _digest_folder(final, prefix) != digest:
                shutil.rmtree(final)  # stale or tampered: deleted, never imported
            if not final.is_dir():
                bundle = request.get("code")
                if bundle is None:
                    return None
                _write_tree(final, unpack(bundle), digest, prefix)
        return final

    def _dataset(self, ref: Mapping[str, Any]) -> Path:
        """The local copy of the dataset (fetched from the data store once)."""
        final = self.root / "data" / f"{ref['fingerprint']}-{ref['sha256'][:16]}.duckdb"
        if final.is_file():
            return final
        with self._lock:
            lock = self._data_locks.setdefault(final.name, threading.Lock())
        with lock:
            if not final.is_file():
                try:
                    _fetch(ref["url"], final, ref["sha256"])
                except _Refused:
                    raise
                except Exception as exc:
                    raise _Refused(
                        "EXECUTOR_UNAVAILABLE",
                        f"dataset {ref['fingerprint'][:12]} could not be read from the data "
                        f"store at {ref['url']}: {type(exc).__name__}: {exc}",
                    ) from exc
        return final

    # -- job processes

    def _child(self, runtime_hash: str, runtime: Path) -> _Child:
        with self._lock:
            while self._idle:
                child = self._idle.pop()
                if child.runtime == runtime_hash and child.alive():
                    return child
                self._spawner.submit(child.kill)
        return self._spawner.submit(self._spawn, runtime_hash, runtime).result()

    def _release(self, child: _Child) -> None:
        with self._lock:
            self._idle.append(child)

    def _spawn(self, runtime_hash: str, runtime: Path) -> _Child:
        parent, child_end = socket.socketpair()
        env = {**os.environ, **self.environment}
        scratch = self.root / "jobs"
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            process = subprocess.Popen(
                [sys.executable, "-P", "-c", _BOOT, str(runtime), str(child_end.fileno())],
                pass_fds=[child_end.fileno()],
                env=env,
                cwd=scratch,
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            parent.close()
            raise _Refused("EXECUTOR_UNAVAILABLE", f"no job process could start: {exc}") from exc
        finally:
            child_end.close()
        conn = Connection(parent.detach())
        child = _Child(process, conn, runtime_hash)
        try:
            if not conn.poll(START_TIMEOUT_S):
                raise EOFError(f"no answer within {START_TIMEOUT_S:g}s")
            int(conn.recv_bytes())
        except (EOFError, OSError, ValueError) as exc:
            child.kill()
            raise _Refused(
                "EXECUTOR_UNAVAILABLE",
                f"a job process failed to start ({exit_description(process.returncode)}): {exc}",
            ) from exc
        return child

    def _execute(
        self, child: _Child, key: str, request: Mapping[str, Any], code: Path, data: Path
    ) -> dict[str, Any] | None:
        """Run one job in ``child``; ``None`` when the process ended before the job
        began (it never ran: the caller starts another)."""
        job_dir = self.root / "jobs" / key
        artifacts = job_dir / "artifacts"
        job = request["job"]
        job["plugin_dir"] = str(code)
        job["artifacts_dir"] = str(artifacts)
        job["dataset"]["db_path"] = str(data)
        cap_mb = self._cap_mb(request.get("memory_mb"))
        child.seq += 1
        frame = {"type": "run", "seq": child.seq, "job": job, "recycle_mb": cap_mb or 0}
        timeout_s = float(request["timeout_s"])
        began_at: float | None = None
        start_rss = 0
        try:
            try:
                child.conn.send_bytes(msgspec.msgpack.encode(frame))
            except OSError:
                child.kill()
                return None
            child.imported.add(request["code_hash"])
            while True:
                kind, message = self._next_frame(child)
                if kind == "dead":
                    if began_at is None:
                        return None
                    return self._verdict(
                        "WORKER_CRASHED",
                        f"the job process {child.pid} on {self._where()} died "
                        f"({exit_description(child.process.returncode)})",
                        began_at,
                        child,
                    )
                if kind == "tick":
                    if self._cancelled(key):
                        child.kill()
                        return {"status": "cancelled"}
                    verdict = self._watch(child, began_at, timeout_s, start_rss, cap_mb)
                    if verdict is not None:
                        return self._verdict(*verdict, began_at, child)
                elif message.get("type") == "began":
                    began_at = time.monotonic()
                    start_rss = int(message.get("rss_bytes", 0))
                    self.worker.log_event(request["topic"], {"key": key, "pid": child.pid})
                elif message.get("type") == "ended" and began_at is not None:
                    peak = int(message.get("peak_rss_bytes", 0)) - start_rss
                    if cap_mb and peak > cap_mb * 1_000_000:
                        text = (
                            f"the job's memory peaked {peak / 1e6:.0f} MB above what its "
                            f"process had when it started, above the {cap_mb} MB cap"
                        )
                        return self._verdict("RESOURCE_LIMIT", text, began_at, child)
                    self._release(child)
                    return {
                        "status": "ended",
                        "frame": message["_raw"],
                        "pid": child.pid,
                        "artifacts": _collect(artifacts),
                    }
                else:  # a process that speaks out of turn cannot be trusted
                    return self._verdict(
                        "WORKER_CRASHED",
                        f"the job process {child.pid} on {self._where()} sent an unexpected "
                        "frame; killed",
                        began_at,
                        child,
                    )
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)

    def _cap_mb(self, memory_mb: int | None) -> int | None:
        """The job's cap, held to the Dask worker's own memory limit."""
        limit = getattr(getattr(self.worker, "memory_manager", None), "memory_limit", None)
        limit_mb = int(limit // 1_000_000) if limit else None
        caps = [c for c in (memory_mb, limit_mb) if c]
        return min(caps) if caps else None

    def _next_frame(self, child: _Child) -> tuple[str, dict[str, Any]]:
        """``("frame", message)`` (decoded, with ``_raw``), ``("tick", {})`` after a
        watch interval without one, ``("dead", {})`` when the process died."""
        try:
            if not child.poller.poll(WATCH_INTERVAL_S * 1000):
                return "tick", {}
            raw = child.conn.recv_bytes()
        except (EOFError, OSError):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(10)
            return "dead", {}
        try:
            message = msgspec.msgpack.decode(raw)
        except msgspec.DecodeError:
            message = None
        if not isinstance(message, dict):
            return "frame", {"type": "garbage"}
        message["_raw"] = raw
        return "frame", message

    def _cancelled(self, key: str) -> bool:
        """The client released the job (or the worker is dropping it)."""
        task = self.worker.state.tasks.get(key)
        return task is None or task.state not in ("executing", "long-running")

    def _watch(
        self,
        child: _Child,
        began_at: float | None,
        timeout_s: float,
        start_rss: int,
        cap_mb: int | None,
    ) -> tuple[str, str] | None:
        """The verdict on a running job past its timeout or above its memory cap."""
        if began_at is None:
            return None
        if time.monotonic() - began_at >= timeout_s:
            return (
                "TIMEOUT",
                f"no result after {timeout_s:g}s; job process {child.pid} on {self._where()} "
                "killed",
            )
        if cap_mb:
            used = rss_bytes(child.pid) - start_rss
            if used > cap_mb * 1_000_000:
                return (
                    "RESOURCE_LIMIT",
                    f"the job used {used / 1e6:.0f} MB more than its process had when it "
                    f"started, above the {cap_mb} MB cap; job process {child.pid} on "
                    f"{self._where()} killed",
                )
        return None

    def _verdict(
        self, code: str, message: str, began_at: float | None, child: _Child
    ) -> dict[str, Any]:
        child.kill()
        duration = 0.0 if began_at is None else time.monotonic() - began_at
        return {
            "status": "verdict",
            "code": code,
            "message": message,
            "duration_s": duration,
            "pid": child.pid,
        }


def _collect(folder: Path) -> list[tuple[str, str, bytes]]:
    """Every artifact file the job wrote: (path, SHA-256, bytes)."""
    if not folder.is_dir():
        return []
    found = []
    for rel, path in folder_files(folder):
        data = path.read_bytes()
        found.append((rel, hashlib.sha256(data).hexdigest(), data))
    return found


def _fetch(url: str, final: Path, sha256: str) -> None:
    """Copy ``url`` to ``final`` through a temporary file, checking its SHA-256."""
    import fsspec

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{secrets.token_hex(4)}"
    h = hashlib.sha256()
    try:
        with fsspec.open(url, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(8 << 20):
                h.update(chunk)
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        if h.hexdigest() != sha256:
            raise _Refused(
                "EXECUTOR_UNAVAILABLE",
                f"the data store's copy of {final.name} hashes to {h.hexdigest()[:12]}, "
                f"not {sha256[:12]}",
            )
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def run_task(request: bytes) -> bytes:
    """The Dask task of one job: hand it to this worker's :class:`EngineHost`.

    The request and the outcome are msgpack maps carried as bytes: what Dask
    serializes, sizes and stores per job is one opaque value, never a nested
    structure it walks."""
    from distributed import get_worker

    worker = get_worker()
    fields = msgspec.msgpack.decode(request)
    plugin = worker.plugins.get(fields["host"])
    host: Any = getattr(plugin, "host", None)
    if host is None:
        outcome = {
            "status": "refused",
            "code": "EXECUTOR_UNAVAILABLE",
            "message": f"Dask worker {worker.address} has no engine plugin {fields['host']!r}",
        }
    else:
        outcome = host.run(fields)
    return msgspec.msgpack.encode(outcome)
