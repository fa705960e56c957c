"""Notebook 04's sliders in a real browser: JupyterLab, driven by Playwright and Debian's chromium.

``make test-browser`` runs this file alone; ``make test`` and ``.ci/run`` run it with the rest. It starts JupyterLab
on a free local port with a token (on a copy of notebook 04, results in a temporary folder, profile ``ci``), runs
all cells, waits for the kernel (its connection and status, not the toolbar), moves the ``lambda_clip`` slider with
the keyboard, presses Train, and checks what a student would see: the slider's readout, the run table, the loss
curves and the digits changed, and no widget shows an error. Then it replaces the button's callback in the kernel
with a broken one and checks that the same check fails. Screenshots: ``results/figures/browser_*.png``.

Without chromium (``apt-get install chromium``; Playwright's own browser download needs a network) the test is
skipped with that reason, unless ``EEG2IMG_REQUIRE_BROWSER=1`` (``make test-browser``, ``.ci/run``) makes it fail.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = "04_training.ipynb"
FIGURES = REPO / "results" / "figures"


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                      "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _missing(reason: str):
    if os.environ.get("EEG2IMG_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + " (EEG2IMG_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a copy of notebook 04: ``(base url, token)``."""
    if chromium_path() is None:
        _missing("no chromium: apt-get install chromium (or set CHROMIUM=/path/to/chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        _missing("playwright is not installed: pip install -e '.[test]'")
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(REPO / "notebooks" / NOTEBOOK, root / NOTEBOOK)
    home = tmp_path_factory.mktemp("jupyter-home")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, EEG2IMG_PROFILE="ci", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO),
               EEG2IMG_RESULTS_DIR=str(tmp_path_factory.mktemp("results")),
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"))
    # Every cell in the page, not only those in view (JupyterLab 4 renders a long notebook's cells lazily).
    tracker = home / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text('{"windowingMode": "none"}')
    news = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "official Jupyter news?" toast over the screenshots
    with open(home / "lab.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
             f"--IdentityProvider.token={token}", "--ServerApp.disable_check_xsrf=True",
             "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
             *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],  # CI containers: root
            env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("JupyterLab did not start:\n" + (home / "lab.log").read_text()[-3000:])
                time.sleep(0.5)
            yield base, token
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


# JavaScript run in the page: the notebook panel, its kernel, and its cells (JupyterLab's own objects, exposed by
# --LabApp.expose_app_in_browser).
PANEL = "window.jupyterapp && window.jupyterapp.shell.currentWidget"
KERNEL = f"({PANEL}) && {PANEL}.sessionContext && {PANEL}.sessionContext.session && " \
         f"{PANEL}.sessionContext.session.kernel"
KERNEL_READY = f"!!({KERNEL}) && {KERNEL}.connectionStatus === 'connected' && {KERNEL}.status === 'idle'"
ALL_RUN = f"""() => {{
  const panel = {PANEL};
  if (!panel || !panel.content) return false;
  const k = {KERNEL};
  if (!k || k.connectionStatus !== 'connected' || k.status !== 'idle') return false;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  // A cell that raised stops the queue (later cells never run): done too, and ERRORS says what happened.
  if (cells.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'))) return true;
  return cells.every(c => c.model.executionCount !== null);
}}"""
ERRORS = f"""() => {{
  const out = [];
  for (const c of {PANEL}.content.widgets) {{
    if (c.model.type !== 'code') continue;
    for (const o of c.model.outputs.toJSON()) if (o.output_type === 'error') out.push(o.ename + ': ' + o.evalue);
  }}
  return out;
}}"""


def run_in_kernel(page, code: str) -> None:
    page.evaluate(f"async (code) => {{ await {KERNEL}.requestExecute({{code}}).done; }}", code)


def train_button(page):
    return page.locator("button.widget-button", has_text="Train").first


