"""``report.html`` and the other pages: pure functions of contracts-typed inputs.

The same :class:`~contracts.Report` and :class:`~contracts.charts.RunTimeline` give
the same bytes: everything is ordered explicitly (plan order, or a sort with a
total key), times come from the log, charts are drawn deterministically
(:mod:`.charts`), and the page needs nothing from outside the file (CSS, script
and SVG inline; a content security policy forbids every fetch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from contracts import Finding, PluginReport, Report
from contracts.charts import Chart, RunTimeline, TimelineEntry
from contracts.diff import FindingDelta, RunDiff
from contracts.report import GATE_NAMES

from .charts import ChartCache, Drawer, draw_charts, draw_here, safe_id
from .timeline import timeline_svg

SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}

# Impact units that are a time saved (or lost) a month, as hours a month. Only these
# are ranked by value; findings in other units are never ranked against them.
HOURS_A_MONTH = {
    "hours/month": 1.0,
    "h/month": 1.0,
    "hours per month": 1.0,
    "minutes/month": 1 / 60,
    "days/month": 24.0,
}

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    # Compiling the templates costs a fifth of a second per process (a CLI run); the
    # compiled form is kept in a private per-user folder, keyed by template checksum.
    bytecode_cache=jinja2.FileSystemBytecodeCache(),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


def fmt(value: object) -> str:
    """A value as ``report.md`` writes it (floats to 4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "None"
    return str(value)


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _utc(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_ENV.filters.update(fmt=fmt, seconds=_seconds, utc=_utc, anchor=safe_id)


def monthly_hours(f: Finding) -> float | None:
    """The finding's modeled impact in hours a month, if its unit is one of those."""
    if f.measurement != "modeled" or f.impact is None:
        return None
    factor = HOURS_A_MONTH.get(f.impact.unit.strip().lower())
    return None if factor is None else f.impact.value * factor


def action_key(f: Finding, plugin_id: str) -> tuple[Any, ...]:
    """Hours a month first (largest first), then severity and confidence; total."""
    hours = monthly_hours(f)
    return (
        hours is None,
        -(hours or 0.0),
        SEVERITY_ORDER.get(f.severity, 9),
        -f.confidence,
        plugin_id,
        f.id,
        f.kind,
        f.target,
    )


def is_decision(p: PluginReport, manifest_lanes: Mapping[str, str]) -> bool:
    if p.lane == "legacy":
        return manifest_lanes.get(p.id, "decision") == "decision"
    return p.lane == "decision"


def _entries(timeline: RunTimeline | None) -> dict[str, TimelineEntry]:
    return {e.plugin_id: e for e in timeline.entries} if timeline is not None else {}


def _h(value: object) -> str:
    """``markupsafe.escape(value)`` as a plain string, for the values of the plugin
    table (JSON values: none has ``__html__``), without building a Markup each time."""
    text = value if type(value) is str else str(value)
    if not any(c in text for c in "&<>\"'"):
        return text
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )


def plugin_rows(plugins: Sequence[PluginReport], entries: Mapping[str, TimelineEntry]) -> Markup:
    """The rows of the "every plugin's outcome" table (written here rather than in the
    template: one row per plugin, the page's only part that grows with the fleet)."""
    out: list[str] = []
    add = out.append
    for p in plugins:
        e = entries.get(p.id)
        pid, status, lane = _h(p.id), _h(p.status), _h(p.lane)
        anchor = _h(safe_id(p.id))
        add(
            f'<tr id="plugin-{anchor}" data-plugin-id="{pid}" data-status="{status}">\n'
            f'<th scope="row"><a href="#plugin-{anchor}">{pid}</a> '
            f'<span class="meta">v{_h(p.version)}</span></th>\n'
            f'<td class="lane-{lane}">{lane}</td>\n'
            f'<td><span class="badge status-{status} plugin-status">{status}</span></td>\n<td>'
        )
        if p.reason_code:
            add(f"<code>{_h(p.reason_code)}</code>")
            if p.error_type:
                add(f" {_h(p.error_type)}")
            add(f": {_h(p.explanation)}")
        elif p.findings:
            add(f"{len(p.findings)} finding(s)")
        if p.downstream_affected:
            affected = _h(", ".join(p.downstream_affected))
            add(f'<br><span class="meta">affects: {affected}</span>')
        checked = p.metrics.get("checked") if p.status in ("na", "skipped") else None
        if checked:
            items = "".join(f"<li>{_h(c)}</li>" for c in checked)
            add(f"<details><summary>checked</summary><ul>{items}</ul></details>")
        worker = "" if e is None or e.worker is None else _h(e.worker)
        notes = ("cache hit " if e is not None and e.cached else "") + (
            "preflight " if p.preflight else ""
        )
        add(
            f'</td>\n<td class="num">{len(p.findings)}</td>\n'
            f'<td class="num">{p.duration_s:.3f}</td>\n'
            f'<td class="num">{worker}</td>\n'
            f"<td>{notes}{'' if p.ran else 'not run'}</td>\n</tr>\n"
        )
    return Markup("".join(out))


def chart_key(where: str, finding: Finding) -> str:
    """The key of a finding's charts in the page (unique in it; it salts their ids)."""
    return safe_id(f"{where}-{finding.id or finding.kind}")


def explanation_charts(
    plugin_id: str, findings: Sequence[Finding]
) -> list[tuple[Sequence[Chart], str]]:
    """An explanation plugin's charts as the page draws them, with their keys: known
    when the plugin finishes (a decision's depend on its rank among all actions), so a
    run draws them while the others work."""
    return [(f.charts, chart_key(f"expl-{plugin_id}-{i}", f)) for i, f in enumerate(findings)]


def render_html(
    report: Report,
    timeline: RunTimeline,
    manifest_lanes: Mapping[str, str],
    chart_cache: ChartCache | None = None,
    drawer: Drawer = draw_here,
) -> str:
    """``report.html`` of a finished run.

    Args:
        report: the run's report (as in ``report.json``).
        timeline: the run's timeline folded from its log.
        manifest_lanes: ``{plugin id: lane in its manifest}``, to tell decision from
            explanation plugins in a legacy run (which puts all on one lane).
        chart_cache: where drawn charts are kept between runs (the same page either
            way; see :class:`ChartCache`).
        drawer: what draws the charts the cache does not hold (the same page either
            way; the engine draws in a child process, see :class:`ChartProcess`).
    """
    plugins = report.plugins
    decisions = [p for p in plugins if is_decision(p, manifest_lanes)]
    explanations = [p for p in plugins if not is_decision(p, manifest_lanes)]
    found = [(f, p) for p in decisions if p.status == "ok" for f in p.findings]
    found.sort(key=lambda fp: action_key(fp[0], fp[1].id))
    # Every chart of the page drawn in one batch: action cards, then explanations.
    requests: list[tuple[Sequence[Chart], str]] = [
        (f.charts, chart_key(f"action-{n}", f)) for n, (f, _) in enumerate(found, 1)
    ]
    for e in explanations:
        requests += explanation_charts(e.id, e.findings)
    drawn = iter(draw_charts(requests, chart_cache, drawer))
    action_charts = [[Markup(svg) for svg in next(drawn)] for _ in found]
    expl_charts = {
        e.id: [[Markup(svg) for svg in next(drawn)] for _ in e.findings] for e in explanations
    }
    supporters: dict[str, list[str]] = {p.id: [] for p in decisions}
    for e in explanations:
        for target in e.downstream:
            if target in supporters:
                supporters[target].append(e.id)
    actions = [
        {
            "rank": n,
            "finding": f,
            "plugin": p,
            "hours": monthly_hours(f),
            "anchor": safe_id(f"finding-{f.id or f.kind}-{n}"),
            "charts": action_charts[n - 1],
            "metrics": sorted(f.evidence.metrics.items()),
            "supported_by": supporters.get(p.id, []),
        }
        for n, (f, p) in enumerate(found, 1)
    ]
    # Explanations grouped under the decisions they support: each explanation plugin's
    # findings appear once, under the first decision (in plan order) it supports.
    shown: set[str] = set()
    by_id = {p.id: p for p in plugins}
    groups = []
    for d in decisions:
        members = []
        for eid in supporters[d.id]:
            members.append({"plugin": by_id[eid], "first": eid not in shown})
            shown.add(eid)
        if members:
            groups.append({"decision": d, "members": members})
    orphans = [{"plugin": e, "first": True} for e in explanations if e.id not in shown]
    gates = report.summary.gates
    entries = _entries(timeline)
    html = _ENV.get_template("report.html.j2").render(
        report=report,
        s=report.summary,
        actions=actions,
        by_hours=[a for a in actions if a["hours"] is not None],
        by_severity=[a for a in actions if a["hours"] is None],
        groups=groups,
        orphans=orphans,
        expl_charts=expl_charts,
        decision_ids={p.id for p in decisions},
        na=[p for p in plugins if p.status in ("na", "skipped")],
        failed=[p for p in plugins if p.status == "failed"],
        gate_rows=[(n, getattr(gates, n)) for n in GATE_NAMES] if gates is not None else [],
        entries=entries,
        plugin_rows=plugin_rows(plugins, entries),
        timeline=timeline,
        timeline_svg=Markup(timeline_svg(timeline)),
        started=sum(e.started_s is not None for e in timeline.entries),
    )
    return html


def render_timeline_svg(timeline: RunTimeline) -> str:
    """The Gantt chart of ``timeline`` alone (the live view redraws it as a run goes)."""
    return timeline_svg(timeline)


def timeline_table(timeline: RunTimeline) -> list[dict[str, Any]]:
    """One row per plugin in plan order, for the live view's table (JSON-ready)."""
    return [
        {
            "id": e.plugin_id,
            "anchor": safe_id(e.plugin_id),
            "lane": e.lane,
            "status": e.status,
            "reason": e.reason_code or "",
            "worker": "" if e.worker is None else e.worker,
            "started": _seconds(e.started_s),
            "finished": _seconds(e.finished_s),
            "cached": e.cached,
            "preflight": e.preflight,
            "findings": e.findings,
        }
        for e in timeline.entries
    ]


def lane_progress(timeline: RunTimeline) -> list[dict[str, Any]]:
    """Per lane: plugins, done, running and the ids running now (plan order)."""
    out = []
    for lane in sorted({e.lane for e in timeline.entries}):
        mine = [e for e in timeline.entries if e.lane == lane]
        out.append(
            {
                "lane": lane,
                "plugins": len(mine),
                "done": sum(e.status in ("ok", "na", "failed") for e in mine),
                "failed": sum(e.status == "failed" for e in mine),
                "running": [e.plugin_id for e in mine if e.status == "running"],
                "waiting": [e.plugin_id for e in mine if e.status == "dispatched"],
            }
        )
    return out


def render_run_list(runs: Sequence[tuple[str, RunTimeline, str | None]], runs_dir: str) -> str:
    """The index of ``engine serve``: one row per run, ``(folder name, timeline, problem
    folding its log or None)``; links go to the folder, which may differ from the run id."""
    rows = []
    for folder, t, problem in runs:
        counts = {"ok": 0, "na": 0, "failed": 0}
        for e in t.entries:
            if e.status in counts:
                counts[e.status] += 1
        rows.append(
            {
                "t": t,
                "counts": counts,
                "folder": folder,
                "anchor": safe_id(folder),
                "problem": problem,
            }
        )
    return _ENV.get_template("runs.html.j2").render(rows=rows, runs_dir=runs_dir)


def render_live_page(timeline: RunTimeline, folder: str) -> str:
    """The live view of the run in ``folder``; its script follows the run's events."""
    return _ENV.get_template("live.html.j2").render(
        t=timeline,
        folder=folder,
        rows=timeline_table(timeline),
        lanes=lane_progress(timeline),
        timeline_svg=Markup(timeline_svg(timeline)),
    )


def _delta_rows(deltas: Sequence[FindingDelta]) -> list[dict[str, Any]]:
    rows = []
    for n, d in enumerate(deltas, 1):
        impact = f"{d.modeled_impact:.4g} {d.impact_unit}".strip() if d.modeled_impact else "–"
        changes = [(k, fmt(v[0]), fmt(v[1])) for k, v in d.changes.items()]
        rows.append({"n": n, "d": d, "impact": impact, "changes": changes})
    return rows


def render_diff_html(diff: RunDiff) -> str:
    """``engine diff A B --html``: new, gone and changed recommendations side by side."""
    return _ENV.get_template("diff.html.j2").render(
        diff=diff,
        a=diff.run_a,
        b=diff.run_b,
        actionable=_delta_rows(diff.actionable),
        explanations=_delta_rows(diff.explanations),
    )
