"""``engine diff RUN_A RUN_B``: what changed between two runs, for people and machines.

Three kinds of delta, each computed from the two runs' ``report.json``:

* **Actionable deltas**: decision findings that are *new* in run B, *gone* from it,
  or *changed*. Findings are matched by their stable id (a hash of plugin id, kind
  and target), so the same recommendation about the same target is the same
  finding in both runs. *Changed* means same id, different severity, confidence,
  evidence metrics or impact (the fields that say how strong and how large it is).
* **Status deltas**: per plugin, a different status (``ok``, ``na``, ``failed``,
  ``skipped`` in legacy reports, or ``absent`` when the plugin is not in the run) or
  a different reason code.
* **Explanation deltas**: the same new / gone / changed for the findings of
  explanation plugins.

Actionable deltas are ranked by modeled impact (``impact.value`` when the finding's
``measurement`` is ``modeled``, else 0), then confidence, then severity, and impacts
are only compared within one unit: findings in hours a month come first, then those in
any other unit (rows, events, jobs/hour), grouped by unit, then those without a
modeled impact. "3,284 events" is never ranked above "2,856 hours/month". Each carries
a confidence flag (``high`` >= 0.8, ``medium`` >= 0.5, else ``low``) and an evidence
flag (``reproducible``: a query reproduces it; ``metrics``: figures or columns but no
query; ``none``). A plain-English summary for stakeholders comes first.

Runs of different modes compare fine: a ``legacy`` report is pre-contract and may
show ``skipped`` where ``two_lane_strict`` says ``na``; the diff says so. Runs of
different datasets compare fine too (a scenario against the baseline); the diff
notes that the datasets differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from contracts import Finding, PluginReport, Report
from contracts.diff import Change, FindingDelta, RunDiff, RunInfo, StatusDelta
from contracts.events import PlanBuilt
from engine import LOG_NAME, EngineError, atomic_write, read_log, render_diff_html

from .score import load_report

__all__ = [
    "FindingDelta",
    "RunDiff",
    "RunInfo",
    "StatusDelta",
    "diff_reports",
    "diff_runs",
    "render_markdown",
    "to_json",
    "write_diff",
    "write_diff_html",
]

ABSENT: Final = "absent"
_SEVERITY: Final = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
_CHANGE_ORDER: Final = {"new": 0, "changed": 1, "gone": 2}
MD_NAME: Final = "diff.md"
JSON_NAME: Final = "diff.json"
HTML_NAME: Final = "diff.html"
MAX_MD_EXPLANATIONS: Final = 40
HOURS_PER_MONTH: Final = frozenset({"hours/month", "h/month", "hours per month"})
DASH: Final = "\u2013"


def _confidence_flag(confidence: float) -> Literal["high", "medium", "low"]:
    if confidence >= 0.8:
        return "high"
    return "medium" if confidence >= 0.5 else "low"


def _evidence_flag(f: Finding) -> Literal["reproducible", "metrics", "none"]:
    ev = f.evidence
    if ev.query.strip():
        return "reproducible"
    if ev.metrics or ev.columns or ev.rows is not None:
        return "metrics"
    return "none"


def modeled_impact(f: Finding) -> float:
    """The ranking value: the modeled impact, or 0 for measured or impact-less findings."""
    if f.measurement == "modeled" and f.impact is not None:
        return float(f.impact.value)
    return 0.0


def _changes(a: Finding, b: Finding) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    if a.severity != b.severity:
        out["severity"] = [a.severity, b.severity]
    if a.confidence != b.confidence:
        out["confidence"] = [a.confidence, b.confidence]
    for key in sorted(set(a.evidence.metrics) | set(b.evidence.metrics)):
        x, y = a.evidence.metrics.get(key), b.evidence.metrics.get(key)
        if x != y or (key in a.evidence.metrics) != (key in b.evidence.metrics):
            out[f"evidence.metrics.{key}"] = [x, y]
    if a.measurement != b.measurement:
        out["measurement"] = [a.measurement, b.measurement]
    ia = msgspec.to_builtins(a.impact) if a.impact is not None else None
    ib = msgspec.to_builtins(b.impact) if b.impact is not None else None
    if ia != ib:
        out["impact"] = [ia, ib]
    return out


def _delta(
    change: Change, f: Finding, plugin_id: str, lane: str, changes: dict[str, list[Any]]
) -> FindingDelta:
    return FindingDelta(
        change=change,
        lane="decision" if lane == "decision" else "explanation",
        plugin_id=f.plugin_id or plugin_id,
        finding_id=f.id,
        kind=f.kind,
        target=f.target,
        title=f.title,
        severity=f.severity,
        confidence=f.confidence,
        measurement=f.measurement,
        modeled_impact=modeled_impact(f),
        impact_unit=f.impact.unit if f.impact is not None else "",
        confidence_flag=_confidence_flag(f.confidence),
        evidence_flag=_evidence_flag(f),
        recommendation=f.recommendation,
        changes=changes,
    )


def _impact_group(d: FindingDelta) -> tuple[int, str]:
    """Impacts are ranked only against impacts of the same unit: hours a month first,
    then each other unit on its own, then findings without a modeled impact."""
    if not d.modeled_impact:
        return 2, ""
    if d.impact_unit.strip().lower() in HOURS_PER_MONTH:
        return 0, ""
    return 1, d.impact_unit


def _rank(d: FindingDelta) -> tuple[Any, ...]:
    return (
        *_impact_group(d),
        -d.modeled_impact,
        -d.confidence,
        _SEVERITY.get(d.severity, 9),
        _CHANGE_ORDER[d.change],
        d.plugin_id,
        d.finding_id,
    )


def _manifest_lanes(run_dir: Path | None) -> dict[str, str] | None:
    """``{plugin_id: manifest lane}`` from the run's recorded plan, if readable."""
    if run_dir is None or not (run_dir / LOG_NAME).is_file():
        return None
    try:
        events = read_log(run_dir / LOG_NAME, verify=False)
    except EngineError:
        return None
    for event in events:
        if isinstance(event, PlanBuilt):
            return {s.plugin_id: s.manifest_lane for s in event.plan.steps}
    return None


