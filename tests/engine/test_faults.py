"""The fault campaign: hundreds of runs with faults drawn from a seeded generator.

Faults: plugins that hang, ``os._exit``, segfault, allocate without bound, raise,
return garbage, or return numpy / huge / NaN values; worker processes SIGKILLed from
outside at random moments; the engine itself SIGKILLed (by a plugin that kills its
parent, so the kill point is an event, not a time) and then resumed.

For every run: the log verifies; there is exactly one ``run_finished``; every plugin
is ok/failed/na with the reason its fault implies (a dependent of a failure:
``na``/``UPSTREAM_FAILED``; a plugin whose worker was killed from outside may end
``WORKER_CRASHED`` instead); replay equals the artifacts; a resumed run equals an
uninterrupted one. After the campaign no worker process and no file descriptor has
leaked. The figures are printed (and recorded in docs/reliability.md).

    pytest tests/engine/test_faults.py -s      # to see the figures
    FAULT_RUNS=1000 pytest tests/engine/test_faults.py -s
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from contracts import Na
from contracts.events import PluginStarted, RunFinished
from engine import Engine, RunResult, fold, read_log
from engine._tools.replay import replay

pytestmark = pytest.mark.slow

RUNS = int(os.environ.get("FAULT_RUNS", "200"))
ENGINE_KILL_EVERY = 10  # one run in ten kills the engine and resumes
CAMPAIGN_SEED = 20261202
MEMORY_CAP_MB = 200
HANG_TIMEOUT_S = 0.5  # a hang sleeps 60 s: any timeout well below shows the verdict

PLUGIN = textwrap.dedent(
    """
    import ctypes, math, os, signal, time
    from pathlib import Path
    import numpy as np
    from contracts import Finding, Evidence, na, ok

    def run(ctx):
        how = ctx.settings["behaviour"]
        pid = ctx.plugin_id
        finding = Finding(kind=pid + "_kind", title=pid + " found it", target=pid,
                          recommendation="act", evidence=Evidence(metrics={"n": 1}))
        if how == "kill_engine":
            marker = Path(ctx.settings["marker"])
            if not marker.exists():
                marker.touch()
                os.kill(os.getppid(), signal.SIGKILL)
                time.sleep(60)
            return ok(findings=[finding])
        if how == "hang":
            time.sleep(60)
        if how == "exit":
            os._exit(7)
        if how == "segfault":
            ctypes.string_at(0)
        if how == "hog":
            kept = []
            while len(kept) < 64:  # 4 GB at most; the cap must stop it long before
                block = bytearray(64 * 1024 * 1024)
                block[::4096] = b"x" * len(block[::4096])
                kept.append(block)
                time.sleep(0.01)
            return ok(findings=[finding])
        if how == "raise":
            raise ValueError("a plugin bug")
        if how == "garbage":
            return {"status": "ok"}
        if how == "huge":
            return ok(findings=[finding], metrics={"big": 2 ** 70})
        if how == "nan":
            return ok(findings=[finding], metrics={"r": math.nan})
        if how == "numpy":
            return ok(findings=[finding], metrics={"mean": np.float64(1.5), "n": np.int64(3),
                                                    "xs": np.arange(3)})
        if how == "na":
            return na("NO_SIGNIFICANT_EFFECT", "checked everything; nothing stands out")
        return ok(findings=[finding], metrics={"rows": ctx.data.rows})
    """
)

# behaviour -> (weight, implied (status, reason))
BEHAVIOURS: dict[str, tuple[int, tuple[str, str | None]]] = {
    "ok": (40, ("ok", None)),
    "na": (8, ("na", "NO_SIGNIFICANT_EFFECT")),
    "numpy": (8, ("ok", None)),
    "raise": (7, ("failed", "PLUGIN_ERROR")),
    "garbage": (6, ("failed", "INVALID_RESULT")),
    "huge": (5, ("failed", "INVALID_RESULT")),
    "nan": (5, ("failed", "INVALID_RESULT")),
    "hang": (3, ("failed", "TIMEOUT")),
    "exit": (3, ("failed", "WORKER_CRASHED")),
    "segfault": (2, ("failed", "WORKER_CRASHED")),
    "hog": (2, ("failed", "RESOURCE_LIMIT")),
}


def draw_fleet(rng: random.Random, kill_engine: bool) -> dict[str, dict[str, Any]]:
    """Six plugins (two explanation, four decision) with random dependencies."""
    names = list(BEHAVIOURS)
    weights = [BEHAVIOURS[n][0] for n in names]
    fleet: dict[str, dict[str, Any]] = {}
    for i in range(6):
        pid = f"{'e' if i < 2 else 'd'}{i}"
        earlier = [p for p in fleet if p.startswith("e") or i >= 2]
        deps = sorted(rng.sample(earlier, k=min(len(earlier), rng.randint(0, 2))))
        behaviour = rng.choices(names, weights)[0]
        fleet[pid] = {"behaviour": behaviour, "depends_on": deps}
    for pid, spec in fleet.items():  # explanation plugins may feed decisions only
        if pid.startswith("e"):
            spec["downstream"] = sorted(
                d for d, s in fleet.items() if d.startswith("d") and pid in s["depends_on"]
            )
    if kill_engine:
        victim = rng.choice(sorted(p for p, s in fleet.items() if s["behaviour"] != "hog"))
        fleet[victim]["behaviour"] = "kill_engine"
        for spec in fleet.values():  # the CLI run uses the default memory cap
            if spec["behaviour"] == "hog":
                spec["behaviour"] = "ok"
    return fleet


def write_fleet(root: Path, fleet: dict[str, dict[str, Any]], marker: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for pid, spec in fleet.items():
        folder = root / pid
        folder.mkdir()
        decision = pid.startswith("d")
        manifest: dict[str, Any] = {
            "id": pid,
            "version": "1",
            "lane": "decision" if decision else "explanation",
            "decision_capable": decision,
            "depends_on": spec["depends_on"],
            "finding_kinds": [f"{pid}_kind"],
            "timeout_s": HANG_TIMEOUT_S if spec["behaviour"] == "hang" else 30.0,
            "settings": {
                "behaviour": {"type": "str", "default": spec["behaviour"]},
                "marker": {"type": "str", "default": str(marker)},
            },
        }
        if not decision:
            manifest["downstream"] = spec["downstream"]
        (folder / "plugin.yaml").write_text(yaml.safe_dump(manifest, sort_keys=True))
        (folder / "plugin.py").write_text(PLUGIN)


def implied(
    fleet: dict[str, dict[str, Any]],
    actual: dict[str, tuple[str, str | None]],
    crashed_outside: set[str],
) -> dict[str, set[tuple[str, str | None]]]:
    """What each plugin may end as, given its fault and its dependencies' outcomes."""
    allowed: dict[str, set[tuple[str, str | None]]] = {}
    for pid, spec in fleet.items():
        if any(actual[d][0] == "failed" for d in spec["depends_on"]) or any(
            actual[d] == ("na", "UPSTREAM_FAILED") for d in spec["depends_on"]
        ):
            allowed[pid] = {("na", "UPSTREAM_FAILED")}
            continue
        behaviour = spec["behaviour"]
        own = ("ok", None) if behaviour == "kill_engine" else BEHAVIOURS[behaviour][1]
        allowed[pid] = {own}
        if pid in crashed_outside:
            allowed[pid].add(("failed", "WORKER_CRASHED"))
    return allowed


