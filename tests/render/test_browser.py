"""report.html and engine serve in a real headless Chromium (Debian's chromium and
chromedriver, driven by Selenium). Missing browser: the tests fail, saying how to
install it (scripts/install-browser.sh), never skip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.events import PluginStarted
from engine import read_log
from tests.conftest import example_run_dir
from tests.engine.test_serve import start_server, stop

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1600",
)

pytestmark = pytest.mark.slow


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        pytest.fail(
            f"browser tests need {', '.join(missing)}: run scripts/install-browser.sh as root "
            "(apt-get install -y chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Any, timeout: float = 120) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def example_run(example_cli_run: subprocess.CompletedProcess[str]) -> Path:
    """The bundled example's run, shared with tests/test_example_run.py (read only)."""
    return example_run_dir(example_cli_run)


def requests_made(driver: Any) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_the_example_report_from_disk(browser: Any, example_run: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    page = (example_run / "report.html").as_uri()
    browser.get("about:blank")
    requests_made(browser)  # drain what the browser itself loaded at start
    browser.get(page)
    wait_for(browser, lambda d: d.execute_script("return document.readyState") == "complete")

    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    assert [u for u in requests_made(browser) if u != page] == []
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0

    report = json.loads((example_run / "report.json").read_text())
    for p in report["plugins"]:
        row = browser.find_element(By.ID, f"plugin-{p['id']}")
        assert row.get_attribute("data-status") == p["status"]
        assert row.find_element(By.CSS_SELECTOR, ".plugin-status").text.lower() == p["status"]

    sizes = browser.execute_script(
        "return [...document.querySelectorAll('figure.chart svg')]"
        ".map(s => { const r = s.getBoundingClientRect(); return [r.width, r.height]; })"
    )
    with_charts = sum(len(f["charts"]) for p in report["plugins"] for f in p["findings"])
    assert len(sizes) == with_charts + 1  # every chart of every finding, and the timeline
    assert with_charts >= 5
    assert all(w > 100 and h > 50 for w, h in sizes), sizes

    started = {e.plugin_id for e in read_log(example_run / "events.jsonl")
               if isinstance(e, PluginStarted)}  # fmt: skip
    bars = browser.execute_script(
        "return [...document.querySelectorAll('#timeline svg [id^=\"tl-bar-\"]')]"
        ".map(b => b.id.slice(7))"
    )
    assert sorted(bars) == sorted(started) and len(bars) == len(report["plugins"])

    button = browser.find_element(By.CSS_SELECTOR, "button[data-copy]")
    button.click()
    wait_for(browser, lambda d: button.text == "Copied")
    assert browser.get_log("browser") == []

    shot = tmp_path / "report.png"
    browser.set_window_size(1280, 2400)
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 50_000
    keep = os.environ.get("REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)


GATED = """
from contracts import Finding, ok

def run(ctx):
    with open({fifo!r}) as fh:  # blocks until the test writes to the pipe
        fh.read()
    return ok(findings=[Finding(kind="gated_kind", title="gated finished", target="x",
                                what="w", why="y", recommendation="r")])
"""


def write_plugin(root: Path, pid: str, code: str, **fields: Any) -> None:
    import yaml

    folder = root / pid
    folder.mkdir(parents=True)
    manifest = {"id": pid, "version": "1.0", "lane": "decision", "decision_capable": True,
                "finding_kinds": [f"{pid}_kind"], **fields}  # fmt: skip
    (folder / "plugin.yaml").write_text(yaml.safe_dump(manifest, sort_keys=True))
    (folder / "plugin.py").write_text(textwrap.dedent(code))


def test_a_run_in_progress_updates_live_without_a_reload(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    plugins, runs = tmp_path / "plugins", tmp_path / "runs"
    runs.mkdir()
    write_plugin(plugins, "first", """
        from contracts import Finding, ok

        def run(ctx):
            return ok(findings=[Finding(kind="first_kind", title="first found", target="x",
                                        what="w", why="y", recommendation="r")])
        """)  # fmt: skip
    write_plugin(plugins, "gated", GATED.format(fifo=str(fifo)), depends_on=["first"])
    data = tmp_path / "data.csv"
    data.write_text("a,b\n" + "".join(f"{i},{i % 3}\n" for i in range(30)))
    server, url = start_server(runs)
    run = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(data), "--plugins", str(plugins),
         "--run-dir", str(runs), "--run-id", "live", "--workers", "1", "--no-cache", "--quiet"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    opened = threading.Event()
    try:
        # The run list, reloaded until the run appears in it (its folder is made at start).
        def listed(d: Any) -> bool:
            d.get(url)
            return bool(d.find_elements(By.CSS_SELECTOR, 'tr[data-run-id="live"]'))

        wait_for(browser, listed)
        row = browser.find_element(By.CSS_SELECTOR, 'tr[data-run-id="live"]')
        assert row.get_attribute("data-status") == "running"
        row.find_element(By.LINK_TEXT, "live view").click()

        def status(pid: str) -> str:
            return str(
                browser.find_element(By.CSS_SELECTOR, f'tr[data-plugin-id="{pid}"]').get_attribute(
                    "data-status"
                )
            )

        wait_for(browser, lambda d: status("gated") == "running")
        assert status("first") == "ok"
        browser.execute_script("window.__same_page = 1")
        badge = browser.find_element(By.ID, "run-status")
        assert badge.text.lower() == "in progress"

        def release() -> None:
            with open(fifo, "w") as fh:  # opens once the plugin has opened its end
                fh.write("go")
            opened.set()

        threading.Thread(target=release, daemon=True).start()
        wait_for(browser, lambda d: status("gated") == "ok")
        wait_for(browser, lambda d: badge.get_attribute("data-status") == "ok")
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#report-link a"))
        assert browser.execute_script("return window.__same_page") == 1  # no reload
        bars = browser.execute_script(
            "return document.querySelectorAll('#timeline svg [id^=\"tl-bar-\"]').length"
        )
        assert bars == 2
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, out + err
    finally:
        if not opened.is_set():  # unblock the plugin, whatever failed
            fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
            os.write(fd, b"x")
            os.close(fd)
        if run.poll() is None:
            run.kill()
        run.communicate()
        stop(server)

    # The live run's report.html and one rebuilt from its log are the same bytes.
    rebuilt = tmp_path / "rebuilt"
    proc = cli("report", str(runs / "live"), "--html", "--out-dir", str(rebuilt))
    assert proc.returncode == 0, proc.stderr
    assert (rebuilt / "report.html").read_bytes() == (runs / "live" / "report.html").read_bytes()
    assert not (rebuilt / "report.md").exists()