def _lane_of(p: PluginReport, lanes: dict[str, str] | None) -> str:
    """``decision`` or ``explanation`` (legacy reports put every plugin on one lane)."""
    if p.lane != "legacy":
        return p.lane
    if lanes is not None and p.id in lanes:
        return lanes[p.id]
    return "explanation" if p.downstream else "decision"


def _info(label: str, r: Report) -> RunInfo:
    return RunInfo(
        label=label,
        run_id=r.run_id,
        mode=r.mode,
        pre_contract=r.pre_contract,
        status=r.status,
        seed=r.seed,
        plan_hash=r.plan_hash,
        dataset_fingerprint=r.dataset_fingerprint,
        plugins=len(r.plugins),
        decisions=r.summary.decisions,
    )


def _findings(r: Report, lanes: dict[str, str] | None) -> dict[str, tuple[Finding, str, str]]:
    """``{finding id: (finding, plugin id, lane)}`` in report order."""
    out: dict[str, tuple[Finding, str, str]] = {}
    for p in r.plugins:
        lane = _lane_of(p, lanes)
        for f in p.findings:
            out[f.id or f"{p.id}:{f.kind}:{f.target}"] = (f, p.id, lane)
    return out


def number(value: float) -> str:
    """A figure for people: ``89,730`` or ``3.5``, never ``8.973e+04``."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _quote(d: FindingDelta) -> str:
    size = (
        f"modeled impact {number(d.modeled_impact)} {d.impact_unit}".rstrip()
        if d.modeled_impact
        else f"{d.measurement}, confidence {d.confidence:.2f}"
    )
    return f"\u201c{d.title}\u201d ({d.plugin_id}, {size})"


def _summary(
    a: Report, b: Report, actionable: list[FindingDelta], status: list[StatusDelta]
) -> str:
    new = [d for d in actionable if d.change == "new"]
    gone = [d for d in actionable if d.change == "gone"]
    changed = [d for d in actionable if d.change == "changed"]
    parts: list[str] = []
    if new:
        parts.append(
            f"Run B has {_plural(len(new), 'new recommendation')}, the largest: {_quote(new[0])}."
        )
    else:
        parts.append("Run B has no new recommendations.")
    if gone:
        parts.append(
            f"{_plural(len(gone), 'recommendation')} of run A "
            f"{'is' if len(gone) == 1 else 'are'} gone, the largest: {_quote(gone[0])}."
        )
    if changed:
        parts.append(
            f"{_plural(len(changed), 'recommendation')} changed in strength, the largest: "
            f"{_quote(changed[0])}."
        )
    if status:
        shown = ", ".join(f"{s.plugin_id} ({s.status_a} \u2192 {s.status_b})" for s in status[:3])
        more = f" and {len(status) - 3} more" if len(status) > 3 else ""
        parts.append(f"{_plural(len(status), 'plugin')} changed status: {shown}{more}.")
    if not (new or gone or changed or status):
        parts = ["Runs A and B agree on every recommendation and every plugin status."]
    if a.status != b.status:
        parts.append(f"The run status went from {a.status} to {b.status}.")
    return " ".join(parts)


def diff_reports(
    a: Report,
    b: Report,
    *,
    label_a: str = "A",
    label_b: str = "B",
    lanes_a: dict[str, str] | None = None,
    lanes_b: dict[str, str] | None = None,
) -> RunDiff:
    """The diff of two reports (``lanes_*``: manifest lanes, for legacy reports)."""
    notes: list[str] = []
    if a.mode != b.mode:
        notes.append(f"The runs use different modes: A is {a.mode}, B is {b.mode}.")
    for side, r in (("A", a), ("B", b)):
        if r.pre_contract or r.mode == "legacy":
            notes.append(
                f"Run {side} is a legacy (pre-contract) run: failures do not fail it, and a "
                "plugin that never ran (not applicable, too little data, upstream failed) "
                "is reported as skipped where the contract says na."
            )
    if a.dataset_fingerprint != b.dataset_fingerprint:
        notes.append(
            "The runs are over different datasets (fingerprints "
            f"{a.dataset_fingerprint[:12]} and {b.dataset_fingerprint[:12]}): deltas reflect "
            "the data as well as the engine."
        )
    if a.seed != b.seed:
        notes.append(f"The runs use different seeds ({a.seed} and {b.seed}).")
    if a.plan_hash != b.plan_hash and a.mode == b.mode:
        notes.append(
            "The plans differ (plugins, settings, lanes or dataset schema changed): "
            f"{a.plan_hash[:12]} vs {b.plan_hash[:12]}."
        )

    fa, fb = _findings(a, lanes_a), _findings(b, lanes_b)
    deltas: list[FindingDelta] = []
    for fid, (f, pid, lane) in fb.items():
        if fid not in fa:
            deltas.append(_delta("new", f, pid, lane, {}))
        else:
            changes = _changes(fa[fid][0], f)
            if changes:
                deltas.append(_delta("changed", f, pid, lane, changes))
    for fid, (f, pid, lane) in fa.items():
        if fid not in fb:
            deltas.append(_delta("gone", f, pid, lane, {}))
    actionable = sorted((d for d in deltas if d.lane == "decision"), key=_rank)
    explanations = sorted((d for d in deltas if d.lane == "explanation"), key=_rank)

    pa = {p.id: p for p in a.plugins}
    pb = {p.id: p for p in b.plugins}
    order = [p.id for p in a.plugins] + [p.id for p in b.plugins if p.id not in pa]
    status: list[StatusDelta] = []
    for pid in order:
        x, y = pa.get(pid), pb.get(pid)
        sa = x.status if x else ABSENT
        sb = y.status if y else ABSENT
        ra = x.reason_code if x else None
        rb = y.reason_code if y else None
        if (sa, ra) == (sb, rb):
            continue
        note = ""
        if {sa, sb} == {"na", "skipped"} and ra == rb:
            note = "same outcome: legacy reports a plugin that never ran as skipped"
        elif sa == sb:
            note = "same status, different reason"
        some = y or x
        assert some is not None
        lane = _lane_of(some, lanes_b if y else lanes_a)
        status.append(
            StatusDelta(
                plugin_id=pid,
                lane=lane,
                status_a=sa,
                status_b=sb,
                reason_a=ra,
                reason_b=rb,
                note=note,
            )
        )

    counts = {
        "new": sum(d.change == "new" for d in actionable),
        "gone": sum(d.change == "gone" for d in actionable),
        "changed": sum(d.change == "changed" for d in actionable),
        "status": len(status),
        "explanation_new": sum(d.change == "new" for d in explanations),
        "explanation_gone": sum(d.change == "gone" for d in explanations),
        "explanation_changed": sum(d.change == "changed" for d in explanations),
    }
    return RunDiff(
        run_a=_info(label_a, a),
        run_b=_info(label_b, b),
        summary=_summary(a, b, actionable, status),
        notes=tuple(notes),
        actionable=tuple(actionable),
        status=tuple(status),
        explanations=tuple(explanations),
        counts=counts,
    )


def diff_runs(
    run_a: str | Path,
    run_b: str | Path,
    *,
    label_a: str | None = None,
    label_b: str | None = None,
) -> RunDiff:
    """Diff two run directories (each holding ``report.json``).

    Raises:
        ScoreInputError: a run directory or its report cannot be read.
    """
    pa, pb = Path(run_a), Path(run_b)
    _, a = load_report(pa)
    _, b = load_report(pb)
    return diff_reports(
        a,
        b,
        label_a=label_a if label_a is not None else str(run_a),
        label_b=label_b if label_b is not None else str(run_b),
        lanes_a=_manifest_lanes(pa if pa.is_dir() else pa.parent),
        lanes_b=_manifest_lanes(pb if pb.is_dir() else pb.parent),
    )


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(value.items()))
    return DASH if value is None else str(value)


def _status(s: str, reason: str | None) -> str:
    return f"{s} `{reason}`" if reason else s


def _impact_cell(d: FindingDelta) -> str:
    return f"{number(d.modeled_impact)} {d.impact_unit}".strip() if d.modeled_impact else DASH


def render_markdown(diff: RunDiff) -> str:
    """The diff for people: summary first, then actionable, status, explanation deltas."""
    a, b = diff.run_a, diff.run_b
    out = [
        f"# Run diff: A `{a.label}` \u2192 B `{b.label}`",
        "",
        f"**Summary.** {diff.summary}",
        "",
        "| | Run A | Run B |",
        "|---|---|---|",
        f"| run | `{a.run_id}` | `{b.run_id}` |",
        f"| mode | {a.mode}{' (pre-contract)' if a.pre_contract else ''} "
        f"| {b.mode}{' (pre-contract)' if b.pre_contract else ''} |",
        f"| status | {a.status} | {b.status} |",
        f"| seed | {a.seed} | {b.seed} |",
        f"| dataset | `{a.dataset_fingerprint[:12]}` | `{b.dataset_fingerprint[:12]}` |",
        f"| plan | `{a.plan_hash[:12]}` | `{b.plan_hash[:12]}` |",
        f"| plugins | {a.plugins} | {b.plugins} |",
        f"| decision findings | {a.decisions} | {b.decisions} |",
        "",
    ]
    if diff.notes:
        out += [f"- {n}" for n in diff.notes] + [""]
    out += [f"## Actionable deltas ({len(diff.actionable)})", ""]
    if not diff.actionable:
        out += ["No decision finding is new, gone or changed.", ""]
    else:
        out += [
            "| # | change | plugin | kind | target | finding | modeled impact | confidence "
            "| evidence |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for n, d in enumerate(diff.actionable, 1):
            out.append(
                f"| {n} | **{d.change}** | {_cell(d.plugin_id)} | `{_cell(d.kind)}` "
                f"| {_cell(d.target) or DASH} | [{d.severity}] {_cell(d.title)} "
                f"| {_cell(_impact_cell(d))} | {d.confidence:.2f} ({d.confidence_flag}) "
                f"| {d.evidence_flag} |"
            )
        out.append("")
        for n, d in enumerate(diff.actionable, 1):
            if d.changes:
                out.append(f"{n}. changed `{d.finding_id}`:")
                out += [
                    f"   - `{name}`: {_fmt(x)} \u2192 {_fmt(y)}"
                    for name, (x, y) in d.changes.items()
                ]
        if any(d.changes for d in diff.actionable):
            out.append("")
    out += [f"## Status deltas ({len(diff.status)})", ""]
    if not diff.status:
        out += ["Every plugin has the same status and reason code in both runs.", ""]
    else:
        out += ["| plugin | lane | Run A | Run B | note |", "|---|---|---|---|---|"]
        out += [
            f"| {s.plugin_id} | {s.lane} | {_status(s.status_a, s.reason_a)} "
            f"| {_status(s.status_b, s.reason_b)} | {_cell(s.note)} |"
            for s in diff.status
        ]
        out.append("")
    out += [f"## Explanation deltas ({len(diff.explanations)})", ""]
    if not diff.explanations:
        out += ["No explanation finding is new, gone or changed.", ""]
    for d in diff.explanations[:MAX_MD_EXPLANATIONS]:
        what = ""
        if d.changes:
            names = list(d.changes)
            what = ": " + ", ".join(f"`{x}`" for x in names[:4])
            what += f" and {len(names) - 4} more" if len(names) > 4 else ""
        out.append(f"- **{d.change}** {d.plugin_id}: {d.title}{what}")
    if len(diff.explanations) > MAX_MD_EXPLANATIONS:
        out.append(
            f"- \u2026 and {len(diff.explanations) - MAX_MD_EXPLANATIONS} more (see {JSON_NAME})"
        )
    return "\n".join(out).rstrip("\n") + "\n"


def to_json(diff: RunDiff) -> bytes:
    """The diff as pretty, deterministic JSON."""
    return msgspec.json.format(msgspec.json.encode(diff, order="deterministic"), indent=2) + b"\n"


def write_diff(diff: RunDiff, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``diff.md`` and ``diff.json`` into ``out_dir`` (created if needed)."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    md, js = folder / MD_NAME, folder / JSON_NAME
    md.write_text(render_markdown(diff), encoding="utf-8")
    js.write_bytes(to_json(diff))
    return md, js


def write_diff_html(diff: RunDiff, out_dir: str | Path) -> Path:
    """Write ``diff.html`` (the same diff side by side) into ``out_dir``."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / HTML_NAME
    atomic_write(path, render_diff_html(diff).encode())
    return path
