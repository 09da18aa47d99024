"""The deterministic plan.

``build_plan`` is a pure function of (manifests, settings, dataset schema, mode,
seed): no clock, no randomness other than the seed, no dict or set order reaches
the result. Steps are ordered topologically by a stable key:

1. priority: in ``two_lane_strict`` the decision lane and every explanation plugin
   it (transitively) depends on come first (0), the remaining explanation plugins
   after (1); ``legacy`` has one lane and one priority;
2. depth: the longest dependency path from a root;
3. a seeded hash of the plugin id (the tie-break; ``seed`` changes it);
4. the plugin id itself (only reached on a hash collision).
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from contracts import Plan, PlanStep, stable_hash
from contracts.plan import Mode

from ..errors import ConfigError, CycleError
from .manifests import PluginSpec, resolve_settings

LANE_POLICY_VERSION = "1"
"""Bumped when the scheduling policy changes meaning; part of every cache key."""

MODES: tuple[Mode, ...] = ("two_lane_strict", "legacy")


def tiebreak(seed: int, plugin_id: str) -> str:
    return hashlib.sha256(f"{seed}\x1f{plugin_id}".encode()).hexdigest()


def find_cycles(deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Every dependency cycle (strongly connected component with a loop), each
    listed in edge order starting from its smallest id; sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0

    for root in sorted(deps):
        if root in index:
            continue
        # Iterative Tarjan so deep chains cannot hit the recursion limit.
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = sorted(d for d in deps.get(node, ()) if d in deps)
            if i < len(children):
                work.append((node, i + 1))
                child = children[i]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1 or node in deps.get(node, ()):
                    components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return sorted(_cycle_order(c, deps) for c in components)


def _cycle_order(component: list[str], deps: Mapping[str, Sequence[str]]) -> list[str]:
    """Walk the component along its edges from its smallest member."""
    members = set(component)
    start = min(component)
    order = [start]
    seen = {start}
    node = start
    while True:
        nxt = sorted(d for d in deps[node] if d in members)
        unseen = [d for d in nxt if d not in seen]
        if not unseen:
            break
        node = unseen[0]
        order.append(node)
        seen.add(node)
    return order + sorted(members - seen)


def build_plan(
    plugins: Sequence[PluginSpec],
    *,
    mode: Mode = "two_lane_strict",
    seed: int = 0,
    dataset_schema: Sequence[Sequence[str]] = (),
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    select: Sequence[str] | None = None,
    lanes: Mapping[str, str] | None = None,
    timeouts: Mapping[str, float] | None = None,
) -> Plan:
    """Order ``plugins`` into a frozen :class:`Plan`.

    Args:
        plugins: validated plugin specs (as from ``load_plugins``).
        mode: ``two_lane_strict`` (default) or ``legacy``.
        seed: changes only the tie-break between otherwise equal steps.
        dataset_schema: the (name, dtype, role) triples the plan depends on.
        settings: per-plugin setting overrides, ``{plugin_id: {name: value}}``.
        select: run only these plugins and everything they depend on.
        lanes: lane overrides for experiments, ``{plugin_id: lane}``.
        timeouts: timeout overrides in seconds, ``{plugin_id: seconds}``.

    Raises:
        CycleError: naming every plugin of every dependency cycle.
        ConfigError: unknown mode, unknown selected id or bad setting override.
    """
    if mode not in MODES:
        raise ConfigError(f"mode: expected one of {list(MODES)}, got {mode!r}")
    by_id = {p.id: p for p in plugins}
    overrides = dict(settings or {})
    for name, table in (
        ("settings", overrides),
        ("lanes", lanes or {}),
        ("timeouts", timeouts or {}),
    ):
        unknown = sorted(set(table) - set(by_id))
        if unknown:
            raise ConfigError(f"{name}: unknown plugin id(s) {unknown}")
    for pid, seconds in sorted((timeouts or {}).items()):
        if not seconds > 0:
            raise ConfigError(f"timeouts.{pid}: must be positive, got {seconds}")
    lane_of = {pid: (lanes or {}).get(pid, by_id[pid].manifest.lane) for pid in by_id}
    for pid in sorted(lanes or {}):
        m = by_id[pid].manifest
        if lane_of[pid] not in ("decision", "explanation"):
            raise ConfigError(f"lanes.{pid}: expected 'decision' or 'explanation'")
        if lane_of[pid] == "decision" and (m.diagnostic_only or not m.decision_capable):
            raise ConfigError(
                f"lanes.{pid}: cannot move to the decision lane "
                "(the plugin is diagnostic_only or not decision_capable)"
            )
    chosen = _closure(by_id, select)
    deps = {pid: tuple(sorted(by_id[pid].manifest.depends_on)) for pid in chosen}
    cycles = find_cycles(deps)
    if cycles:
        raise CycleError(cycles)

    depth: dict[str, int] = {}
    for pid in sorted(chosen):
        _depth(pid, deps, depth)
    dependents: dict[str, list[str]] = {pid: [] for pid in chosen}
    for pid in sorted(chosen):
        for dep in deps[pid]:
            dependents[dep].append(pid)
    priority = _priorities(chosen, deps, lane_of, mode)

    def key(pid: str) -> tuple[int, int, str, str]:
        return (priority[pid], depth[pid], tiebreak(seed, pid), pid)

    remaining = {pid: len(deps[pid]) for pid in chosen}
    heap = [key(pid) for pid in chosen if remaining[pid] == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        pid = heapq.heappop(heap)[3]
        order.append(pid)
        for child in dependents[pid]:
            remaining[child] -= 1
            if remaining[child] == 0:
                heapq.heappush(heap, key(child))

    steps = []
    for position, pid in enumerate(order):
        spec = by_id[pid]
        m = spec.manifest
        steps.append(
            PlanStep(
                plugin_id=pid,
                version=m.version,
                lane="legacy" if mode == "legacy" else lane_of[pid],  # type: ignore[arg-type]
                manifest_lane=m.lane,
                order=position,
                depth=depth[pid],
                priority=priority[pid],
                depends_on=deps[pid],
                # The declared mapping, whether or not its consumers were selected.
                downstream=tuple(sorted(m.downstream)),
                dependents=tuple(sorted(dependents[pid])),
                settings=resolve_settings(spec, overrides.get(pid)),
                timeout_s=(timeouts or {}).get(pid, m.timeout_s),
                code_hash=spec.code_hash,
                finding_kinds=tuple(sorted(m.finding_kinds)),
                decision_capable=m.decision_capable,
            )
        )
    plan = Plan(
        mode=mode,
        seed=seed,
        dataset_schema_hash=stable_hash([list(c) for c in dataset_schema]),
        lane_policy_version=LANE_POLICY_VERSION,
        steps=tuple(steps),
    )
    return Plan(
        mode=plan.mode,
        seed=plan.seed,
        dataset_schema_hash=plan.dataset_schema_hash,
        lane_policy_version=plan.lane_policy_version,
        steps=plan.steps,
        plan_hash=stable_hash(plan),
    )


class _RecordedPlan(msgspec.Struct):
    type: str
    plan: msgspec.Raw


class _PlanHash(msgspec.Struct):
    plan_hash: str


def verify_plan_record(record: bytes) -> bool:
    """Whether a logged ``plan_built`` record's plan hashes to its ``plan_hash``.

    Checked on the bytes as recorded (the plan object with its hash blanked), not on
    a re-encoding of the decoded plan: a field added to Plan or PlanStep later
    cannot make an older log fail the check.
    """
    outer = msgspec.json.decode(record, type=_RecordedPlan)
    if outer.type != "plan_built":
        raise ValueError(f"not a plan_built record: {outer.type!r}")
    raw = bytes(outer.plan)
    claimed = msgspec.json.decode(raw, type=_PlanHash).plan_hash
    field = b'"plan_hash":' + msgspec.json.encode(claimed)
    if raw.count(field) != 1:
        return False
    blanked = raw.replace(field, b'"plan_hash":""')
    return hashlib.sha256(blanked).hexdigest() == claimed


def _closure(by_id: Mapping[str, PluginSpec], select: Sequence[str] | None) -> set[str]:
    if select is None:
        return set(by_id)
    unknown = sorted(set(select) - set(by_id))
    if unknown:
        raise ConfigError(f"--select: unknown plugin id(s) {unknown}")
    chosen: set[str] = set()
    todo = sorted(set(select))
    while todo:
        pid = todo.pop()
        if pid in chosen:
            continue
        chosen.add(pid)
        todo.extend(by_id[pid].manifest.depends_on)
    return chosen


def _depth(pid: str, deps: Mapping[str, Sequence[str]], memo: dict[str, int]) -> int:
    # Iterative longest-path so a long chain cannot exceed the recursion limit.
    stack = [pid]
    while stack:
        node = stack[-1]
        pending = [d for d in deps[node] if d not in memo]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        memo[node] = 1 + max((memo[d] for d in deps[node]), default=-1)
    return memo[pid]


def _priorities(
    chosen: set[str],
    deps: Mapping[str, Sequence[str]],
    lane_of: Mapping[str, str],
    mode: Mode,
) -> dict[str, int]:
    if mode == "legacy":
        return {pid: 0 for pid in chosen}
    first: set[str] = set()
    todo = sorted(pid for pid in chosen if lane_of[pid] == "decision")
    while todo:
        pid = todo.pop()
        if pid not in first:
            first.add(pid)
            todo.extend(deps[pid])
    return {pid: 0 if pid in first else 1 for pid in chosen}