def status_label(page):
    # The Label widget (a div) next to the Train button; the sliders' descriptions are <label> elements.
    return page.locator(".widget-vbox").filter(has=train_button(page)).locator("div.widget-label").first


def slider(page, name: str):
    return page.locator(".widget-slider").filter(has=page.locator("label", has_text=name)).first


def snapshot(page) -> dict:
    """What a student sees of the explorer: the lambda_clip readout, the status, the run table, the two figures."""
    table = page.locator(".widget-output table").last
    return {"readout": slider(page, "lambda_clip").locator(".widget-readout").inner_text().strip(),
            "status": status_label(page).inner_text(),
            "table_rows": table.locator("tbody tr").count() if table.count() else 0,
            "curves": page.locator(".widget-output img").nth(0).get_attribute("src"),
            "digits": page.locator(".widget-output img").nth(1).get_attribute("src")}


def click_and_check(page, before: dict, timeout_s: float = 300) -> tuple[dict, list[str]]:
    """Move lambda_clip one step with the keyboard, press Train, wait, and list what did not change as it should."""
    handle = slider(page, "lambda_clip").locator(".noUi-handle")
    handle.focus()
    page.keyboard.press("ArrowRight")
    train_button(page).click()
    # Done when the click was handled and has ended: the status line changed and the button is on again (it is
    # off while it trains). No fixed sleep: a busy kernel may take a while to even start.
    deadline = time.monotonic() + timeout_s
    while status_label(page).inner_text() == before["status"] or train_button(page).is_disabled():
        if time.monotonic() > deadline:
            return snapshot(page), ["the click was not handled, or training did not finish"]
        page.wait_for_timeout(500)
    page.wait_for_timeout(1000)  # the last redraw reaches the page
    after = snapshot(page)
    problems = []
    if after["readout"] == before["readout"]:
        problems.append(f"the lambda_clip readout did not move ({after['readout']})")
    if after["table_rows"] != before["table_rows"] + 1:
        problems.append(f"the run table has {after['table_rows']} rows, expected {before['table_rows'] + 1}")
    if after["curves"] == before["curves"]:
        problems.append("the loss curves did not change")
    if after["digits"] == before["digits"]:
        problems.append("the generated digits did not change")
    if "error" in after["status"]:
        problems.append(f"a widget shows an error: {after['status']}")
    if page.get_by_text("Error displaying widget").count():
        problems.append("a widget failed to render")
    return after, problems


def test_notebook_04_sliders_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    base, token = lab
    FIGURES.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
            page.wait_for_function(KERNEL_READY, timeout=180_000, polling=500)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_timeout(2000)
            page.wait_for_function(ALL_RUN, timeout=900_000, polling=1000)
            assert page.evaluate(ERRORS) == []
            assert not page.get_by_text("Error displaying widget").count()
            explorer = page.locator(".widget-vbox").filter(has=train_button(page)).first
            explorer.scroll_into_view_if_needed()
            before = snapshot(page)
            assert before["table_rows"] == 1  # the cell that presses the button from code made run 1
            page.screenshot(path=str(FIGURES / "browser_nb04_before.png"))

            after, problems = click_and_check(page, before)
            page.screenshot(path=str(FIGURES / "browser_nb04_after_click.png"))
            explorer.screenshot(path=str(FIGURES / "browser_nb04_explorer.png"))
            assert problems == [], problems
            assert after["status"].startswith("run 2, epoch")

            # The same check must fail when the button's callback is broken.
            run_in_kernel(page, "controls['button']._click_handlers.callbacks.clear()\n"
                                "widgets.connect(controls, session, callback=lambda *a, **k: 1 / 0)")
            _, broken = click_and_check(page, after, timeout_s=60)
            page.screenshot(path=str(FIGURES / "browser_nb04_broken_callback.png"))
            assert broken, "a broken callback went unnoticed"
            assert any("error" in p for p in broken) and any("run table" in p for p in broken)
        finally:
            browser.close()
