"""Scoring a finished run against a synthetic dataset's truth (``engine score``).

Every *decision* finding of the run is matched against the planted items of
``truth.json`` (written by :mod:`engine._core.synth`). A finding matches an item
when its ``kind`` is one of the item's ``kinds`` and its ``target`` is the item's
``target`` (or one of its ``alt_targets``), or that name is in the finding's
``evidence.columns``.

* recall = planted items matched by at least one finding / planted items (1.0 when
  nothing was planted);
* precision = findings that match some planted item / decision findings (1.0 when
  there are none).

A ``top_action`` finding (the recommendation layer) restates the findings it merges:
it matches an item when one of the kinds it lists (``evidence.metrics["kinds"]``) is
one of the item's and its ``evidence.metrics["action_target"]`` (or a column) is the
item's target, so an action built on a false positive is itself a false positive.

Decision findings are those of plugins on the ``decision`` lane and, in ``legacy``
mode (one lane, ``legacy``), of plugins whose manifest lane is ``decision``. The
report does not carry the manifest lane, so it is read from the run's
``events.jsonl`` (the ``plan_built`` event holds the frozen plan); without a
readable log a legacy plugin counts as a decision plugin when it declares no
downstream plugins (explanation plugins must declare theirs).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from contracts import Report
from contracts.plan import Plan
from engine import EngineError

from .synth import Planted, Truth

__all__ = [
    "FindingRef",
    "MatchedItem",
    "Score",
    "ScoreInputError",
    "format_json",
    "format_text",
    "load_truth",
    "score_run",
]

TOP_ACTION = "top_action"
REPORT_NAME = "report.json"
EVENTS_NAME = "events.jsonl"


class ScoreInputError(EngineError, ValueError):
    """A run directory, report or truth file that cannot be read. ``path`` names it."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)


class FindingRef(msgspec.Struct, frozen=True, kw_only=True):
    """One decision finding, as scored."""

    plugin_id: str
    kind: str
    target: str
    title: str
    id: str = ""
    columns: tuple[str, ...] = ()
    source_kinds: tuple[str, ...] = ()
    action_target: str = ""


class MatchedItem(msgspec.Struct, frozen=True, kw_only=True):
    """A planted item and the findings that detected it."""

    planted: Planted
    findings: tuple[FindingRef, ...]


class Score(msgspec.Struct, frozen=True, kw_only=True):
    """The result of scoring one run against one truth file."""

    run_dir: str
    truth: str
    scenario: str
    seed: int
    rows: int
    mode: str
    planted: int
    decision_findings: int
    matched: tuple[MatchedItem, ...]
    missed: tuple[Planted, ...]
    false_positives: tuple[FindingRef, ...]
    matched_findings: int
    recall: float
    precision: float
    decision_plugins: dict[str, str] = {}
    notes: tuple[str, ...] = ()


class _LogRecord(msgspec.Struct, kw_only=True):
    """The one part of an event record the scorer needs."""

    type: str = ""
    plan: Plan | None = None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ScoreInputError(path, "no such file") from None
    except IsADirectoryError:
        raise ScoreInputError(path, "is a directory, expected a file") from None
    except OSError as exc:
        raise ScoreInputError(path, exc.strerror or type(exc).__name__) from None


def _report_path(run_dir: Path) -> Path:
    if run_dir.is_dir():
        return run_dir / REPORT_NAME
    if run_dir.exists() and run_dir.name == REPORT_NAME:
        return run_dir
    if not run_dir.exists():
        raise ScoreInputError(run_dir, "no such run directory")
    raise ScoreInputError(run_dir, f"expected a run directory (holding {REPORT_NAME})")


def load_report(run_dir: Path) -> tuple[Path, Report]:
    """The run's report (``run_dir`` may also be the ``report.json`` itself)."""
    path = _report_path(run_dir)
    try:
        return path, msgspec.json.decode(_read_bytes(path), type=Report)
    except msgspec.DecodeError as exc:
        raise ScoreInputError(path, f"not a valid report: {exc}") from None


def load_truth(path: str | Path) -> Truth:
    """Read and validate a ``truth.json``."""
    p = Path(path)
    try:
        truth = msgspec.json.decode(_read_bytes(p), type=Truth)
    except msgspec.DecodeError as exc:
        raise ScoreInputError(p, f"not a valid truth file: {exc}") from None
    ids = [item.id for item in truth.planted]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ScoreInputError(p, f"planted ids are not unique: {', '.join(dupes)}")
    for n, item in enumerate(truth.planted):
        if not item.kinds or not item.target:
            raise ScoreInputError(p, f"$.planted[{n}]: needs non-empty kinds and target")
    return truth


def _manifest_lanes(events: Path) -> dict[str, str] | None:
    """``{plugin_id: manifest lane}`` from the log's plan, or None if unavailable."""
    try:
        lines = events.read_bytes().splitlines()
    except OSError:
        return None
    decoder = msgspec.json.Decoder(_LogRecord)
    for line in lines:
        if b'"plan_built"' not in line:
            continue
        try:
            record = decoder.decode(line)
        except msgspec.DecodeError:
            return None
        if record.type == "plan_built" and record.plan is not None:
            return {s.plugin_id: s.manifest_lane for s in record.plan.steps}
    return None


