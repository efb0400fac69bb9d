"""Serve the epoch-training API on its own: ``python -m epoch_widgets.server [--port 8000] [options]``.

Any Jupyter Server option works (``--IdentityProvider.token=...``, ``--ServerApp.root_dir=...``,
``--EpochTrainingApp.models_dir=...``); the port defaults to 8000 (the documented base URL) and no
browser is opened. Without a token option, ``JUPYTER_TOKEN`` or a generated token is used (the
server prints it).
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

DEFAULT_PORT = 8000
# Bodies tornado reads at all (Jupyter's default is 512 MiB, held in memory). The API answers bodies
# over its own 1 MiB limit with a 413 that says so; this bound keeps larger ones from being read.
MAX_BODY_SIZE = 4 * 1024 * 1024


def main(argv: Optional[Sequence[str]] = None) -> None:
    from .app import EpochTrainingApp

    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--port" or a.startswith(("--port=", "--ServerApp.port")) for a in args):
        args.insert(0, f"--ServerApp.port={DEFAULT_PORT}")
    # The API is all this server serves: when the extension cannot start (a Ray cluster that does not
    # answer), the server stops with that error instead of serving nothing.
    if not any(a.startswith("--ServerApp.max_body_size") for a in args):
        args.insert(0, f"--ServerApp.max_body_size={MAX_BODY_SIZE}")
    if not any(a.startswith("--ServerApp.reraise_server_extension_failures") for a in args):
        args.insert(0, "--ServerApp.reraise_server_extension_failures=True")
    EpochTrainingApp.launch_instance(args)


if __name__ == "__main__":
    main()
