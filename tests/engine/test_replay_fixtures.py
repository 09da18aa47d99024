"""Recorded logs from earlier versions must keep replaying (docs/schema-evolution.md).

Each folder under tests/fixtures/logs/ holds an ``events.jsonl`` recorded by a
released version and ``expected.json``, what folding it must give. Never edit a
recorded log: add a new folder when the format gains something.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts.events import EVENT_TYPES, event_tag
from engine import fold, read_log
from engine._core.artifacts import build_report
from engine._core.plan import verify_plan_record

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "logs"
VERSIONS = sorted(p.name for p in FIXTURES.iterdir() if (p / "events.jsonl").is_file())


def test_there_is_a_fixture() -> None:
    assert "v1" in VERSIONS


@pytest.mark.parametrize("version", VERSIONS)
def test_recorded_log_replays(version: str) -> None:
    folder = FIXTURES / version
    events = read_log(folder / "events.jsonl")  # verifies the hash chain
    state = fold(events)
    report = build_report(state)
    expected = json.loads((folder / "expected.json").read_text())
    assert report.status == expected["status"]
    assert report.plan_hash == expected["plan_hash"]
    plan_record = next(
        line
        for line in (folder / "events.jsonl").read_bytes().splitlines()
        if b'"type":"plan_built"' in line
    )
    assert state.plan is not None and verify_plan_record(plan_record)
    got = {p.id: [p.status, p.reason_code, [f.id for f in p.findings]] for p in report.plugins}
    assert got == expected["plugins"]


def test_a_tampered_plan_fails_the_recorded_hash_check() -> None:
    line = next(
        line
        for line in (FIXTURES / "v1" / "events.jsonl").read_bytes().splitlines()
        if b'"type":"plan_built"' in line
    )
    assert verify_plan_record(line)
    assert not verify_plan_record(line.replace(b'"timeout_s":300.0', b'"timeout_s":301.0', 1))


def test_v1_fixture_covers_every_v1_event_type() -> None:
    lines = (FIXTURES / "v1" / "events.jsonl").read_text().splitlines()
    tags = {json.loads(line)["type"] for line in lines}
    assert tags == {event_tag(cls) for cls in EVENT_TYPES[:8]}
