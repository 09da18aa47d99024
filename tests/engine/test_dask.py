"""The dask executor on real clusters: a ``dask scheduler`` and ``dask worker``
subprocesses on 127.0.0.1 (:mod:`.dask_cluster`), and a ``LocalCluster``.

What a run on Dask must keep from a local run: the same projection (plan hash,
every result), a log that verifies, spans from inside the plugins, artifacts in the
run directory; and the fail-closed outcomes: a lost worker ends its plugin
``WORKER_CRASHED`` naming it, a hung plugin ``TIMEOUT`` (the worker still serves),
a job over its memory cap ``RESOURCE_LIMIT``, stale code never runs, and workers
with other library versions are refused before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from contracts.events import PluginFinished, PluginSpan, PluginStarted
from engine import ConfigError, Engine, load_plugins, read_log
from engine._core.manifests import code_hash, contracts_source_hash
from engine._executors import dask_worker
from engine._executors.dask import DaskExecutor, publish_dataset, runtime_bundle
from engine._tools.check import check_run
from engine._tools.cli import main
from engine._tools.determinism import compare_runs
from engine._tools.synth import synthesize

from .conftest import write_plugin
from .dask_cluster import Cluster, cluster, worker_of

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"

REMOTE = """
import sys
from contracts import ok

def run(ctx):
    with ctx.span("remote.count", rows=ctx.data.rows):
        n = ctx.data.sql("SELECT count(*) AS n FROM data")["n"][0]
    ctx.artifact_path("count.txt").write_text(f"{n} rows\\n")
    return ok(
        metrics={
            "rows": int(n),
            "version": ctx.settings["version"],
            "engine_from": sys.modules["engine"].__file__,
            "contracts_from": sys.modules["contracts"].__file__,
        },
        artifacts=["count.txt"],
    )
"""

WAIT_FOR_GATE = """
import time
from pathlib import Path
from contracts import Finding, ok

def run(ctx):
    gate = Path(ctx.settings["gate"])
    for _ in range(600_000):
        if gate.exists():
            finding = Finding(kind=f"{ctx.plugin_id}_kind", title="waited", target="gate",
                              what="w", why="y", recommendation="r")
            return ok(findings=[finding], metrics={"waited": True})
        time.sleep(0.001)
    raise TimeoutError("the test never opened the gate")
"""

QUICK = """
from contracts import ok

def run(ctx):
    return ok(metrics={"rows": ctx.data.rows})
"""

HOG = """
from contracts import ok

def run(ctx):
    block = bytearray(400_000_000)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return ok(metrics={"bytes": len(block)})
"""


def settings_of(**values: str | int) -> dict[str, dict[str, Any]]:
    return {
        k: {"type": "str" if isinstance(v, str) else "int", "default": v} for k, v in values.items()
    }


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A scheduler and two workers, for the tests that leave the cluster as it was."""
    with cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> Path:
    folder = tmp_path / "store"
    folder.mkdir()
    return folder


def events_of(run_dir: Path, cls: type[Any]) -> list[Any]:
    return [e for e in read_log(run_dir / "events.jsonl") if isinstance(e, cls)]


def finished(run_dir: Path) -> dict[str, Any]:
    return {e.plugin_id: e for e in events_of(run_dir, PluginFinished)}


# -- content: the digests the workers recompute are the plan's


def test_a_bundle_hashes_to_the_code_hash_of_every_bundled_plugin() -> None:
    digest, bundle, sdk = runtime_bundle()
    assert sdk == contracts_source_hash()
    files = dask_worker.unpack(bundle)
    assert digest == dask_worker.tree_digest(files.items())
    assert b"kernel" not in files["engine/__init__.py"]
    assert not any(rel.startswith(("engine/_core", "engine/_executors")) for rel in files)
    prefix = dask_worker.code_prefix("1", sdk)
    for spec in load_plugins(PLUGINS):
        plugin_files = dask_worker.read_folder(spec.directory)
        assert dask_worker.tree_digest(plugin_files.items(), prefix) == spec.code_hash
        assert spec.code_hash == code_hash(spec.directory)


