"""The fingerprint cache: plugin results reused only when nothing they depend on
changed.

A result's key hashes every input that could change it; each component has its
miss reason (the table with what each covers is in docs/architecture.md, "Result
cache"):

- ``code`` (``code_changed``): every file in the plugin folder, the contracts
  version and the contracts package's sources;
- ``engine`` (``engine_changed``): the engine version and the sources of what runs
  in a worker (``engine/_worker``: job execution, output boundary, context, reader);
- ``environment`` (``environment_changed``): Python, the machine type and the
  versions of the libraries that compute results (:data:`RESULT_LIBRARIES`);
- ``settings`` (``settings_changed``): the plugin's resolved settings;
- ``dataset`` (``dataset_changed``): the content fingerprint (bytes + ingest version);
- ``schema`` (``schema_changed``): column names, types, roles and event roles;
- ``policy`` (``policy_changed``): lane-policy version, mode and the step's lane
  (a lane override changes it);
- ``seed`` (``seed_changed``): the plugin's seed;
- ``upstream`` (``upstream_changed``): the keys of its dependencies (or the outcome
  of a dependency decided without running).

On a miss the reason is the first component (in that order) in which the closest
stored entry for the plugin differs, or ``absent``. The store is SQLite in WAL mode
(two concurrent runs can share it); components are stored as one JSON object, so a
component added later needs no migration (older entries simply differ in it). A
run loads the entries of its plan in one query and writes its new results in one
transaction, so looking up a plugin costs no I/O. Failed results are never stored.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.metadata
import json
import platform
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec
from attrs import define

import engine._worker as _worker_package
from contracts import DatasetInfo, PlanStep, stable_hash
from contracts._base import Wire
from contracts.dataset import DataAccess
from contracts.results import Failed, PluginResult

from . import ENGINE_VERSION
from .plan import LANE_POLICY_VERSION

CACHE_FILE = "cache-v2.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    plugin_id TEXT NOT NULL,
    parts TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_plugin ON entries (plugin_id, created);
"""
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("code", "code_changed"),
    ("engine", "engine_changed"),
    ("environment", "environment_changed"),
    ("settings", "settings_changed"),
    ("dataset", "dataset_changed"),
    ("schema", "schema_changed"),
    ("policy", "policy_changed"),
    ("seed", "seed_changed"),
    ("upstream", "upstream_changed"),
)
"""Key components in the order miss reasons are chosen, with their reasons."""

RESULT_LIBRARIES = (
    "numpy",
    "scipy",
    "duckdb",
    "pyarrow",
    "msgspec",
    "pandas",
    "statsmodels",
    "scikit-learn",
    "lifelines",
    "ruptures",
)
"""Distributions whose version can change a plugin's result (absent ones count too)."""


class CachedResult(Wire, frozen=True):
    result: PluginResult
    accesses: tuple[DataAccess, ...] = ()
    duration_s: float = 0.0


_ENCODER = msgspec.json.Encoder(order="deterministic")
_DECODER = msgspec.json.Decoder(CachedResult)


WORKER_DIR = Path(_worker_package.__file__).resolve().parent


@functools.lru_cache(maxsize=4)
def engine_code_hash(root: Path = WORKER_DIR) -> str:
    """The engine version and every source file of what runs inside a worker."""
    h = hashlib.sha256(f"engine={ENGINE_VERSION}\n".encode())
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, str]:
    """Python and the versions of :data:`RESULT_LIBRARIES` (``absent`` if missing)."""
    found = {"python": f"{platform.python_implementation()} {platform.python_version()}"}
    found["machine"] = platform.machine()
    for name in RESULT_LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def schema_hash(dataset: DatasetInfo) -> str:
    """The normalized schema a plugin sees (not the counts, not the paths)."""
    return stable_hash({"columns": dataset.schema_view(), "event_roles": dataset.event_roles})


@define(frozen=True, kw_only=True)
class CacheKey:
    """The components of a key (:data:`COMPONENTS`); ``key`` hashes them all."""

    plugin_id: str
    parts: dict[str, str]
    key: str

    def differing(self, other: CacheKey) -> list[str]:
        """Miss reasons of the components in which ``other`` differs, in order."""
        return [r for name, r in COMPONENTS if self.parts.get(name) != other.parts.get(name)]


def make_key(
    step: PlanStep,
    *,
    mode: str,
    dataset: DatasetInfo,
    seed: int,
    upstream_keys: Iterable[str],
) -> CacheKey:
    parts = {
        "code": step.code_hash,
        "engine": engine_code_hash(),
        "environment": stable_hash(environment()),
        "settings": stable_hash(step.settings),
        "dataset": dataset.fingerprint,
        "schema": schema_hash(dataset),
        "policy": f"{LANE_POLICY_VERSION}:{mode}:{step.lane}",
        "seed": str(seed),
        "upstream": stable_hash(sorted(upstream_keys)),
    }
    return CacheKey(
        plugin_id=step.plugin_id,
        parts=parts,
        key=stable_hash({"plugin_id": step.plugin_id, **parts}),
    )


