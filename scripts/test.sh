#!/usr/bin/env bash
# Set up a virtual environment with everything the tests need, then run the whole test suite: the
# JupyterLab extension's jest tests, then pytest.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
. .venv/bin/activate
# The JupyterLab extension's own unit tests (jest); setup.sh's editable install has built it, and
# jlpm install is quick once its packages are there.
(cd labextension && jlpm install --immutable >/dev/null && jlpm test --ci)
# Two test processes, each taking whole files (module fixtures start once): many tests wait on
# worker processes, servers and kernels, so two share the CPU well. PYTEST_WORKERS=0 runs in one.
python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
