"""Serve the epoch-training API on its own: ``python -m epoch_widgets.server [--port 8000] [options]``.

Only the API is served (see ``api_only.py``): no kernels, contents, files, terminals or other
extensions. Give it its token in the environment, ``JUPYTER_TOKEN=... python -m epoch_widgets.server``
(or ``JUPYTER_TOKEN_FILE``, or ``c.IdentityProvider.token`` in a config file): a
``--IdentityProvider.token=...`` option works too, but every local user can read it in ``ps``.
Without any, a generated token is used (the server prints it). Other Jupyter Server options work
(``--ServerApp.root_dir=...``, ``--EpochTrainingApp.models_dir=...``); the port defaults to 8000
(the documented base URL) and no browser is opened.
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

DEFAULT_PORT = 8000
TOKEN_OPTIONS = ("--IdentityProvider.token", "--ServerApp.token")
TOKEN_IN_ARGV = ("the token is on the command line, where every local user can read it (ps); "
                 "set JUPYTER_TOKEN in the server's environment instead")
# Bodies tornado reads at all (Jupyter's default is 512 MiB, held in memory). The API answers bodies
# over its own 1 MiB limit with a 413 that says so; this bound keeps larger ones from being read.
MAX_BODY_SIZE = 4 * 1024 * 1024


def main(argv: Optional[Sequence[str]] = None) -> None:
    from .app import EpochTrainingApp

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a.split("=", 1)[0] in TOKEN_OPTIONS for a in args):
        print(f"warning: {TOKEN_IN_ARGV}", file=sys.stderr)
    if not any(a == "--port" or a.startswith(("--port=", "--ServerApp.port")) for a in args):
        args.insert(0, f"--ServerApp.port={DEFAULT_PORT}")
    if not any(a.startswith("--ServerApp.max_body_size") for a in args):
        args.insert(0, f"--ServerApp.max_body_size={MAX_BODY_SIZE}")
    # The API is all this server serves: when the extension cannot start (a Ray cluster that does not
    # answer), the server stops with that error instead of serving nothing.
    if not any(a.startswith("--ServerApp.reraise_server_extension_failures") for a in args):
        args.insert(0, "--ServerApp.reraise_server_extension_failures=True")
    EpochTrainingApp.launch_instance(args)


if __name__ == "__main__":
    main()
