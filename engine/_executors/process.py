"""The process pool: warm ``spawn`` worker processes, one pipe each.

Each worker slot is served by one task of the pool's task group: it starts the
process (lazily, when a job needs it), reads the worker's frames, and when the
process dies it settles the slot's jobs and leaves the slot to be started again.

- **Frames, not guesses.** A worker says :class:`JobBegan` when it actually starts
  a job, with its resident memory at that moment. The timeout runs from then, and
  the memory cap counts only what the job added, so a job is never charged for the
  job before it or for memory an earlier job kept.
- **Pipelining.** A slot may hold ``1 + pipeline`` jobs, written ahead so the worker
  never waits for a round trip. Jobs not yet begun when a worker dies never ran,
  and are sent again to its replacement; the job that was running ends
  ``WORKER_CRASHED`` with the exit status (or its watchdog verdict).
- **Watchdog.** One timer for the whole pool: past its timeout a job ends
  ``TIMEOUT``; above its memory cap, ``RESOURCE_LIMIT``; its worker is killed. A
  verdict always wins over a result that arrives while the worker is being killed.
- **Replacement.** A dead worker's slot is started again as soon as a job needs it.
  A slot whose process cannot be started stays down; when none is left, every job
  ends ``EXECUTOR_UNAVAILABLE`` with the start error (the run still finishes).
- **Never blocking the loop.** The parent's end of each pipe is a non-blocking
  socket awaited by the event loop; process start and reaping run in threads.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import multiprocessing
import os
import signal
import socket
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Literal, Self

import anyio
from anyio.abc import TaskGroup

from contracts import Failed

from .._worker.job import (
    FROM_WORKER_DECODER,
    TO_WORKER_ENCODER,
    CancelJob,
    Job,
    JobBegan,
    JobEnded,
    JobOutput,
    RunJob,
)
from .._worker.run import rss_bytes, worker_main
from ..errors import EngineError, EngineInternalError
from .base import JobDone, JobStarted, Reply, Ticket

WATCH_INTERVAL_S = 0.1
"""How often the watchdog looks at running jobs (timeouts, memory)."""

TaskState = Literal["queued", "sent", "running", "done"]


class _Task:
    """A submitted job and where it is."""

    __slots__ = (
        "frame",
        "memory_mb",
        "priority",
        "reply",
        "start_rss",
        "started_at",
        "state",
        "ticket",
        "timeout_s",
        "verdict",
    )

    def __init__(
        self,
        ticket: Ticket,
        frame: bytes,
        timeout_s: float,
        memory_mb: int | None,
        priority: int,
        reply: Reply,
    ) -> None:
        self.ticket = ticket
        self.frame = frame
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.priority = priority
        self.reply = reply
        self.state: TaskState = "queued"
        self.started_at: float | None = None
        self.start_rss = 0
        self.verdict: tuple[str, str] | None = None


class _Slot:
    """One worker process (when up) and the jobs written to it, in order."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.state: Literal["down", "starting", "up", "dead"] = "down"
        self.process: BaseProcess | None = None
        self.sock: socket.socket | None = None
        self.pid = 0
        self.tasks: dict[int, _Task] = {}  # sent or running, in send order
        self.running: _Task | None = None
        self.out = bytearray()  # frame bytes the socket did not take yet
        self.want_write = anyio.Event()
        self.error = ""
        self.generation = 0  # processes this slot has started

    @property
    def name(self) -> str:
        return f"process/{self.index} pid {self.pid}"


def _frame_header(size: int) -> bytes:
    # The framing of multiprocessing.connection, which the worker side reads.
    return struct.pack("!i", size) if size <= 0x7FFFFFFF else struct.pack("!iQ", -1, size)


