"""The JupyterLab extension is installed with the package: `jupyter labextension list` in this
environment shows `epoch-widgets` enabled and OK, as the editable install (scripts/setup.sh) and
the wheel leave it, and what it serves is the build of labextension/'s sources."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from jupyter_core.paths import jupyter_path

ROOT = Path(__file__).resolve().parents[1]
SETUP = "run `bash scripts/setup.sh` (or `pip install -e .`), which builds and installs it"


def test_jupyter_labextension_list_shows_the_extension_enabled_and_ok():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    listed = subprocess.run([sys.executable, "-m", "jupyterlab.labextensions", "list"], capture_output=True,
                            text=True, timeout=120, env=env)
    text = re.sub(r"\x1b\[[0-9;]*m", "", listed.stdout + listed.stderr)
    line = next((ln for ln in text.splitlines() if ln.strip().startswith("epoch-widgets ")), None)
    assert line is not None, f"epoch-widgets is not installed as a JupyterLab extension; {SETUP}:\n{text}"
    assert "enabled" in line and "OK" in line, line


def test_the_installed_extension_is_the_one_labextension_describes():
    package = json.loads((ROOT / "labextension" / "package.json").read_text())
    installed = next((Path(d) / "labextensions" / "epoch-widgets" for d in jupyter_path()
                      if (Path(d) / "labextensions" / "epoch-widgets" / "package.json").is_file()), None)
    assert installed is not None, f"no epoch-widgets in the JupyterLab extension folders; {SETUP}"
    built = json.loads((installed / "package.json").read_text())
    assert (built["name"], built["version"]) == (package["name"], package["version"])
    assert built["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry.")
    assert (installed / built["jupyterlab"]["_build"]["load"]).is_file()
