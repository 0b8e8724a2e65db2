"""Smoke test of the course's JupyterLab: the server starts on the repository, its API answers, the plotly
and ipywidgets lab extensions are installed, a course notebook opens, and, in headless Chromium, a
widget and a plotly figure (shown with the renderer contract of ``iadtutor.viz``) render in a console.

The server runs on 127.0.0.1 with a random port and token; user settings, workspaces and runtime files go
to a temporary folder (autosave off, so no notebook of the repository is ever written), and the server
is shut down through its API in the teardown. The browser part is skipped, with the reason, where
Chromium or playwright is missing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import chromium_context

from iadtutor.tools import book

pytestmark = pytest.mark.slow

REPO = book.REPO_ROOT
START_TIMEOUT_S = 120
HTTP_TIMEOUT_S = 30
BROWSER_TIMEOUT_MS = 90_000
LAB_EXTENSIONS = ("jupyterlab-plotly", "@jupyter-widgets/jupyterlab-manager")

# Typed into a JupyterLab console: a slider, and a figure shown through a renderer that follows the
# contract of iadtutor.viz (plotly JSON for JupyterLab + text/html without plotly.js for the book).
CONSOLE_CODE = """\
import ipywidgets, plotly.io as pio, plotly.graph_objects as go
from plotly.io._base_renderers import MimetypeRenderer
class BookHtml(MimetypeRenderer):
    def to_mimebundle(self, fig):
        return {"text/html": pio.to_html(fig, include_plotlyjs=False, include_mathjax=False, full_html=False)}
pio.renderers["book_html_contract"] = BookHtml()
pio.show(go.Figure(go.Heatmap(z=[[1, 2], [3, 4]])), renderer="plotly_mimetype+book_html_contract")
ipywidgets.IntSlider(value=3, max=10, description="k")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A running JupyterLab server: its base URL, token and log."""

    def __init__(self, process, base_url, token, log_path):
        self.process, self.base_url, self.token, self.log_path = process, base_url, token, log_path

    def request(self, path: str, method: str = "GET") -> tuple[int, bytes]:
        req = urllib.request.Request(self.base_url + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def lab():
    workdir = Path(tempfile.mkdtemp(prefix="iadtutor-lab-"))
    for plugin, value in {"docmanager-extension/plugin": {"autosave": False},
                          "apputils-extension/notification": {"fetchNews": "false"}}.items():
        path = workdir / "settings" / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    port, token = free_port(), secrets.token_hex(16)
    log_path = workdir / "lab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={REPO}", f"--LabApp.user_settings_dir={workdir / 'settings'}",
               f"--LabApp.workspaces_dir={workdir / 'workspaces'}", "--LabApp.expose_app_in_browser=True",
               "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
               f"--FileContentsManager.checkpoints_kwargs=root_dir={workdir / 'checkpoints'}",
               "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate"]
    if os.geteuid() == 0:  # containers and CI run as root
        command.append("--allow-root")
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(workdir / "runtime"), PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = Lab(process, f"http://127.0.0.1:{port}", token, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"jupyter lab exited with {process.returncode}:\n{server.log_tail()}")
            try:
                if server.request("/api/status")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer within {START_TIMEOUT_S} s:\n{server.log_tail()}")
            time.sleep(0.5)
        yield server
    finally:
        _stop(server)
        shutil.rmtree(workdir, ignore_errors=True)


def _stop(server: Lab) -> None:
    """Shut the server (and its kernels) down through its API; signal its process group if it lingers."""
    if server.process.poll() is None:
        try:
            server.request("/api/shutdown", method="POST")
        except OSError:
            pass
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGTERM)
            try:
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait(timeout=10)
    try:  # kernels started by this server are in its process group
        os.killpg(server.process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def a_course_notebook() -> str:
    chapters = book.chapter_notebooks(REPO)
    if not chapters:
        pytest.skip("no notebooks/0*.ipynb yet to open in JupyterLab")
    return f"notebooks/{chapters[0].name}"


def page_config(html: str) -> dict:
    match = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the JupyterLab page has no jupyter-config-data"
    return json.loads(match.group(1))


def test_api_status_answers(lab):
    status, body = lab.request("/api/status")
    assert status == 200
    assert {"started", "kernels", "connections"} <= set(json.loads(body))


def test_contents_api_returns_a_course_notebook(lab):
    path = a_course_notebook()
    status, body = lab.request(f"/api/contents/{path}?content=1")
    assert status == 200, body[:500]
    model = json.loads(body)
    assert model["type"] == "notebook" and model["path"] == path
    assert model["content"]["cells"], f"{path} came back without cells"


def test_plotly_and_widget_lab_extensions_are_installed(lab):
    status, body = lab.request("/lab")
    assert status == 200
    config = page_config(body.decode())
    installed = {ext["name"] for ext in config.get("federated_extensions", [])}
    disabled = set(config.get("disabledExtensions", []))
    for name in LAB_EXTENSIONS:
        assert name in installed, f"lab extension {name} is not installed (have {sorted(installed)})"
        assert name not in disabled, f"lab extension {name} is disabled"


def test_notebook_page_opens(lab):
    status, body = lab.request(f"/lab/tree/{a_course_notebook()}")
    assert status == 200
    assert page_config(body.decode())["appName"] == "JupyterLab"


@pytest.mark.browser
def test_notebook_widget_and_figure_render_in_the_browser(lab):
    """Open a course notebook in JupyterLab in headless Chromium, then run a widget and a figure in a console."""
    notebook = a_course_notebook()
    screenshots = book.book_dirs(REPO)[0] / "_build" / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    remote, errors = [], []
    with chromium_context(width=1400, timeout_ms=BROWSER_TIMEOUT_MS) as context:
        context.route("**/*", lambda route: route.continue_()
                      if route.request.url.startswith((lab.base_url, "data:", "blob:", "about:"))
                      else (remote.append(route.request.url), route.abort()))
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{lab.base_url}/lab/tree/{notebook}?token={lab.token}", wait_until="load")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell .jp-RenderedMarkdown h1")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started")
        page.screenshot(path=screenshots / "jupyterlab-notebook.png")

        page.evaluate("""async code => {
            const app = window.jupyterapp;
            const panel = await app.commands.execute('console:create', {kernelPreference: {name: 'python3'}});
            await panel.sessionContext.ready;
            panel.console.promptCell.model.sharedModel.setSource(code);
            await app.commands.execute('console:run-forced');
        }""", CONSOLE_CODE)
        console = ".jp-CodeConsole"
        page.wait_for_selector(f"{console} .jp-OutputArea-output .widget-slider")
        page.wait_for_selector(f"{console} .js-plotly-plot .main-svg .heatmaplayer image")
        page.screenshot(path=screenshots / "jupyterlab-console.png")
        assert page.locator(f"{console} .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                            ).count() == 0, "the console cell wrote to stderr"
    assert not errors, f"JavaScript errors in JupyterLab: {errors}"
    assert not remote, f"JupyterLab asked another machine for: {remote}"
