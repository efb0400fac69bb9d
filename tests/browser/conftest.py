"""A real JupyterLab on a free port, and headless Chromium driven by Playwright.

Chromium is Debian's (``apt-get install chromium``, done by ``scripts/setup.sh test``): Playwright's
own browser download cannot run here. Without it the browser tests skip, saying so.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

CHROMIUM = Path(os.environ.get("EPOCH_WIDGETS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("EPOCH_WIDGETS_ARTIFACTS", REPO / "test-artifacts")) / "browser"
START_TIMEOUT_S = 180      # JupyterLab on two busy cores can take a while


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A running JupyterLab server: its URL, token and notebook folder."""

    def __init__(self, root: Path, home: Path):
        self.root = root
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "jupyterlab.log"
        settings = home / "settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        # No news or update checks: nothing to fetch here, and no pop-up over the screenshots.
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        env = {**os.environ,
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
               "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
               "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_TOKEN": self.token}
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={self.port}", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.root_dir={root}",
               # The training API's task records stay with this server, not in the user's data dir.
               f"--EpochTrainingApp.tasks_dir={home / 'tasks'}",
               "--LabApp.extension_manager=readonly", "--ServerApp.port_retries=0"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(cmd, cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/api/status", headers=self.headers, timeout=5).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer within {START_TIMEOUT_S}s:\n{self.log_tail()}")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def log_tail(self, chars: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def shutdown(self) -> None:
        """Stop the server and its kernels (the API shuts kernels down; the signal is the fallback)."""
        if self.process.poll() is None:
            try:
                requests.post(f"{self.url}/api/shutdown", headers=self.headers, timeout=10)
                self.process.wait(30)
            except (requests.RequestException, subprocess.TimeoutExpired):
                self.process.terminate()
                try:
                    self.process.wait(15)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(15)
        self._log.close()


class Voila:
    """``voila NOTEBOOK`` serving one notebook as a standalone app on a free port."""

    def __init__(self, notebook: Path, home: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = home / "voila.log"
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               "JUPYTER_RUNTIME_DIR": str(home / "runtime")}
        cmd = [sys.executable, "-m", "voila", notebook.name, "--no-browser", f"--port={self.port}",
               "--Voila.ip=127.0.0.1", "--Voila.port_retries=0"]
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(cmd, cwd=notebook.parent, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Voila exited with {self.process.returncode}:\n{self.log_tail()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"Voila did not listen within {START_TIMEOUT_S}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def shutdown(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(15)
        self._log.close()


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots and logs of a browser test go (``test-artifacts/browser``, git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install it with `apt-get install chromium` "
                    f"(bash scripts/setup.sh test does), or point EPOCH_WIDGETS_CHROMIUM at one")
    return CHROMIUM


@pytest.fixture
def lab_root(tmp_path: Path) -> Path:
    root = tmp_path / "notebooks"
    root.mkdir()
    return root


@pytest.fixture
def jupyter_lab(lab_root: Path, tmp_path: Path, artifacts: Path) -> Iterator[Lab]:
    """JupyterLab serving ``lab_root`` (fill it before using the server)."""
    home = tmp_path / "lab-home"
    home.mkdir()
    lab = Lab(lab_root, home)
    try:
        lab.wait_ready()
        yield lab
    finally:
        lab.shutdown()
        shutil.copy(lab.log_path, artifacts / "jupyterlab.log")


@pytest.fixture
def voila_factory(tmp_path: Path, artifacts: Path) -> Iterator[Any]:
    """Starts ``voila`` on a notebook (skips when Voila is not installed); stops it afterwards."""
    pytest.importorskip("voila", reason="pip install voila (the `app` extra)")
    started: list[Voila] = []

    def start(notebook: Path) -> Voila:
        home = tmp_path / "voila-home"
        home.mkdir(exist_ok=True)
        app = Voila(notebook, home)
        started.append(app)
        app.wait_ready()
        return app

    yield start
    for app in started:
        app.shutdown()
        shutil.copy(app.log_path, artifacts / "voila.log")


@pytest.fixture
def page(chromium_path: Path, artifacts: Path) -> Iterator["object"]:
    """A fresh page in headless Chromium; the browser's console errors go to ``console.log``."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    messages: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1200})
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            yield page
        finally:
            (artifacts / "console.log").write_text("\n".join(messages))
            browser.close()
