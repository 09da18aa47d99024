"""What runs a plugin: shared by every executor (process pool workers, inline).

``execute_job`` never raises for anything a plugin does: a raise, a bad return
value, an unrepresentable metric all become a ``Failed`` result, through the one
output boundary (:mod:`engine._worker.boundary`). Imports are cached per worker
(keyed by code hash, so an edited plugin is re-imported).

``worker_main`` is the body of a pool worker process: it reads :class:`RunJob` and
:class:`CancelJob` frames, says :class:`JobBegan` when it actually starts a job and
:class:`JobEnded` with its output, and exits on end-of-file. It dies with its parent
(``PR_SET_PDEATHSIG``), so a killed engine leaves no worker behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.machinery
import importlib.util
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import Any

from contracts import Failed, PluginResult
from contracts._base import freeze
from contracts.dataset import SpanRecord

from .boundary import check_result, check_spans, failure
from .context import PluginContext
from .job import (
    FROM_WORKER_ENCODER,
    TO_WORKER_DECODER,
    CancelJob,
    Job,
    JobBegan,
    JobEnded,
    JobOutput,
    RunJob,
)

MAX_TOUCH_BYTES_PER_S = 1e12
"""More memory than a process can make resident per second, all its threads together:
a new page is zeroed before use, so this is above the memory bandwidth of any machine
(a 2-core machine here makes 0.1-0.3 GB/s resident; a large server's whole memory
bandwidth is a few hundred GB/s). A job shorter than ``cap / MAX_TOUCH_BYTES_PER_S``
(4 ms for the default 4096 MB) cannot have broken its memory cap, so its worker skips
reading the high-water mark (a ``/proc`` file costly to generate) and sends its RSS."""


def peak_needed(elapsed_s: float, cap_bytes: int) -> bool:
    """Whether a job that ran ``elapsed_s`` under ``cap_bytes`` (0: no cap) may have
    broken the cap, so its high-water mark must be read."""
    return bool(cap_bytes) and elapsed_s * MAX_TOUCH_BYTES_PER_S >= cap_bytes


WORKER_NICENESS = 5
"""How much lower than the engine's process the workers' scheduling priority is."""

_ENTRYPOINTS: dict[tuple[str, str, str], Callable[..., Any]] = {}


def load_entrypoint(
    plugin_id: str, plugin_dir: str, entrypoint: str, code_hash: str
) -> Callable[..., Any]:
    """Import the plugin folder as a package and return its entrypoint.

    The package name carries the code hash so an edited plugin is a new module,
    and relative imports between the plugin's own files work.
    """
    key = (plugin_dir, entrypoint, code_hash)
    cached = _ENTRYPOINTS.get(key)
    if cached is not None:
        return cached
    module_name, _, func_name = entrypoint.partition(":")
    package = f"_engine_plugin_{plugin_id}_{code_hash[:12]}"
    if package not in sys.modules:
        init = Path(plugin_dir) / "__init__.py"
        spec: importlib.machinery.ModuleSpec | None
        if init.is_file():
            spec = importlib.util.spec_from_file_location(
                package, init, submodule_search_locations=[plugin_dir]
            )
        else:
            spec = importlib.machinery.ModuleSpec(package, None, is_package=True)
            spec.submodule_search_locations = [plugin_dir]
        if spec is None:
            raise ImportError(f"cannot import plugin folder {plugin_dir}")
        pkg: ModuleType = importlib.util.module_from_spec(spec)
        sys.modules[package] = pkg
        if spec.loader is not None:
            spec.loader.exec_module(pkg)
    module = importlib.import_module(f"{package}.{module_name}")
    func: Callable[..., Any] | None = getattr(module, func_name, None)
    if not callable(func):
        raise ImportError(f"{entrypoint!r} is not a callable in {plugin_dir}")
    _ENTRYPOINTS[key] = func
    return func


def execute_job(job: Job) -> JobOutput:
    """Run one plugin and return its output; never raises for plugin misbehaviour."""
    from .reader import DataReader

    start = time.perf_counter()
    reader = DataReader(job.dataset, declared=job.data_access)
    spans: list[SpanRecord] = []
    artifacts_dir = Path(job.artifacts_dir)
    try:
        try:
            func = load_entrypoint(job.plugin_id, job.plugin_dir, job.entrypoint, job.code_hash)
        except BaseException as exc:  # a module body may raise anything, SystemExit too
            if isinstance(exc, KeyboardInterrupt):
                raise
            result: PluginResult = failure("IMPORT_ERROR", exc)
        else:
            ctx = PluginContext(
                plugin_id=job.plugin_id,
                run_id=job.run_id,
                data=reader,
                settings=dict(job.settings),
                seed=job.seed,
                # Read-only in every executor (inline, they are the run's own).
                upstream=freeze(dict(job.upstream)),
                artifacts_dir=artifacts_dir,
                spans=spans,
            )
            try:
                value = func(ctx)
            except BaseException as exc:  # SystemExit and custom BaseExceptions too
                if isinstance(exc, KeyboardInterrupt):
                    raise
                result = failure("PLUGIN_ERROR", exc)
            else:
                result = check_result(job.plugin_id, value, artifacts_dir)
    finally:
        with contextlib.suppress(Exception):
            reader.close()
    if reader.violations:
        # Fail closed even if the plugin caught the refusal and carried on.
        calls = "; ".join(
            f"{a.kind}({', '.join(a.columns)}) -> {a.rows} rows" for a in reader.accesses
        )
        result = failure(
            "DATA_ACCESS_VIOLATION",
            message=f"{reader.violations[0]}; calls made: {calls or 'none'}",
        )
    clean_spans, refused = check_spans(spans)
    if refused is not None and not isinstance(result, Failed):
        result = failure("INVALID_RESULT", message=f"span does not fit the contract: {refused}")
    return JobOutput(
        plugin_id=job.plugin_id,
        result=result,
        accesses=tuple(reader.accesses),
        duration_s=time.perf_counter() - start,
        pid=os.getpid(),
        spans=clean_spans,
    )


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory of a process in bytes (0 when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * _PAGE_SIZE


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class MemoryProbe:
    """This process's resident memory and its high-water mark (Linux ``/proc``).

    The files stay open and are read with ``pread`` at offset 0, which makes the
    kernel generate them afresh: a look costs one system call, not three (open, read,
    close), and a worker looks four times a job. Any value that cannot be read is 0.
    """

    def __init__(self) -> None:
        self._statm = self._open("/proc/self/statm", os.O_RDONLY)
        self._status = self._open("/proc/self/status", os.O_RDONLY)
        self._clear = self._open("/proc/self/clear_refs", os.O_WRONLY)

    @staticmethod
    def _open(path: str, flags: int) -> int:
        try:
            return os.open(path, flags | os.O_CLOEXEC)
        except OSError:
            return -1

    def rss(self) -> int:
        """Resident memory now, in bytes."""
        try:
            return int(os.pread(self._statm, 256, 0).split()[1]) * _PAGE_SIZE
        except (OSError, ValueError, IndexError):
            return 0

    def reset_peak(self) -> None:
        """Start a new high-water mark."""
        with contextlib.suppress(OSError):
            os.write(self._clear, b"5")

    def peak(self) -> int:
        """The high-water mark since :meth:`reset_peak`, in bytes."""
        try:
            data = os.pread(self._status, 16384, 0)
            at = data.index(b"VmHWM:") + 6
            return int(data[at : data.index(b"kB", at)]) * 1024
        except (OSError, ValueError):
            return 0


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this worker when its parent dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before the call
            os._exit(1)


def _encoded_end(seq: int, output: JobOutput, rss: int, peak: int) -> bytes:
    """The ``JobEnded`` frame; if it cannot be encoded the plugin's result is replaced
    by a failure saying so (the boundary makes this unreachable, but a worker must
    never die on an output)."""
    try:
        return FROM_WORKER_ENCODER.encode(
            JobEnded(seq=seq, output=output, rss_bytes=rss, peak_rss_bytes=peak)
        )
    except Exception as exc:
        safe = JobOutput(
            plugin_id=output.plugin_id,
            result=failure("INVALID_RESULT", message=f"output could not be encoded: {exc}"),
            accesses=output.accesses,
            duration_s=output.duration_s,
            pid=output.pid,
        )
        return FROM_WORKER_ENCODER.encode(
            JobEnded(seq=seq, output=safe, rss_bytes=rss, peak_rss_bytes=peak)
        )


def worker_main(conn: Connection) -> None:
    """Body of a pool worker: announce readiness, then run jobs until end-of-file."""
    _die_with_parent()
    # Ctrl-C reaches the whole process group; the engine decides what to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Below the engine's own priority: the host's event loop (an async service, the
    # supervisor) stays responsive while the workers keep every core busy.
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    # Imports done once per worker, before the first job arrives.
    import duckdb  # noqa: F401
    import numpy  # noqa: F401
    import pyarrow  # noqa: F401

    from . import reader  # noqa: F401

    memory = MemoryProbe()
    conn.send_bytes(str(os.getpid()).encode())
    pending: deque[RunJob] = deque()

    def take(frame: bytes) -> None:
        message = TO_WORKER_DECODER.decode(frame)
        if isinstance(message, CancelJob):
            for queued in list(pending):
                if queued.seq == message.seq:
                    pending.remove(queued)
        else:
            pending.append(message)

    while True:
        try:
            if not pending:
                take(conn.recv_bytes())
            while conn.poll():  # read ahead: a cancel may follow a queued job
                take(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if not pending:
            continue
        work = pending.popleft()
        began = time.perf_counter()
        memory.reset_peak()
        conn.send_bytes(FROM_WORKER_ENCODER.encode(JobBegan(seq=work.seq, rss_bytes=memory.rss())))
        try:
            output = execute_job(work.job)
        except BaseException as exc:  # execute_job does not raise; this is the last guard
            output = JobOutput(
                plugin_id=work.job.plugin_id,
                result=failure("PLUGIN_ERROR", exc),
                pid=os.getpid(),
            )
        rss = memory.rss()
        cap = work.recycle_mb * 1_000_000
        # Else its RSS now stands for the peak (a lower bound, below the cap anyway).
        peak = memory.peak() if peak_needed(time.perf_counter() - began, cap) else rss
        conn.send_bytes(_encoded_end(work.seq, output, rss, peak))
        if cap and rss > cap:
            return  # too big to keep: the pool starts a fresh worker in its place