def projection(result: RunResult) -> list[Any]:
    return [
        (p.id, p.status, p.reason_code, [(f.id, f.title) for f in p.findings], p.metrics)
        for p in result.report.plugins
    ]


def check_run(
    result: RunResult,
    fleet: dict[str, dict[str, Any]],
    killed_pids: set[int],
    outcomes: Counter[str],
) -> None:
    events = read_log(result.run_dir / "events.jsonl")  # verifies the chain
    assert sum(isinstance(e, RunFinished) for e in events) == 1
    assert isinstance(events[-1], RunFinished)
    on_killed = {
        e.plugin_id for e in events if isinstance(e, PluginStarted) and e.pid in killed_pids
    }
    actual = {p.id: (p.status, p.reason_code) for p in result.report.plugins}
    allowed = implied(fleet, actual, on_killed)
    for pid, outcome in actual.items():
        assert outcome in allowed[pid], (
            pid,
            fleet[pid],
            outcome,
            allowed[pid],
            result.report.plugins,
        )
        outcomes[f"{outcome[0]}/{outcome[1] or '-'}"] += 1
    if any(o[0] == "failed" for o in actual.values()):
        assert result.status == "failed"
    replayed = replay(result.run_dir)
    assert replayed.ok, [str(d) for d in replayed.divergences]


def children() -> set[int]:
    """This process's children, but multiprocessing's resource tracker (one per
    process that ever spawned, by design; it is not a worker)."""
    me = os.getpid()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) != me:
                continue
            with contextlib.suppress(OSError):
                if b"resource_tracker" not in (entry / "cmdline").read_bytes():
                    found.add(int(entry.name))
    return found


