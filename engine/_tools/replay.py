"""``engine replay RUN_DIR``: prove a run's artifacts from its event log alone.

Replay verifies the hash chain (:func:`~engine._core.eventlog.read_log`), folds the
log with the current reducer, rebuilds ``report.json``, ``run_manifest.json``,
``report.md`` and ``report.html`` with the very function the run used to write them
(:func:`~engine._core.artifacts.write_artifacts`, into a scratch folder) and
compares them with the stored files, byte for byte. Replay never runs a plugin and
never touches the run directory.

A difference is reported as its first JSON path (``$.plugins[3].status``) with the
stored and the replayed value; a difference in bytes only (same JSON value,
different formatting) is reported at ``$`` with the first differing line.

``compat`` is for artifacts written by an older version (the recorded fixtures in
``tests/fixtures/logs/``): keys that the current version adds, and artifacts that
version did not store, are listed as notes instead of divergences. Every value the
stored artifact *does* hold must still be equal. Without ``compat`` nothing is
tolerated: replay is fail-closed.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any, Final

from attrs import define, field

from contracts.events import Event
from engine import (
    HTML_NAME,
    LOG_NAME,
    MANIFEST_NAME,
    MARKDOWN_NAME,
    REPORT_NAME,
    LogIntegrityError,
    RunState,
    fold,
    last_hash,
    read_log,
    write_artifacts,
)

__all__ = [
    "ABSENT",
    "ARTIFACTS",
    "Divergence",
    "ReplayResult",
    "finished_run",
    "first_difference",
    "json_path",
    "rebuild_artifacts",
    "replay",
    "show",
]

ARTIFACTS: Final = (REPORT_NAME, MANIFEST_NAME, MARKDOWN_NAME, HTML_NAME)
"""What replay rebuilds and compares, in this order."""


class _Absent:
    """The value on the side of a comparison where a key or item does not exist."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Final = _Absent()

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def json_path(parent: str, key: str | int) -> str:
    """``$.a.b[3]``; keys that are not identifiers are quoted: ``$["a b"]``."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if _IDENT.match(key):
        return f"{parent}.{key}"
    return f"{parent}[{json.dumps(key)}]"


def show(value: Any, limit: int = 200) -> str:
    """A value as compact JSON for a one-line message (long values are cut)."""
    if value is ABSENT:
        return "<absent>"
    try:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    # bool is an int and 1 == 1.0 in Python; JSON tells them apart, and so do we.
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def first_difference(
    a: Any,
    b: Any,
    path: str = "$",
    *,
    added: list[str] | None = None,
) -> tuple[str, Any, Any] | None:
    """The first place where JSON values ``a`` and ``b`` differ: ``(path, a_value, b_value)``.

    Objects are walked in ``a``'s key order, then keys only ``b`` has; arrays item by
    item. ``ABSENT`` stands for a missing key or item. With ``added`` (a list), keys
    present only in ``b`` are appended to it instead of being a difference.
    """
    if _kind(a) != _kind(b):
        return path, a, b
    if isinstance(a, dict):
        for key, value in a.items():
            where = json_path(path, key)
            if key not in b:
                return where, value, ABSENT
            found = first_difference(value, b[key], where, added=added)
            if found is not None:
                return found
        for key in b:
            if key not in a:
                if added is None:
                    return json_path(path, key), ABSENT, b[key]
                added.append(json_path(path, key))
        return None
    if isinstance(a, list | tuple):
        for index, (x, y) in enumerate(zip(a, b, strict=False)):
            found = first_difference(x, y, json_path(path, index), added=added)
            if found is not None:
                return found
        if len(a) != len(b):
            n = min(len(a), len(b))
            return (
                json_path(path, n),
                a[n] if n < len(a) else ABSENT,
                b[n] if n < len(b) else ABSENT,
            )
        return None
    return None if a == b else (path, a, b)


@define(frozen=True, kw_only=True)
class Divergence:
    """The first place where a stored artifact differs from its replay."""

    artifact: str
    path: str
    stored: Any
    replayed: Any

    def __str__(self) -> str:
        return (
            f"{self.artifact}: {self.path}: stored {show(self.stored)}, "
            f"replayed {show(self.replayed)}"
        )


@define(kw_only=True)
class ReplayResult:
    """What replaying one run directory found."""

    run_dir: Path
    events: int
    status: str
    identical: list[str] = field(factory=list)
    divergences: list[Divergence] = field(factory=list)
    notes: list[str] = field(factory=list)

    @property
    def ok(self) -> bool:
        return not self.divergences

    @property
    def first(self) -> Divergence | None:
        return self.divergences[0] if self.divergences else None


def rebuild_artifacts(state: RunState, last_event_hash: str) -> dict[str, bytes]:
    """The artifacts of a finished run's state, exactly as the run writes them."""
    with tempfile.TemporaryDirectory(prefix="engine-replay-") as scratch:
        folder = Path(scratch)
        write_artifacts(folder, state, last_event_hash)
        return {name: (folder / name).read_bytes() for name in ARTIFACTS}


