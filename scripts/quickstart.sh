#!/usr/bin/env bash
# Set up .venv and open the quickstart notebook in JupyterLab (press Start in the panel).
#   bash scripts/quickstart.sh              # JupyterLab on notebooks/01_quickstart.ipynb
#   bash scripts/quickstart.sh --headless   # no browser: train on generated data in the console
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${1:-}" = "--headless" ]; then
  shift
  exec .venv/bin/epoch-train --demo "$@"
fi
# Jupyter refuses to run as root without this flag (containers, CI machines).
root_flag=()
[ "$(id -u)" = 0 ] && root_flag=(--allow-root)
exec .venv/bin/jupyter lab "${root_flag[@]}" "$@" notebooks/01_quickstart.ipynb
