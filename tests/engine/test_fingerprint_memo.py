"""Fingerprints remembered by file status: the content is hashed again exactly when
size, mtime, ctime, inode or device changed, and a changed file is never missed."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from engine._data import ingest as ingest_module
from engine._data.ingest import INGEST_VERSION, RACY_NS
from engine._data.ingest import remembered_fingerprint as remembered_and_saver


def remembered_fingerprint(path: Path, memo: Path) -> str:
    """As ingest uses it: the fingerprint, remembered once the file was ingested."""
    fingerprint, remember = remembered_and_saver(path, memo)
    remember()
    return fingerprint


def expected(path: Path) -> str:
    """The documented fingerprint, computed independently: sha256(bytes + version)."""
    digest = hashlib.sha256(path.read_bytes())
    digest.update(b"\x00engine-ingest-version:" + INGEST_VERSION.encode())
    return digest.hexdigest()


@pytest.fixture(autouse=True)
def hashed_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files here are hashed as if well after they were written (a file hashed in
    the same moment it was written is not remembered: see the last test)."""
    real = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real() + 10 * RACY_NS)


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files whose content was actually read and hashed."""
    seen: list[Path] = []
    real = ingest_module.fingerprint_file

    def spy(path: Path) -> str:
        seen.append(Path(path))
        return real(path)

    monkeypatch.setattr(ingest_module, "fingerprint_file", spy)
    return seen


def test_an_unchanged_file_is_hashed_once(tmp_path: Path, hashed: list[Path]) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    memo = tmp_path / "stat"
    assert remembered_fingerprint(data, memo) == expected(data)
    assert remembered_fingerprint(data, memo) == expected(data)
    assert len(hashed) == 1


def test_a_rewrite_that_restores_size_and_mtime_is_still_seen(
    tmp_path: Path, hashed: list[Path]
) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    memo = tmp_path / "stat"
    first = remembered_fingerprint(data, memo)
    st = data.stat()
    data.write_text("a,b\n1,3\n")  # same size
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime put back; ctime moved
    second = remembered_fingerprint(data, memo)
    assert second == expected(data) != first
    assert len(hashed) == 2


def test_a_touched_file_is_rehashed_and_keeps_its_fingerprint(
    tmp_path: Path, hashed: list[Path]
) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    memo = tmp_path / "stat"
    first = remembered_fingerprint(data, memo)
    os.utime(data, ns=(1, 1))
    assert remembered_fingerprint(data, memo) == first
    assert len(hashed) == 2


def test_a_replaced_file_and_a_broken_memo_are_rehashed(tmp_path: Path, hashed: list[Path]) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    memo = tmp_path / "stat"
    remembered_fingerprint(data, memo)
    other = tmp_path / "other.csv"
    other.write_text("a,b\n9,9\n")
    os.replace(other, data)  # a new inode under the same name
    assert remembered_fingerprint(data, memo) == expected(data)
    (entry,) = memo.iterdir()
    entry.write_bytes(b"{not json")
    assert remembered_fingerprint(data, memo) == expected(data)
    assert len(hashed) == 3


def test_a_file_that_fails_to_ingest_is_not_remembered(tmp_path: Path) -> None:
    from engine import DatasetError, ingest

    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError):
        ingest(bad, cache)
    assert not (cache / "stat").exists()
    good = tmp_path / "good.csv"
    good.write_text("a,b\n1,2\n")
    info = ingest(good, cache)
    (entry,) = (cache / "stat").iterdir()
    assert info.fingerprint == expected(good) and info.fingerprint in entry.read_text()


def test_a_file_hashed_just_after_it_was_written_is_hashed_again(
    tmp_path: Path, hashed: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write in the same clock tick as the one before leaves size, times and inode
    as they were: only not trusting a young file's status sees it."""
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    memo = tmp_path / "stat"
    written = max(data.stat().st_mtime_ns, data.stat().st_ctime_ns)
    monkeypatch.setattr(time, "time_ns", lambda: written + RACY_NS // 2)
    remembered_fingerprint(data, memo)
    remembered_fingerprint(data, memo)
    assert len(hashed) == 2  # young: hashed each time, not remembered
    monkeypatch.setattr(time, "time_ns", lambda: written + 2 * RACY_NS)
    remembered_fingerprint(data, memo)
    remembered_fingerprint(data, memo)
    assert len(hashed) == 3  # settled: remembered, then reused
