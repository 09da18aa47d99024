"""``atomic_write``: the old content or all of the new, never a torn file or a leftover."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import atomic_write


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
