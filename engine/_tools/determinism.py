"""``engine verify-determinism``: the same inputs and seed give the same results.

The *projection* of a run is everything about its outcome that must not depend on
when, where or how fast it ran (see ``docs/determinism.md``): the plan hash, mode,
seed and dataset fingerprint, the run status, the summary counts and quality gates,
the offenders (gate and plugin), and per plugin (in plan order) its status, reason
code, error type, NA explanation, affected downstream plugins, metrics and every
finding field. It leaves out run ids, wall and monotonic times, durations, worker
indices and pids, executor and worker count, absolute paths (dataset source,
plugins folder, DuckDB file, artifacts folder), failure messages and tracebacks,
data-access records, and whether a result was computed or taken from the cache.

The projection is built from the event log alone (``read_log`` + ``fold`` +
``build_report``), not from ``report.json``, so it is what the log proves. Any
remaining mention of the run's id or directory in a string is replaced by
``<run_id>`` / ``<run_dir>``.

:func:`verify_determinism` runs the fleet K times with the result cache off (a
cache hit would make equality trivial) and compares every run with the first;
:func:`compare_runs` compares two existing runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
from attrs import define, field

from contracts import Report, stable_hash
from contracts.plan import Mode
from engine import LOG_NAME, ConfigError, Engine, LogIntegrityError, build_report, fold, read_log

from .replay import first_difference, show

__all__ = [
    "DeterminismResult",
    "compare_runs",
    "project_report",
    "run_projection",
    "verify_determinism",
]


def _builtins(value: Any) -> Any:
    return msgspec.to_builtins(value, order="deterministic")


def _scrub(value: Any, replacements: Sequence[tuple[re.Pattern[str], str]]) -> Any:
    if isinstance(value, str):
        for old, new in replacements:
            value = old.sub(new, value)
        return value
    if isinstance(value, dict):
        return {_scrub(k, replacements): _scrub(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, replacements) for v in value]
    return value


def project_report(report: Report, *, run_dir: str | Path | None = None) -> dict[str, Any]:
    """The canonical projection of a run's report (a plain JSON value)."""
    s = report.summary
    plugins = []
    for p in report.plugins:
        entry: dict[str, Any] = {
            "id": p.id,
            "version": p.version,
            "lane": p.lane,
            "status": p.status,
            "reason_code": p.reason_code,
            "preflight": p.preflight,
            "downstream_affected": list(p.downstream_affected),
            "metrics": _builtins(p.metrics),
            "findings": [_builtins(f) for f in p.findings],
        }
        if p.status == "failed":
            # The message and traceback may quote paths, pids, memory figures.
            entry["error_type"] = p.error_type
        else:
            entry["explanation"] = p.explanation
        plugins.append(entry)
    projection: dict[str, Any] = {
        "plan_hash": report.plan_hash,
        "mode": report.mode,
        "seed": report.seed,
        "dataset_fingerprint": report.dataset_fingerprint,
        "status": report.status,
        "pre_contract": report.pre_contract,
        "summary": {
            "plugins": s.plugins,
            "ok": s.ok,
            "failed": s.failed,
            "na": s.na,
            "decisions": s.decisions,
            "explanations": s.explanations,
            "findings": s.findings,
            "failed_plugins": list(s.failed_plugins),
        },
        "gates": _builtins(s.gates),
        "gates_passed": s.gates_passed,
        # The detail of an offender may quote a failure message: gate and plugin only.
        "offenders": [{"gate": o.gate, "plugin_id": o.plugin_id} for o in s.offenders],
        "plugins": plugins,
    }
    replacements: list[tuple[re.Pattern[str], str]] = []
    if run_dir is not None:
        folder = Path(run_dir)
        for path in dict.fromkeys((str(folder.resolve()), str(folder))):  # absolute first
            if path != ".":
                replacements.append((re.compile(re.escape(path)), "<run_dir>"))
    if report.run_id:
        # The id as a whole word only: a short id ("ci") must not eat the inside of
        # other words ("decision"), or two runs that differ only by id would differ.
        token = rf"(?<![\w-]){re.escape(report.run_id)}(?![\w-])"
        replacements.append((re.compile(token), "<run_id>"))
    scrubbed: dict[str, Any] = _scrub(projection, replacements)
    return scrubbed


def run_projection(run_dir: str | Path) -> dict[str, Any]:
    """The projection of a finished run, from its event log alone.

    Raises:
        LogIntegrityError: the log is unreadable, broken, or the run never finished.
    """
    folder = Path(run_dir)
    log = folder / LOG_NAME
    events = read_log(log)
    state = fold(events)
    if state.finished is None:
        raise LogIntegrityError(str(log), len(events), "the run never finished")
    return project_report(build_report(state), run_dir=folder)


@define(kw_only=True)
class DeterminismResult:
    """Runs compared by projection; ``difference`` is the first one found."""

    runs: list[Path]
    projection_hashes: list[str] = field(factory=list)
    plugins: int = 0
    findings: int = 0
    differing_run: Path | None = None
    difference: tuple[str, Any, Any] | None = None

    @property
    def identical(self) -> bool:
        return self.difference is None

    def describe(self) -> str:
        """One line: identical, or the first difference with both values."""
        if self.difference is None:
            return (
                f"determinism: IDENTICAL ({len(self.runs)} runs, {self.plugins} plugins, "
                f"{self.findings} findings; projection {self.projection_hashes[0][:16]})"
            )
        path, a, b = self.difference
        return (
            f"determinism: DIFFERENT: {self.differing_run} differs from {self.runs[0]} at "
            f"{path}: {show(a)} vs {show(b)}"
        )


def _compare(runs: Sequence[Path], projections: Sequence[dict[str, Any]]) -> DeterminismResult:
    first = projections[0]
    result = DeterminismResult(
        runs=list(runs),
        projection_hashes=[stable_hash(p) for p in projections],
        plugins=len(first["plugins"]),
        findings=sum(len(p["findings"]) for p in first["plugins"]),
    )
    for run, other in zip(runs[1:], projections[1:], strict=True):
        found = first_difference(first, other)
        if found is not None:
            result.differing_run = run
            result.difference = found
            break
    return result


def compare_runs(*run_dirs: str | Path) -> DeterminismResult:
    """Compare the projections of existing runs (each with the first)."""
    if len(run_dirs) < 2:
        raise ConfigError("compare at least two runs")
    runs = [Path(r) for r in run_dirs]
    return _compare(runs, [run_projection(r) for r in runs])


async def verify_determinism(
    engine: Engine,
    dataset: str | Path,
    *,
    seed: int = 0,
    repeat: int = 2,
    mode: Mode | None = None,
    select: Sequence[str] | None = None,
) -> DeterminismResult:
    """Run the fleet ``repeat`` times over ``dataset`` and compare the projections.

    ``engine`` must have the result cache off (``Engine(cache=False)``): results
    reused from the cache would be equal by construction and prove nothing.

    Raises:
        ConfigError: the cache is on, or ``repeat`` is below 2.
    """
    if engine.use_cache:
        raise ConfigError("verify-determinism needs the result cache off (cache=False)")
    if repeat < 2:
        raise ConfigError(f"repeat: must be at least 2, got {repeat}")
    runs: list[Path] = []
    for _ in range(repeat):
        result = await engine.run(dataset, seed=seed, mode=mode, select=select)
        runs.append(result.run_dir)
    return compare_runs(*runs)
