"""The append-only, hash-chained event log (``events.jsonl``).

One JSON record per line. Each record's ``prev`` is the SHA-256 of the previous
record's bytes (without the newline), so an edited, removed or reordered record
breaks the chain at a known sequence number. Each record is written with a single
``os.write`` on an ``O_APPEND`` descriptor, so a crash of the process loses at most
the record being written; ``close`` fsyncs.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from contracts.events import DECODER, ENCODER, GENESIS, Event

from ..errors import LogIntegrityError

E = TypeVar("E", bound=Event)

LOG_NAME = "events.jsonl"


def record_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


class EventLog:
    """The single writer of one run's log."""

    def __init__(self, path: Path, *, seq: int = 0, prev: str = GENESIS) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        if seq == 0:
            flags |= os.O_EXCL
        self._fd: int | None = os.open(path, flags, 0o644)
        self._seq = seq
        self._prev = prev

    @property
    def next_seq(self) -> int:
        return self._seq

    @property
    def last_hash(self) -> str:
        return self._prev

    def append(self, cls: type[E], **fields: Any) -> E:
        """Build an event of type ``cls`` with the chain fields filled in and write it."""
        if self._fd is None:
            raise ValueError(f"{self.path}: log is closed")
        event = cls(
            seq=self._seq, prev=self._prev, wall=time.time(), mono=time.monotonic(), **fields
        )
        line = ENCODER.encode(event)
        data = memoryview(line + b"\n")
        while data:  # a write may be short (a large record, a full disk's last bytes)
            data = data[os.write(self._fd, data) :]
        self._prev = record_hash(line)
        self._seq += 1
        return event

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
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