def test_a_bundle_path_may_not_leave_its_folder() -> None:
    for bad in ("../x.py", "/etc/passwd", "a//b.py", "a/./b.py"):
        with pytest.raises(ValueError, match="leaves its folder"):
            dask_worker.unpack(dask_worker.pack({bad: b""}))


def test_a_dataset_is_published_once_per_fingerprint(tmp_path: Path, store: Path) -> None:
    data = tmp_path / "events.csv"
    data.write_text("a,b\n1,2\n3,4\n")

    async def prepare() -> Any:
        async with Engine(plugins_dir=tmp_path, runs_dir=tmp_path / "runs") as engine:
            return engine.ingest(data)

    info = anyio.run(prepare)
    first = publish_dataset(str(store), info)
    copy = Path(first.url.removeprefix("file://"))
    assert copy.read_bytes() == Path(info.db_path).read_bytes()
    assert first.sha256 == hashlib.sha256(copy.read_bytes()).hexdigest()
    assert copy.parent == store / "datasets" / info.fingerprint
    before = sorted(p.name for p in copy.parent.iterdir())
    assert before == sorted(["manifest.json", f"{first.sha256}.duckdb"])
    # Published again (another run, another client): the manifest is reused, nothing sent.
    copy.chmod(0o444)
    assert publish_dataset(str(store), info) == first
    assert sorted(p.name for p in copy.parent.iterdir()) == before


def test_settings_and_arguments_for_the_dask_executor(tmp_path: Path) -> None:
    from engine import load_settings

    path = tmp_path / "engine.yaml"
    path.write_text("executor: dask\nscheduler: tcp://10.1.2.3:8786\ndata_store: shared/store\n")
    settings = load_settings(path)
    assert settings.executor == "dask"
    assert settings.scheduler == "tcp://10.1.2.3:8786"
    assert settings.data_store == str(tmp_path / "shared" / "store")
    path.write_text("executor: dask\ndata_store: s3://bucket/engine\n")
    assert load_settings(path).data_store == "s3://bucket/engine"
    path.write_text("scheduler: tcp://10.1.2.3:8786\n")
    with pytest.raises(ConfigError, match=r"\$\.scheduler: only with executor: dask"):
        load_settings(path)
    with pytest.raises(ConfigError, match="needs a data store"):
        Engine(executor="dask", scheduler="tcp://10.1.2.3:8786")
    with pytest.raises(ConfigError, match="need executor 'dask'"):
        Engine(executor="process", data_store=tmp_path)
    # The command line may choose another executor than the file's: its cluster goes.
    path.write_text("executor: dask\nscheduler: tcp://10.1.2.3:8786\ndata_store: store\n")
    engine = Engine.from_settings(load_settings(path), executor="inline")
    assert engine.executor.name == "inline"


# -- the bundled fleet on a real cluster


@pytest.mark.slow
def test_the_fleet_on_a_cluster_equals_the_process_pool_and_inline(
    shared: Cluster, store: Path, tmp_path: Path
) -> None:
    data = synthesize(tmp_path / "ops.parquet", rows=3000, seed=2, scenario="ops_incidents")
    runs = tmp_path / "runs"
    common = ["--plugins", str(PLUGINS), "--run-dir", str(runs), "--seed", "11", "--no-cache"]
    dask_args = ["--executor", "dask", "--scheduler", shared.address, "--data-store", str(store)]
    for run_id, extra in (
        ("on-dask-cluster", dask_args),
        ("on-process-pool", ["--executor", "process", "--workers", "2"]),
        ("on-inline-executor", ["--executor", "inline"]),
    ):
        code = main(["run", str(data.data_path), *common, *extra, "--run-id", run_id, "--quiet"])
        assert code in (0, 1), run_id
    on_dask = runs / "on-dask-cluster"
    result = compare_runs(on_dask, runs / "on-process-pool", runs / "on-inline-executor")
    assert result.identical, result.describe()
    assert result.plugins == len(list(PLUGINS.glob("*/plugin.yaml")))
    assert check_run(on_dask).ok, check_run(on_dask).problems
    started = events_of(on_dask, PluginStarted)
    assert len(started) == result.plugins
    assert {e.executor for e in started} == {"dask"}
    assert {worker_of(e.worker_id) for e in started} == set(shared.workers)


