"""Shared fixtures: async tests run on both asyncio and trio; the bundled example's
run through the real CLI, made once for the tests that read it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The system tests (marked ``slow``) first, each group in its collected order:
    on several processes (``./run-tests`` runs ``-n 2``) the long ones then start at
    once and the short ones fill in around them, instead of one long test running
    alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def example_cli_run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """``engine run examples/ops_events.csv`` (the real CLI, fleet and pool; seed 1,
    two workers, the cache off) into a folder of its own, once per session: the
    system test checks its artifacts (tests/test_example_run.py), the browser test
    loads its report.html (tests/render/test_browser.py). They only read it.
    Its first line of output names the run directory."""
    return subprocess.run(
        [
            *(sys.executable, "-m", "engine", "run", "examples/ops_events.csv"),
            *("--run-dir", str(tmp_path_factory.mktemp("example-runs"))),
            *("--workers", "2", "--seed", "1", "--no-cache"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def example_run_dir(proc: subprocess.CompletedProcess[str]) -> Path:
    """The run directory ``example_cli_run`` made (after checking it ran ok)."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Path(proc.stdout.splitlines()[0].split(": ", 1)[1])
