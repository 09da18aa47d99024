"""engine serve: the real server on a free port, spoken to with raw HTTP requests
(a browser would normalize ``..`` away before sending it)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine._tools.report import rebuild_reports

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "logs" / "v2"

pytestmark = pytest.mark.slow


def start_server(runs: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", str(runs), "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # printed once the socket listens
    assert line.startswith("serving "), line + (proc.stderr.read() if proc.stderr else "")
    return proc, line.split(" at ", 1)[1].split()[0]


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def get(url: str, path: str) -> tuple[int, str, str]:
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)  # the path as written
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.getheader("content-type") or "", response.read().decode()
    finally:
        conn.close()


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    return {
        str(p.relative_to(folder)): (
            p.lstat().st_size,
            p.lstat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "",
        )
        for p in sorted(folder.rglob("*"))
    }


def _serve(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A runs folder (the v2 fixture run, a symlink out, a folder that is no run)
    under ``tmp_path``, served; yields the url, the runs folder and the outside."""
    runs = tmp_path / "runs"
    run = runs / "v2"
    run.mkdir(parents=True)
    for name in ("events.jsonl", "report.json", "run_manifest.json", "report.md"):
        shutil.copyfile(FIXTURE / name, run / name)
    rebuild_reports(run, markdown=False)  # the fixture predates report.html
    outside = tmp_path / "outside"
    (outside / "secret").mkdir(parents=True)
    shutil.copyfile(FIXTURE / "events.jsonl", outside / "secret" / "events.jsonl")
    (outside / "secret" / "report.html").write_text("SECRET")
    os.symlink(outside / "secret", runs / "evil")  # a run folder that points outside
    (runs / "nolog").mkdir()  # not a run
    proc, url = start_server(runs)
    try:
        yield url, runs, outside
    finally:
        stop(proc)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A server of its own, for a test that changes the folder or watches it."""
    yield from _serve(tmp_path)


@pytest.fixture(scope="module")
def served_read_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """One server for the tests that only send requests and change nothing (the
    server only reads: test_the_event_stream_of_a_finished_run_ends_and_nothing_is_written)."""
    yield from _serve(tmp_path_factory.mktemp("served"))


def test_lists_runs_and_serves_their_reports(served: tuple[str, Path, Path]) -> None:
    url, runs, _ = served
    status, kind, body = get(url, "/")
    assert status == 200 and kind.startswith("text/html")
    report = json.loads((runs / "v2" / "report.json").read_text())
    assert 'data-run-id="v2"' in body and f'data-status="{report["status"]}"' in body
    assert report["mode"] in body and str(report["seed"]) in body
    assert "evil" not in body and "nolog" not in body
    status, _, page = get(url, "/runs/v2/")
    assert status == 200 and page == (runs / "v2" / "report.html").read_text()
    status, kind, data = get(url, "/runs/v2/files/report.json")
    assert status == 200 and json.loads(data) == report and kind == "application/json"
    status, _, live = get(url, "/runs/v2/live")
    assert status == 200 and all(f'data-plugin-id="{p["id"]}"' in live for p in report["plugins"])


@pytest.mark.parametrize(
    "path",
    [
        "/runs/evil/",
        "/runs/evil/files/report.html",
        "/runs/../outside/secret/",
        "/runs/..%2Foutside%2Fsecret/",
        "/runs/%2e%2e/files/report.json",
        "/runs/v2/files/..%2F..%2Foutside%2Fsecret%2Freport.html",
        "/runs/v2/files/../report.json",
        "/runs/v2/files/expected.json",
        "/runs/nolog/",
        "/runs/.hidden/",
        "/runs/v2%2F..%2Fevil/",
    ],
)
def test_refuses_everything_outside_the_runs_folder(
    served_read_only: tuple[str, Path, Path], path: str
) -> None:
    url, _, _ = served_read_only
    status, _, body = get(url, path)
    assert status == 404, (path, status)
    assert "SECRET" not in body


def test_a_file_symlinked_out_of_a_run_is_refused(served: tuple[str, Path, Path]) -> None:
    url, runs, outside = served
    (runs / "v2" / "report.md").unlink()
    os.symlink(outside / "secret" / "report.html", runs / "v2" / "report.md")
    status, _, body = get(url, "/runs/v2/files/report.md")
    assert status == 404 and "SECRET" not in body


def test_the_event_stream_of_a_finished_run_ends_and_nothing_is_written(
    served: tuple[str, Path, Path],
) -> None:
    url, runs, _ = served
    before = snapshot(runs)
    status, kind, body = get(url, "/runs/v2/events")
    assert status == 200 and kind.startswith("text/event-stream")
    messages = [m for m in body.split("\n\n") if m.strip()]
    assert messages[-1].startswith("event: end")
    payload = json.loads(messages[0].removeprefix("data: "))
    report = json.loads((runs / "v2" / "report.json").read_text())
    assert payload["status"] == report["status"] and payload["report"] is True
    assert {r["id"]: r["status"] for r in payload["rows"]} == {
        p["id"]: p["status"] for p in report["plugins"]
    }
    assert payload["timeline"].startswith("<svg")
    for path in ("/", "/runs/v2/", "/runs/v2/live", "/runs/v2/files/events.jsonl"):
        assert get(url, path)[0] == 200
    assert snapshot(runs) == before  # the server only reads


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "engine", "serve", str(tmp_path), "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in proc.stderr
    assert "--port" in proc.stderr and "Traceback" not in proc.stderr


def test_a_missing_runs_folder_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "serve", str(tmp_path / "nope")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "not a directory" in proc.stderr
