"""``engine verify-determinism``: same inputs and seed, same projection, whatever the
worker count or async backend; a real difference is found and located."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from engine import ConfigError, Engine
from engine._tools.cli import main
from engine._tools.determinism import compare_runs, run_projection, verify_determinism
from engine._tools.synth import synthesize

from .conftest import MakePlugin

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"

RANDOM = """
import random
from contracts import Finding, ok

def run(ctx):
    return ok(findings=[Finding(kind="{pid}_kind", title="t", target="x", recommendation="r")],
              metrics={{"draw": random.random()}})
"""

NOISY_FAILURE = """
import os, time

def run(ctx):
    raise ValueError(f"worker {os.getpid()} gave up at {time.time()} in {ctx.artifacts_dir}")
"""


@pytest.fixture
def ops_data(tmp_path: Path) -> Path:
    return Path(
        synthesize(tmp_path / "ops.parquet", rows=3000, seed=2, scenario="ops_incidents").data_path
    )


async def _fleet_run(runs: Path, dataset: Path, workers: int, run_id: str) -> Path:
    async with Engine(plugins_dir=PLUGINS, runs_dir=runs, workers=workers, cache=False) as e:
        return (await e.run(dataset, seed=11, run_id=run_id)).run_dir


def _keys(value: object) -> list[str]:
    if isinstance(value, dict):
        return [k for k, v in value.items() for k in (k, *_keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def test_bundled_fleet_same_projection_with_1_and_2_workers_on_asyncio_and_trio(
    ops_data: Path, tmp_path: Path
) -> None:
    runs = []
    for backend in ("asyncio", "trio"):
        for workers in (1, 2):
            runs.append(
                anyio.run(
                    _fleet_run,
                    tmp_path / "runs",
                    ops_data,
                    workers,
                    f"{backend}-{workers}",
                    backend=backend,
                )
            )
    result = compare_runs(*runs)
    assert result.identical, result.describe()
    assert len(set(result.projection_hashes)) == 1
    assert result.plugins == len(list(PLUGINS.glob("*/plugin.yaml")))
    assert result.findings > 0
    # The projection holds no run id, run directory, time or worker figure.
    projection = run_projection(runs[0])
    text = json.dumps(projection)
    assert "asyncio-1" not in text and str(tmp_path) not in text
    keys = set(_keys(projection))
    assert keys.isdisjoint({"run_id", "duration_s", "wall", "mono", "pid", "worker", "workers"})
    assert keys.isdisjoint({"traceback", "message", "data_access", "ran", "cached", "source"})


@pytest.mark.slow
def test_the_fleet_gives_one_projection_across_processes_and_hash_seeds(
    ops_data: Path, tmp_path: Path
) -> None:
    """The bundled fleet in separate engine processes with different string-hash seeds.
    Inline, the plugins run in the engine process itself, under its hash seed (pool
    workers always get PYTHONHASHSEED=0, which would hide a plugin that depends on
    the order of a set of strings). The in-process runs on the pool (above) use the
    same dataset and seed."""
    import os
    import subprocess
    import sys

    made = []
    procs = []
    # The two engines run at the same time: each is one process (inline), and
    # neither reads what the other writes (a runs folder each, with its own
    # dataset cache; the result cache off).
    for run_id, hashseed in (("inline-1", "1"), ("inline-2", "2")):
        runs = tmp_path / f"runs-{hashseed}"
        procs.append(
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "engine", "run", str(ops_data)),
                    *("--plugins", str(PLUGINS), "--run-dir", str(runs), "--run-id", run_id),
                    *("--seed", "11", "--executor", "inline", "--no-cache"),
                    "--quiet",
                ],
                env={**os.environ, "PYTHONHASHSEED": hashseed},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        made.append(runs / run_id)
    try:
        ended = [(proc.communicate(timeout=900)[1], proc.returncode) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for stderr, returncode in ended:
        assert returncode in (0, 1), stderr
    result = compare_runs(*made)
    assert result.identical, result.describe()
    assert result.plugins == len(list(PLUGINS.glob("*/plugin.yaml")))
    assert result.findings > 0


@pytest.mark.anyio
async def test_verify_determinism_repeats_with_the_cache_off(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("explainer", lane="explanation", downstream=["decider"])
    make_plugin("decider", depends_on=["explainer"])
    make_plugin("noisy", code=NOISY_FAILURE)  # its message differs every time: excluded
    async with Engine(
        plugins_dir=plugins_dir, runs_dir=tmp_path / "runs", workers=2, cache=False
    ) as engine:
        result = await verify_determinism(engine, dataset, seed=3, repeat=3)
    assert result.identical, result.describe()
    assert len(set(result.runs)) == 3
    assert "IDENTICAL (3 runs, 3 plugins" in result.describe()
    projection = run_projection(result.runs[0])
    noisy = next(p for p in projection["plugins"] if p["id"] == "noisy")
    assert noisy["status"] == "failed" and noisy["error_type"] == "ValueError"
    assert "gave up" not in json.dumps(projection)


@pytest.mark.anyio
async def test_a_nondeterministic_plugin_is_found_and_located(
    make_plugin: MakePlugin, plugins_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    make_plugin("steady")
    make_plugin("dice", code=RANDOM.format(pid="dice"))
    async with Engine(
        plugins_dir=plugins_dir, runs_dir=tmp_path / "runs", workers=1, cache=False
    ) as engine:
        result = await verify_determinism(engine, dataset, seed=1)
    assert not result.identical
    assert result.difference is not None
    path, a, b = result.difference
    index = [p["id"] for p in run_projection(result.runs[0])["plugins"]].index("dice")
    assert path == f"$.plugins[{index}].metrics.draw"
    assert isinstance(a, float) and isinstance(b, float) and a != b
    assert f"at $.plugins[{index}].metrics.draw: " in result.describe()


@pytest.mark.anyio
async def test_the_cache_must_be_off(plugins_dir: Path, dataset: Path, tmp_path: Path) -> None:
    async with Engine(plugins_dir=plugins_dir, runs_dir=tmp_path / "runs", workers=1) as engine:
        with pytest.raises(ConfigError, match="cache off"):
            await verify_determinism(engine, dataset)


def _runs(out: str) -> list[Path]:
    return [Path(line.split()[0]) for line in out.splitlines() if "  projection " in line]


def test_cli_dataset_runs_and_usage(
    make_plugin: MakePlugin,
    plugins_dir: Path,
    dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_plugin("steady")
    runs = tmp_path / "runs"
    common = ["--plugins", str(plugins_dir), "--run-dir", str(runs), "--workers", "1"]
    assert main(["verify-determinism", str(dataset), "--seed", "5", *common]) == 0
    out = capsys.readouterr().out
    assert "determinism: IDENTICAL (2 runs" in out
    seed5 = _runs(out)
    args = ["verify-determinism", str(dataset), "--backend", "trio", "--repeat", "3", *common]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "IDENTICAL (3 runs" in out
    made = [*seed5, *_runs(out)]
    assert len(set(made)) == 5 and all((p / "events.jsonl").is_file() for p in made)

    assert main(["verify-determinism", "--runs", str(made[0]), str(made[1])]) == 0
    # Seed 5 against seed 0: the plan differs (its tie-break hash is seeded).
    assert main(["verify-determinism", "--runs", str(made[0]), str(made[2])]) == 1
    out = capsys.readouterr().out
    assert "DIFFERENT" in out and "at $.plan_hash:" in out

    assert main(["verify-determinism"]) == 2
    assert main(["verify-determinism", str(dataset), "--runs", str(made[0]), str(made[1])]) == 2
    assert main(["verify-determinism", "--runs", str(made[0]), str(tmp_path)]) == 2
    assert "no such event log" in capsys.readouterr().err


def test_a_short_run_id_is_scrubbed_as_a_word_only() -> None:
    """The projection replaces the run's id where it stands as a word; a short id
    ("ci") inside other words ("decision") stays, so two runs that differ only by
    id project the same."""
    import msgspec

    from contracts import Report
    from engine._tools.determinism import project_report

    fixture = Path(__file__).parent.parent / "fixtures" / "logs" / "v3" / "report.json"
    report = msgspec.json.decode(fixture.read_bytes(), type=Report)
    first = report.plugins[0]
    said = "decision made in run ci (ci-2 is another run)"

    def with_id(run_id: str) -> Report:
        text = said.replace(" ci ", f" {run_id} ")
        plugin = msgspec.structs.replace(first, explanation=text)
        return msgspec.structs.replace(report, run_id=run_id, plugins=(plugin, *report.plugins[1:]))

    a, b = project_report(with_id("ci")), project_report(with_id("x7"))
    assert a == b
    assert a["plugins"][0]["explanation"] == ("decision made in run <run_id> (ci-2 is another run)")
