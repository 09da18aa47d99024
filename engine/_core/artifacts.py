"""Artifacts folded from the run state: ``report.json``, ``run_manifest.json``,
``report.md``, ``report.html`` (and ``trace.json``, made by the caller). Written
atomically (temp file + rename), so a crash never leaves a half-written artifact
under its final name. The HTML is drawn by ``engine._render`` from the report and
the timeline folded here."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import msgspec

from contracts import Failed, Na, Ok, PluginReport, Report, RunManifest
from contracts.charts import RunTimeline, TimelineEntry, TimelineStatus
from contracts.report import GATE_NAMES, InputFingerprint, LaneSummary, PreflightEntry, Summary
from telemetry.metrics import lane_metrics

from .._render import ChartCache, render_html
from .._render.charts import Drawer, draw_here
from ..errors import EngineInternalError
from .gates import legacy_skipped
from .state import PluginRecord, RunState

REPORT_NAME = "report.json"
MANIFEST_NAME = "run_manifest.json"
MARKDOWN_NAME = "report.md"
TRACE_NAME = "trace.json"
HTML_NAME = "report.html"
TOP_ACTIONS = "top_actions"  # the recommendation layer's plugin id (report.md opens with it)


def _plugin_report(record: PluginRecord, legacy: bool = False) -> PluginReport:
    result = record.result
    step = record.step
    base = PluginReport(
        id=step.plugin_id,
        version=step.version,
        lane=step.lane,
        status="ok",
        downstream=step.downstream,
        downstream_affected=record.downstream_affected,
        duration_s=record.duration_s,
        ran=record.ran,
        preflight=record.preflight,
        data_access=tuple(record.data_access),
    )
    if isinstance(result, Ok):
        return msgspec.structs.replace(base, findings=result.findings, metrics=result.metrics)
    if isinstance(result, Na):
        return msgspec.structs.replace(
            base,
            status="skipped" if legacy and legacy_skipped(record) else "na",
            reason_code=result.reason_code,
            explanation=result.explanation,
            metrics={**result.metrics, "checked": list(result.checked)},
        )
    if isinstance(result, Failed):
        return msgspec.structs.replace(
            base,
            status="failed",
            reason_code=result.reason_code,
            explanation=result.message,
            error_type=result.error_type,
            traceback=result.traceback,
        )
    raise EngineInternalError(f"plugin {step.plugin_id!r} has no result")


def _lane_summaries(plugins: tuple[PluginReport, ...]) -> tuple[LaneSummary, ...]:
    lanes = []
    for lane in sorted({p.lane for p in plugins}):
        members = [p for p in plugins if p.lane == lane]
        lanes.append(
            LaneSummary(
                lane=lane,
                plugins=len(members),
                ok=sum(p.status == "ok" for p in members),
                failed=sum(p.status == "failed" for p in members),
                na=sum(p.status in {"na", "skipped"} for p in members),
                findings=sum(len(p.findings) for p in members),
                duration_s=sum(p.duration_s for p in members),
            )
        )
    return tuple(lanes)


def build_report(state: RunState) -> Report:
    """The report of a finished run (a pure function of the folded state)."""
    started, plan, finished = state.started, state.plan, state.finished
    if started is None or plan is None or finished is None:
        raise EngineInternalError("report requested for an unfinished run")
    legacy = started.mode == "legacy"
    plugins = tuple(_plugin_report(r, legacy) for r in state.ordered())
    decisions = [
        p
        for p in plugins
        if p.lane == "decision"
        or (p.lane == "legacy" and state.plugins[p.id].step.manifest_lane == "decision")
    ]
    summary = Summary(
        plugins=len(plugins),
        ok=sum(p.status == "ok" for p in plugins),
        failed=sum(p.status == "failed" for p in plugins),
        na=sum(p.status in {"na", "skipped"} for p in plugins),
        decisions=sum(len(p.findings) for p in decisions),
        explanations=sum(len(p.findings) for p in plugins)
        - sum(len(p.findings) for p in decisions),
        findings=sum(len(p.findings) for p in plugins),
        # Wall time: a resumed run spans processes, whose monotonic clocks differ.
        duration_s=round(finished.wall - started.wall, 6),
        lanes=_lane_summaries(plugins),
        failed_plugins=tuple(p.id for p in plugins if p.status == "failed"),
        gates=state.gates.gates if state.gates else None,
        gates_passed=state.gates.passed if state.gates else True,
        offenders=state.gates.offenders if state.gates else (),
    )
    preflight = tuple(
        PreflightEntry(
            plugin_id=p.id,
            status=p.status,
            reason_code=p.reason_code or "",
            explanation=p.explanation,
        )
        for p in plugins
        if p.preflight
    )
    return Report(
        run_id=started.run_id,
        status=finished.status,
        mode=started.mode,
        seed=started.seed,
        plan_hash=plan.plan_hash,
        dataset_fingerprint=started.dataset.fingerprint,
        plugins=plugins,
        summary=summary,
        preflight=preflight,
        orchestrator_mode=started.mode,
        pre_contract=legacy,
        lane_metrics=lane_metrics(state),
    )


def build_run_manifest(state: RunState, report: Report, last_hash: str) -> RunManifest:
    started, plan, finished = state.started, state.plan, state.finished
    if started is None or plan is None or finished is None:
        raise EngineInternalError("run manifest requested for an unfinished run")
    inputs = [
        InputFingerprint(
            name=started.dataset.source, kind="dataset", fingerprint=started.dataset.fingerprint
        )
    ]
    inputs += [
        InputFingerprint(name=s.plugin_id, kind="plugin", fingerprint=s.code_hash)
        for s in plan.steps
    ]
    return RunManifest(
        run_id=started.run_id,
        status=finished.status,
        mode=started.mode,
        seed=started.seed,
        plan_hash=plan.plan_hash,
        engine_version=started.engine_version,
        contracts_version=started.contracts_version,
        executor=started.executor,
        workers=started.workers,
        dataset_source=started.dataset.source,
        dataset_rows=started.dataset.rows,
        inputs=tuple(inputs),
        lanes=report.summary.lanes,
        settings=started.settings,
        orchestrator_mode=started.mode,
        pre_contract=started.mode == "legacy",
        lane_overrides=started.lanes,
        timeout_overrides=started.timeouts,
        large_dataset_rows=started.large_dataset_rows,
        gates=report.summary.gates,
        gates_passed=report.summary.gates_passed,
        offenders=report.summary.offenders,
        events=state.events,
        last_event_hash=last_hash,
        started_wall=started.wall,
        finished_wall=finished.wall,
        lane_metrics=report.lane_metrics,
    )


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _top_actions(report: Report) -> list[str]:
    """The recommendation layer's ranked actions (in the order it ranked them), or why
    there are none; nothing when the run has no ``top_actions`` step."""
    p = next((p for p in report.plugins if p.id == TOP_ACTIONS), None)
    if p is None:
        return []
    out = ["## Top actions", ""]
    if p.status != "ok":
        return [*out, f"None: {TOP_ACTIONS} is {p.status} `{p.reason_code}`: {p.explanation}", ""]
    for f in p.findings:
        size = f"{_fmt(f.impact.value)} {f.impact.unit}" if f.impact else "no modeled impact"
        plugins = f.evidence.metrics.get("plugins") or f.plugin_id
        out.append(f"- **{f.title}** ({size}; from {plugins}): {f.recommendation}")
    return [*out, ""]


def render_markdown(report: Report) -> str:
    """For people: top actions first, then decisions, explanations, NA and failures."""
    s = report.summary
    out = [
        f"# Run `{report.run_id}`: {report.status.upper()}",
        "",
        f"Mode `{report.mode}`, seed {report.seed}, plan `{report.plan_hash[:12]}`, "
        f"dataset `{report.dataset_fingerprint[:12]}`.",
        f"{s.plugins} plugins: {s.ok} ok, {s.na} na, {s.failed} failed; "
        f"{s.decisions} decision findings, {s.explanations} explanation findings.",
        "",
    ]
    if report.mode == "legacy":
        out += ["> Legacy mode (pre-contract baseline): failures do not fail the run.", ""]
    out += _top_actions(report)
    decision = [
        p
        for p in report.plugins
        if p.status == "ok" and p.lane in {"decision", "legacy"} and p.id != TOP_ACTIONS
    ]
    explanation = [p for p in report.plugins if p.status == "ok" and p.lane == "explanation"]
    out += ["## Decisions", ""]
    findings = [(f, p) for p in decision for f in p.findings]
    if not findings:
        out += ["No decision plugin produced a recommendation.", ""]
    for f, p in sorted(findings, key=lambda fp: (_SEVERITY[fp[0].severity], fp[1].id, fp[0].id)):
        out += [
            f"### [{f.severity}] {f.title}",
            "",
            f"*{p.id}* · `{f.kind}` · confidence {f.confidence:.2f}",
            "",
        ]
        if f.what:
            out.append(f"- **What:** {f.what}")
        if f.why:
            out.append(f"- **Why:** {f.why}")
        if f.recommendation:
            out.append(f"- **Recommendation:** {f.recommendation}")
        if f.impact is not None:
            out.append(
                f"- **Impact ({f.measurement}):** {_fmt(f.impact.value)} {f.impact.unit}"
                + (f" — {f.impact.description}" if f.impact.description else "")
            )
            for a in f.impact.assumptions:
                out.append(f"  - assumes: {a}")
        if f.evidence.metrics:
            ev = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(f.evidence.metrics.items()))
            out.append(f"- **Evidence:** {ev}")
        if f.evidence.query:
            out.append(f"- **Reproduce:** `{f.evidence.query}`")
        out.append("")
    out += ["## Explanations", ""]
    if not explanation:
        out += ["No explanation plugin produced output.", ""]
    for p in explanation:
        supports = ", ".join(p.downstream) or "nothing declared"
        out += [f"### {p.id} (supports: {supports})", ""]
        for f in p.findings:
            out.append(f"- {f.title}" + (f": {f.what}" if f.what else ""))
        out.append("")
    na = [p for p in report.plugins if p.status in {"na", "skipped"}]
    bad = [p for p in report.plugins if p.status == "failed"]
    out += ["## Not applicable", ""]
    out += [
        f"- **{p.id}** {'(skipped) ' if p.status == 'skipped' else ''}`{p.reason_code}`: "
        f"{p.explanation}"
        for p in na
    ] or ["None."]
    out += ["", "## Failures", ""]
    out += [f"- **{p.id}** `{p.reason_code}` {p.error_type}: {p.explanation}" for p in bad] or [
        "None."
    ]
    gates = s.gates
    if gates is not None:
        verdict = "passed" if s.gates_passed else "FAILED"
        out += ["", f"## Quality gates: {verdict}", ""]
        out += [f"- `{name}`: {getattr(gates, name)}" for name in GATE_NAMES]
        if s.offenders:
            out += ["", "Offenders:", ""]
            out += [f"- **{o.plugin_id}** `{o.gate}`: {o.detail}" for o in s.offenders]
    if report.preflight:
        out += ["", "## Preflight", ""]
        out += [
            f"- **{e.plugin_id}** {e.status} `{e.reason_code}`: {e.explanation}"
            for e in report.preflight
        ]
    return "\n".join(out) + "\n"


_SEVERITY = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` so that it holds either its old content or all of ``data``,
    even across a crash: a synced temporary file, then renamed into place."""
    tmp = _durable_temporary(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _durable_temporary(path: Path, data: bytes) -> str:
    """A temporary file beside ``path`` holding ``data``, synced to disk."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


class AtomicFiles:
    """Several files written like :func:`atomic_write`, each synced in a thread as
    soon as it is handed over (so the disk works while the next one is rendered),
    and all renamed into place by :meth:`commit`, only once every one is on disk
    and ``ready`` (if given) returned True. Leaving the block without a commit
    removes the temporary files."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="artifact-writer")
        self._pending: list[tuple[Path, Future[str]]] = []

    def __enter__(self) -> AtomicFiles:
        return self

    def add(self, path: Path, data: bytes) -> None:
        self._pending.append((path, self._pool.submit(_durable_temporary, path, data)))

    def commit(self, ready: Callable[[], bool] | None = None) -> None:
        temporaries = [(path, future.result()) for path, future in self._pending]
        if ready is not None and not ready():
            return  # __exit__ removes them
        for path, tmp in temporaries:
            os.replace(tmp, path)
        self._pending.clear()

    def __exit__(self, *exc: object) -> None:
        for _, future in self._pending:
            with contextlib.suppress(BaseException):
                Path(future.result()).unlink(missing_ok=True)
        self._pool.shutdown()


def to_pretty_json(obj: object) -> bytes:
    return msgspec.json.format(msgspec.json.encode(obj, order="deterministic"), indent=2) + b"\n"


def _since(wall: float | None, origin: float) -> float | None:
    return None if wall is None else round(wall - origin, 6)


def _entry(record: PluginRecord, origin: float) -> TimelineEntry:
    result = record.result
    status: TimelineStatus = (
        record.phase if result is None else result.__struct_config__.tag  # type: ignore[assignment]
    )
    return TimelineEntry(
        plugin_id=record.step.plugin_id,
        lane=record.step.lane,
        order=record.step.order,
        status=status,
        reason_code=getattr(result, "reason_code", None),
        worker=record.worker,
        dispatched_s=_since(record.dispatched_wall, origin),
        started_s=_since(record.started_wall, origin),
        finished_s=_since(record.finished_wall, origin),
        duration_s=record.duration_s,
        cached=record.cached,
        preflight=record.preflight,
        ran=record.ran,
        findings=len(result.findings) if isinstance(result, Ok) else 0,
    )


def build_timeline(state: RunState) -> RunTimeline:
    """Where the run is, from the fold alone: finished or still going (a pure function)."""
    started = state.started
    if started is None:
        raise EngineInternalError("timeline requested before run_started")
    return RunTimeline(
        run_id=started.run_id,
        status="running" if state.finished is None else state.finished.status,
        mode=started.mode,
        seed=started.seed,
        dataset=started.dataset.source,
        rows=started.dataset.rows,
        started_wall=started.wall,
        elapsed_s=round(state.last_wall - started.wall, 6),
        events=state.events,
        workers=started.workers,
        executor=started.executor,
        entries=tuple(_entry(r, started.wall) for r in state.ordered()),
    )


def manifest_lanes(state: RunState) -> dict[str, str]:
    """``{plugin id: lane in its manifest}`` (a legacy plan puts every step on one lane)."""
    return {r.step.plugin_id: r.step.manifest_lane for r in state.ordered()}


def render_report_html(
    state: RunState,
    report: Report | None = None,
    chart_cache: Path | ChartCache | None = None,
    drawer: Drawer = draw_here,
) -> str:
    """``report.html`` of a finished run (``report``: its :func:`build_report`, if
    built; ``chart_cache``: charts drawn before (a folder keeping them between runs, or
    a :class:`ChartCache`); ``drawer``: where charts are drawn, here by default). The
    bytes do not depend on either."""
    return render_html(
        report if report is not None else build_report(state),
        build_timeline(state),
        manifest_lanes(state),
        chart_cache if not isinstance(chart_cache, Path) else ChartCache(chart_cache),
        drawer,
    )


def write_artifacts(
    run_dir: Path,
    state: RunState,
    last_hash: str,
    chart_cache: Path | ChartCache | None = None,
    drawer: Drawer = draw_here,
    log_synced: Callable[[], bool] | None = None,
    trace: Callable[[], bytes] | None = None,
) -> Report:
    """Write the run's report artifacts (``log_synced``: waits until the run's log
    is synced and says whether it was; if not, nothing is written; ``trace``: makes
    the bytes of ``trace.json``, written with them)."""
    # A process killed while writing leaves its temporary file behind (never a torn
    # file under the final name): a rewrite (resume) removes it.
    for name in (REPORT_NAME, MANIFEST_NAME, MARKDOWN_NAME, HTML_NAME, TRACE_NAME):
        for stale in run_dir.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
    with AtomicFiles() as files:
        if trace is not None:
            # First: the largest file syncs while the others are rendered.
            files.add(run_dir / TRACE_NAME, trace())
        report = build_report(state)
        files.add(run_dir / REPORT_NAME, to_pretty_json(report))
        manifest = build_run_manifest(state, report, last_hash)
        files.add(run_dir / MANIFEST_NAME, to_pretty_json(manifest))
        files.add(run_dir / MARKDOWN_NAME, render_markdown(report).encode())
        html = render_report_html(state, report, chart_cache, drawer)
        files.add(run_dir / HTML_NAME, html.encode())
        # Nothing appears under a final name before the log is on disk: a report
        # never outlives the records it was folded from.
        files.commit(log_synced)
    return report
