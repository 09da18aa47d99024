"""The fingerprint cache: plugin results reused only when nothing they depend on
changed.

A result's key hashes the plugin's code hash (every file in its folder plus the
contracts version), its resolved settings, the dataset fingerprint, the lane
policy (version, mode and lane), the plugin's seed and the keys of the plugins it
depends on, so a change upstream invalidates everything downstream. On a miss the
reason is the first component that differs from the newest entry for that plugin
(``code_changed``, ``settings_changed``, ``dataset_changed``, ``policy_changed``,
``seed_changed``, ``upstream_changed``) or ``absent``.

The store is SQLite in WAL mode (two concurrent runs can share it). A run loads
the entries of its plan in one query and writes its new results in one
transaction, so looking up a plugin costs no I/O. Failed results are never stored.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec
from attrs import define

from contracts import PlanStep, stable_hash
from contracts._base import Wire
from contracts.dataset import DataAccess
from contracts.results import Failed, PluginResult

from .plan import LANE_POLICY_VERSION

CACHE_FILE = "cache.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    plugin_id TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    dataset_fp TEXT NOT NULL,
    policy TEXT NOT NULL,
    seed TEXT NOT NULL,
    upstream TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_plugin ON entries (plugin_id, created);
"""
_COMPONENTS = (
    ("code_hash", "code_changed"),
    ("settings_hash", "settings_changed"),
    ("dataset_fp", "dataset_changed"),
    ("policy", "policy_changed"),
    ("seed", "seed_changed"),
    ("upstream", "upstream_changed"),
)


class CachedResult(Wire, frozen=True):
    result: PluginResult
    accesses: tuple[DataAccess, ...] = ()
    duration_s: float = 0.0


_ENCODER = msgspec.json.Encoder(order="deterministic")
_DECODER = msgspec.json.Decoder(CachedResult)


@define(frozen=True, kw_only=True)
class CacheKey:
    """The components of a key; ``key`` hashes them all."""

    plugin_id: str
    code_hash: str
    settings_hash: str
    dataset_fp: str
    policy: str
    seed: str
    upstream: str
    key: str


def make_key(
    step: PlanStep, *, mode: str, dataset_fp: str, seed: int, upstream_keys: Iterable[str]
) -> CacheKey:
    parts = {
        "plugin_id": step.plugin_id,
        "code_hash": step.code_hash,
        "settings_hash": stable_hash(step.settings),
        "dataset_fp": dataset_fp,
        "policy": f"{LANE_POLICY_VERSION}:{mode}:{step.lane}",
        "seed": str(seed),
        "upstream": stable_hash(sorted(upstream_keys)),
    }
    return CacheKey(key=stable_hash(parts), **parts)


def cacheable(result: PluginResult, ran: bool) -> bool:
    """Failed results and outcomes the engine decided without running are not stored."""
    return ran and not isinstance(result, Failed)


class ResultCache:
    """One SQLite store, shared by every run under a runs directory."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / CACHE_FILE
        # Used from the event loop and from the thread that prepares a run: one
        # connection, serialized by a lock.
        self._lock = threading.Lock()
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
                "SELECT key, plugin_id, code_hash, settings_hash, dataset_fp, policy, seed, "
                f"upstream, payload FROM entries WHERE plugin_id IN ({','.join('?' * len(chunk))}) "
                "ORDER BY created DESC, key",
                chunk,
            ).fetchall()
            for row in rows:
                key = CacheKey(
                    key=row[0],
                    plugin_id=row[1],
                    code_hash=row[2],
                    settings_hash=row[3],
                    dataset_fp=row[4],
                    policy=row[5],
                    seed=row[6],
                    upstream=row[7],
                )
                found[row[1]].append((key, row[8]))

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
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        k.key,
                        k.plugin_id,
                        k.code_hash,
                        k.settings_hash,
                        k.dataset_fp,
                        k.policy,
                        k.seed,
                        k.upstream,
                        payload,
                        now,
                    )
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

    def lookup(self, key: CacheKey) -> tuple[CachedResult | None, str]:
        """The cached result for ``key`` (and ``"hit"``), or None and the miss reason."""
        entries = self._entries.get(key.plugin_id, [])
        for candidate, payload in entries:
            if candidate.key == key.key:
                return _DECODER.decode(payload), "hit"
        if not entries:
            return None, "absent"

        def differing(candidate: CacheKey) -> list[str]:
            return [r for f, r in _COMPONENTS if getattr(candidate, f) != getattr(key, f)]

        # The closest earlier entry (fewest differing components; newest on a tie)
        # names the reason: the first component in which it differs.
        closest = min((differing(c) for c, _ in entries), key=len)
        return None, closest[0] if closest else "upstream_changed"

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
