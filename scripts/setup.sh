#!/usr/bin/env bash
# Create .venv and install epoch-widgets with the extras named (default: torch + lab).
#   bash scripts/setup.sh          # to use the panel and the API
#   bash scripts/setup.sh test     # also TensorFlow, TensorBoard, MLflow, Ray, the test tools and a browser for browser tests
set -euo pipefail
cd "$(dirname "$0")/.."
# The editable install builds the JupyterLab extension (labextension/) with Node.js.
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 18 ]; then
  echo "error: building the JupyterLab extension needs Node.js 18 or later (found: $(node --version 2>/dev/null || echo none));" \
       "install Node.js 20 (https://nodejs.org, or your system's package) and run this again" >&2
  exit 1
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
extras="torch,lab"
[ "${1:-}" = "test" ] && extras="torch,tensorflow,lab,parquet,tracking,app,ray,test"
python -m pip install -q -c constraints.txt -e ".[${extras}]"
if [ "${1:-}" = "test" ] && ! command -v chromium >/dev/null 2>&1; then
  # The browser tests use Debian's Chromium; Playwright's own browser download is not possible here.
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; browser tests will be skipped" >&2
  fi
fi