@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_remote_spans_artifacts_and_worker_code(
    shared: Cluster, store: Path, tmp_path: Path, dataset: Path
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "remote", code=REMOTE, settings=settings_of(version=1))
    async with Engine(
        plugins_dir=plugins,
        runs_dir=tmp_path / "runs",
        executor="dask",
        scheduler=shared.address,
        data_store=store,
    ) as engine:
        result = await engine.run(dataset, run_id="remote-run")
    (report,) = result.report.plugins
    assert report.status == "ok", report
    assert report.metrics["rows"] == 40
    # The job process imported the engine's worker code a worker unpacked, not ours.
    worker_dirs = [str(shared.root / name) for name in ("worker-0", "worker-1")]
    assert report.metrics["engine_from"].startswith(tuple(worker_dirs))
    assert report.metrics["contracts_from"].startswith(tuple(worker_dirs))
    # The artifact came back by content and landed where a local run puts it.
    artifact = result.run_dir / "artifacts" / "remote" / "count.txt"
    assert artifact.read_text() == "40 rows\n"
    (done,) = events_of(result.run_dir, PluginFinished)
    assert done.artifact_sha256 == {"count.txt": hashlib.sha256(artifact.read_bytes()).hexdigest()}
    # The span opened inside the remote plugin is in the log and in the run's trace.
    (span,) = events_of(result.run_dir, PluginSpan)
    assert span.span.name == "remote.count" and span.span.attributes == {"rows": 40}
    trace = json.loads((result.run_dir / "trace.json").read_text())
    names = [s["name"] for r in trace["resourceSpans"] for g in r["scopeSpans"] for s in g["spans"]]
    assert "remote.count" in names


@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_stale_code_on_a_worker_never_runs(
    shared: Cluster, store: Path, tmp_path: Path, dataset: Path
) -> None:
    plugins = tmp_path / "plugins"
    folder = write_plugin(plugins, "remote", code=REMOTE, settings=settings_of(version=1))

    async def run(run_id: str) -> Any:
        async with Engine(
            plugins_dir=plugins,
            runs_dir=tmp_path / "runs",
            executor="dask",
            scheduler=shared.address,
            data_store=store,
            cache=False,
        ) as engine:
            return await engine.run(dataset, run_id=run_id)

    first = await run("first")
    assert first.report.plugins[0].metrics["version"] == 1
    old_files = dask_worker.read_folder(folder)
    # The client's plugin changes; every worker holds, under the new code hash, a
    # stale copy of the old code (as a half-finished or tampered cache would).
    write_plugin(plugins, "remote", code=REMOTE, settings=settings_of(version=2))
    new_hash = code_hash(folder)
    planted = []
    for address in shared.workers:
        (local,) = (shared.folder_of(address) / "local").glob("*/worker-*/engine")
        stale = local / "code" / new_hash
        for rel, data in old_files.items():
            (stale / rel).parent.mkdir(parents=True, exist_ok=True)
            (stale / rel).write_bytes(data)
        planted.append(stale)
    second = await run("second")
    assert second.report.plugins[0].metrics["version"] == 2
    # The worker that ran it deleted the stale copy and unpacked the real one.
    (started,) = events_of(second.run_dir, PluginStarted)
    ran_on = shared.folder_of(worker_of(started.worker_id))
    (replaced,) = [p for p in planted if p.is_relative_to(ran_on)]
    assert dask_worker.read_folder(replaced) == dask_worker.read_folder(folder)


