"""The append-only, hash-chained event log (``events.jsonl``).

One JSON record per line. Each record's ``prev`` is the SHA-256 of the previous
record's bytes (without the newline), so an edited, removed or reordered record
breaks the chain at a known sequence number. Records are written with one
``os.write`` loop on an ``O_APPEND`` descriptor: each as it is appended, or, with
``append(..., flush=False)``, gathered until :meth:`EventLog.flush` writes them
together (the supervisor flushes once per turn of its loop, before it waits for
anything). A crash of the process loses at most the records not yet written (a torn
tail, which resume cuts): nothing a resumed run needs, since it runs again every
plugin whose end is not in the log.

Durability (the fsync policy): a crash of the *machine* loses only what the kernel
had not written. The log is synced (``fdatasync``) by a background thread as soon
as possible after every record that settles something: ``plan_built``, each
``plugin_finished`` and ``preflight_failed``, ``run_resumed``, ``gate_evaluated``
and ``run_finished``; syncs requested while one is under way, or within
``SYNC_INTERVAL_S`` of the last one, are merged into the next (group commit), so
the event loop never waits for the disk and a power loss loses at most the records
of the last ``SYNC_INTERVAL_S`` plus one sync's duration. ``close`` syncs
everything. (The interval matters: a sync after every finished plugin makes each
``os.write`` of the log wait on the syncing thread, a tenfold cost per record.)
A new log's directory entry is synced at creation.

One writer: the log's file is locked (``flock``, exclusive) for as long as it is
open, so a second engine process resuming or running the same run directory is
refused instead of interleaving sequence numbers.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from contracts.events import (
    DECODER,
    ENCODER,
    GENESIS,
    Event,
    GateEvaluated,
    PlanBuilt,
    PluginFinished,
    PreflightFailed,
    RunFinished,
    RunResumed,
)

from ..errors import ConfigError, LogIntegrityError

E = TypeVar("E", bound=Event)

LOG_NAME = "events.jsonl"
SYNC_AFTER: tuple[type[Event], ...] = (
    PlanBuilt,
    PluginFinished,
    PreflightFailed,
    RunResumed,
    GateEvaluated,
    RunFinished,
)
"""Records after which the log is synced to disk (in the background)."""


def record_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            f"{path.parent}: the run is in use by another engine (its event log is locked); "
            "wait for it to end"
        ) from None


SYNC_INTERVAL_S = 0.02  # at most one background sync per this many seconds


class _Syncer:
    """Group commit: ``fdatasync`` in a thread when asked, at most once per
    ``SYNC_INTERVAL_S``, merging the requests in between."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._cond = threading.Condition()
        self._wanted = False
        self._idle = False
        self._stopping = False
        self.syncs = 0
        self._thread = threading.Thread(target=self._run, name="event-log-sync", daemon=True)
        self._thread.start()

    def request(self) -> None:
        # The thread looks at the flag after each sync and interval: it needs waking
        # only when it went to sleep with nothing to do (a notify wakes a thread and
        # hands it the GIL: too dear to do for every record of a busy run).
        self._wanted = True
        if self._idle:
            with self._cond:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._wanted and not self._stopping:
                    self._idle = True
                    # Unlocked flag reads: a request between the check and the wait
                    # notifies (it sees _idle); one just before it is seen below.
                    if self._wanted:
                        break
                    self._cond.wait()
                self._idle = False
                if not self._wanted:
                    return
                self._wanted = False
            with contextlib.suppress(OSError):  # close() syncs again and reports
                os.fdatasync(self._fd)
            self.syncs += 1
            with self._cond:  # let requests gather; stop() ends the wait early
                self._cond.wait_for(lambda: self._stopping, timeout=SYNC_INTERVAL_S)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()


