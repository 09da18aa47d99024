"""System test: the bundled example through the real CLI, the real fleet and pool."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest

from contracts import REASON_CODES
from contracts.schema import load as load_schema
from engine import fold, read_log
from tests.conftest import example_run_dir

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_example_run_produces_valid_artifacts(
    example_cli_run: subprocess.CompletedProcess[str],
) -> None:
    run_dir = example_run_dir(example_cli_run)
    for name in ("events.jsonl", "run_manifest.json", "report.json", "report.md"):
        assert (run_dir / name).is_file(), name
    report = json.loads((run_dir / "report.json").read_text())
    jsonschema.validate(report, load_schema("report.schema.json"))
    jsonschema.validate(
        json.loads((run_dir / "run_manifest.json").read_text()),
        load_schema("run_manifest.schema.json"),
    )
    plugins = {p["id"]: p for p in report["plugins"]}
    assert len(plugins) == len(list((ROOT / "plugins").glob("*/plugin.yaml")))
    for p in plugins.values():
        assert p["status"] in {"ok", "na", "failed"}
        if p["status"] != "ok":
            assert p["reason_code"] in REASON_CODES and p["explanation"].strip()
    decisions = [f for p in plugins.values() if p["lane"] == "decision" for f in p["findings"]]
    explanations = [
        f for p in plugins.values() if p["lane"] == "explanation" for f in p["findings"]
    ]
    assert decisions and explanations
    assert {"queue_bottleneck", "duplicate_rows", "high_missingness"} <= {
        f["plugin_id"] for f in decisions
    }
    bottleneck = next(f for f in decisions if f["plugin_id"] == "queue_bottleneck")
    assert bottleneck["target"] == "close_gl"
    md = (run_dir / "report.md").read_text()
    assert md.index("## Decisions") < md.index("## Explanations")
    # The stored report is what the log folds to.
    state = fold(read_log(run_dir / "events.jsonl"))
    assert state.finished is not None and state.finished.status == report["status"]
