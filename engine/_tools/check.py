"""``engine check RUN_DIR``: the post-run audit, from the event log alone.

Verifies the hash chain, folds the log, recomputes every quality gate, compares
them with the recorded ``GateEvaluated`` event and with ``report.json``,
validates ``report.json`` and ``run_manifest.json`` against the generated
schemas, and checks that ``report.md`` exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
from attrs import define, field

from contracts.report import Offender, QualityGates
from contracts.schema import load as load_schema
from engine import (
    HTML_NAME,
    LOG_NAME,
    MANIFEST_NAME,
    MARKDOWN_NAME,
    REPORT_NAME,
    EngineError,
    evaluate_gates,
    fold,
    read_log,
    verify_plan_record,
)


@define(kw_only=True)
class CheckResult:
    run_dir: Path
    gates: QualityGates | None = None
    offenders: tuple[Offender, ...] = ()
    problems: list[str] = field(factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _load_json(path: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{path}: missing")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path}: unreadable: {exc}")
    return None


def _validate(path: Path, data: Any, schema_name: str, problems: list[str]) -> None:
    if data is None:
        return
    try:
        jsonschema.validate(data, load_schema(schema_name))
    except jsonschema.ValidationError as exc:
        where = "$" + "".join(f"[{p!r}]" for p in exc.absolute_path)
        problems.append(f"{path}: {where}: {exc.message}")


def check_run(run_dir: str | Path) -> CheckResult:
    """Audit a finished run directory; never raises for a bad run, only reports."""
    run_dir = Path(run_dir)
    result = CheckResult(run_dir=run_dir)
    problems = result.problems
    try:
        events = read_log(run_dir / LOG_NAME)
        state = fold(events)
    except EngineError as exc:
        problems.append(str(exc))
        return result
    if state.finished is None:
        problems.append(f"{run_dir / LOG_NAME}: the run never finished (no run_finished event)")
        return result
    plan_line = next(
        (
            line
            for line in (run_dir / LOG_NAME).read_bytes().splitlines()
            if b'"type":"plan_built"' in line
        ),
        None,
    )
    if plan_line is None or not verify_plan_record(plan_line):
        problems.append(f"{run_dir / LOG_NAME}: the recorded plan does not hash to its plan_hash")
    gates, offenders = evaluate_gates(state)
    result.gates, result.offenders = gates, offenders
    if state.gates is None:
        problems.append(f"{run_dir / LOG_NAME}: no gate_evaluated event was recorded")
    elif (state.gates.gates, state.gates.offenders) != (gates, offenders):
        problems.append(f"{run_dir / LOG_NAME}: recorded gates differ from the gates of the log")
    for offender in offenders:
        problems.append(f"gate {offender.gate}: {offender.plugin_id}: {offender.detail}")

    report = _load_json(run_dir / REPORT_NAME, problems)
    _validate(run_dir / REPORT_NAME, report, "report.schema.json", problems)
    manifest = _load_json(run_dir / MANIFEST_NAME, problems)
    _validate(run_dir / MANIFEST_NAME, manifest, "run_manifest.schema.json", problems)
    expected = msgspec.to_builtins(gates)
    for path, data in ((run_dir / REPORT_NAME, report), (run_dir / MANIFEST_NAME, manifest)):
        if not isinstance(data, dict):
            continue
        stored = (
            data.get("summary", {}).get("gates") if path.name == REPORT_NAME else data.get("gates")
        )
        if stored != expected:
            problems.append(f"{path}: gates {stored} differ from the log's {expected}")
        if data.get("status") != state.finished.status:
            problems.append(
                f"{path}: status {data.get('status')!r} differs from the log's "
                f"{state.finished.status!r}"
            )
    for name in (MARKDOWN_NAME, HTML_NAME):
        people = run_dir / name
        if not people.is_file() or not people.read_text(encoding="utf-8").strip():
            problems.append(f"{people}: missing or empty")
    return result