class EventLog:
    """The single writer of one run's log (see the module docstring)."""

    def __init__(
        self, path: Path, *, seq: int = 0, prev: str = GENESIS, fd: int | None = None
    ) -> None:
        """Create a new log at ``path`` (which must not exist), locked.

        ``seq``, ``prev`` and ``fd`` are for :meth:`reopen`, which continues one.
        """
        self.path = path
        if fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            fd = os.open(path, flags, 0o644)
            _lock(fd, path)
            _sync_dir(path.parent)
            _sync_dir(path.parent.parent)
        self._fd: int | None = fd
        self._seq = seq
        self._prev = prev
        self._out = bytearray()  # records appended, not yet written
        self._sync_wanted = False
        self._syncer = _Syncer(fd)

    @classmethod
    def reopen(cls, path: Path) -> tuple[EventLog, list[Event]]:
        """Lock an existing log, cut a torn last record, and continue it.

        Returns the log (positioned after its last record) and its events.

        Raises:
            ConfigError: another engine holds the log.
            LogIntegrityError: the log is missing or broken before its tail.
        """
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except FileNotFoundError:
            raise LogIntegrityError(str(path), 0, "no such event log") from None
        _lock(fd, path)
        try:
            events = read_log(path, repair_tail=True)
            prev = last_hash(events, path)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, seq=len(events), prev=prev, fd=fd), events

    @property
    def next_seq(self) -> int:
        return self._seq

    @property
    def last_hash(self) -> str:
        return self._prev

    @property
    def syncs(self) -> int:
        """Background syncs done so far."""
        return self._syncer.syncs

    def append(self, cls: type[E], *, flush: bool = True, **fields: Any) -> E:
        """Build an event of type ``cls`` with the chain fields filled in and write it
        (with ``flush=False``, at the next :meth:`flush`)."""
        if self._fd is None:
            raise ValueError(f"{self.path}: log is closed")
        event = cls(
            seq=self._seq, prev=self._prev, wall=time.time(), mono=time.monotonic(), **fields
        )
        line = ENCODER.encode(event)
        self._out += line
        self._out += b"\n"
        self._prev = record_hash(line)
        self._seq += 1
        if cls in SYNC_AFTER:
            self._sync_wanted = True
        if flush:
            self.flush()
        return event

    def flush(self) -> None:
        """Write every record appended since the last write, with one ``os.write`` loop."""
        if not self._out or self._fd is None:
            return
        data = memoryview(self._out)
        while data:  # a write may be short (a large record, a full disk's last bytes)
            data = data[os.write(self._fd, data) :]
        data.release()
        self._out.clear()
        if self._sync_wanted:
            self._sync_wanted = False
            self._syncer.request()

    def close(self) -> None:
        """Write and sync everything and release the lock (blocking: call it off the loop)."""
        if self._fd is not None:
            self.flush()
            self._syncer.stop()
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None


def read_log(path: Path, *, verify: bool = True, repair_tail: bool = False) -> list[Event]:
    """Decode every record of ``path``, verifying sequence numbers and the hash chain.

    Args:
        verify: check ``seq`` and ``prev`` of every record.
        repair_tail: a crash can leave the last record half-written (no newline, or
            undecodable). With ``repair_tail`` that torn record is cut from the file
            (resume does this); without it, it is an error like any other.

    Raises:
        LogIntegrityError: naming the first record that is undecodable, out of
            sequence, or whose ``prev`` does not match the previous record.
    """
    shown = str(path)
    if not path.is_file():
        raise LogIntegrityError(shown, 0, "no such event log")
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete = lines[:-1]  # everything before the last newline
    tail = lines[-1]  # bytes after the last newline: empty unless torn
    events: list[Event] = []
    prev = GENESIS
    for number, line in enumerate([*complete, tail] if tail else complete):
        is_tail = number == len(complete)
        try:
            if is_tail:
                raise msgspec.DecodeError("record has no terminating newline")
            event = DECODER.decode(line)
        except msgspec.DecodeError as exc:
            if repair_tail and number >= len(complete) - 1 and (is_tail or not tail):
                good = sum(len(x) + 1 for x in complete[:number])
                with path.open("r+b") as fh:
                    fh.truncate(good)
                break
            raise LogIntegrityError(shown, number, f"undecodable record: {exc}") from None
        if verify:
            if event.seq != number:
                raise LogIntegrityError(
                    shown, number, f"out of sequence: record says seq {event.seq}"
                )
            if event.prev != prev:
                raise LogIntegrityError(
                    shown, number, "hash chain broken: prev does not match the previous record"
                )
        prev = record_hash(line)
        events.append(event)
    return events


def last_hash(events: list[Event], path: Path) -> str:
    """The hash the next record must carry as ``prev``."""
    if not events:
        return GENESIS
    with path.open("rb") as fh:
        lines = fh.read().split(b"\n")
    return record_hash(lines[len(events) - 1])