def cacheable(result: PluginResult, ran: bool) -> bool:
    """Failed results, outcomes the engine decided without running, and results that
    list artifact files are not stored: the files are in the run that wrote them, so a
    hit would name files its own run does not have; such a plugin runs again."""
    return ran and not isinstance(result, Failed) and not getattr(result, "artifacts", ())


class ResultCache:
    """One SQLite store, shared by every run under a runs directory."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / CACHE_FILE
        # Used from the event loop and from the thread that prepares a run: one
        # connection, serialized by a lock.
        self._lock = threading.Lock()
        # Switching to WAL and creating the schema do not wait on SQLite's busy
        # timeout when another process does the same at that moment ("database is
        # locked"): engines opening one store at once take turns here.
        with open(directory / ".cache.lock", "a+b") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            self._con = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._con.executescript(_SCHEMA)
        self._pending: list[tuple[CacheKey, bytes]] = []

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._con.close()

    def preload(self, plugin_ids: Iterable[str]) -> dict[str, list[tuple[CacheKey, bytes]]]:
        """Every entry of these plugins, newest first, by plugin id."""
        ids = sorted(set(plugin_ids))
        found: dict[str, list[tuple[CacheKey, bytes]]] = {pid: [] for pid in ids}
        with self._lock:
            self._preload(ids, found)
        return found

    def _preload(self, ids: list[str], found: dict[str, list[tuple[CacheKey, bytes]]]) -> None:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._con.execute(
                "SELECT key, plugin_id, parts, payload FROM entries "
                f"WHERE plugin_id IN ({','.join('?' * len(chunk))}) ORDER BY created DESC, key",
                chunk,
            ).fetchall()
            for key, plugin_id, parts, payload in rows:
                entry = CacheKey(key=key, plugin_id=plugin_id, parts=json.loads(parts))
                found[plugin_id].append((entry, payload))

    def put(self, key: CacheKey, entry: CachedResult) -> None:
        self._pending.append((key, _ENCODER.encode(entry)))

    def flush(self) -> None:
        """Write every pending entry in one transaction."""
        if not self._pending:
            return
        now = time.time()
        with self._lock, self._con:
            self._con.execute("BEGIN IMMEDIATE")
            self._con.executemany(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)",
                [
                    (k.key, k.plugin_id, json.dumps(k.parts, sort_keys=True), payload, now)
                    for k, payload in self._pending
                ],
            )
        self._pending.clear()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return self._stats()

    def _stats(self) -> dict[str, int]:
        entries, plugins, size = self._con.execute(
            "SELECT count(*), count(DISTINCT plugin_id), coalesce(sum(length(payload)), 0) "
            "FROM entries"
        ).fetchone()
        return {"entries": entries, "plugins": plugins, "payload_bytes": size}

    def prune(self, *, keep_per_plugin: int = 1) -> int:
        """Keep only the newest ``keep_per_plugin`` entries of each plugin."""
        with self._lock, self._con:
            cursor = self._con.execute(
                "DELETE FROM entries WHERE key IN (SELECT key FROM (SELECT key, row_number() "
                "OVER (PARTITION BY plugin_id ORDER BY created DESC, key) AS n FROM entries) "
                "WHERE n > ?)",
                (keep_per_plugin,),
            )
        with self._lock:
            self._con.execute("VACUUM")
        return cursor.rowcount


class RunCache:
    """The cache as one run sees it: preloaded, decided in memory."""

    def __init__(self, store: ResultCache, plugin_ids: Iterable[str]) -> None:
        self._store = store
        self._entries = store.preload(plugin_ids)
        # The key components computed once a process (the worker sources read and
        # hashed, the libraries' metadata looked up: tens of milliseconds the first
        # time) are computed here, in the preparing thread, not by the first key
        # the supervisor makes on the event loop.
        engine_code_hash()
        environment()

    def lookup(self, key: CacheKey) -> tuple[CachedResult | None, str]:
        """The cached result for ``key`` (and ``"hit"``), or None and the miss reason."""
        entries = self._entries.get(key.plugin_id, [])
        for candidate, payload in entries:
            if candidate.key == key.key:
                return _DECODER.decode(payload), "hit"
        if not entries:
            return None, "absent"

        # The closest earlier entry (fewest differing components; newest on a tie)
        # names the reason: the first component in which it differs.
        closest = min((key.differing(c) for c, _ in entries), key=len)
        return None, closest[0] if closest else "upstream_changed"

    def expected_durations(self) -> dict[str, float]:
        """Each plugin's run time in its newest cached result (plugins never cached
        are left out): what the scheduler expects a plugin to take."""
        found = {}
        for plugin_id, entries in sorted(self._entries.items()):
            if entries:
                found[plugin_id] = _DECODER.decode(entries[0][1]).duration_s
        return found

    def store(
        self,
        key: CacheKey,
        result: PluginResult,
        accesses: tuple[DataAccess, ...],
        duration_s: float,
    ) -> None:
        self._store.put(key, CachedResult(result=result, accesses=accesses, duration_s=duration_s))

    def flush(self) -> None:
        self._store.flush()
