"""The hash-chained event log: tamper evidence and a torn tail."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from contracts import DatasetInfo
from contracts.events import GENESIS, RunStarted
from engine import LogIntegrityError, read_log
from engine._core.eventlog import EventLog, record_hash


def _write(path: Path, n: int = 4) -> None:
    log = EventLog(path)
    # A space inside a record: the records are told apart by newlines only.
    info = DatasetInfo(source="my data.csv", fingerprint="f", rows=1, columns=())
    for i in range(n):
        log.append(
            RunStarted,
            run_id=f"r{i}",
            mode="two_lane_strict",
            seed=i,
            engine_version="t",
            contracts_version="1",
            dataset=info,
            plugins_dir="p",
            executor="inline",
            workers=1,
        )
    log.close()


def test_chain_links_every_record(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _write(path)
    lines = path.read_bytes().splitlines()
    events = read_log(path)
    assert [e.seq for e in events] == [0, 1, 2, 3]
    assert events[0].prev == GENESIS
    for line, event in zip(lines, events[1:], strict=False):
        assert event.prev == hashlib.sha256(line).hexdigest() == record_hash(line)


def test_log_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _write(path, 1)
    with pytest.raises(FileExistsError):
        EventLog(path)


@pytest.mark.parametrize("how", ["edit", "reorder", "delete", "garbage"])
def test_tampering_is_detected_with_its_sequence_number(tmp_path: Path, how: str) -> None:
    path = tmp_path / "events.jsonl"
    _write(path)
    lines = path.read_bytes().splitlines()
    if how == "edit":
        record = json.loads(lines[1])
        record["seed"] = 99
        lines[1] = json.dumps(record).encode()
        expected = 2  # record 1 still decodes; record 2's prev no longer matches
    elif how == "reorder":
        lines[1], lines[2] = lines[2], lines[1]
        expected = 1
    elif how == "delete":
        del lines[2]
        expected = 2
    else:
        lines[3] = b"{not json"
        expected = 3
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(LogIntegrityError) as info:
        read_log(path)
    assert info.value.seq == expected
    words = {
        "edit": "hash chain broken: prev does not match the previous record",
        "reorder": "out of sequence: record says seq 2",
        "delete": "out of sequence: record says seq 3",
    }
    if how in words:
        assert str(info.value) == f"{path}: record {expected}: {words[how]}"
    else:
        assert str(info.value).startswith(f"{path}: record 3: undecodable record: ")
    if how != "garbage":  # without verification the records are read as they are
        assert len(read_log(path, verify=False)) == len(lines)


@pytest.mark.parametrize("torn", [b'{"type":"run_sta', b"garbage-without-newline"])
def test_torn_tail_is_cut_only_when_asked(tmp_path: Path, torn: bytes) -> None:
    path = tmp_path / "events.jsonl"
    _write(path, 3)
    whole = path.read_bytes()
    path.write_bytes(whole + torn)
    with pytest.raises(LogIntegrityError) as info:
        read_log(path)
    assert str(info.value) == (
        f"{path}: record 3: undecodable record: record has no terminating newline"
    )
    events = read_log(path, repair_tail=True)
    assert [e.seq for e in events] == [0, 1, 2]
    assert path.read_bytes() == whole  # the torn record is gone, nothing else changed


def test_a_bad_record_before_the_tail_is_never_repaired(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    _write(path, 3)
    lines = path.read_bytes().splitlines()
    lines[1] = b"{broken"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(LogIntegrityError) as info:
        read_log(path, repair_tail=True)
    assert info.value.seq == 1
    # The last complete record is not the tail when a torn one follows it.
    lines = [*lines[:1], *lines[2:]]
    lines[-1] = b"{broken"
    path.write_bytes(b"\n".join(lines) + b'\n{"type":"run_sta')
    with pytest.raises(LogIntegrityError) as info:
        read_log(path, repair_tail=True)
    assert info.value.seq == 1


def test_an_undecodable_last_record_is_the_torn_tail(tmp_path: Path) -> None:
    # A crash can leave the newline written and the record's bytes not (a hole).
    path = tmp_path / "events.jsonl"
    _write(path, 3)
    whole = path.read_bytes()
    path.write_bytes(whole + b"\0\0\0\n")
    with pytest.raises(LogIntegrityError) as info:
        read_log(path)
    assert info.value.seq == 3
    assert [e.seq for e in read_log(path, repair_tail=True)] == [0, 1, 2]
    assert path.read_bytes() == whole


def test_reopen_continues_the_chain_and_the_lock_holds(tmp_path: Path) -> None:
    from engine import ConfigError
    from engine._core.eventlog import last_hash

    path = tmp_path / "run" / "events.jsonl"
    path.parent.mkdir()
    _write(path, 2)
    log, events = EventLog.reopen(path)
    last_line = path.read_bytes().splitlines()[-1]
    assert (log.next_seq, log.last_hash) == (2, hashlib.sha256(last_line).hexdigest())
    assert last_hash(events, path) == log.last_hash and last_hash([], path) == GENESIS
    with pytest.raises(ConfigError) as info:
        EventLog.reopen(path)
    assert str(info.value) == (
        f"{path.parent}: the run is in use by another engine (its event log is locked); "
        "wait for it to end"
    )
    event = log.append(RunStarted, **_FIELDS)
    assert (event.seq, event.prev) == (2, hashlib.sha256(last_line).hexdigest())
    log.close()
    with pytest.raises(ValueError, match="log is closed"):
        log.append(RunStarted, **_FIELDS)
    assert [e.seq for e in read_log(path)] == [0, 1, 2]
    with pytest.raises(LogIntegrityError, match="record 0: no such event log"):
        EventLog.reopen(tmp_path / "nowhere.jsonl")
    with pytest.raises(LogIntegrityError) as missing:
        read_log(tmp_path / "nowhere.jsonl")
    assert str(missing.value) == f"{tmp_path / 'nowhere.jsonl'}: record 0: no such event log"


_FIELDS = {
    "run_id": "r",
    "mode": "two_lane_strict",
    "seed": 0,
    "engine_version": "t",
    "contracts_version": "1",
    "dataset": DatasetInfo(source="d.csv", fingerprint="f", rows=1, columns=()),
    "plugins_dir": "p",
    "executor": "inline",
    "workers": 1,
}


def test_reopen_cuts_a_torn_tail_and_refuses_a_broken_log(tmp_path: Path) -> None:
    path = tmp_path / "run" / "events.jsonl"
    path.parent.mkdir()
    _write(path, 2)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"type":"run_sta')  # a crash in the middle of a write
    log, events = EventLog.reopen(path)
    assert log.path == path
    assert [e.seq for e in events] == [0, 1] and path.read_bytes() == whole
    log.append(RunStarted, **_FIELDS)
    log.close()
    assert [e.seq for e in read_log(path)] == [0, 1, 2]
    # A record broken before the tail is refused, and the lock is released with it.
    lines = path.read_bytes().splitlines()
    lines[0] = b"{broken"
    path.write_bytes(b"\n".join(lines) + b"\n")
    for _ in range(2):
        with pytest.raises(LogIntegrityError) as info:
            EventLog.reopen(path)
        assert (info.value.path, info.value.seq) == (str(path), 0)
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(LogIntegrityError) as info:
        EventLog.reopen(missing)
    assert str(info.value) == f"{missing}: record 0: no such event log"
    assert info.value.path == str(missing)


def test_settling_records_are_synced_in_the_background(tmp_path: Path) -> None:
    from contracts import Na
    from contracts.events import PluginFinished

    old = os.umask(0)
    try:
        log = EventLog(tmp_path / "events.jsonl")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "events.jsonl").stat().st_mode) == 0o644
    # A log left open must not keep the interpreter from exiting.
    thread = log._syncer._thread  # other tests' logs may have threads of the same name
    assert (thread.name, thread.daemon, thread.is_alive()) == ("event-log-sync", True, True)
    log.append(RunStarted, **_FIELDS)  # settles nothing: no sync
    log.close()
    assert log.syncs == 0
    assert not thread.is_alive()
    log, _ = EventLog.reopen(tmp_path / "events.jsonl")
    result = Na(reason_code="NO_SIGNIFICANT_EFFECT", explanation="x")
    log.append(PluginFinished, plugin_id="p", lane="decision", result=result)
    log.close()  # the pending request is served before the syncer stops
    assert log.syncs == 1
