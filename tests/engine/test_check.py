"""``engine check``: the post-run audit from the log alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import Engine
from engine._tools.check import check_run

from .conftest import MakePlugin

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """One backend: ``check`` audits a finished run from its files (synchronous code);
    the run is only its input, and the runtime tests run the engine on both backends."""
    return "asyncio"


async def _run_dir(plugins: Path, dataset: Path, tmp_path: Path) -> Path:
    async with Engine(plugins_dir=plugins, runs_dir=tmp_path / "runs", workers=1) as engine:
        return (await engine.run(dataset)).run_dir


async def test_clean_run_passes(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("explainer", lane="explanation", downstream=["decider"])
    make_plugin("decider", depends_on=["explainer"])
    result = check_run(await _run_dir(plugins_dir, dataset, tmp_path))
    assert result.ok, result.problems
    assert result.gates is not None and result.gates.total() == 0


async def test_offenders_and_tampering_are_reported(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("orphan", lane="explanation")
    make_plugin("decider")
    run_dir = await _run_dir(plugins_dir, dataset, tmp_path)
    result = check_run(run_dir)
    assert not result.ok
    assert any("nondecision_missing_downstream_count: orphan" in p for p in result.problems)

    report = json.loads((run_dir / "report.json").read_text())
    report["summary"]["gates"]["skipped_count"] = 0
    report["summary"]["gates"]["nondecision_missing_downstream_count"] = 0
    report["status"] = "ok"
    (run_dir / "report.json").write_text(json.dumps(report))
    (run_dir / "report.md").unlink()
    problems = "\n".join(check_run(run_dir).problems)
    assert "differ from the log's" in problems
    assert "status 'ok' differs from the log's 'failed'" in problems
    assert "report.md: missing or empty" in problems

    report["plugins"] = "not a list"
    (run_dir / "report.json").write_text(json.dumps(report))
    assert "report.json: $['plugins']" in "\n".join(check_run(run_dir).problems)

    lines = (run_dir / "events.jsonl").read_bytes().splitlines()
    (run_dir / "events.jsonl").write_bytes(b"\n".join(lines[:3] + lines[4:]) + b"\n")
    assert "record 3" in check_run(run_dir).problems[0]
