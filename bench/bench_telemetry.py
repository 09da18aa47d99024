"""Telemetry overhead: the same fleet with and without live OTLP span export.

Runs N trivial plugins (the body of ``bench_overhead.py``) through two engines that
differ only in ``otlp_endpoint``: one exports every span live over OTLP/HTTP to a
receiver in this process (``http.server`` on 127.0.0.1, decoding nothing, answering
200), the other does not. Both write ``trace.json`` (every run does). Runs alternate
so both see the same machine conditions. Prints the median run time of each and,
as the last line, ``telemetry_overhead_ratio <with/without>``; and, before it, the
CPU time of this process per run (less sensitive to other load on the machine).

    python bench/bench_telemetry.py [--plugins 200] [--workers 2] [--repeat 9]
"""

from __future__ import annotations

import argparse
import http.server
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_overhead import make_fleet

from engine import Engine


class Receiver:
    """Counts OTLP/HTTP requests and bytes; answers 200 to every POST."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests += 1
                receiver.bytes += len(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        host, port = self.server.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def interleaved(
    root: Path, dataset: Path, url: str, workers: int, repeat: int, n: int
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Wall and CPU seconds (this process: the event loop, the export thread and the
    receiver) of each run, without and with the export."""
    plain_times: list[tuple[float, float]] = []
    export_times: list[tuple[float, float]] = []
    plugins = root / "plugins"
    # No result cache: this measures running (and tracing) plugins, not reusing results.
    async with (
        Engine(plugins_dir=plugins, runs_dir=root / "plain", workers=workers, cache=False) as plain,
        Engine(
            plugins_dir=plugins,
            runs_dir=root / "otlp",
            workers=workers,
            cache=False,
            otlp_endpoint=url,
        ) as exporting,
    ):
        await plain.run(dataset)  # warm: workers up, plugins imported, data ingested
        await exporting.run(dataset)
        for _ in range(repeat):
            for engine, times in ((plain, plain_times), (exporting, export_times)):
                start, cpu = time.perf_counter(), time.process_time()
                result = await engine.run(dataset)
                times.append((time.perf_counter() - start, time.process_time() - cpu))
                assert result.report.summary.plugins == n
                if result.telemetry is not None:
                    assert result.telemetry.ok, result.telemetry
    return plain_times, export_times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plugins", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="engine-bench-telemetry-"))
    receiver = Receiver()
    try:
        dataset = make_fleet(root, args.plugins)
        plain_times, export_times = anyio.run(
            interleaved,
            root,
            dataset,
            receiver.url,
            args.workers,
            args.repeat,
            args.plugins,
            backend=args.backend,
        )
    finally:
        receiver.close()
        shutil.rmtree(root, ignore_errors=True)
    n = args.plugins
    plain = statistics.median(t for t, _ in plain_times)
    exported = statistics.median(t for t, _ in export_times)
    plain_cpu = statistics.median(c for _, c in plain_times)
    exported_cpu = statistics.median(c for _, c in export_times)
    print(f"plugins {n}, workers {args.workers}, repeats {args.repeat}, backend {args.backend}")
    print(f"without export: median run {plain * 1e3:.1f} ms ({plain / n * 1e3:.3f} ms/plugin)")
    print(
        f"with live OTLP export: median run {exported * 1e3:.1f} ms "
        f"({exported / n * 1e3:.3f} ms/plugin; {receiver.requests} requests, "
        f"{receiver.bytes / 1e3:.0f} kB received in all)"
    )
    # Less sensitive than wall time to other work on the machine (the receiver's
    # threads count too: a collector in another process would not).
    print(
        f"CPU of this process per run: without export {plain_cpu * 1e3:.1f} ms, "
        f"with export {exported_cpu * 1e3:.1f} ms"
    )
    print(f"telemetry_overhead_ratio {exported / plain:.2f}")


if __name__ == "__main__":
    main()
