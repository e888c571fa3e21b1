"""End to end: `glasshouse app` on a free localhost port, driven by headless Chromium (Playwright).

Opens the default page on the embedded model (the Sinks page once probes.sinks has landed, the
Model page before), waits for a plotly heatmap to render, prints the time it took, and saves a
screenshot to test-artifacts/. Needs Debian's chromium (/usr/bin/chromium) and the `playwright`
Python package; Playwright never downloads a browser here. Deselect with `-m "not e2e"`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SERVER_START_S = 120
HEATMAP_S = 300


def chromium_path() -> str:
    for candidate in (os.environ.get("GLASSHOUSE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("Chromium is needed for the app's end-to-end test and was not found at /usr/bin/chromium. "
                "Install it with `sudo apt-get install -y chromium` (or set GLASSHOUSE_CHROMIUM to its path), "
                "or deselect this test with -m 'not e2e'.")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"The app server exited with code {proc.returncode} before it served a page.")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"The app server did not answer {url}/_stcore/health within {timeout:.0f} s.")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


@pytest.mark.e2e
def test_app_renders_heatmap_in_chromium() -> None:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("The end-to-end test needs Playwright's Python package: pip install playwright "
                    "(no browser download is needed; it drives /usr/bin/chromium).")
    port = free_port()
    url = f"http://localhost:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / "app_server.log", "wb")  # noqa: SIM115 - closed in finally
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "app", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, proc, SERVER_START_S)
        served = time.monotonic()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            opened = time.monotonic()
            page.goto(url, wait_until="domcontentloaded")
            page.wait_for_selector(".js-plotly-plot .heatmaplayer image, .js-plotly-plot .hm image",
                                   state="attached", timeout=HEATMAP_S * 1000)
            rendered = time.monotonic()
            server_cpu = cpu_seconds(proc.pid)
            title = page.locator("h1").first.inner_text()
            page.wait_for_timeout(500)
            shot = ARTIFACTS / "app_first_heatmap.png"
            page.screenshot(path=str(shot), full_page=False)
            exceptions = page.locator("[data-testid='stException']").count()
            browser.close()
        print(f"\napp e2e: page '{title}'; server healthy {served - started:.1f} s after launch; "
              f"first heatmap {rendered - opened:.1f} s after the page opened "
              f"({rendered - started:.1f} s after launch; server CPU {server_cpu:.1f} s); screenshot {shot}")
        assert exceptions == 0
        assert title in {"Attention sinks", "Model"}
        assert shot.stat().st_size > 10_000
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
