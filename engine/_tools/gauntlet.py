"""``engine gauntlet``: the release evidence, from synthetic data with planted truth.

For the baseline dataset first and then every other synthetic scenario
(:data:`~engine._core.synth.SCENARIOS`), all of the same size and seed, the whole
plugin fleet runs in both modes (``two_lane_strict``, then ``legacy``), twice each:
the first run of a pair with the result cache on, the second with it off, so the
second recomputes every plugin and the determinism it shows is real. Then:

* **determinism**: the two runs of each pair have equal projections
  (:mod:`~engine._core.determinism`);
* **replay**: every run's stored artifacts equal their replay from the event log
  (:mod:`~engine._core.replay`);
* **artifacts and gates**: ``engine check`` (:func:`~engine._core.check.check_run`)
  passes for every ``two_lane_strict`` run, and its run status is ``ok``; for
  ``legacy`` runs (the pre-contract baseline) gate breaches are reported, not
  failed, but a missing ``report.md`` or a ``report.json`` that does not validate
  still fails;
* **quality**: each strict run's decision findings score recall >= 0.95 and
  precision >= 0.95 against the planted truth (:func:`~engine._core.score.score_run`);
  legacy scores are reported.

It writes, into the output folder: ``runs/<dataset>__<mode>__<n>.json`` (one small
quality summary per run), ``diffs/<dataset>__legacy_vs_strict.{md,json}`` and
``diffs/<scenario>__vs_baseline.{md,json}`` (strict runs), and ``summary.json``
(every figure) with ``summary.md``. Datasets and run directories live in a scratch
folder that is removed afterwards unless ``keep`` is set.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import anyio
import msgspec
from attrs import define

from contracts.events import CacheHit, CacheMiss
from contracts.plan import Mode
from engine import LOG_NAME, ConfigError, Engine, EngineError, read_log
from engine import __version__ as ENGINE_VERSION

from .check import check_run
from .determinism import compare_runs
from .diff import diff_runs, render_markdown, to_json
from .replay import replay, show
from .score import load_report, score_run
from .synth import SCENARIOS, synthesize

__all__ = [
    "DEFAULT_ROWS",
    "DEFAULT_SEED",
    "MIN_PRECISION",
    "MIN_RECALL",
    "SMALL_ROWS",
    "GauntletSummary",
    "run_gauntlet",
]

DEFAULT_ROWS: Final = 200_000
SMALL_ROWS: Final = 20_000
DEFAULT_SEED: Final = 7
MIN_RECALL: Final = 0.95
MIN_PRECISION: Final = 0.95
MODES: Final[tuple[Mode, ...]] = ("two_lane_strict", "legacy")
BASELINE: Final = "baseline"


class ScoreSummary(msgspec.Struct, frozen=True, kw_only=True):
    planted: int
    matched: int
    decision_findings: int
    matched_findings: int
    recall: float
    precision: float
    missed: tuple[str, ...] = ()
    false_positives: tuple[str, ...] = ()


class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One run's quality summary (``runs/<name>.json``)."""

    name: str
    dataset: str
    mode: str
    attempt: int
    cache: str
    run_id: str
    status: str
    plugins: int
    ok: int
    na: int
    failed: int
    skipped: int
    decision_findings: int
    explanation_findings: int
    failed_plugins: tuple[str, ...]
    gates: dict[str, int]
    gates_passed: bool
    offenders: tuple[str, ...]
    check_passed: bool
    check_problems: tuple[str, ...]
    report_md: bool
    replay: str
    score: ScoreSummary
    cache_hits: int
    cache_misses: int
    duration_s: float
    failures: tuple[str, ...] = ()


class PairSummary(msgspec.Struct, frozen=True, kw_only=True):
    dataset: str
    mode: str
    runs: tuple[str, str]
    deterministic: bool
    projection: str
    plugins: int
    findings: int
    difference: str = ""