class FrameReader:
    """Frames (multiprocessing.connection's framing) from a non-blocking socket,
    read in large chunks: one ``recv`` usually brings several frames (a worker's
    ``JobEnded`` and its next ``JobBegan``), so a frame costs no system call."""

    CHUNK = 1 << 16

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()

    def _frame(self) -> bytes | None:
        """The next whole frame in the buffer, taken out of it; None if incomplete."""
        buf = self._buf
        if len(buf) < 4:
            return None
        (size,) = struct.unpack_from("!i", buf)
        start = 4
        if size == -1:
            if len(buf) < 12:
                return None
            (size,) = struct.unpack_from("!Q", buf, 4)
            start = 12
        end = start + size
        if len(buf) < end:
            return None
        frame = bytes(buf[start:end])
        del buf[:end]
        return frame

    async def next(self) -> bytes:
        """Raises EOFError when the worker closed its end."""
        while (frame := self._frame()) is None:
            try:
                chunk = self._sock.recv(self.CHUNK)
            except BlockingIOError:
                await anyio.wait_readable(self._sock)
                continue
            if not chunk:
                raise EOFError("worker pipe closed")
            self._buf += chunk
        return frame


def _exit_description(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _failed_output(task: _Task, code: str, message: str, pid: int = 0) -> JobOutput:
    return JobOutput(
        plugin_id=task.ticket.plugin_id,
        result=Failed(reason_code=code, message=message),
        duration_s=0.0 if task.started_at is None else anyio.current_time() - task.started_at,
        pid=pid,
    )


class ProcessPool:
    """Warm worker processes behind the executor contract (:mod:`.base`)."""

    name = "process"

    def __init__(
        self,
        workers: int | None = None,
        *,
        pipeline: int = 1,
        short_pipeline: int = 3,
        short_job_s: float = 0.02,
        start_timeout_s: float = 120.0,
    ) -> None:
        self._capacity = workers or max(1, min(os.cpu_count() or 1, 8))
        if self._capacity < 1 or pipeline < 0 or short_pipeline < pipeline:
            raise EngineError("workers must be at least 1, pipeline >= 0, short >= pipeline")
        # Jobs written ahead per worker: ``pipeline`` normally, ``short_pipeline`` while
        # recent jobs are shorter than ``short_job_s`` (then the round trip, not the
        # job, is what a worker waits on). Deep queues only for short jobs, so a long
        # plugin never strands several others behind it.
        self._pipeline = pipeline
        self._short_pipeline = short_pipeline
        self._short_job_s = short_job_s
        self._recent_s = math.inf  # moving average of job durations; unknown at first
        self._start_timeout_s = start_timeout_s
        self._ctx = multiprocessing.get_context("spawn")
        self._slots = [_Slot(i) for i in range(self._capacity)]
        self._backlog: list[tuple[int, int, _Task]] = []  # (priority, seq, task)
        self._seq = itertools.count()
        self._tg: TaskGroup | None = None
        self._something_runs = anyio.Event()
        # Workers are started from one thread that lives as long as the pool: the
        # kernel sends PR_SET_PDEATHSIG when the *thread* that forked a worker ends,
        # and the async backends' worker threads end after 10 s idle.
        self._spawner: ThreadPoolExecutor | None = None
        self.replacements = 0
        """Worker processes started in a slot whose earlier process ended."""

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def pipeline(self) -> int:
        return self._short_pipeline if self._recent_s < self._short_job_s else self._pipeline

    def worker_pids(self) -> list[int]:
        """Pids of the live worker processes (for tools and tests)."""
        return [s.pid for s in self._slots if s.state == "up"]

    # -- lifecycle

    async def __aenter__(self) -> Self:
        if self._tg is not None:
            raise EngineInternalError("ProcessPool entered twice")
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="engine-worker-spawner")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self._watch)
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
        for slot in self._slots:
            self._kill(slot)
        tg.cancel_scope.cancel()
        await tg.__aexit__(exc_type, exc, tb)
        for _, _, task in self._backlog:
            self._complete(task, "EXECUTOR_UNAVAILABLE", "the executor was closed")
        self._backlog.clear()
        if self._spawner is not None:  # every worker is dead and buried by now
            self._spawner.shutdown(wait=False)
            self._spawner = None

    # -- the contract

    def submit(
        self, job: Job, *, timeout_s: float, memory_mb: int | None, priority: int, reply: Reply
    ) -> Ticket:
        if self._tg is None:
            raise EngineInternalError("ProcessPool.submit() outside `async with`")
        seq = next(self._seq)
        ticket = Ticket(seq, job.run_id, job.plugin_id)
        frame = TO_WORKER_ENCODER.encode(RunJob(seq=seq, job=job, recycle_mb=memory_mb or 0))
        task = _Task(ticket, frame, timeout_s, memory_mb, priority, reply)
        heapq.heappush(self._backlog, (priority, seq, task))
        self._place()
        return ticket

    def cancel(self, ticket: Ticket, reason: str, message: str) -> None:
        task = self._find(ticket)
        if task is None or task.state == "done":
            return
        state = task.state
        self._complete(task, reason, message)
        if state == "sent":
            slot = self._slot_of(task)
            if slot is not None:
                del slot.tasks[ticket.seq]
                self._write(slot, TO_WORKER_ENCODER.encode(CancelJob(seq=ticket.seq)))
        elif state == "running":
            slot = self._slot_of(task)
            if slot is not None:
                self._kill(slot)

    # -- placing jobs on workers

    def _place(self) -> None:
        """Hand queued jobs to workers: an idle worker first; else start a worker
        that is down (or wait for one starting); else write ahead to the least loaded
        worker with room."""
        backlog = self._backlog
        while backlog:
            task = backlog[0][2]
            if task.state != "queued":
                heapq.heappop(backlog)
                continue
            slot = self._choose()
            if slot is None:
                break
            heapq.heappop(backlog)
            task.state = "sent"
            slot.tasks[task.ticket.seq] = task
            self._write(slot, task.frame)
        if any(t.state == "queued" for _, _, t in backlog):
            if all(s.state == "dead" for s in self._slots):
                self._fail_backlog()
            else:
                self._start_needed()

    def _choose(self) -> _Slot | None:
        up = [s for s in self._slots if s.state == "up"]
        for slot in up:
            if not slot.tasks:
                return slot
        if any(s.state in ("down", "starting") for s in self._slots):
            return None  # better to (wait for) a worker of its own than to queue behind one
        room = 1 + self.pipeline
        candidates = [s for s in up if len(s.tasks) < room]
        return min(candidates, key=lambda s: (len(s.tasks), s.index)) if candidates else None

    def _start_needed(self) -> None:
        waiting = sum(t.state == "queued" for _, _, t in self._backlog)
        starting = sum(s.state == "starting" for s in self._slots)
        for slot in self._slots:
            if waiting <= starting:
                break
            if slot.state == "down" and self._tg is not None:
                slot.state = "starting"
                starting += 1
                self._tg.start_soon(self._serve, slot)

    def _fail_backlog(self) -> None:
        errors = sorted({s.error for s in self._slots if s.error})
        message = "no worker could be started: " + "; ".join(errors)
        for _, _, task in self._backlog:
            if task.state == "queued":
                self._complete(task, "EXECUTOR_UNAVAILABLE", message)
        self._backlog.clear()

    def _find(self, ticket: Ticket) -> _Task | None:
        for slot in self._slots:
            task = slot.tasks.get(ticket.seq)
            if task is not None and task.ticket is ticket:
                return task
        for _, _, task in self._backlog:
            if task.ticket is ticket:
                return task
        return None

    def _slot_of(self, task: _Task) -> _Slot | None:
        for slot in self._slots:
            if slot.tasks.get(task.ticket.seq) is task:
                return slot
        return None

    def _complete(self, task: _Task, code: str, message: str, pid: int = 0) -> None:
        task.state = "done"
        task.reply(JobDone(task.ticket, _failed_output(task, code, message, pid)))

    # -- one slot's life: start, serve, bury

    async def _serve(self, slot: _Slot) -> None:
        try:
            process, conn, sock, pid = await self._spawn(slot.index)
        except Exception as exc:
            slot.state = "dead"
            slot.error = str(exc)
            self._place()
            return
        slot.process, slot.sock, slot.pid = process, sock, pid
        slot.state = "up"
        self.replacements += 1 if slot.generation else 0
        slot.generation += 1
        self._place()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write_loop, slot)
                await self._read_loop(slot)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._bury(slot, conn)

    async def _read_loop(self, slot: _Slot) -> None:
        assert slot.sock is not None
        frames = FrameReader(slot.sock)
        while True:
            try:
                frame = await frames.next()
            except (EOFError, OSError, anyio.ClosedResourceError):
                return
            try:
                message = FROM_WORKER_DECODER.decode(frame)
            except Exception:
                self._kill(slot)  # a worker that speaks garbage cannot be trusted
                return
            if isinstance(message, JobBegan):
                self._began(slot, message)
            else:
                self._ended(slot, message)

    def _began(self, slot: _Slot, message: JobBegan) -> None:
        task = slot.tasks.get(message.seq)
        if task is None or task.state == "done" or next(iter(slot.tasks)) != message.seq:
            self._kill(slot)  # cancelled just as it started, or out of order
            return
        task.state = "running"
        task.started_at = anyio.current_time()
        task.start_rss = message.rss_bytes
        slot.running = task
        task.reply(JobStarted(task.ticket, slot.index, slot.pid, slot.name))
        self._something_runs.set()

    def _ended(self, slot: _Slot, message: JobEnded) -> None:
        task = slot.tasks.pop(message.seq, None)
        if task is None or task is not slot.running:
            self._kill(slot)
            return
        slot.running = None
        if task.state != "done":
            if task.verdict is None and task.memory_mb:
                # The cap holds however briefly the job broke it (between two looks
                # of the watchdog, say): judged on the job's own high-water mark.
                peak = message.peak_rss_bytes - task.start_rss
                if peak > task.memory_mb * 1_000_000:
                    task.verdict = (
                        "RESOURCE_LIMIT",
                        f"the job's memory peaked {peak / 1e6:.0f} MB above what its worker "
                        f"had when it started, above the {task.memory_mb} MB cap",
                    )
            if task.verdict is not None:  # a kill under way, or the peak: it stands
                self._complete(task, *task.verdict, pid=slot.pid)
            else:
                task.state = "done"
                self._observe(message.output.duration_s)
                task.reply(JobDone(task.ticket, message.output))
        self._place()

    async def _write_loop(self, slot: _Slot) -> None:
        """Send what :meth:`_write` queued: every frame of one turn of the event loop
        in one ``send`` (the supervisor places several jobs a turn)."""
        sock = slot.sock
        assert sock is not None
        while True:
            await slot.want_write.wait()
            slot.want_write = anyio.Event()
            self._flush(slot)
            while slot.out:
                try:
                    await anyio.wait_writable(sock)
                except (OSError, anyio.ClosedResourceError):
                    return
                self._flush(slot)

    def _write(self, slot: _Slot, frame: bytes) -> None:
        slot.out += _frame_header(len(frame))
        slot.out += frame
        if not slot.want_write.is_set():
            slot.want_write.set()

    @staticmethod
    def _flush(slot: _Slot) -> None:
        """Write what the socket takes now, without waiting."""
        if slot.sock is None or slot.sock.fileno() == -1:
            return
        try:
            while slot.out:
                sent = slot.sock.send(slot.out)
                del slot.out[:sent]
        except BlockingIOError:
            pass
        except OSError:
            slot.out.clear()  # the reader sees the death and settles the jobs

    async def _bury(self, slot: _Slot, conn: Connection) -> None:
        """Settle the jobs of a slot whose process ended, and mark it down."""
        process, pid = slot.process, slot.pid
        self._kill(slot)
        if process is not None:
            await anyio.to_thread.run_sync(process.join, 10.0)
        if slot.sock is not None:
            with contextlib.suppress(OSError):
                anyio.notify_closing(slot.sock)
            slot.sock.close()
        conn.close()
        how = _exit_description(process.exitcode if process is not None else None)
        closing = self._tg is None
        for task in list(slot.tasks.values()):
            if task.state == "done":
                continue
            if closing:
                self._complete(task, "EXECUTOR_UNAVAILABLE", "the executor was closed", pid)
            elif task.state == "running":
                if task.verdict is not None:
                    self._complete(task, *task.verdict, pid=pid)
                else:
                    self._complete(
                        task, "WORKER_CRASHED", f"worker process {pid} died ({how})", pid
                    )
            elif task.state == "sent":  # never began: safe to send again
                task.state = "queued"
                heapq.heappush(self._backlog, (task.priority, task.ticket.seq, task))
        slot.tasks.clear()
        slot.running = None
        slot.out.clear()
        slot.process, slot.sock, slot.pid = None, None, 0
        slot.state = "down"
        if not closing:
            self._place()

    @staticmethod
    def _kill(slot: _Slot) -> None:
        if slot.process is not None and slot.process.is_alive():
            with contextlib.suppress(OSError):
                slot.process.kill()

    async def _spawn(self, index: int) -> tuple[BaseProcess, Connection, socket.socket, int]:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=worker_main, args=(child,), name=f"engine-worker-{index}", daemon=True
        )
        spawner = self._spawner
        if spawner is None:
            raise EngineInternalError("ProcessPool started a worker outside `async with`")
        try:
            await anyio.to_thread.run_sync(
                lambda: spawner.submit(_start_with_fixed_hash_seed, process).result()
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        try:
            with anyio.fail_after(self._start_timeout_s):
                await anyio.wait_readable(parent.fileno())
            pid = int(parent.recv_bytes().decode())
        except BaseException as exc:
            process.kill()
            parent.close()
            with anyio.CancelScope(shield=True):  # reaped even when cancelled
                await anyio.to_thread.run_sync(process.join, 10.0)
            if not isinstance(exc, EOFError | OSError | ValueError | TimeoutError):
                raise  # cancelled while starting
            why = (
                f"no answer within {self._start_timeout_s:g}s"
                if isinstance(exc, TimeoutError)
                else f"it ended ({_exit_description(process.exitcode)}) before it was ready"
            )
            raise EngineError(
                f"worker {index} failed to start: {why}. Workers are started with the "
                "'spawn' method, which "
                "re-imports the main module: a script that uses the engine must guard its "
                "entry point with `if __name__ == '__main__':`"
            ) from exc
        sock = socket.socket(fileno=os.dup(parent.fileno()))
        sock.setblocking(False)
        return process, parent, sock, pid

    # -- the watchdog

    async def _watch(self) -> None:
        """Every ``WATCH_INTERVAL_S`` while jobs run: end those past their deadline or
        above their memory cap. One timer for the pool, none per job."""
        while True:
            if not any(s.running for s in self._slots):
                await self._something_runs.wait()
                self._something_runs = anyio.Event()
            await anyio.sleep(WATCH_INTERVAL_S)
            self._check(anyio.current_time())

    def _check(self, now: float) -> None:
        """Give a verdict to every running job past its timeout or memory cap, and
        kill its worker (the slot's task then settles the job with that verdict)."""
        for slot in self._slots:
            task = slot.running
            if task is None or task.verdict is not None or task.state == "done":
                continue
            assert task.started_at is not None
            if now - task.started_at >= task.timeout_s:
                task.verdict = (
                    "TIMEOUT",
                    f"no result after {task.timeout_s:g}s; worker {slot.pid} killed",
                )
                self._kill(slot)
            elif task.memory_mb:
                used = rss_bytes(slot.pid) - task.start_rss
                if used > task.memory_mb * 1_000_000:
                    task.verdict = (
                        "RESOURCE_LIMIT",
                        f"the job used {used / 1e6:.0f} MB more than its worker had when "
                        f"it started, above the {task.memory_mb} MB cap; worker "
                        f"{slot.pid} killed",
                    )
                    self._kill(slot)

    def _observe(self, duration_s: float) -> None:
        self._recent_s = (
            duration_s if math.isinf(self._recent_s) else 0.8 * self._recent_s + 0.2 * duration_s
        )


_ENV_LOCK = threading.Lock()


WORKER_ENVIRONMENT = {
    "PYTHONHASHSEED": "0",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
"""Set for the moment a worker is spawned (so it inherits them, and nothing else does):
string hashing, and with it the iteration order of sets of strings, is the same in
every worker and run; the math libraries use one thread, so a worker's floating-point
reductions do not depend on a thread count and workers do not fight over the cores
(the pool is the parallelism)."""


def _start_with_fixed_hash_seed(process: BaseProcess) -> None:
    """Start a spawned worker with :data:`WORKER_ENVIRONMENT`."""
    with _ENV_LOCK:
        previous = {name: os.environ.get(name) for name in WORKER_ENVIRONMENT}
        os.environ.update(WORKER_ENVIRONMENT)
        try:
            process.start()
        finally:
            for name, value in previous.items():
                if value is None:
                    del os.environ[name]
                else:
                    os.environ[name] = value
