"""Fixtures for engine tests: plugin folders and datasets written to disk."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

OK_FINDING = """
from contracts import Finding, Evidence, ok, na

def run(ctx):
    return ok(findings=[Finding(kind="{kind}", title="{pid} found something", target="{pid}",
                                what="w", why="y", recommendation="r")],
              metrics={{"rows": ctx.data.rows}})
"""

MakePlugin = Callable[..., Path]


def write_plugin(
    root: Path,
    pid: str,
    *,
    lane: str = "decision",
    code: str | None = None,
    files: dict[str, str] | None = None,
    **fields: Any,
) -> Path:
    """Write ``root/pid/plugin.yaml`` and ``plugin.py`` (default: one ok finding)."""
    folder = root / pid
    folder.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "id": pid,
        "version": "1.0",
        "lane": lane,
        "finding_kinds": [f"{pid}_kind"],
    }
    if lane == "decision":
        manifest["decision_capable"] = True
    manifest.update(fields)
    (folder / "plugin.yaml").write_text(yaml.safe_dump(manifest, sort_keys=True))
    body = code if code is not None else OK_FINDING.format(pid=pid, kind=f"{pid}_kind")
    (folder / "plugin.py").write_text(textwrap.dedent(body))
    for name, text in (files or {}).items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


@pytest.fixture
def plugins_dir(tmp_path: Path) -> Path:
    root = tmp_path / "plugins"
    root.mkdir()
    return root


@pytest.fixture
def make_plugin(plugins_dir: Path) -> MakePlugin:
    def make(pid: str, **kwargs: Any) -> Path:
        return write_plugin(plugins_dir, pid, **kwargs)

    return make


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A small ops-style CSV."""
    path = tmp_path / "events.csv"
    lines = ["job_id,process,amount,queued_at,started_at"]
    for i in range(40):
        lines.append(
            f"j{i},p{i % 4},{(i * 7) % 13 + 0.5},2024-01-01 00:{i:02d}:00,2024-01-01 01:{i:02d}:00"
        )
    path.write_text("\n".join(lines) + "\n")
    return path
