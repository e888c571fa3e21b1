"""End to end: `glasshouse app` on a free localhost port, driven by headless Chromium (Playwright).

Opens the default page on the embedded model (the Sinks page), waits for a plotly heatmap to render,
prints the time it took, and saves a screenshot to test-artifacts/. Needs Debian's chromium (/usr/bin/chromium) and the `playwright`
Python package; Playwright never downloads a browser here. Deselect with `-m "not e2e"`.

The concurrency test (docs/concurrency.md) opens 8 sessions at once on a fresh server, 5 of them computing
different uncached analyses (Sinks, Extreme tokens, Active/dormant, Model, Successor) and 3 repeating
some of them, and checks every number each page shows (figure data, metrics, captions) equals a serial
run of the same page on another fresh server. It prints the wall time and the server's peak RSS.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

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


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM, Linux /proc; 0 elsewhere) in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


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


# --- 8 sessions at once (docs/concurrency.md) ------------------------------------------------------------------

# url path -> plotly figures the page shows with its defaults (the sidebar's default prompt)
E2E_PAGES = {"": 5, "extreme": 3, "dormant": 1, "model": 1, "successor": 3}
E2E_SESSIONS = ["", "extreme", "dormant", "model", "successor", "", "dormant", "model"]
PAGE_S = 600

# Figure data (typed arrays as lists, plotly's own uids dropped), metrics and captions, once the page has
# its figures and Streamlit reports no run in progress; null while it is still running.
READ_PAGE = """(want) => {
  if (document.querySelector('[data-testid="stStatusWidget"] [data-testid="stStatusWidgetRunningIcon"],'
      + '[data-testid="stStatusWidgetRunningManIcon"], [data-testid="stSpinner"]')) return null;
  if (document.querySelector('[data-testid="stException"]')) return {exception: true};
  const plots = Array.from(document.querySelectorAll('.js-plotly-plot')).filter(gd => gd.data);
  if (plots.length < want) return null;
  const plain = (k, v) => (k === 'uid' ? undefined : (ArrayBuffer.isView(v) ? Array.from(v) : v));
  return {
    figures: plots.map(gd => JSON.stringify(gd.data, plain)),
    metrics: Array.from(document.querySelectorAll('[data-testid="stMetric"]')).map(m => m.innerText),
    captions: Array.from(document.querySelectorAll('[data-testid="stCaptionContainer"]')).map(c => c.innerText),
    errors: Array.from(document.querySelectorAll('[data-testid="stAlertContentError"]')).map(e => e.innerText),
  };
}"""


class Server:
    """`glasshouse app` on a free port, its log in test-artifacts/."""

    def __init__(self, name: str) -> None:
        self.port = free_port()
        self.url = f"http://localhost:{self.port}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "HF_HUB_OFFLINE": "1", "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
        ARTIFACTS.mkdir(exist_ok=True)
        self.log = open(ARTIFACTS / f"app_server_{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "app", "--port", str(self.port)], cwd=ROOT,
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_healthy(self.url, self.proc, SERVER_START_S)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


PAGE_STATE = """() => ({
  plots: Array.from(document.querySelectorAll('.js-plotly-plot')).filter(gd => gd.data).length,
  running: !!document.querySelector('[data-testid="stStatusWidget"] [data-testid="stStatusWidgetRunningIcon"],'
      + '[data-testid="stStatusWidgetRunningManIcon"], [data-testid="stSpinner"]'),
  text: document.body.innerText.slice(0, 2000)})"""


def read_when_done(page: Any, path: str, timeout_s: float = PAGE_S) -> dict[str, Any]:
    try:
        handle = page.wait_for_function(READ_PAGE, arg=E2E_PAGES[path], timeout=timeout_s * 1000, polling=500)
    except Exception as exc:  # a timeout: say which page and what it showed, and keep a screenshot
        shot = ARTIFACTS / f"app_unfinished_{path or 'sinks'}.png"
        page.screenshot(path=str(shot), full_page=True)
        pytest.fail(f"/{path} did not finish within {timeout_s:.0f} s ({type(exc).__name__}); it showed "
                    f"{page.evaluate(PAGE_STATE)}; screenshot {shot}")
    # Streamlit may start the next element right after a figure; read again after a pause and insist on the same
    page.wait_for_timeout(1500)
    again = page.evaluate(READ_PAGE, E2E_PAGES[path])
    first = handle.json_value()
    assert again == first, f"/{path} changed after it looked finished"
    assert not first.get("exception") and not first["errors"], (path, first)
    return dict(first)


@pytest.mark.e2e
def test_eight_sessions_at_once_match_serial_runs() -> None:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("The end-to-end test needs Playwright's Python package: pip install playwright.")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            server = Server("serial")
            try:  # serial references: one session, one page after another
                serial: dict[str, dict[str, Any]] = {}
                started = time.monotonic()
                for path in E2E_PAGES:
                    context = browser.new_context(viewport={"width": 1300, "height": 900})
                    page = context.new_page()
                    page.goto(f"{server.url}/{path}", wait_until="domcontentloaded")
                    serial[path] = read_when_done(page, path)
                    context.close()
                serial_s = time.monotonic() - started
            finally:
                server.stop()

            server = Server("concurrent")  # fresh: nothing cached, every session computes
            try:
                contexts = [browser.new_context(viewport={"width": 1300, "height": 900}) for _ in E2E_SESSIONS]
                pages = [c.new_page() for c in contexts]
                started = time.monotonic()
                for page, path in zip(pages, E2E_SESSIONS, strict=True):
                    page.goto(f"{server.url}/{path}", wait_until="commit")
                shown = [read_when_done(page, path) for page, path in zip(pages, E2E_SESSIONS, strict=True)]
                wall_s = time.monotonic() - started
                rss = peak_rss_mib(server.proc.pid)
                cpu = cpu_seconds(server.proc.pid)
                for context in contexts:
                    context.close()
            finally:
                server.stop()
        finally:
            browser.close()
    print(f"\napp e2e, 8 sessions at once ({', '.join('/' + p for p in E2E_SESSIONS)}): all pages done "
          f"{wall_s:.1f} s after the first opened (server started fresh; includes waiting for the model load); "
          f"server peak RSS {rss:.0f} MiB, server CPU {cpu:.1f} s; the same {len(E2E_PAGES)} pages one after "
          f"another on another fresh server: {serial_s:.1f} s")
    (ARTIFACTS / "app_concurrent_pages.json").write_text(json.dumps({"serial": serial, "sessions": shown}, indent=1))
    for path, got in zip(E2E_SESSIONS, shown, strict=True):
        assert got == serial[path], f"/{path} under 8 concurrent sessions differs from its serial run"


@pytest.mark.e2e
def test_a_fresh_servers_first_visitor_of_a_page_gets_the_app() -> None:
    """The first session of a fresh server opens /dormant directly: it must get the app (sidebar, the page's
    title), not the page script run alone. Streamlit serves a folder named pages/ beside the entry script that way
    until some session has called st.navigation; the app's pages live in app/views/ for this reason."""
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        server = Server("first_visitor")
        try:
            page = browser.new_page()
            page.goto(f"{server.url}/dormant", wait_until="domcontentloaded")
            page.wait_for_selector("h1", timeout=SERVER_START_S * 1000)
            text = page.evaluate("() => document.body.innerText")
            assert "Active/dormant heads" in text and "pages do not run alone" not in text, text[:500]
        finally:
            server.stop()
            browser.close()
