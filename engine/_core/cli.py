"""``python -m engine``: a thin shell over the library API.

Exit codes: 0 the run is ok; 1 the run is failed; 2 usage, configuration,
manifest, plan or dataset errors (nothing was run); 130 interrupted.

``synth`` writes a synthetic event log and its ``truth.json``
(:mod:`engine._core.synth`); ``score`` grades a run's decision findings against such
a truth file (:mod:`engine._core.score`). Both exit 0, or 2 on bad arguments or
unreadable inputs (the message names the file).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec

from contracts import Failed, Na
from contracts.events import Event, PluginFinished, PreflightFailed
from contracts.report import GATE_NAMES

from .api import CACHE_DIR, DATA_CACHE, Engine, RunHandle, RunResult, prepare_plan
from .cache import ResultCache
from .check import check_run
from .config import CONFIG_NAME, ProjectSettings, load_settings
from .data import ingest
from .errors import EngineError
from .plan import MODES
from .score import format_json, format_text, score_run
from .synth import SCENARIOS, synthesize

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _ids(text: str) -> list[str]:
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise argparse.ArgumentTypeError("expected a comma-separated list of plugin ids")
    return ids


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            help=f"project settings file (default: ./{CONFIG_NAME} when it exists); "
            "command-line options override it",
        )
        p.add_argument("--run-dir", help="where run directories go (default: runs)")

    def common(p: argparse.ArgumentParser) -> None:
        config(p)
        p.add_argument("--plugins", help="plugin folder (default: plugins)")
        p.add_argument("--seed", type=int, default=0, help="run seed (default: 0)")
        p.add_argument("--mode", choices=MODES, help="default: two_lane_strict")
        p.add_argument("--select", type=_ids, help="only these plugins (and their dependencies)")

    def execution(p: argparse.ArgumentParser) -> None:
        p.add_argument("--workers", type=_positive, help="worker processes (default: CPU count)")
        p.add_argument("--executor", choices=("process", "inline"), default="process")
        p.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
        p.add_argument("--no-cache", action="store_true", help="run every plugin, reuse nothing")
        p.add_argument(
            "--quiet", action="store_true", help="print only the run directory and status"
        )

    run = sub.add_parser("run", help="run the plugin fleet over a dataset")
    run.add_argument("dataset", help="CSV or Parquet file")
    common(run)
    execution(run)
    run.add_argument("--run-id", help="name of the run directory (default: time + random suffix)")

    resume = sub.add_parser("resume", help="continue an interrupted run")
    resume.add_argument("run_dir_path", metavar="RUN_DIR", help="the run directory")
    config(resume)
    execution(resume)

    check = sub.add_parser("check", help="audit a run from its event log (gates, artifacts)")
    check.add_argument("run_dir_path", metavar="RUN_DIR", help="the run directory")

    cache = sub.add_parser("cache", help="inspect or prune the result cache")
    cache.add_argument("action", choices=("stats", "prune"))
    config(cache)
    cache.add_argument(
        "--keep", type=_positive, default=1, help="prune: entries kept per plugin (default: 1)"
    )

    plan = sub.add_parser("plan", help="print the deterministic plan")
    plan.add_argument("dataset", nargs="?", help="dataset whose schema the plan depends on")
    common(plan)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")

    synth = sub.add_parser("synth", help="write a synthetic event log and its truth.json")
    synth.add_argument("--rows", type=_positive, required=True, help="rows to write")
    synth.add_argument("--seed", type=_non_negative, default=0, help="seed (default: 0)")
    synth.add_argument("--scenario", choices=tuple(SCENARIOS), default="baseline")
    synth.add_argument(
        "--out", required=True, help="data file: Parquet if it ends in .parquet/.pq, else CSV"
    )
    synth.add_argument("--truth", help="truth file (default: <out stem>.truth.json next to it)")

    score = sub.add_parser("score", help="score a run's decision findings against a truth.json")
    score.add_argument("run_dir", help="run directory (holding report.json)")
    score.add_argument("truth", help="truth.json written by synth")
    score.add_argument("--json", action="store_true", help="print the score as JSON")
    return parser


def _line(event: Event) -> str | None:
    if not isinstance(event, PluginFinished | PreflightFailed):
        return None
    result = event.result
    status = result.__struct_config__.tag
    detail = ""
    if isinstance(result, Na | Failed):
        detail = f" {result.reason_code}"
    else:
        detail = f" {len(result.findings)} finding(s)"
    took = f" {event.duration_s:.2f}s" if isinstance(event, PluginFinished) and event.ran else ""
    return f"  {status!s:<6} {event.lane:<11} {event.plugin_id}{detail}{took}"


def _settings(args: argparse.Namespace) -> ProjectSettings:
    """Project settings from --config (or ./engine.yaml), overridden by options."""
    path = args.config or (CONFIG_NAME if Path(CONFIG_NAME).is_file() else None)
    settings = load_settings(path) if path else ProjectSettings()
    overrides: dict[str, Any] = {}
    for option, name in (("plugins", "plugins_dir"), ("run_dir", "runs_dir"), ("mode", "mode")):
        value = getattr(args, option, None)
        if value is not None:
            overrides[name] = value
    return msgspec.structs.replace(settings, **overrides)


def _engine(args: argparse.Namespace) -> Engine:
    return Engine.from_settings(
        _settings(args),
        executor=args.executor,
        workers=args.workers,
        cache=not args.no_cache,
    )


async def _follow(handle: RunHandle, quiet: bool) -> None:
    print(f"run {handle.run_id}: {handle.run_dir}", flush=True)
    async for event in handle:
        line = None if quiet else _line(event)
        if line:
            print(line, flush=True)


async def _run(args: argparse.Namespace) -> RunResult:
    async with (
        _engine(args) as engine,
        engine.open_run(
            args.dataset, seed=args.seed, select=args.select, run_id=args.run_id
        ) as handle,
    ):
        await _follow(handle, args.quiet)
    return handle.result


async def _resume(args: argparse.Namespace) -> RunResult:
    async with _engine(args) as engine, engine.open_resume(args.run_dir_path) as handle:
        await _follow(handle, args.quiet)
    return handle.result


def _check(args: argparse.Namespace) -> int:
    result = check_run(args.run_dir_path)
    if result.gates is not None:
        for name in GATE_NAMES:
            print(f"  {name:<40} {getattr(result.gates, name)}")
    for problem in result.problems:
        print(f"FAIL {problem}")
    print(f"check {'passed' if result.ok else 'FAILED'}: {result.run_dir}")
    return EXIT_OK if result.ok else EXIT_FAILED


def _cache(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = ResultCache(Path(settings.runs_dir) / CACHE_DIR)
    try:
        if args.action == "prune":
            removed = store.prune(keep_per_plugin=args.keep)
            print(f"pruned {removed} entries (kept the newest {args.keep} per plugin)")
        stats = store.stats()
    finally:
        store.close()
    print(
        f"cache {store.path}: {stats['entries']} entries for {stats['plugins']} plugins, "
        f"{stats['payload_bytes']} bytes of results"
    )
    return EXIT_OK


def _summary(result: RunResult) -> None:
    s = result.report.summary
    print(
        f"run {result.run_id} {result.status.upper()}: {s.plugins} plugins "
        f"({s.ok} ok, {s.na} na, {s.failed} failed), {s.decisions} decision finding(s), "
        f"{s.explanations} explanation finding(s)"
    )
    for name in ("report.md", "report.json", "run_manifest.json", "events.jsonl"):
        print(f"  {result.run_dir / name}")


def _plan(args: argparse.Namespace) -> int:
    settings = _settings(args)
    info = ingest(args.dataset, Path(settings.runs_dir) / DATA_CACHE) if args.dataset else None
    plan = prepare_plan(
        settings.plugins_dir,
        info,
        mode=settings.mode,
        seed=args.seed,
        select=args.select,
        settings=settings.settings,
        lanes=settings.lanes,
        timeouts=settings.timeouts,
    )
    if args.json:
        sys.stdout.buffer.write(msgspec.json.encode(plan, order="deterministic") + b"\n")
        return EXIT_OK
    print(f"plan {plan.plan_hash} mode={plan.mode} seed={plan.seed} steps={len(plan.steps)}")
    for step in plan.steps:
        deps = ",".join(step.depends_on) or "-"
        print(
            f"  {step.order:>3} {step.lane:<11} p{step.priority} d{step.depth} "
            f"{step.plugin_id} <- {deps}"
        )
    return EXIT_OK


def _synth(args: argparse.Namespace) -> int:
    done = synthesize(
        args.out, rows=args.rows, seed=args.seed, scenario=args.scenario, truth=args.truth
    )
    planted = ", ".join(p.id for p in done.truth.planted) or "nothing"
    print(
        f"wrote {done.rows} rows ({done.format}, scenario {args.scenario}, seed {args.seed}) "
        f"to {done.data_path}"
    )
    print(f"truth: {done.truth_path} (planted: {planted})")
    return EXIT_OK


def _score(args: argparse.Namespace) -> int:
    result = score_run(args.run_dir, args.truth)
    if args.json:
        sys.stdout.buffer.write(format_json(result) + b"\n")
    else:
        print(format_text(result))
    return EXIT_OK


def engine_errors(exc: BaseException) -> list[EngineError] | None:
    """The engine errors inside ``exc`` (task groups wrap them), or None if any
    part of it is something else."""
    if isinstance(exc, EngineError):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        found: list[EngineError] = []
        for inner in exc.exceptions:
            errors = engine_errors(inner)
            if errors is None:
                return None
            found += errors
        return found
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    simple = {
        "plan": _plan,
        "synth": _synth,
        "score": _score,
        "check": _check,
        "cache": _cache,
    }
    try:
        if args.command in simple:
            return simple[args.command](args)
        runner = _run if args.command == "run" else _resume
        result: Any = anyio.run(runner, args, backend=args.backend)
    except KeyboardInterrupt:
        print("interrupted: the run's event log is kept, unfinished", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        errors = engine_errors(exc)
        if errors is None:
            raise
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    _summary(result)
    return EXIT_OK if result.ok else EXIT_FAILED


def console_main() -> None:
    sys.exit(main())
