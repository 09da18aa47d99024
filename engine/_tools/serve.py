"""``engine serve [RUNS_DIR]``: a read-only local web view of a runs folder.

A Starlette app on uvicorn, bound to 127.0.0.1 unless told otherwise:

* ``/`` lists the runs (every folder holding an ``events.jsonl``), newest first,
  with status, dataset, mode, seed, duration and counts, each folded from its log;
* ``/runs/<id>/`` is the run's ``report.html`` once it exists, else its live view;
* ``/runs/<id>/live`` is the live view: lanes, running plugins, outcomes and the
  timeline, kept current by ``/runs/<id>/events``, a stream of server-sent events
  that follows the growing ``events.jsonl`` (complete lines only) and folds it;
* ``/runs/<id>/files/<name>`` serves one of the run's own artifacts.

It never writes anything (the run folders are opened for reading only) and serves
nothing outside the runs folder: a run id is one plain folder name (no separators,
no ``..``, no leading dot), resolved and checked to lie inside the runs folder, so
``..``, symlinks out of it and percent-encoded slashes are all refused with 404.
"""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import anyio
import msgspec
from attrs import define, field

from contracts.charts import RunTimeline
from contracts.events import DECODER, Event
from engine import (
    HTML_NAME,
    LOG_NAME,
    MANIFEST_NAME,
    MARKDOWN_NAME,
    REPORT_NAME,
    TRACE_NAME,
    EngineError,
    RunState,
    apply,
    build_timeline,
    lane_progress,
    render_live_page,
    render_run_list,
    render_timeline_svg,
    timeline_table,
)

__all__ = ["PortInUseError", "RunFolder", "create_app", "open_socket", "serve"]

SERVED_FILES: Final = (HTML_NAME, MARKDOWN_NAME, REPORT_NAME, MANIFEST_NAME, LOG_NAME, TRACE_NAME)
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
}
POLL_S: Final = 0.25
"""How often a live stream looks for new lines in a growing log."""


class PortInUseError(EngineError, OSError):
    """The port asked for is taken."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            f"port {port} on {host} is already in use: stop what holds it, or choose "
            "another with --port N (--port 0 takes any free port)"
        )
        self.host = host
        self.port = port


@define(kw_only=True)
class RunFolder:
    """One run's log, folded incrementally: only complete new lines are read."""

    path: Path
    state: RunState = field(factory=RunState)
    offset: int = 0
    error: str | None = None
    size_seen: tuple[int, int] = (-1, -1)

    def refresh(self) -> bool:
        """Fold what was appended since the last call; True when anything was."""
        log = self.path / LOG_NAME
        try:
            stat = log.stat()
        except OSError as exc:
            self.error = f"{LOG_NAME}: {exc.strerror}"
            return False
        if (stat.st_size, stat.st_mtime_ns) == self.size_seen or self.error is not None:
            return False
        self.size_seen = (stat.st_size, stat.st_mtime_ns)
        with log.open("rb") as fh:  # read only
            fh.seek(self.offset)
            chunk = fh.read()
        end = chunk.rfind(b"\n")
        if end < 0:
            return False
        changed = False
        for line in chunk[: end + 1].splitlines():
            try:
                event: Event = DECODER.decode(line)
                apply(self.state, event)
            except (msgspec.DecodeError, EngineError) as exc:
                self.error = f"{LOG_NAME}: record {self.state.events}: {exc}"
                break
            changed = True
        self.offset += end + 1
        return changed

    def timeline(self) -> RunTimeline | None:
        return build_timeline(self.state) if self.state.started is not None else None


def _safe_child(root: Path, name: str) -> Path | None:
    """``root/name`` when ``name`` is one plain folder name inside ``root``."""
    if (
        not name
        or name.startswith(".")
        or any(ch in name for ch in "/\\\x00")
        or name in (".", "..")
    ):
        return None
    candidate = root / name
    try:
        resolved = candidate.resolve(strict=True)
    except OSError:
        return None
    if resolved.parent != root or not resolved.is_dir():
        return None
    return resolved


def _live_payload(folder: RunFolder) -> dict[str, Any]:
    t = folder.timeline()
    if t is None:
        return {"status": "starting", "events": 0, "rows": [], "lanes": [], "timeline": ""}
    return {
        "run_id": t.run_id,
        "status": t.status,
        "events": t.events,
        "elapsed_s": round(t.elapsed_s, 3),
        "rows": timeline_table(t),
        "lanes": lane_progress(t),
        "timeline": render_timeline_svg(t),
        "report": (folder.path / HTML_NAME).is_file(),
        "error": folder.error,
    }


