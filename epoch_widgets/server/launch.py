"""Start the API server in the background from Python (notebooks, scripts, tests).

    with BackgroundServer(root_dir="work") as server:
        requests.get(server.api_url("tasks"), headers=server.headers)

It runs ``python -m epoch_widgets.server`` (the API alone; with ``jupyter=True``, a full ``jupyter
server`` with every enabled extension) on a free local port with a fresh token, passed in the
environment, and waits until the API answers.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional, Sequence, Union

from .urls import API_PREFIX


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BackgroundServer:
    """A Jupyter server with the epoch-training API, as a child process."""

    def __init__(self, root_dir: Union[str, Path] = ".", port: Optional[int] = None,
                 token: Optional[str] = None, tasks_dir: Union[str, Path, None] = None,
                 models_dir: Union[str, Path, None] = None, extra_args: Sequence[str] = (),
                 log_file: Union[str, Path, None] = None, env: Optional[dict[str, str]] = None,
                 jupyter: bool = False):
        self.root_dir = Path(root_dir).resolve()
        self.port = port or free_port()
        self.token = token or secrets.token_hex(16)
        self.tasks_dir = tasks_dir
        self.models_dir = models_dir
        self.extra_args = list(extra_args)
        self.log_file = Path(log_file) if log_file else None
        self.env = env
        self.jupyter = jupyter
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def api_url(self, *parts: str) -> str:
        return "/".join([self.url, API_PREFIX, *parts])

    def command(self) -> list[str]:
        """The server's command line (the token is not on it: see ``environment``)."""
        module = "jupyter_server" if self.jupyter else "epoch_widgets.server"
        args = [sys.executable, "-m", module, f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1", "--ServerApp.open_browser=False",
                f"--ServerApp.root_dir={self.root_dir}"]
        if os.geteuid() == 0:
            args.append("--allow-root")
        if self.tasks_dir is not None:
            args.append(f"--EpochTrainingApp.tasks_dir={Path(self.tasks_dir).resolve()}")
        if self.models_dir is not None:
            args.append(f"--EpochTrainingApp.models_dir={Path(self.models_dir).resolve()}")
        return args + self.extra_args

    def environment(self) -> dict[str, str]:
        """The server's environment: ``env`` (default: this process's) with ``JUPYTER_TOKEN``, which,
        unlike a command-line option, other local users cannot read in ``ps``."""
        return {**(os.environ if self.env is None else self.env), "JUPYTER_TOKEN": self.token}

    def start(self, timeout: float = 60.0) -> "BackgroundServer":
        """Start the server and wait until the API answers."""
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                            env=self.environment(), cwd=self.root_dir)
        finally:
            if self.log_file:
                out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.process.returncode} while starting"
                                   + (f"; see {self.log_file}" if self.log_file else ""))
            try:
                request = urllib.request.Request(self.api_url("tasks"), headers=self.headers)
                with urllib.request.urlopen(request, timeout=2):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"the server did not answer on {self.url} within {timeout:g} s")

    def stop(self, timeout: float = 30.0) -> Optional[int]:
        """Shut the server down (as Ctrl-C would: workers stop, tasks are recorded); its exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "BackgroundServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.process is not None and self.process.poll() is None else "stopped"
        return f"<BackgroundServer {self.url} {state}>"