def open_fds() -> list[str]:
    """What this process's descriptors point at (sorted, so a leak shows by name)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
    return sorted(found)


async def campaign(work: Path, dataset: Path) -> dict[str, Counter[str]]:
    rng = random.Random(CAMPAIGN_SEED)
    plugins, runs = work / "plugins", work / "runs"
    faults: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    write_fleet(plugins, draw_fleet(random.Random(0), False), work / "m")
    async with Engine(
        plugins_dir=plugins,
        runs_dir=runs,
        workers=2,
        cache=False,
        memory_limit_mb=MEMORY_CAP_MB,
        stall_timeout_s=60,
    ) as engine:
        for number in range(RUNS):
            kill_engine = number % ENGINE_KILL_EVERY == ENGINE_KILL_EVERY - 1
            fleet = draw_fleet(rng, kill_engine)
            marker = work / f"marker-{number}"
            write_fleet(plugins, fleet, marker)
            faults.update(s["behaviour"] for s in fleet.values())
            if kill_engine:
                kinds["engine SIGKILL + resume"] += 1
                await engine_killed_and_resumed(
                    engine, work, dataset, number, fleet, marker, outcomes
                )
                continue
            kill_at = rng.randrange(6) if rng.random() < 0.3 else None
            delay = rng.uniform(0, 0.05)
            killed: set[int] = set()
            kinds["in-process run"] += 1
            started = 0
            async with (
                anyio.create_task_group() as tg,
                engine.open_run(dataset, run_id=f"run-{number}") as handle,
            ):
                async for event in handle:
                    if isinstance(event, PluginStarted):
                        if started == kill_at:
                            faults["worker SIGKILL from outside"] += 1
                            killed.add(event.pid)
                            tg.start_soon(kill_later, event.pid, delay)
                        started += 1
            check_run(handle.result, fleet, killed, outcomes)
    return {"faults": faults, "outcomes": outcomes, "runs": kinds}


async def kill_later(pid: int, delay: float) -> None:
    await anyio.sleep(delay)
    # Its job may have ended already, and the worker been replaced or recycled.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


async def engine_killed_and_resumed(
    engine: Engine,
    work: Path,
    dataset: Path,
    number: int,
    fleet: dict[str, dict[str, Any]],
    marker: Path,
    outcomes: Counter[str],
) -> None:
    runs = work / "runs"
    run_id = f"killed-{number}"
    command = [
        sys.executable,
        "-m",
        "engine",
        "run",
        str(dataset),
        "--plugins",
        str(work / "plugins"),
        "--run-dir",
        str(runs),
        "--run-id",
        run_id,
        "--no-cache",
        "--workers",
        "2",
        "--quiet",
    ]
    proc = await anyio.run_process(
        command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    victim = next(p for p, s in fleet.items() if s["behaviour"] == "kill_engine")
    run_dir = runs / run_id
    events = read_log(run_dir / "events.jsonl", repair_tail=True)
    if marker.exists():  # the victim ran: the engine died with it
        assert proc.returncode == -signal.SIGKILL
        assert not isinstance(events[-1], RunFinished)
        resumed = await engine.resume(run_dir)
    else:  # the victim never ran (an upstream failed): the run finished normally
        assert isinstance(events[-1], RunFinished)
        finished = fold(events).plugins[victim].result
        assert isinstance(finished, Na) and finished.reason_code == "UPSTREAM_FAILED"
        resumed = None
    marker.touch()
    reference = await engine.run(dataset, run_id=f"reference-{number}")
    if resumed is not None:
        check_run(resumed, fleet, set(), outcomes)
        assert projection(resumed) == projection(reference)
    check_run(reference, fleet, set(), Counter())


async def warm_up(work: Path, dataset: Path) -> None:
    """One run first, so what a process keeps once it ever spawned (multiprocessing's
    resource tracker and its pipe) is in the baseline, not counted as a leak."""
    write_fleet(work / "plugins", draw_fleet(random.Random(0), False), work / "m")
    async with Engine(plugins_dir=work / "plugins", runs_dir=work / "runs", workers=1) as e:
        await e.run(dataset)


def test_fault_campaign(tmp_path: Path, dataset: Path) -> None:
    anyio.run(warm_up, tmp_path / "warm", dataset)
    gc.collect()
    before_children, before_fds = children(), open_fds()
    figures = anyio.run(campaign, tmp_path, dataset)
    gc.collect()
    assert children() == before_children  # no worker outlived the engine (nor a zombie)
    after_fds = open_fds()
    extra = sorted((Counter(after_fds) - Counter(before_fds)).elements())
    assert len(after_fds) == len(before_fds), f"descriptors left open: {extra}"
    print(f"\nfault campaign: {RUNS} runs, seed {CAMPAIGN_SEED}")
    for title, counts in figures.items():
        print(f"  {title}:")
        for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"    {name:<32} {count}")
    assert figures["runs"]["engine SIGKILL + resume"] == RUNS // ENGINE_KILL_EVERY
    if RUNS >= 200:  # the campaign draws every kind of fault
        for behaviour in BEHAVIOURS:
            assert figures["faults"][behaviour] > 0, behaviour