def _decision_plugins(report: Report, run_dir: Path, notes: list[str]) -> dict[str, str]:
    """``{plugin_id: status}`` of the run's decision plugins, in report order."""
    lanes: dict[str, str] | None = None
    if any(p.lane == "legacy" for p in report.plugins):
        base = run_dir if run_dir.is_dir() else run_dir.parent
        lanes = _manifest_lanes(base / EVENTS_NAME)
        if lanes is None:
            notes.append(
                f"{base / EVENTS_NAME}: no plan found; legacy plugins without downstream "
                "plugins were counted as decision plugins"
            )
    out: dict[str, str] = {}
    for p in report.plugins:
        if p.lane == "decision":
            out[p.id] = p.status
        elif p.lane == "legacy":
            lane = lanes.get(p.id) if lanes is not None else None
            if lane == "decision" or (lane is None and not p.downstream):
                out[p.id] = p.status
    return out


def _matches(finding: FindingRef, item: Planted) -> bool:
    accepted = (item.target, *item.alt_targets)
    if finding.kind == TOP_ACTION:
        # an action restates the findings it merges: it detects what they detect
        return any(k in item.kinds for k in finding.source_kinds) and (
            finding.action_target in accepted or any(t in finding.columns for t in accepted)
        )
    if finding.kind not in item.kinds:
        return False
    return finding.target in accepted or any(t in finding.columns for t in accepted)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def score_run(run_dir: str | Path, truth_path: str | Path) -> Score:
    """Score the run in ``run_dir`` against ``truth_path``.

    Raises:
        ScoreInputError: the run directory, its report or the truth file cannot be
            read or does not have the expected shape (the message names the file).
    """
    run = Path(run_dir)
    report_path, report = load_report(run)
    truth = load_truth(truth_path)
    notes: list[str] = []
    decision = _decision_plugins(report, run, notes)

    findings = [
        FindingRef(
            plugin_id=f.plugin_id or p.id,
            kind=f.kind,
            target=f.target,
            title=f.title,
            id=f.id,
            columns=tuple(f.evidence.columns),
            source_kinds=tuple(k for k in _text(f.evidence.metrics.get("kinds")).split(",") if k),
            action_target=_text(f.evidence.metrics.get("action_target")),
        )
        for p in report.plugins
        if p.id in decision
        for f in p.findings
    ]
    if len(findings) != report.summary.decisions:
        notes.append(
            f"{report_path}: summary counts {report.summary.decisions} decision finding(s), "
            f"the scorer found {len(findings)}"
        )

    matched: list[MatchedItem] = []
    missed: list[Planted] = []
    for item in truth.planted:
        hits = tuple(f for f in findings if _matches(f, item))
        if hits:
            matched.append(MatchedItem(planted=item, findings=hits))
        else:
            missed.append(item)
    is_good = [any(_matches(f, item) for item in truth.planted) for f in findings]
    false_positives = tuple(f for f, ok in zip(findings, is_good, strict=True) if not ok)
    good = sum(is_good)
    recall = len(matched) / len(truth.planted) if truth.planted else 1.0
    precision = good / len(findings) if findings else 1.0
    return Score(
        run_dir=str(run),
        truth=str(truth_path),
        scenario=truth.scenario,
        seed=truth.seed,
        rows=truth.rows,
        mode=report.mode,
        planted=len(truth.planted),
        decision_findings=len(findings),
        matched=tuple(matched),
        missed=tuple(missed),
        false_positives=false_positives,
        matched_findings=good,
        recall=recall,
        precision=precision,
        decision_plugins=decision,
        notes=tuple(notes),
    )


def _finding_line(f: FindingRef) -> str:
    return f"{f.plugin_id}: {f.kind} -> {f.target or '-'}  {f.title!r}"


def format_text(score: Score) -> str:
    """The human-readable score; its last line is ``recall <r> precision <p>``."""
    lines = [
        f"score {score.run_dir} against {score.truth}",
        f"  scenario {score.scenario}, seed {score.seed}, {score.rows} rows, mode {score.mode}",
        f"  {score.decision_findings} decision finding(s) from {len(score.decision_plugins)} "
        f"decision plugin(s)",
        f"matched {len(score.matched)} of {score.planted} planted item(s):",
    ]
    for m in score.matched:
        lines.append(f"  + {m.planted.id} [{', '.join(m.planted.kinds)}] {m.planted.target}")
        lines += [f"      {_finding_line(f)}" for f in m.findings]
    lines.append(f"missed {len(score.missed)}:")
    for item in score.missed:
        lines.append(f"  - {item.id} [{', '.join(item.kinds)}] {item.target}: {item.description}")
    lines.append(f"false positives {len(score.false_positives)}:")
    lines += [f"  ! {_finding_line(f)}" for f in score.false_positives]
    plugins = [f"{pid} ({status})" for pid, status in score.decision_plugins.items()]
    if plugins:
        lines.append("decision plugins: " + ", ".join(plugins))
    lines += [f"note: {n}" for n in score.notes]
    lines.append(f"recall {score.recall:.3f} precision {score.precision:.3f}")
    return "\n".join(lines)


def format_json(score: Score) -> bytes:
    """The score as one JSON object (keys in a stable order)."""
    return msgspec.json.encode(score)
