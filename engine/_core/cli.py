"""``python -m engine``: a thin shell over the library API.

Exit codes: 0 the run is ok; 1 the run is failed; 2 usage, configuration,
manifest, plan or dataset errors (nothing was run); 130 interrupted.
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

from .api import DATA_CACHE, Engine, RunResult, prepare_plan
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

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--plugins", default="plugins", help="plugin folder (default: plugins)")
        p.add_argument("--seed", type=int, default=0, help="run seed (default: 0)")
        p.add_argument("--mode", choices=MODES, default="two_lane_strict")
        p.add_argument("--select", type=_ids, help="only these plugins (and their dependencies)")

    run = sub.add_parser("run", help="run the plugin fleet over a dataset")
    run.add_argument("dataset", help="CSV or Parquet file")
    common(run)
    run.add_argument("--run-dir", default="runs", help="where run directories go (default: runs)")
    run.add_argument("--run-id", help="name of the run directory (default: time + random suffix)")
    run.add_argument("--workers", type=_positive, help="worker processes (default: CPU count)")
    run.add_argument("--executor", choices=("process", "inline"), default="process")
    run.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    run.add_argument("--quiet", action="store_true", help="print only the run directory and status")

    plan = sub.add_parser("plan", help="print the deterministic plan")
    plan.add_argument("dataset", nargs="?", help="dataset whose schema the plan depends on")
    common(plan)
    plan.add_argument("--run-dir", default="runs", help="where the dataset cache lives")
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


async def _run(args: argparse.Namespace) -> RunResult:
    async with (
        Engine(
            plugins_dir=args.plugins,
            runs_dir=args.run_dir,
            workers=args.workers,
            executor=args.executor,
            mode=args.mode,
        ) as engine,
        engine.open_run(
            args.dataset, seed=args.seed, select=args.select, run_id=args.run_id
        ) as handle,
    ):
        print(f"run {handle.run_id}: {handle.run_dir}", flush=True)
        async for event in handle:
            line = None if args.quiet else _line(event)
            if line:
                print(line, flush=True)
    return handle.result


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
    info = ingest(args.dataset, Path(args.run_dir) / DATA_CACHE) if args.dataset else None
    plan = prepare_plan(args.plugins, info, mode=args.mode, seed=args.seed, select=args.select)
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
    try:
        if args.command == "plan":
            return _plan(args)
        if args.command == "synth":
            return _synth(args)
        if args.command == "score":
            return _score(args)
        result: Any = anyio.run(_run, args, backend=args.backend)
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
