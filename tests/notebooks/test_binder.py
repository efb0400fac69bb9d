"""binder/requirements.txt installs into a fresh virtual environment, and the quickstart runs there.

Binder builds the image with ``pip install -r binder/requirements.txt`` from the repository root.
Here that file is installed the same way into a new venv, with one difference: the line adding
PyTorch's CPU index is dropped, because only PyPI is reachable from this machine; the pinned
``torch==2.13.0+cpu`` then comes from the CPU wheel this machine keeps on disk (pip's configured
find-links), which is the same build Binder downloads from that index.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.kernel, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "binder" / "requirements.txt"
UNREACHABLE_HERE = "download.pytorch.org"


def _run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def test_binder_requirements_pin_cpu_frameworks_and_install_the_repo() -> None:
    lines = [l.split("#")[0].strip() for l in REQUIREMENTS.read_text().splitlines()]
    lines = [l for l in lines if l]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines, "torch must come from the CPU index"
    assert any(l.startswith("torch==") and l.endswith("+cpu") for l in lines), "pin a +cpu torch build"
    assert any(l.startswith("tensorflow-cpu") for l in lines), "TensorFlow must be the CPU-only package"
    assert not any(l == "tensorflow" or l.startswith(("tensorflow=", "tensorflow>", "tensorflow<")) for l in lines), \
        "the full tensorflow package pulls CUDA libraries; use tensorflow-cpu"
    assert any(l == "." or l.startswith(".[") for l in lines), "binder/requirements.txt must install the repo (.)"
    assert (REPO / "binder" / "runtime.txt").read_text().strip().startswith("python-3.")


def test_binder_environment_installs_and_runs_the_quickstart(tmp_path: Path) -> None:
    venv = tmp_path / "binder-venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=300)
    python = venv / "bin" / "python"
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("".join(l for l in REQUIREMENTS.read_text().splitlines(keepends=True)
                                    if UNREACHABLE_HERE not in l))
    # From the repository root, like repo2docker, so that "." is this repository.
    _run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)], timeout=1800, cwd=REPO)
    _run([str(python), "-m", "pip", "check"], timeout=300)

    # Every package a tutorial imports (the notebooks themselves run under nbval in test_notebooks).
    probe = _run([str(python), "-c", "import epoch_widgets, torch, tensorflow, mlflow, tensorboard, requests, "
                  "sseclient; "
                  "print(epoch_widgets.__file__); print(torch.__version__); print(torch.cuda.is_available())"],
                 timeout=300, cwd=tmp_path).stdout.split()
    assert Path(probe[0]).is_relative_to(venv), f"epoch_widgets is not installed in the venv: {probe[0]}"
    assert probe[1].endswith("+cpu") and probe[2] == "False", probe
    # JupyterLab renders the panel with these front-end extensions, installed by pip into the env.
    labextensions = venv / "share" / "jupyter" / "labextensions"
    assert (labextensions / "@jupyter-widgets" / "jupyterlab-manager").is_dir()
    assert (labextensions / "bqplot").is_dir()
    server_extensions = _run([str(venv / "bin" / "jupyter"), "server", "extension", "list"], timeout=300)
    assert "epoch_widgets" in server_extensions.stdout + server_extensions.stderr

    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("JUPYTER_PATH", None)
    kernel = _run([str(python), "-c", "from jupyter_client.kernelspec import KernelSpecManager as K; "
                   "import shutil; print(shutil.which(K().get_kernel_spec('python3').argv[0]))"],
                  timeout=300, env=env).stdout.strip()
    assert Path(kernel).is_relative_to(venv), f"the notebooks' kernel would not run in the venv: {kernel}"

    work = tmp_path / "notebooks"
    shutil.copytree(REPO / "notebooks", work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    # The notebook the README's Binder badge opens; the others run under nbval with the same code.
    for notebook in sorted(work.glob("01_*.ipynb")):
        _run([str(venv / "bin" / "jupyter"), "nbconvert", "--to", "notebook", "--execute", "--inplace",
              "--ExecutePreprocessor.timeout=600", "--ExecutePreprocessor.kernel_name=python3", notebook.name],
             timeout=1200, cwd=work, env=env)
