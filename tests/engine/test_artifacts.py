"""``atomic_write`` and ``AtomicFiles``: the old content or all of the new, never a torn
file or a leftover temporary."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import atomic_write
from engine._core.artifacts import AtomicFiles


def test_atomic_write_replaces_the_file_whole_and_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(b"old")
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left
    # A target that cannot be replaced (a directory that holds a file): the error is
    # raised, the directory is untouched and the temporary file is removed.
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "x").write_bytes(b"x")
    with pytest.raises(IsADirectoryError):
        atomic_write(folder, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "d"]
    assert [p.name for p in folder.iterdir()] == ["x"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    with pytest.raises(TypeError):  # the write itself fails (not bytes)
        atomic_write(path, "text")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_atomic_files_remove_every_temporary_when_one_write_failed(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), AtomicFiles() as files:
        files.add(tmp_path / "missing" / "a.json", b"a")  # no such folder: fails
        files.add(tmp_path / "b.md", b"b")
        files.commit()
    assert list(tmp_path.iterdir()) == []