@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_jobs_go_where_their_code_is_and_a_burst_is_one_graph_a_worker(
    shared: Cluster, store: Path, tmp_path: Path, dataset: Path
) -> None:
    from distributed import Client

    plugins = tmp_path / "plugins"
    for i in range(4):
        write_plugin(plugins, f"quick_{i}", code=QUICK)

    def placed(result: Any) -> dict[str, str]:
        return {
            e.plugin_id: worker_of(e.worker_id) for e in events_of(result.run_dir, PluginStarted)
        }

    async def graphs(client_id: str) -> int:
        """The task graphs the scheduler took in from the engine's client so far."""

        def count() -> int:
            with Client(shared.address, timeout=60) as client:
                events = client.get_events(client_id)
            return sum(1 for _, msg in events if msg.get("action") == "update-graph")

        return await anyio.to_thread.run_sync(count)

    async with Engine(
        plugins_dir=plugins,
        runs_dir=tmp_path / "runs",
        executor="dask",
        scheduler=shared.address,
        data_store=store,
        cache=False,
    ) as engine:
        first = await engine.run(dataset, run_id="first")
        assert set(placed(first).values()) == set(shared.workers)
        # A plugin that ran on the second worker: by load alone it would go to the
        # first, both being idle (the executor fills the first idle worker first).
        second_worker = max(shared.workers)
        moved = min(p for p, w in placed(first).items() if w == second_worker)
        second = await engine.run(dataset, select=[moved], run_id="second")
        client_id = engine.executor._remote.client.id  # type: ignore[attr-defined]
        before = await graphs(client_id)
        third = await engine.run(dataset, run_id="third")  # jobs are short now: one burst
        after = await graphs(client_id)
    assert placed(second) == {moved: second_worker}
    assert placed(third) == placed(first)
    assert all(r.status == "ok" for r in third.report.plugins)
    assert after - before == len(shared.workers)  # not one per job


@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_a_hung_plugin_times_out_and_its_worker_serves_the_next(
    shared: Cluster, store: Path, tmp_path: Path, dataset: Path
) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(
        plugins, "hung", code=WAIT_FOR_GATE, settings=settings_of(gate="/nonexistent"), timeout_s=1
    )
    write_plugin(plugins, "after", code=QUICK)
    write_plugin(plugins, "hog", code=HOG)
    async with Engine(
        plugins_dir=plugins,
        runs_dir=tmp_path / "runs",
        executor="dask",
        scheduler=shared.address,
        data_store=store,
        memory_limit_mb=100,
        cache=False,
    ) as engine:
        before = await engine.run(dataset, select=["after"], run_id="before")
        assert before.report.plugins[0].status == "ok", finished(before.run_dir)["after"].result
        (first,) = events_of(before.run_dir, PluginStarted)
        # The worker's copy of "after" goes away; its job process has imported it.
        (copy,) = shared.folder_of(worker_of(first.worker_id)).glob(
            f"local/*/worker-*/engine/code/{code_hash(plugins / 'after')}"
        )
        shutil.rmtree(copy)
        hung = await engine.run(dataset, select=["hung"], run_id="hung")
        after = await engine.run(dataset, select=["after"], run_id="after")
        hog = await engine.run(dataset, select=["hog"], run_id="hog")
    (report,) = hung.report.plugins
    assert (report.status, report.reason_code) == ("failed", "TIMEOUT")
    assert "no result after 1s" in finished(hung.run_dir)["hung"].result.message
    (timed_out,) = events_of(hung.run_dir, PluginStarted)
    (next_one,) = events_of(after.run_dir, PluginStarted)
    # The same Dask worker (the executor fills the first idle worker first), in a
    # fresh job process: the hung one was killed.
    assert worker_of(first.worker_id) == worker_of(timed_out.worker_id)
    assert worker_of(next_one.worker_id) == worker_of(timed_out.worker_id)
    assert first.pid == timed_out.pid != next_one.pid
    # The fresh process needed "after" again, which the worker no longer had: it said
    # so, and the executor sent the bundle again (the job had not begun: no retry).
    assert after.report.plugins[0].status == "ok"
    assert dask_worker.read_folder(copy) == dask_worker.read_folder(plugins / "after")
    (report,) = hog.report.plugins
    assert (report.status, report.reason_code) == ("failed", "RESOURCE_LIMIT")
    assert "100 MB cap" in finished(hog.run_dir)["hog"].result.message


# -- losing a worker


