"""The Jupyter server that ``python -m epoch_widgets.server`` runs: the training API and nothing else.

A stock ``ServerApp`` also serves kernels, sessions, contents, files, kernelspecs, nbconvert and
whatever extensions are enabled, so anyone given the API's token could run code as the server's
user. This one keeps Jupyter's authentication (token, ``IdentityProvider``, ``Authorizer``), its
``/api/status`` and ``/api/me``, and loads no extension but the training API. Inside JupyterLab
the API is an extension of the user's own server instead, and none of this applies.
"""
from __future__ import annotations

from jupyter_server.serverapp import ServerApp
from jupyter_server.services.api.handlers import APIStatusHandler, IdentityHandler

EXTENSION = "epoch_widgets"

# Read by ServerWebApplication as an "extra service": liveness and "who am I" for clients checking
# their token. Jupyter's other /api endpoints (spec.yaml, resolvePath) are left out: resolvePath
# says which files exist.
default_handlers = [(r"/api/status", APIStatusHandler), (r"/api/me", IdentityHandler)]


class ApiOnlyServerApp(ServerApp):
    """A Jupyter server without Jupyter's services or other extensions (see the module docstring)."""

    # None of kernels, sessions, contents, files, kernelspecs, nbconvert, config, events, shutdown, view.
    default_services = ()

    def init_server_extensions(self) -> None:
        # Extensions enabled in config files (jupyterlab, voila, jupyter_server_terminals, ...) or on
        # the command line would serve their endpoints with the same token.
        dropped = sorted(name for name, enabled in self.jpserver_extensions.items() if enabled and name != EXTENSION)
        if dropped:
            self.log.warning("API-only server: not loading the server extensions %s (run `jupyter server` "
                             "to serve them with the training API)", ", ".join(dropped))
        self.jpserver_extensions = {EXTENSION: True}
        super().init_server_extensions()

    def init_webapp(self) -> None:
        if [s for s in self.extra_services if s != __name__]:
            self.log.warning("API-only server: ignoring ServerApp.extra_services %s", list(self.extra_services))
        self.extra_services = [__name__]
        # The contents manager adds /files/ (raw files under root_dir) on its own, outside default_services.
        self.contents_manager.files_handler_class = None
        super().init_webapp()