def _first_line_difference(stored: bytes, replayed: bytes) -> tuple[str, str, str]:
    a = stored.decode("utf-8", "replace").splitlines()
    b = replayed.decode("utf-8", "replace").splitlines()
    for number, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        if x != y:
            return f"line {number}", x, y
    n = min(len(a), len(b))
    return (
        f"line {n + 1}",
        a[n] if n < len(a) else "<end of file>",
        b[n] if n < len(b) else "<end of file>",
    )


def _compare_json(
    name: str, stored: bytes, replayed: bytes, compat: bool, notes: list[str]
) -> Divergence | None:
    try:
        old = json.loads(stored)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Divergence(
            artifact=name, path="$", stored=f"<unreadable JSON: {exc}>", replayed="<valid JSON>"
        )
    new = json.loads(replayed)
    added: list[str] | None = [] if compat else None
    found = first_difference(old, new, added=added)
    if found is not None:
        path, a, b = found
        return Divergence(artifact=name, path=path, stored=a, replayed=b)
    if added:
        notes.append(
            f"{name}: written by an older version; it lacks {len(added)} field(s) the "
            f"current version adds: {', '.join(added[:5])}" + (" ..." if len(added) > 5 else "")
        )
        return None
    if not compat:
        where, a_line, b_line = _first_line_difference(stored, replayed)
        return Divergence(
            artifact=name, path=f"$ (same JSON, {where})", stored=a_line, replayed=b_line
        )
    return None


def finished_run(run_dir: Path) -> tuple[list[Event], RunState]:
    """The verified log of a finished run and its fold.

    Raises:
        LogIntegrityError: the log is broken, or the run never finished.
    """
    log = run_dir / LOG_NAME
    events = read_log(log)
    state = fold(events)
    if state.finished is None:
        raise LogIntegrityError(
            str(log),
            len(events),
            "the run never finished (no run_finished record): resume it first",
        )
    return events, state


def replay(run_dir: str | Path, *, compat: bool = False) -> ReplayResult:
    """Replay ``run_dir`` from its event log and compare the stored artifacts.

    Args:
        run_dir: a run directory holding ``events.jsonl``.
        compat: the artifacts may predate the current version (see the module
            docstring): missing artifacts and fields are notes, not divergences.

    Returns:
        The result; ``ok`` when every stored artifact equals its replay.

    Raises:
        LogIntegrityError: the log is missing, undecodable, out of sequence, its
            hash chain is broken (naming the record), or the run never finished.
        NondeterminismError: the log is intact but cannot be folded (an event out
            of place for the current reducer).
    """
    folder = Path(run_dir)
    log = folder / LOG_NAME
    events, state = finished_run(folder)
    rebuilt = rebuild_artifacts(state, last_hash(events, log))
    status = state.finished.status if state.finished is not None else ""
    result = ReplayResult(run_dir=folder, events=len(events), status=status)
    for name in ARTIFACTS:
        path = folder / name
        if not path.is_file():
            if compat:
                result.notes.append(f"{name}: not stored (written by a version without it)")
            else:
                result.divergences.append(
                    Divergence(
                        artifact=name,
                        path="$",
                        stored=ABSENT,
                        replayed=f"<{len(rebuilt[name])} bytes>",
                    )
                )
            continue
        stored = path.read_bytes()
        if stored == rebuilt[name]:
            result.identical.append(name)
            continue
        compare = _compare_json if name.endswith(".json") else _compare_text
        divergence = compare(name, stored, rebuilt[name], compat, result.notes)
        if divergence is not None:
            result.divergences.append(divergence)
    return result


def _compare_text(
    name: str, stored: bytes, replayed: bytes, compat: bool, notes: list[str]
) -> Divergence | None:
    if compat:
        # The Markdown and HTML renderings are for people and may change between versions.
        notes.append(f"{name}: differs from the current rendering (not compared in compat)")
        return None
    where, a_line, b_line = _first_line_difference(stored, replayed)
    return Divergence(artifact=name, path=where, stored=a_line, replayed=b_line)