def create_app(runs_dir: str | Path) -> Any:
    """The Starlette app serving ``runs_dir`` (read only)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import (
        FileResponse,
        HTMLResponse,
        PlainTextResponse,
        RedirectResponse,
        Response,
        StreamingResponse,
    )
    from starlette.routing import Route

    root = Path(runs_dir).resolve(strict=True)
    cache: dict[str, RunFolder] = {}

    def folder_of(request: Request) -> RunFolder | None:
        path = _safe_child(root, str(request.path_params["run_id"]))
        if path is None or not (path / LOG_NAME).is_file():
            return None
        found = cache.get(path.name)
        if found is None or found.path != path:
            found = cache[path.name] = RunFolder(path=path)
        return found

    def not_found() -> Response:
        return PlainTextResponse("no such run in this runs folder", status_code=404)

    async def index(request: Request) -> Response:
        def listing() -> str:
            runs = []
            for child in sorted(root.iterdir(), key=lambda p: p.name):
                safe = _safe_child(root, child.name)
                if safe is None or not (safe / LOG_NAME).is_file():
                    continue
                folder = cache.setdefault(safe.name, RunFolder(path=safe))
                folder.refresh()
                t = folder.timeline()
                if t is not None:
                    runs.append((safe.name, t, folder.error))
            runs.sort(key=lambda r: (-r[1].started_wall, r[0]))
            return render_run_list(runs, str(root))

        return HTMLResponse(await anyio.to_thread.run_sync(listing))

    async def run_page(request: Request) -> Response:
        folder = folder_of(request)
        if folder is None:
            return not_found()
        if (folder.path / HTML_NAME).is_file():
            return FileResponse(folder.path / HTML_NAME, media_type=_TYPES[".html"])
        return RedirectResponse(f"/runs/{folder.path.name}/live", status_code=307)

    async def live(request: Request) -> Response:
        folder = folder_of(request)
        if folder is None:
            return not_found()

        def page() -> str | None:
            folder.refresh()
            t = folder.timeline()
            return None if t is None else render_live_page(t, folder.path.name)

        html = await anyio.to_thread.run_sync(page)
        if html is None:
            return PlainTextResponse("the run has not started yet; reload", status_code=503)
        return HTMLResponse(html)

    async def events(request: Request) -> Response:
        folder = folder_of(request)
        if folder is None:
            return not_found()

        async def stream() -> AsyncIterator[str]:
            # Each client folds the log on its own: a stream never waits for another.
            mine = RunFolder(path=folder.path)
            sent: bool | None = None  # whether report.html existed at the last message
            while True:
                changed = await anyio.to_thread.run_sync(mine.refresh)
                report = (mine.path / HTML_NAME).is_file()
                if changed or report != sent:
                    payload = await anyio.to_thread.run_sync(_live_payload, mine)
                    yield f"data: {json.dumps(payload, sort_keys=True)}\n\n"
                    sent = report
                    # The run writes report.html after its last event: wait for it.
                    done = payload["status"] in ("ok", "failed") and report
                    if done or mine.error is not None:
                        yield "event: end\ndata: {}\n\n"
                        return
                if await request.is_disconnected():
                    return
                await anyio.sleep(POLL_S)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def files(request: Request) -> Response:
        folder = folder_of(request)
        name = str(request.path_params["name"])
        if folder is None or name not in SERVED_FILES:
            return not_found()
        path = folder.path / name
        if path.is_symlink() or not path.is_file():
            return not_found()
        return FileResponse(path, media_type=_TYPES[Path(name).suffix])

    return Starlette(
        routes=[
            Route("/", index),
            Route("/runs/{run_id}/", run_page),
            Route("/runs/{run_id}/live", live),
            Route("/runs/{run_id}/events", events),
            Route("/runs/{run_id}/files/{name}", files),
        ]
    )


def open_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; :class:`PortInUseError` when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(host, port) from None
        raise
    sock.listen(128)
    return sock


def serve(
    runs_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    announce: Any = print,
) -> None:
    """Serve ``runs_dir`` until interrupted (Ctrl-C).

    Raises:
        PortInUseError: the port is taken.
        FileNotFoundError: ``runs_dir`` does not exist.
    """
    import uvicorn

    app = create_app(runs_dir)
    sock = open_socket(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="off")
    announce(f"serving {Path(runs_dir).resolve()} at http://{shown}:{bound}/ (Ctrl-C stops)")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
