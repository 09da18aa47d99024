"""engine report (rebuild the reports from the log) and engine diff --html."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import msgspec
import pytest

from engine import build_report, fold, read_log, render_diff_html, render_report_html
from engine._tools.cli import main
from engine._tools.diff import diff_reports
from engine._tools.replay import replay
from tests.render.test_report_html import page_text, synthetic

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "logs" / "v2"


def copy_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("events.jsonl", "report.json", "run_manifest.json", "report.md"):
        shutil.copyfile(FIXTURE / name, run / name)
    return run


def test_report_rebuilds_html_and_md_from_the_log(tmp_path: Path) -> None:
    run = copy_run(tmp_path)
    assert main(["report", str(run)]) == 0
    state = fold(read_log(run / "events.jsonl"))
    assert (run / "report.html").read_text() == render_report_html(state)
    result = replay(run, compat=True)  # the fixture's JSON predates the current fields
    assert result.ok and "report.html" in result.identical and "report.md" in result.identical
    out = tmp_path / "only-md"
    assert main(["report", str(run), "--md", "--out-dir", str(out)]) == 0
    assert (out / "report.md").read_bytes() == (run / "report.md").read_bytes()
    assert not (out / "report.html").exists()


def test_report_of_an_unfinished_or_broken_log_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(tmp_path)
    lines = (run / "events.jsonl").read_bytes().splitlines(keepends=True)
    (run / "events.jsonl").write_bytes(b"".join(lines[:-1]))
    assert main(["report", str(run)]) == 2
    assert "never finished" in capsys.readouterr().err
    assert not (run / "report.html").exists()
    (run / "events.jsonl").write_bytes(lines[0] + b"{garbage\n")
    assert main(["report", str(run)]) == 2


def test_replay_finds_an_edited_report_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = copy_run(tmp_path)
    assert main(["report", str(run), "--html"]) == 0
    page = (run / "report.html").read_text()
    (run / "report.html").write_text(page.replace("</main>", "<p>edited</p></main>"))
    assert main(["replay", str(run), "--compat"]) == 0  # compat: renderings may change
    main(["replay", str(run)])
    assert "DIVERGED   report.html: line" in capsys.readouterr().out


def test_diff_html_shows_new_gone_and_changed_side_by_side(tmp_path: Path) -> None:
    a, _ = synthetic()
    decide = a.plugins[0]
    kept = tuple(f for f in decide.findings if f.title != "small hours")
    changed = tuple(
        msgspec.structs.replace(f, confidence=0.5) if f.title == "large hours" else f for f in kept
    )
    extra = msgspec.structs.replace(decide.findings[0], title="brand new", id="brand-new")
    b = msgspec.structs.replace(
        a, plugins=(msgspec.structs.replace(decide, findings=(*changed, extra)), *a.plugins[1:])
    )
    diff = diff_reports(a, b)
    page = render_diff_html(diff)
    text, _ = page_text(page)
    assert diff.counts["new"] == 1 and diff.counts["gone"] == 1 and diff.counts["changed"] == 1
    assert "brand new" in text and "Not in run A." in text
    assert "small hours" in text and "Gone from run B." in text
    assert re.search(r"Run A confidence\s*:\s*1 Run B confidence\s*:\s*0.5", text)
    assert diff.summary in text
    run = copy_run(tmp_path)
    assert main(["diff", str(run), str(run), "--html", "--out-dir", str(tmp_path / "d")]) == 0
    assert "agree on every recommendation" in (tmp_path / "d" / "diff.html").read_text()
    assert (
        build_report(fold(read_log(run / "events.jsonl"))).run_id
        in page_text((tmp_path / "d" / "diff.html").read_text())[0]
    )
