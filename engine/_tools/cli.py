"""``python -m engine``: a thin shell over the library API.

Exit codes: 0 the run is ok; 1 the run is failed; 2 usage, configuration,
manifest, plan or dataset errors (nothing was run); 130 interrupted.

``trace`` re-exports a past run's spans from its event log (original times, same
ids) to ``trace.json`` and, with ``--otlp-endpoint``, over OTLP/HTTP; it exits 1 when
the export failed. ``stats`` prints the lane metrics of a run and exits 1 when any
is missing or null.

``synth`` writes a synthetic event log and its ``truth.json``
(:mod:`engine._core.synth`); ``score`` grades a run's decision findings against such
a truth file (:mod:`engine._core.score`). Both exit 0, or 2 on bad arguments or
unreadable inputs (the message names the file).

``replay`` rebuilds a run's artifacts from its log (0 identical, 1 divergence, 2 broken
log); ``report`` rewrites a finished run's report.md / report.html from its log (0,
or 2 on a broken or unfinished log); ``serve`` is a read-only local web view of a
runs folder (2 when the port is taken); ``verify-determinism`` compares run
projections (0 identical, 1 different);
``diff`` compares two runs (0, or 2 on unreadable runs); ``gauntlet`` writes the
release evidence (0 passed, 1 any failure).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec

from contracts.report import GATE_NAMES, LaneMetrics
from engine import (
    CACHE_DIR,
    CONFIG_NAME,
    DATA_CACHE,
    HTML_NAME,
    LOG_NAME,
    MANIFEST_NAME,
    MODES,
    REPORT_NAME,
    TRACE_NAME,
    Engine,
    EngineError,
    ProjectSettings,
    ResultCache,
    RunHandle,
    RunResult,
    atomic_write,
    fold,
    ingest,
    load_plugins,
    load_settings,
    prepare_plan,
    read_log,
    render_diff_html,
)

from .check import check_run
from .determinism import compare_runs, verify_determinism
from .diff import diff_runs, render_markdown, to_json, write_diff, write_diff_html
from .gauntlet import DEFAULT_ROWS, DEFAULT_SEED, SMALL_ROWS, run_gauntlet
from .matrix import check as matrix_check
from .matrix import write as matrix_write
from .replay import replay
from .report import rebuild_reports
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
        p.add_argument(
            "--executor",
            choices=("process", "inline", "dask"),
            help="where plugins run (default: process; dask: see docs/distributed.md)",
        )
        p.add_argument(
            "--scheduler",
            metavar="ADDRESS",
            help="dask: the scheduler (tcp://HOST:8786); default: a local cluster",
        )
        p.add_argument(
            "--data-store",
            metavar="DIR|URL",
            help="dask: where workers read datasets (a folder or fsspec URL they all reach)",
        )
        p.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
        p.add_argument("--no-cache", action="store_true", help="run every plugin, reuse nothing")
        p.add_argument(
            "--quiet", action="store_true", help="print only the run directory and status"
        )
        p.add_argument(
            "--otlp-endpoint",
            metavar="URL",
            help="export spans live and lane metrics over OTLP/HTTP "
            "(e.g. http://localhost:4318; see docs/jaeger.md)",
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

    matrix = sub.add_parser("matrix", help="write (or --check) the plugin matrices in docs/")
    matrix.add_argument("--plugins", default="plugins", help="plugin folder (default: plugins)")
    matrix.add_argument("--docs", default="docs", help="where the matrices go (default: docs)")
    matrix.add_argument(
        "--check", action="store_true", help="fail on drift or unclassified plugins"
    )

    trace = sub.add_parser(
        "trace", help="re-export a run's spans from its event log (trace.json, OTLP)"
    )
    trace.add_argument("run_dir_path", metavar="RUN_DIR", help="the run directory")
    trace.add_argument("--otlp-endpoint", metavar="URL", help="also send the spans over OTLP/HTTP")
    trace.add_argument("--out", metavar="FILE", help="OTLP JSON file (default: RUN_DIR/trace.json)")

    stats = sub.add_parser("stats", help="print a run's lane metrics (exit 1 if any is missing)")
    stats.add_argument("run_dir_path", metavar="RUN_DIR", help="the run directory")
    stats.add_argument("--json", action="store_true", help="print the metrics as JSON")

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

    replay_p = sub.add_parser("replay", help="rebuild a run's artifacts from its log and compare")
    replay_p.add_argument("run_dir_path", metavar="RUN_DIR", help="the run directory")
    replay_p.add_argument(
        "--compat",
        action="store_true",
        help="artifacts written by an older version: fields and files it lacks are notes",
    )

    determinism = sub.add_parser(
        "verify-determinism", help="run the fleet K times (cache off) and compare projections"
    )
    determinism.add_argument("dataset", nargs="?", help="CSV or Parquet file")
    common(determinism)
    determinism.add_argument(
        "--repeat", type=_positive, default=2, help="runs to compare (default: 2)"
    )
    determinism.add_argument("--workers", type=_positive, help="worker processes")
    determinism.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    determinism.add_argument(
        "--runs", nargs=2, metavar=("RUN_A", "RUN_B"), help="compare two existing runs instead"
    )

    diff = sub.add_parser("diff", help="what changed between two runs (Markdown or JSON)")
    diff.add_argument("run_a", metavar="RUN_A", help="the earlier (reference) run directory")
    diff.add_argument("run_b", metavar="RUN_B", help="the later run directory")
    shape = diff.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    shape.add_argument("--html", action="store_true", help="print HTML instead of Markdown")
    diff.add_argument(
        "--out-dir", metavar="DIR", help="also write DIR/diff.md, DIR/diff.json, DIR/diff.html"
    )

    report = sub.add_parser("report", help="rebuild report.md and report.html from the log")
    report.add_argument("run_dir_path", metavar="RUN_DIR", help="the run directory")
    only = report.add_mutually_exclusive_group()
    only.add_argument("--html", action="store_true", help="only report.html")
    only.add_argument("--md", action="store_true", help="only report.md")
    report.add_argument("--out-dir", metavar="DIR", help="write there (default: RUN_DIR)")

    serve = sub.add_parser("serve", help="a read-only local web view of a runs folder")
    serve.add_argument("runs_dir", nargs="?", default="runs", help="default: runs")
    serve.add_argument("--port", type=_non_negative, default=8765, help="default: 8765 (0: any)")
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine)")

    gauntlet = sub.add_parser(
        "gauntlet", help="baseline + synthetic scenarios, both modes, twice: release evidence"
    )
    gauntlet.add_argument(
        "--rows", type=_positive, help=f"rows per dataset (default: {DEFAULT_ROWS})"
    )
    gauntlet.add_argument(
        "--seed", type=_non_negative, default=DEFAULT_SEED, help=f"default: {DEFAULT_SEED}"
    )
    gauntlet.add_argument("--workers", type=_positive, default=2, help="default: 2")
    gauntlet.add_argument("--plugins", default="plugins", help="plugin folder (default: plugins)")
    gauntlet.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    gauntlet.add_argument(
        "--out", default="docs/release_evidence", help="default: docs/release_evidence"
    )
    gauntlet.add_argument(
        "--small", action="store_true", help=f"CI size: {SMALL_ROWS} rows unless --rows"
    )
    gauntlet.add_argument(
        "--keep", action="store_true", help="keep the scratch datasets and run directories"
    )
    return parser


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
        scheduler=args.scheduler,
        data_store=args.data_store,
        workers=args.workers,
        cache=not args.no_cache,
        otlp_endpoint=args.otlp_endpoint,
    )


async def _follow(handle: RunHandle, quiet: bool) -> None:
    from telemetry.progress import make_progress

    progress = make_progress(quiet)
    progress.start(handle.run_id, handle.run_dir)
    try:
        async for event in handle:
            progress.on_event(event)
    finally:
        progress.stop()


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


def _matrix(args: argparse.Namespace) -> int:
    plugins = load_plugins(args.plugins)
    if args.check:
        problems = matrix_check(plugins, Path(args.docs))
        for problem in problems:
            print(f"FAIL {problem}")
        print(f"matrix check {'FAILED' if problems else 'passed'}: {len(plugins)} plugins")
        return EXIT_FAILED if problems else EXIT_OK
    for path in matrix_write(plugins, Path(args.docs)):
        print(path)
    return EXIT_OK


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


def _summary(result: RunResult, quiet: bool = False) -> None:
    exported = result.telemetry
    if exported is not None and not exported.ok:
        print(
            f"telemetry: {exported.failed} span(s) not exported to {exported.endpoint}"
            + "".join(f"; {error}" for error in exported.errors)
            + " (re-export later with `python -m engine trace RUN_DIR --otlp-endpoint URL`)",
            file=sys.stderr,
        )
    if quiet:
        print(f"run {result.run_id} {result.status.upper()}")
        return
    s = result.report.summary
    print(
        f"run {result.run_id} {result.status.upper()}: {s.plugins} plugins "
        f"({s.ok} ok, {s.na} na, {s.failed} failed), {s.decisions} decision finding(s), "
        f"{s.explanations} explanation finding(s)"
    )
    for name in (
        HTML_NAME,
        "report.md",
        "report.json",
        "run_manifest.json",
        "events.jsonl",
        TRACE_NAME,
    ):
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


def _trace(args: argparse.Namespace) -> int:
    from telemetry.export import export_spans, signal_endpoint, trace_json
    from telemetry.metrics import export_lane_metrics, lane_metrics
    from telemetry.records import trace_from_events
    from telemetry.spans import trace_spans

    if args.otlp_endpoint is not None:
        try:
            signal_endpoint(args.otlp_endpoint)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    run_dir = Path(args.run_dir_path)
    events = read_log(run_dir / LOG_NAME)  # verifies the hash chain
    state = fold(events)
    if state.started is None:
        print(f"error: {run_dir / LOG_NAME}: no run_started record", file=sys.stderr)
        return EXIT_USAGE
    trace = trace_from_events(events)
    out = Path(args.out) if args.out else run_dir / TRACE_NAME
    atomic_write(out, trace_json(trace))
    print(f"trace {trace.trace_id:032x}: {len(trace.spans)} spans written to {out}")
    if args.otlp_endpoint is None:
        return EXIT_OK
    stats = export_spans(trace_spans(trace), args.otlp_endpoint)
    print(f"exported {stats.exported}/{len(trace.spans)} spans to {stats.endpoint}")
    for error in stats.errors:
        print(f"error: {error}", file=sys.stderr)
    if not stats.ok:
        return EXIT_FAILED  # the lane metrics would only wait for the same timeout
    if not export_lane_metrics(lane_metrics(state), args.otlp_endpoint, run_id=state.run_id):
        print("error: lane metrics export failed", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _stats(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from telemetry.metrics import LANE_METRIC_FIELDS, load_lane_metrics

    run_dir = Path(args.run_dir_path)
    problems: list[str] = []
    found: dict[str, tuple[LaneMetrics, ...]] = {}
    for name in (REPORT_NAME, MANIFEST_NAME):
        found[name], trouble = load_lane_metrics(run_dir / name)
        problems += trouble
    if found[REPORT_NAME] and found[MANIFEST_NAME] and found[REPORT_NAME] != found[MANIFEST_NAME]:
        problems.append(f"{run_dir}: {REPORT_NAME} and {MANIFEST_NAME} lane metrics differ")
    lanes = found[REPORT_NAME] or found[MANIFEST_NAME]
    if args.json:
        payload = {"run_dir": str(run_dir), "lane_metrics": lanes, "problems": problems}
        sys.stdout.buffer.write(msgspec.json.encode(payload) + b"\n")
        return EXIT_FAILED if problems else EXIT_OK
    print(f"lane metrics: {run_dir}")
    if lanes:
        table = Table()
        table.add_column("metric")
        for lane in lanes:
            table.add_column(lane.lane, justify="right")
        for key in LANE_METRIC_FIELDS[1:]:
            cells = [getattr(lane, key) for lane in lanes]
            table.add_row(key, *(f"{c:.4f}" if isinstance(c, float) else str(c) for c in cells))
        Console(highlight=False).print(table)
    for problem in problems:
        print(f"FAIL {problem}")
    return EXIT_FAILED if problems else EXIT_OK


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


def _replay(args: argparse.Namespace) -> int:
    result = replay(args.run_dir_path, compat=args.compat)
    print(f"replay {result.run_dir}: {result.events} events, run {result.status}")
    for name in result.identical:
        print(f"  identical  {name}")
    for divergence in result.divergences:
        print(f"  DIVERGED   {divergence}")
    for note in result.notes:
        print(f"  note       {note}")
    if result.first is not None:
        print(f"replay DIVERGED: first divergence: {result.first}")
        return EXIT_FAILED
    print("replay IDENTICAL: the stored artifacts are the fold of the log")
    return EXIT_OK


def _verify_determinism(args: argparse.Namespace) -> int:
    if (args.dataset is None) == (args.runs is None):
        print("error: give either DATASET or --runs RUN_A RUN_B", file=sys.stderr)
        return EXIT_USAGE
    if args.runs is not None:
        result = compare_runs(*args.runs)
    else:
        if args.repeat < 2:
            print("error: --repeat must be at least 2", file=sys.stderr)
            return EXIT_USAGE

        async def repeat() -> Any:
            settings = _settings(args)
            engine = Engine.from_settings(
                settings, executor="process", workers=args.workers, cache=False
            )
            async with engine:
                return await verify_determinism(
                    engine,
                    args.dataset,
                    seed=args.seed,
                    repeat=args.repeat,
                    mode=settings.mode,
                    select=args.select,
                )

        result = anyio.run(repeat, backend=args.backend)
    for run, digest in zip(result.runs, result.projection_hashes, strict=True):
        print(f"  {run}  projection {digest[:16]}")
    print(result.describe())
    return EXIT_OK if result.identical else EXIT_FAILED


def _diff(args: argparse.Namespace) -> int:
    result = diff_runs(args.run_a, args.run_b)
    if args.json:
        sys.stdout.buffer.write(to_json(result))
    elif args.html:
        sys.stdout.buffer.write(render_diff_html(result).encode())
    else:
        print(render_markdown(result), end="")
    if args.out_dir:
        for path in (*write_diff(result, args.out_dir), write_diff_html(result, args.out_dir)):
            print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    paths = rebuild_reports(
        args.run_dir_path, html=not args.md, markdown=not args.html, out_dir=args.out_dir
    )
    for path in paths:
        print(path)
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from .serve import serve

    if not Path(args.runs_dir).is_dir():
        print(f"error: {args.runs_dir}: not a directory", file=sys.stderr)
        return EXIT_USAGE
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how one stops it
        serve(args.runs_dir, host=args.host, port=args.port, announce=_announce)
    return EXIT_OK


def _announce(line: str) -> None:
    print(line, flush=True)


def _gauntlet(args: argparse.Namespace) -> int:
    rows = args.rows or (SMALL_ROWS if args.small else DEFAULT_ROWS)

    async def go() -> Any:
        return await run_gauntlet(
            args.out,
            rows=rows,
            seed=args.seed,
            workers=args.workers,
            plugins_dir=args.plugins,
            backend=args.backend,
            small=args.small,
            keep=args.keep,
            progress=lambda line: print(line, flush=True),
        )

    summary = anyio.run(go, backend=args.backend)
    for failure in summary.failures:
        print(f"FAIL {failure}")
    verdict = "PASSED" if summary.passed else f"FAILED ({len(summary.failures)} failure(s))"
    print(f"gauntlet {verdict} in {summary.wall_s:.1f}s: evidence in {args.out}")
    return EXIT_OK if summary.passed else EXIT_FAILED


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
        "trace": _trace,
        "stats": _stats,
        "matrix": _matrix,
        "replay": _replay,
        "verify-determinism": _verify_determinism,
        "diff": _diff,
        "gauntlet": _gauntlet,
        "report": _report,
        "serve": _serve,
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
    _summary(result, args.quiet)
    return EXIT_OK if result.ok else EXIT_FAILED


def console_main() -> None:
    sys.exit(main())