class DiffSummary(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    a: str
    b: str
    summary: str
    counts: dict[str, int]


class DatasetSummary(msgspec.Struct, frozen=True, kw_only=True):
    scenario: str
    rows: int
    seed: int
    planted: tuple[str, ...]
    fingerprint: str = ""


class GauntletSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Every figure of a gauntlet (``summary.json``)."""

    passed: bool
    failures: tuple[str, ...]
    rows: int
    seed: int
    workers: int
    backend: str
    small: bool
    engine_version: str
    min_recall: float
    min_precision: float
    datasets: tuple[DatasetSummary, ...]
    runs: tuple[RunSummary, ...]
    pairs: tuple[PairSummary, ...]
    diffs: tuple[DiffSummary, ...]
    wall_s: float


@define(kw_only=True)
class _Run:
    name: str
    dataset: str
    mode: Mode
    attempt: int
    run_dir: Path


def _pretty(obj: object) -> bytes:
    return msgspec.json.format(msgspec.json.encode(obj, order="deterministic"), indent=2) + b"\n"


def _summarize(run: _Run, truth: Path, cache: bool) -> RunSummary:
    _, report = load_report(run.run_dir)
    strict = run.mode == "two_lane_strict"
    failures: list[str] = []

    check = check_run(run.run_dir)
    problems = tuple(check.problems)
    # A gate breach is reported as "gate <name>: ..."; everything else is an artifact
    # or log problem, which fails whatever the mode.
    blocking = problems if strict else tuple(p for p in problems if not p.startswith("gate "))
    failures += [f"check: {p}" for p in blocking]
    if strict and report.status != "ok":
        failures.append(f"run status is {report.status}")

    md = (run.run_dir / "report.md").is_file()
    try:
        replayed = replay(run.run_dir)
        replay_text = "identical" if replayed.ok else f"DIVERGED: {replayed.first}"
    except EngineError as exc:
        replay_text = f"BROKEN LOG: {exc}"
    if replay_text != "identical":
        failures.append(f"replay: {replay_text}")

    score = score_run(run.run_dir, truth)
    if strict and score.recall < MIN_RECALL:
        failures.append(f"recall {score.recall:.3f} < {MIN_RECALL}")
    if strict and score.precision < MIN_PRECISION:
        failures.append(f"precision {score.precision:.3f} < {MIN_PRECISION}")

    s = report.summary
    gates = msgspec.to_builtins(s.gates) if s.gates is not None else {}
    hits = misses = 0
    for event in read_log(run.run_dir / LOG_NAME):
        hits += isinstance(event, CacheHit)
        misses += isinstance(event, CacheMiss)
    return RunSummary(
        name=run.name,
        dataset=run.dataset,
        mode=run.mode,
        attempt=run.attempt,
        cache="on" if cache else "off",
        run_id=report.run_id,
        status=report.status,
        plugins=s.plugins,
        ok=s.ok,
        na=sum(p.status == "na" for p in report.plugins),
        failed=s.failed,
        skipped=sum(p.status == "skipped" for p in report.plugins),
        decision_findings=s.decisions,
        explanation_findings=s.explanations,
        failed_plugins=s.failed_plugins,
        gates=gates,
        gates_passed=s.gates_passed,
        offenders=tuple(f"{o.gate}: {o.plugin_id}: {o.detail}" for o in s.offenders),
        check_passed=check.ok,
        check_problems=problems,
        report_md=md,
        replay=replay_text,
        score=ScoreSummary(
            planted=score.planted,
            matched=len(score.matched),
            decision_findings=score.decision_findings,
            matched_findings=score.matched_findings,
            recall=score.recall,
            precision=score.precision,
            missed=tuple(m.id for m in score.missed),
            false_positives=tuple(
                f"{f.plugin_id}: {f.kind} -> {f.target}" for f in score.false_positives
            ),
        ),
        cache_hits=hits,
        cache_misses=misses,
        duration_s=s.duration_s,
        failures=tuple(failures),
    )


def _line(r: RunSummary) -> str:
    gates = "gates passed" if r.gates_passed else f"gates FAILED ({len(r.offenders)} offender(s))"
    verdict = "ok" if not r.failures else "FAIL"
    return (
        f"  {verdict:<4} {r.name:<40} {r.status:<6} {r.ok} ok {r.na} na {r.failed} failed "
        f"{r.skipped} skipped; {gates}; recall {r.score.recall:.3f} precision "
        f"{r.score.precision:.3f}; replay {r.replay.split(':')[0]}; {r.duration_s:.1f}s"
    )


def _markdown(summary: GauntletSummary) -> str:
    verdict = "PASSED" if summary.passed else "FAILED"
    out = [
        f"# Release gauntlet: {verdict}",
        "",
        f"{summary.rows} rows per dataset, seed {summary.seed}, {summary.workers} workers, "
        f"backend {summary.backend}, engine {summary.engine_version}; wall time "
        f"{summary.wall_s:.1f} s. Thresholds for strict runs: recall >= {summary.min_recall}, "
        f"precision >= {summary.min_precision}.",
        "",
        "| run | status | ok/na/failed/skipped | gates | recall | precision | replay "
        "| cache | time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary.runs:
        gates = "passed" if r.gates_passed else f"FAILED ({len(r.offenders)})"
        out.append(
            f"| {r.name} | {r.status} | {r.ok}/{r.na}/{r.failed}/{r.skipped} | {gates} "
            f"| {r.score.recall:.3f} | {r.score.precision:.3f} | {r.replay.split(':')[0]} "
            f"| {r.cache} ({r.cache_hits} hits) | {r.duration_s:.1f} |"
        )
    out += ["", "## Determinism (run 1, cache on, vs run 2, cache off)", ""]
    out += ["| dataset | mode | identical | projection | plugins | findings |"]
    out += ["|---|---|---|---|---|---|"]
    for p in summary.pairs:
        out.append(
            f"| {p.dataset} | {p.mode} | {'yes' if p.deterministic else 'NO: ' + p.difference} "
            f"| `{p.projection[:16]}` | {p.plugins} | {p.findings} |"
        )
    out += ["", "## Diffs", ""]
    for d in summary.diffs:
        out += [f"- [{d.name}](diffs/{d.name}.md) ({d.a} \u2192 {d.b}): {d.summary}"]
    out += ["", "## Failures", ""]
    out += [f"- {f}" for f in summary.failures] or ["None."]
    return "\n".join(out) + "\n"


async def run_gauntlet(
    out: str | Path,
    *,
    rows: int = DEFAULT_ROWS,
    seed: int = DEFAULT_SEED,
    workers: int = 2,
    plugins_dir: str | Path = "plugins",
    backend: str = "asyncio",
    small: bool = False,
    keep: bool = False,
    progress: Callable[[str], None] | None = None,
) -> GauntletSummary:
    """Run the gauntlet and write its evidence into ``out``.

    Args:
        out: output folder (created if needed; files in it are overwritten).
        rows, seed: size and seed of every synthetic dataset.
        workers: worker processes of the engine.
        plugins_dir: the plugin fleet.
        backend: recorded in the summary (the caller chose it for ``anyio.run``).
        small: recorded in the summary (the CI size).
        keep: keep the scratch folder with the datasets and run directories.
        progress: called with one line per step.
    """
    if rows < 1:
        raise ConfigError(f"rows: must be positive, got {rows}")
    say = progress or (lambda line: None)
    started = time.monotonic()
    out_dir = Path(out)
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    (out_dir / "diffs").mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="engine-gauntlet-"))
    failures: list[str] = []
    datasets: list[DatasetSummary] = []
    runs: list[RunSummary] = []
    pairs: list[PairSummary] = []
    diffs: list[DiffSummary] = []
    try:
        data = scratch / "data"
        data.mkdir()
        runs_dir = scratch / "runs"
        order = [BASELINE, *(name for name in SCENARIOS if name != BASELINE)]
        dirs: dict[tuple[str, Mode], list[Path]] = {}
        engines = {
            cache: Engine(plugins_dir=plugins_dir, runs_dir=runs_dir, workers=workers, cache=cache)
            for cache in (True, False)
        }
        async with engines[True] as cached, engines[False] as fresh:
            for scenario in order:
                # Everything but the runs is blocking work: off the event loop.
                made = await anyio.to_thread.run_sync(
                    functools.partial(
                        synthesize,
                        data / f"{scenario}.parquet",
                        rows=rows,
                        seed=seed,
                        scenario=scenario,
                    )
                )
                truth = Path(made.truth_path)
                info = await anyio.to_thread.run_sync(cached.ingest, made.data_path)
                datasets.append(
                    DatasetSummary(
                        scenario=scenario,
                        rows=rows,
                        seed=seed,
                        planted=tuple(p.id for p in made.truth.planted),
                        fingerprint=info.fingerprint,
                    )
                )
                say(f"{scenario}: {rows} rows, planted: {', '.join(datasets[-1].planted) or '-'}")
                for mode in MODES:
                    pair: list[Path] = []
                    for attempt, engine in ((1, cached), (2, fresh)):
                        name = f"{scenario}__{mode}__{attempt}"
                        result = await engine.run(made.data_path, seed=seed, mode=mode, run_id=name)
                        run = _Run(
                            name=name,
                            dataset=scenario,
                            mode=mode,
                            attempt=attempt,
                            run_dir=result.run_dir,
                        )
                        quality = await anyio.to_thread.run_sync(
                            _summarize, run, truth, engine.use_cache
                        )
                        runs.append(quality)
                        failures += [f"{name}: {f}" for f in quality.failures]
                        (out_dir / "runs" / f"{name}.json").write_bytes(_pretty(quality))
                        say(_line(quality))
                        pair.append(result.run_dir)
                    dirs[scenario, mode] = pair
                    det = await anyio.to_thread.run_sync(compare_runs, *pair)
                    difference = ""
                    if det.difference is not None:
                        path, x, y = det.difference
                        difference = f"{path}: {show(x)} vs {show(y)}"
                        failures.append(
                            f"{scenario}__{mode}: not deterministic: run 2 differs at {difference}"
                        )
                    pairs.append(
                        PairSummary(
                            dataset=scenario,
                            mode=mode,
                            runs=(pair[0].name, pair[1].name),
                            deterministic=det.identical,
                            projection=det.projection_hashes[0],
                            plugins=det.plugins,
                            findings=det.findings,
                            difference=difference,
                        )
                    )
                    verdict = "identical" if det.identical else f"DIFFERENT {difference}"
                    say(f"  determinism {scenario} {mode}: {verdict}")
                name = f"{scenario}__legacy_vs_strict"
                diffs.append(
                    await anyio.to_thread.run_sync(
                        _diff,
                        name,
                        dirs[scenario, "legacy"][0],
                        dirs[scenario, "two_lane_strict"][0],
                        f"{scenario}/legacy",
                        f"{scenario}/two_lane_strict",
                        out_dir,
                    )
                )
                if scenario != BASELINE:
                    name = f"{scenario}__vs_baseline"
                    diffs.append(
                        await anyio.to_thread.run_sync(
                            _diff,
                            name,
                            dirs[BASELINE, "two_lane_strict"][0],
                            dirs[scenario, "two_lane_strict"][0],
                            f"{BASELINE}/two_lane_strict",
                            f"{scenario}/two_lane_strict",
                            out_dir,
                        )
                    )
    finally:
        if keep:
            say(f"kept the datasets and runs in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    summary = GauntletSummary(
        passed=not failures,
        failures=tuple(failures),
        rows=rows,
        seed=seed,
        workers=workers,
        backend=backend,
        small=small,
        engine_version=ENGINE_VERSION,
        min_recall=MIN_RECALL,
        min_precision=MIN_PRECISION,
        datasets=tuple(datasets),
        runs=tuple(runs),
        pairs=tuple(pairs),
        diffs=tuple(diffs),
        wall_s=round(time.monotonic() - started, 1),
    )
    (out_dir / "summary.json").write_bytes(_pretty(summary))
    (out_dir / "summary.md").write_text(_markdown(summary), encoding="utf-8")
    return summary


def _diff(name: str, a: Path, b: Path, label_a: str, label_b: str, out_dir: Path) -> DiffSummary:
    diff = diff_runs(a, b, label_a=label_a, label_b=label_b)
    (out_dir / "diffs" / f"{name}.md").write_text(render_markdown(diff), encoding="utf-8")
    (out_dir / "diffs" / f"{name}.json").write_bytes(to_json(diff))
    return DiffSummary(name=name, a=label_a, b=label_b, summary=diff.summary, counts=diff.counts)
