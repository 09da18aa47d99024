"""``python -m engine``: exit codes and output, as a user runs it (subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import MakePlugin


def _engine(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_run_ok_failed_and_usage_exit_codes(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("fine")
    runs = tmp_path / "runs"
    ok = _engine("run", dataset, "--plugins", plugins_dir, "--run-dir", runs, "--workers", "1")
    assert ok.returncode == 0, ok.stderr
    run_dir = Path(ok.stdout.splitlines()[0].split(": ", 1)[1])
    assert (run_dir / "report.json").is_file()
    assert "OK" in ok.stdout

    make_plugin("broken", code="def run(ctx):\n    raise ValueError('no')\n")
    bad = _engine(
        "run",
        dataset,
        "--plugins",
        plugins_dir,
        "--run-dir",
        runs,
        "--backend",
        "trio",
        "--executor",
        "inline",
    )
    assert bad.returncode == 1, bad.stderr
    assert "FAILED" in bad.stdout and "PLUGIN_ERROR" in bad.stdout

    make_plugin("invalid", lane="sideways")
    usage = _engine("run", dataset, "--plugins", plugins_dir, "--run-dir", runs)
    assert usage.returncode == 2
    assert "plugins/invalid/plugin.yaml: $.lane" in usage.stderr

    missing = _engine("run", tmp_path / "nope.csv", "--plugins", plugins_dir, "--run-dir", runs)
    assert missing.returncode == 2
    assert _engine("run").returncode == 2


def test_plan_json_is_byte_identical(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path
) -> None:
    make_plugin("a", lane="explanation", downstream=["b"])
    make_plugin("b", depends_on=["a"])
    first = _engine("plan", "--plugins", plugins_dir, "--seed", "4", "--json")
    second = _engine("plan", "--plugins", plugins_dir, "--seed", "4", "--json")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    plan = json.loads(first.stdout)
    assert [s["plugin_id"] for s in plan["steps"]] == ["a", "b"]
    text = _engine("plan", "--plugins", plugins_dir)
    assert text.returncode == 0 and "a <- -" in text.stdout


def test_plan_reports_cycles(make_plugin: MakePlugin, plugins_dir: Path) -> None:
    make_plugin("a", depends_on=["b"])
    make_plugin("b", depends_on=["a"])
    result = _engine("plan", "--plugins", plugins_dir)
    assert result.returncode == 2
    assert "a -> b -> a" in result.stderr


def test_check_resume_cache_and_config(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("explainer", lane="explanation", downstream=["decider"])
    make_plugin("decider", depends_on=["explainer"])
    runs = tmp_path / "runs"
    config = tmp_path / "engine.yaml"
    config.write_text(f"plugins_dir: {plugins_dir}\nruns_dir: {runs}\nworkers: 1\n")
    first = _engine("run", dataset, "--config", config, "--run-id", "one")
    assert first.returncode == 0, first.stderr
    assert (runs / "one" / "report.json").is_file()

    checked = _engine("check", runs / "one")
    assert checked.returncode == 0, checked.stdout
    assert "check passed" in checked.stdout and "skipped_count" in checked.stdout

    # A finished run resumes to itself.
    again = _engine("resume", runs / "one", "--config", config)
    assert again.returncode == 0, again.stderr

    # Cached rerun: every plugin comes from the cache; --no-cache runs them again.
    cached = _engine("run", dataset, "--config", config, "--run-id", "two")
    assert cached.returncode == 0
    log = (runs / "two" / "events.jsonl").read_text()
    assert log.count('"type":"cache_hit"') == 2
    fresh = _engine("run", dataset, "--config", config, "--run-id", "three", "--no-cache")
    assert fresh.returncode == 0
    assert '"cache_' not in (runs / "three" / "events.jsonl").read_text()

    stats = _engine("cache", "stats", "--config", config)
    assert stats.returncode == 0 and "2 entries for 2 plugins" in stats.stdout
    pruned = _engine("cache", "prune", "--config", config)
    assert pruned.returncode == 0 and "pruned 0 entries" in pruned.stdout

    # A broken gate makes check fail and name the offender.
    make_plugin("orphan", lane="explanation")
    bad = _engine("run", dataset, "--config", config, "--run-id", "four")
    assert bad.returncode == 1
    failing = _engine("check", runs / "four")
    assert failing.returncode == 1
    assert "nondecision_missing_downstream_count: orphan" in failing.stdout

    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("mode: fast\n")
    rejected = _engine("run", dataset, "--config", bad_config)
    assert rejected.returncode == 2 and f"{bad_config}: $.mode" in rejected.stderr
