"""MLflow: the config as params, every history key as a metric per epoch (``step`` = epoch), the
best metrics, the end state, and the saved run (model, preprocessing, history) as artifacts.

Where: ``mlflow_tracking_uri`` in the config, else ``MLFLOW_TRACKING_URI``, else a local SQLite
store beside the run's outputs: ``<parent of output_path>/mlruns/mlflow.db`` with artifacts in
``mlruns/artifacts/``. Runs saved side by side (``models/a``, ``models/b``) share that store, so
``mlflow ui --backend-store-uri sqlite:///models/mlruns/mlflow.db`` lists them together; it works
with nothing running. The experiment is ``MLFLOW_EXPERIMENT_NAME`` or "epoch-widgets". An
experiment this logger creates in any SQLite store keeps its artifacts in ``artifacts/`` beside the
database file (never in the folder the process happens to run in).

Credentials in the URI (``http://user:password@host``) are used to connect and never written:
params, tags and ``mlflow_run.json`` hold ``http://***@host``. A run resumed from its checkpoint
gets its URI back without them; pass ``mlflow_tracking_uri`` again (or set MLflow's
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``).

``output_path/mlflow_run.json`` records the MLflow run, so a run resumed from its checkpoint goes on
in the same MLflow run (when the tracking URI is the same) and logs only the epochs it lacks.

A tracking server that is down costs a run at most :data:`REQUEST_BOUND` seconds: unless set
already, MLflow's HTTP timeout and retries are limited (:data:`HTTP_LIMITS`, environment
variables MLflow reads per request, so they hold for the whole process), and the logger gives up
at its first failure. mlflow itself is imported when the logger is built, before the first batch,
not on the logger's thread while the run trains.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit, urlunsplit

from ..atomic import atomic_write_json
from ..redaction import is_redacted, redact_text
from .base import BackgroundLogger, LoggerFailure, RunEnd, RunStart

log = logging.getLogger("trainer")

STORE_FOLDER = "mlruns"
STORE_FILE = "mlflow.db"
RECORD_FILE = "mlflow_run.json"
DEFAULT_EXPERIMENT = "epoch-widgets"
DEFAULT_NAME = "Deep learning model training"    # TrainingConfig's default name says nothing about a run
_STATUS = {"completed": "FINISHED", "early_stopped": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}
_PARAM_CHUNK = 100          # MLflow's limit of params per log_batch
_METRIC_CHUNK = 1000        # and of metrics
_PARAM_MAX = 6000           # characters of one param value
# MLflow's defaults (a 120 s timeout, 7 retries with exponential backoff) hold a run for minutes
# when its tracking server is down; these are set unless the user set them.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": 10, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": 2,
               "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": 1, "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": 1.0}


def request_bound(limits: dict[str, Any]) -> float:
    """The longest one MLflow request can take under ``limits``: every try timing out, with
    urllib3's backoff (factor * 2**(n-1)) and jitter between them."""
    tries = int(limits["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) + 1
    backoff = sum(float(limits["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"]) * 2 ** n for n in range(tries - 1))
    return tries * float(limits["MLFLOW_HTTP_REQUEST_TIMEOUT"]) + backoff + (tries - 1) * float(
        limits["MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"])


# The logger stops at its first failed request: what a dead server can cost a run (35 s).
REQUEST_BOUND = request_bound(HTTP_LIMITS)


def limit_http_requests() -> None:
    """Set :data:`HTTP_LIMITS` in the environment, each unless already set."""
    for key, value in HTTP_LIMITS.items():
        os.environ.setdefault(key, str(value))


def local_store(output_path: Path) -> Path:
    """The folder of the default local store for a run saved at ``output_path``."""
    return Path(output_path).expanduser().absolute().parent / STORE_FOLDER


def tracking_target(config: dict[str, Any], output_path: Optional[Path]) -> tuple[str, Optional[Path]]:
    """(tracking URI, local store folder or None) for a run; LoggerFailure when there is neither."""
    uri = config.get("mlflow_tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    if uri and is_redacted(uri):
        # A config read back from a checkpoint or config.json: its credentials were never saved.
        if not os.environ.get("MLFLOW_TRACKING_USERNAME"):
            raise LoggerFailure(f"the tracking URI {uri} lost its credentials when it was saved with the run; "
                                f"pass mlflow_tracking_uri with them again (e.g. Trainer.from_checkpoint(output_path, "
                                f"df, mlflow_tracking_uri=...)) or set MLFLOW_TRACKING_USERNAME and "
                                f"MLFLOW_TRACKING_PASSWORD; the run goes on without MLflow")
        return _without_user_info(uri), None
    if uri:
        return uri, None
    if output_path is None:
        raise LoggerFailure("the mlflow logger keeps its local store beside output_path, and this run has none: "
                            "set output_path, or mlflow_tracking_uri (or MLFLOW_TRACKING_URI) for a tracking "
                            "server; the run goes on without MLflow")
    store = local_store(output_path)
    return "sqlite:///" + (store / STORE_FILE).as_posix(), store


def read_record(output_path: Path) -> Optional[dict[str, Any]]:
    """The MLflow run recorded in ``output_path`` (None when there is none or it is unreadable)."""
    try:
        record = json.loads((Path(output_path) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("run_id") else None


def sqlite_file(uri: str) -> Optional[Path]:
    """The database file of a ``sqlite:///`` tracking URI (None for any other URI)."""
    if not uri.startswith("sqlite:///") or uri.startswith("sqlite:///:memory:"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0]).expanduser().absolute()


def public_uri(uri: str) -> str:
    """``uri`` with its user name and password replaced by ``***`` (safe to show and save)."""
    return redact_text(uri)


def _without_user_info(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:_PARAM_MAX]


def run_name(config: dict[str, Any], output_path: Optional[Path]) -> Optional[str]:
    """The config's name, or the output folder's when the name is the default."""
    name = config.get("name")
    if name and name != DEFAULT_NAME:
        return str(name)
    return Path(output_path).name if output_path is not None else None


def _quiet_store_setup() -> None:
    # Creating the local store's tables logs INFO lines from a background thread into whatever
    # notebook cell runs then; a user who configured this logger keeps their setting.
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


class MlflowLogger(BackgroundLogger):
    """Logs the run to an MLflow tracking store; see the module docstring."""

    title = "MLflow"

    def __init__(self, config: dict[str, Any], output_path: Optional[Path]):
        super().__init__()
        self.output_path = Path(output_path).expanduser() if output_path is not None else None
        self.tracking_uri, self.store = tracking_target(config, self.output_path)
        limit_http_requests()
        # Imported here, while the run is built: on the logger's thread it would compete with the
        # first epochs for the interpreter (a fresh process's first run trained at ~0.6x).
        import mlflow.tracking  # noqa: F401
        self.run_id: Optional[str] = None
        self.experiment_id: Optional[str] = None
        self._client: Any = None
        self._logged: set[int] = set()

    def __repr__(self) -> str:
        return f"<MLflow logger {public_uri(self.tracking_uri)!r}>"

    # ------------------------------------------------------------------ writing
    def open(self, start: RunStart) -> None:
        from mlflow.tracking import MlflowClient

        _quiet_store_setup()
        database = sqlite_file(self.tracking_uri)
        if database is not None:
            from filelock import FileLock

            database.parent.mkdir(parents=True, exist_ok=True)
            # Runs sharing a SQLite store (saved side by side, or a server's tasks): the first to
            # arrive creates its tables and the experiment while the others wait (two at once would both try).
            with FileLock(f"{database}.lock", timeout=300):
                self._client = MlflowClient(self.tracking_uri)
                self.experiment_id = self._experiment()
        else:
            self._client = MlflowClient(self.tracking_uri)
        if start.resumed and self._continue(start):
            pass
        else:
            self._create_run(start)
        self._log_metrics(start.history)

    def log_epoch(self, entry: dict[str, Any]) -> None:
        self._log_metrics([entry])

    def log_epochs(self, entries: list[dict[str, Any]]) -> None:
        self._log_metrics(entries)        # one log_batch (per 1000 values)

    def log_config_change(self, change: dict[str, Any]) -> None:
        """Tags ``steered.epoch_<E>.batch_<b>.<field>`` = ``"old -> new"`` (params cannot change)."""
        from mlflow.entities import RunTag

        where = f"steered.epoch_{change['epoch']}.batch_{change['batch']}"
        tags = [RunTag(f"{where}.{k}", f"{param_value(v['old'])} -> {param_value(v['new'])}")
                for k, v in change["changes"].items()]
        self._client.log_batch(self.run_id, tags=[*tags, RunTag("steered", "true")])

    def close(self, end: RunEnd) -> None:
        from mlflow.entities import Metric

        client, run_id = self._client, self.run_id
        now = _millis()
        best = [Metric(f"best_{key}", float(value), now, end.epochs_done)
                for key, value in end.best_metrics.items() if _is_number(value)]
        if best:
            client.log_batch(run_id, metrics=best)
        client.set_tag(run_id, "state", end.state)
        if end.reason:
            client.set_tag(run_id, "reason", end.reason[:5000])
        if end.artifacts_path is not None and end.artifacts_path.is_dir():
            for path in sorted(end.artifacts_path.iterdir()):
                if path.is_file() and path.name != RECORD_FILE and not path.name.startswith("."):
                    client.log_artifact(run_id, str(path), artifact_path="model")
        client.set_terminated(run_id, _STATUS.get(end.state, "FINISHED"))

    # ------------------------------------------------------------------ the MLflow run
    def _experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        client = self._client
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            # MLflow's default for a SQLite store is ./mlruns in whatever folder the process runs in.
            database = sqlite_file(self.tracking_uri)
            location = (database.parent / "artifacts").as_uri() if database is not None else None
            try:
                return client.create_experiment(name, artifact_location=location)
            except MlflowException:       # another process created it in the meantime
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    def _continue(self, start: RunStart) -> bool:
        """Go on in the MLflow run recorded in output_path; False when there is none to go on in."""
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        record = read_record(self.output_path) if self.output_path is not None else None
        # The record holds the URI without credentials (which may also have come from the environment).
        if record is None or _without_user_info(str(record.get("tracking_uri"))) != _without_user_info(self.tracking_uri):
            return False
        client = self._client
        try:
            previous = client.get_run(record["run_id"])
        except MlflowException:
            log.warning("the MLflow run %s recorded in %s is gone; starting a new one", record["run_id"],
                        self.output_path)
            return False
        if previous.info.lifecycle_stage == "deleted":
            return False
        self.run_id, self.experiment_id = previous.info.run_id, previous.info.experiment_id
        client.update_run(self.run_id, status="RUNNING")
        self._logged = {int(m.step) for m in client.get_metric_history(self.run_id, "val_loss")}
        # Params cannot change in MLflow; what a resume changed (epochs, ...) is kept as tags.
        params = {k: param_value(v) for k, v in start.config.items()}
        known = previous.data.params
        new = [Param(k, v) for k, v in params.items() if k not in known]
        for i in range(0, len(new), _PARAM_CHUNK):
            client.log_batch(self.run_id, params=new[i:i + _PARAM_CHUNK])
        for key, value in params.items():
            if key in known and known[key] != value:
                client.set_tag(self.run_id, f"resumed.{key}", value)
        client.set_tag(self.run_id, "resumed_at_epoch", str(start.start_epoch))
        return True

    def _create_run(self, start: RunStart) -> None:
        from mlflow.entities import Param

        client = self._client
        if self.experiment_id is None:
            self.experiment_id = self._experiment()
        tags = {"mlflow.source.name": "epoch-widgets"}
        if self.output_path is not None:
            tags["output_path"] = str(self.output_path)
        run = client.create_run(self.experiment_id, run_name=run_name(start.config, self.output_path), tags=tags)
        self.run_id = run.info.run_id
        params = [Param(k, param_value(v)) for k, v in start.config.items()]
        for i in range(0, len(params), _PARAM_CHUNK):
            client.log_batch(self.run_id, params=params[i:i + _PARAM_CHUNK])
        self._logged = set()
        if self.output_path is not None:
            self.output_path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.output_path / RECORD_FILE, {
                "tracking_uri": public_uri(self.tracking_uri), "local_store": self.store is not None,
                "experiment_id": self.experiment_id, "run_id": self.run_id, "run_name": run.info.run_name})

    def _log_metrics(self, entries: list[dict[str, Any]]) -> None:
        from mlflow.entities import Metric

        now = _millis()
        metrics = []
        for entry in entries:
            epoch = int(entry["epoch"])
            if epoch in self._logged:
                continue
            metrics += [Metric(key, float(value), now, epoch) for key, value in entry.items()
                        if key != "epoch" and _is_number(value)]
            self._logged.add(epoch)
        for i in range(0, len(metrics), _METRIC_CHUNK):
            self._client.log_batch(self.run_id, metrics=metrics[i:i + _METRIC_CHUNK])

    # ------------------------------------------------------------------ reporting
    def _advice(self, exc: Exception) -> str:
        if self.store is not None:
            return f"check that {str(self.store)!r} is writable; "
        return f"check that the tracking server at {public_uri(self.tracking_uri)} is reachable; "

    def _where(self) -> str:
        return f"is the tracking server at {public_uri(self.tracking_uri)} slow or unreachable?"


def _millis() -> int:
    return int(time.time() * 1000)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