@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_killed_worker_ends_its_plugin_and_resume_completes(
    store: Path, tmp_path: Path, dataset: Path
) -> None:
    gate = tmp_path / "gate"
    plugins = tmp_path / "plugins"
    never = tmp_path / "never-opened"
    write_plugin(plugins, "victim", code=WAIT_FOR_GATE, settings=settings_of(gate=str(never)))
    write_plugin(plugins, "held", code=WAIT_FOR_GATE, settings=settings_of(gate=str(gate)))
    for i in range(4):
        write_plugin(
            plugins,
            f"quick_{i}",
            code=QUICK,
            lane="explanation",
            diagnostic_only=True,
            downstream=["held"],
        )
    runs = tmp_path / "runs"

    def engine(address: str) -> Engine:
        return Engine(
            plugins_dir=plugins,
            runs_dir=runs,
            executor="dask",
            scheduler=address,
            data_store=store,
            cache=False,
        )

    with cluster(tmp_path / "cluster") as running:
        killed = ""
        async with engine(running.address) as eng:
            with anyio.CancelScope() as scope:
                async with eng.open_run(dataset, run_id="r") as run:
                    seen: set[str] = set()
                    async for event in run:
                        if isinstance(event, PluginStarted) and event.plugin_id == "victim":
                            killed = worker_of(event.worker_id)
                            await anyio.to_thread.run_sync(running.kill_worker, killed)
                        if isinstance(event, PluginStarted | PluginFinished):
                            seen.add(f"{type(event).__name__} {event.plugin_id}")
                        if {"PluginFinished victim", "PluginStarted held"} <= seen:
                            scope.cancel()  # interrupted while "held" runs
            assert scope.cancelled_caught
        run_dir = runs / "r"
        victim = finished(run_dir)["victim"]
        assert victim.result.reason_code == "WORKER_CRASHED"
        assert killed in victim.result.message
        assert "held" not in finished(run_dir)
        gate.write_text("open")
        async with engine(running.address) as eng:
            result = await eng.resume(run_dir)
        assert set(running.workers) != {killed}
    statuses = {p.id: (p.status, p.reason_code) for p in result.report.plugins}
    assert statuses == {
        "victim": ("failed", "WORKER_CRASHED"),
        "held": ("ok", None),
        **{f"quick_{i}": ("ok", None) for i in range(4)},
    }
    assert check_run(run_dir).ok, check_run(run_dir).problems
    resumed = [e for e in events_of(run_dir, PluginStarted) if e.plugin_id == "held"]
    assert len(resumed) == 2  # cancelled with the interrupted run, run again on resume
    assert killed not in {worker_of(e.worker_id) for e in resumed[1:]}


# -- versions and the local cluster


def _fake_distribution(root: Path, version: str) -> Path:
    info = root / f"enginefakepkg-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: enginefakepkg\nVersion: {version}\n"
    )
    return root


@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_worker_with_other_versions_is_refused_before_anything_runs(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(_fake_distribution(tmp_path / "client", "2.0")))
    there = _fake_distribution(tmp_path / "worker", "1.0")
    running = Cluster(tmp_path / "cluster")
    try:
        address = running.add_worker("old", env={"PYTHONPATH": str(there)})
        executor = DaskExecutor(running.address, data_store=str(store), libraries=["enginefakepkg"])
        with pytest.raises(ConfigError) as caught:
            async with executor:
                pass
    finally:
        running.close()
    message = str(caught.value)
    assert f"{address}: enginefakepkg 1.0 (the client has 2.0)" in message
    assert "docs/distributed.md" in message


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_local_cluster_without_an_address(tmp_path: Path, dataset: Path) -> None:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "remote", code=REMOTE, settings=settings_of(version=3))
    write_plugin(plugins, "quick", code=QUICK)
    async with Engine(
        plugins_dir=plugins, runs_dir=tmp_path / "runs", executor="dask", workers=2
    ) as engine:
        executor = engine.executor
        assert isinstance(executor, DaskExecutor) and executor.capacity == 2
        result = await engine.run(dataset)
    assert {p.status for p in result.report.plugins} == {"ok"}
    assert {p.id: p.metrics["rows"] for p in result.report.plugins} == {"remote": 40, "quick": 40}
    started = events_of(result.run_dir, PluginStarted)
    assert {e.executor for e in started} == {"dask"}
    assert result.state.started is not None and result.state.started.executor == "dask"
    assert os.listdir(tmp_path / "runs" / result.run_id / "artifacts" / "remote") == ["count.txt"]
