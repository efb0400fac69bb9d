"""How well a model does on labelled data: the figures scikit-learn computes, in the user's labels.

Classification: confusion matrix, per-class precision / recall / F1 / support, accuracy, macro and
weighted averages and ROC-AUC (binary: the second class is the positive one; several classes:
macro one-vs-rest). Regression: MAE, RMSE, R² and the residuals (actual - predicted), in the
target's own units. Sequence models are evaluated per window, as ``predict`` predicts.

``run.evaluate(df=None)`` (the run's validation split, or any DataFrame), ``load_model(path).evaluate(df)``
and, at the end of every run with an ``output_path``, ``evaluation.json`` (:func:`save_evaluation`).
scikit-learn is imported only when something is evaluated, so ``import trainer`` stays cheap.
"""
from __future__ import annotations

import html
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import pandas as pd

from .atomic import atomic_write_text
from .data import windows
from .data.preprocessor import Preprocessor, classes_dtype
from .model_size import EVAL_CHUNK

if TYPE_CHECKING:
    from .artifacts import TrainedModel
    from .handle import RunHandle

log = logging.getLogger("trainer")

FORMAT_VERSION = 1
FILE_NAME = "evaluation.json"
# Regression plots need points, not every sample: to_dict() keeps at most this many (evenly
# spaced, so the JSON of a huge validation split stays small); the figures use every sample.
MAX_POINTS = 2000
REPORT_COLUMNS = ["precision", "recall", "f1-score", "support"]
SUMMARY_ROWS = ["accuracy", "macro avg", "weighted avg"]


def _metrics() -> Any:
    try:
        from sklearn import metrics
    except ImportError:  # a core dependency; only a broken install lands here
        raise ImportError("evaluation needs scikit-learn: pip install scikit-learn") from None
    return metrics


def _finite_or_none(value: Any) -> Optional[float]:
    value = float(value)
    return value if math.isfinite(value) else None


def _json_label(label: Any) -> Any:
    return label.item() if isinstance(label, np.generic) else label


@dataclass
class Evaluation:
    """Figures for one model on one set of labelled samples.

    ``predictions`` has one row per evaluated sample (indexed by the row it predicts) with columns
    ``actual`` and ``predicted`` (and ``residual`` for regression). Classification adds
    ``confusion_matrix`` (rows: actual, columns: predicted, labelled with the classes),
    ``report`` (per class, then accuracy, macro avg, weighted avg, as scikit-learn's
    ``classification_report``) and ``probabilities`` (one column per class).
    ``notes`` says why a figure is missing (``None``), e.g. ROC-AUC with a class absent.
    """

    task: str                                    # "classification" | "regression"
    split: str                                   # "validation" (the run's split) or "data"
    metrics: dict[str, Optional[float]]          # accuracy, roc_auc | mae, rmse, r2
    predictions: pd.DataFrame
    classes: list[Any] = field(default_factory=list)
    confusion_matrix: Optional[pd.DataFrame] = None
    report: Optional[pd.DataFrame] = None
    probabilities: Optional[pd.DataFrame] = None
    roc_auc_average: Optional[str] = None        # how ROC-AUC was averaged
    notes: list[str] = field(default_factory=list)
    n_samples: Optional[int] = None              # all samples (predictions may hold fewer, from_dict)

    def __post_init__(self) -> None:
        if self.n_samples is None:
            self.n_samples = len(self.predictions)

    # ---------------------------------------------------------------- figures by name
    def _figure(self, name: str, task: str) -> Optional[float]:
        if self.task != task:
            raise AttributeError(f"{name} is a {task} figure; this Evaluation is for {self.task} "
                                 f"(its figures: {sorted(self.metrics)})")
        return self.metrics.get(name)

    @property
    def accuracy(self) -> Optional[float]:
        return self._figure("accuracy", "classification")

    @property
    def roc_auc(self) -> Optional[float]:
        """Binary: of the second class; several classes: macro one-vs-rest. None when undefined."""
        return self._figure("roc_auc", "classification")

    @property
    def mae(self) -> Optional[float]:
        return self._figure("mae", "regression")

    @property
    def rmse(self) -> Optional[float]:
        return self._figure("rmse", "regression")

    @property
    def r2(self) -> Optional[float]:
        return self._figure("r2", "regression")

    @property
    def y_true(self) -> np.ndarray:
        return self.predictions["actual"].to_numpy()

    @property
    def y_pred(self) -> np.ndarray:
        return self.predictions["predicted"].to_numpy()

    @property
    def residuals(self) -> np.ndarray:
        """actual - predicted (regression)."""
        if self.task != "regression":
            raise AttributeError("residuals are for regression; a classification Evaluation has confusion_matrix")
        return self.predictions["residual"].to_numpy()

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """Strict JSON (no NaN): undefined figures are ``null`` and ``notes`` says why."""
        out: dict[str, Any] = {"format_version": FORMAT_VERSION, "task": self.task, "split": self.split,
                               "n_samples": int(self.n_samples or 0),
                               "metrics": {k: (None if v is None else _finite_or_none(v)) for k, v in self.metrics.items()},
                               "notes": list(self.notes)}
        if self.task == "classification":
            assert self.confusion_matrix is not None and self.report is not None
            out["classes"] = [_json_label(c) for c in self.classes]
            out["roc_auc_average"] = self.roc_auc_average
            out["confusion_matrix"] = self.confusion_matrix.to_numpy().astype(int).tolist()
            out["report"] = [_report_row(label, row) for label, row in self.report.iterrows()]
        else:
            points = self.predictions
            if len(points) > MAX_POINTS:
                points = points.iloc[np.linspace(0, len(points) - 1, MAX_POINTS).round().astype(int)]
            out["points"] = {"row": [_json_label(i) for i in points.index],
                             **{k: [float(v) for v in points[k]] for k in ("actual", "predicted", "residual")}}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Evaluation":
        """Rebuild from :meth:`to_dict` (e.g. ``evaluation.json``); regression keeps the saved points."""
        metrics = dict(d["metrics"])
        if d["task"] == "classification":
            classes = list(d["classes"])
            cm = pd.DataFrame(d["confusion_matrix"], index=pd.Index(classes, name="actual", dtype=object),
                              columns=pd.Index(classes, name="predicted", dtype=object))
            report = pd.DataFrame([{k: (np.nan if r[k] is None else r[k]) for k in REPORT_COLUMNS} for r in d["report"]],
                                  index=pd.Index([r["class"] for r in d["report"]], name="class", dtype=object))
            report["support"] = report["support"].astype(int)
            return cls(task="classification", split=d["split"], metrics=metrics,
                       predictions=pd.DataFrame(columns=["actual", "predicted"]), classes=classes,
                       confusion_matrix=cm, report=report, roc_auc_average=d.get("roc_auc_average"),
                       notes=list(d.get("notes", [])), n_samples=d["n_samples"])
        points = d.get("points") or {"row": [], "actual": [], "predicted": [], "residual": []}
        predictions = pd.DataFrame({k: points[k] for k in ("actual", "predicted", "residual")},
                                   index=pd.Index(points["row"], name="row"))
        return cls(task="regression", split=d["split"], metrics=metrics, predictions=predictions,
                   notes=list(d.get("notes", [])), n_samples=d["n_samples"])

    @classmethod
    def load(cls, path: Union[str, Path]) -> "Evaluation":
        """Read ``evaluation.json`` from a file or a run's ``output_path``."""
        path = Path(path).expanduser()
        if path.is_dir():
            path = path / FILE_NAME
        return cls.from_dict(json.loads(path.read_text()))

    # ---------------------------------------------------------------- display
    def summary(self) -> str:
        def fmt(v: Optional[float]) -> str:
            return "n/a" if v is None else f"{v:.4g}"
        figures = ", ".join(f"{k} {fmt(v)}" for k, v in self.metrics.items())
        return f"{self.task} on {self.n_samples} {self.split} samples: {figures}"

    def __repr__(self) -> str:
        return f"<Evaluation {self.summary()}>"

    def _repr_html_(self) -> str:
        parts = [f"<p><b>Evaluation</b>: {html.escape(self.summary())}</p>"]
        if self.task == "classification":
            assert self.confusion_matrix is not None and self.report is not None
            parts.append("<p>Confusion matrix (rows: actual, columns: predicted)</p>" + self.confusion_matrix.to_html())
            parts.append(self.report.to_html(float_format=lambda v: f"{v:.4f}", na_rep=""))
        if self.notes:
            parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in self.notes) + "</ul>")
        return "\n".join(parts)


def _report_row(label: Any, row: pd.Series) -> dict[str, Any]:
    cells = {k: None if pd.isna(row[k]) else int(row[k]) if k == "support" else _finite_or_none(row[k])
             for k in REPORT_COLUMNS}
    return {"class": _json_label(label), **cells}


# ---------------------------------------------------------------------- computing

def softmax(outputs: np.ndarray) -> np.ndarray:
    """Class probabilities from logits, in float64 (rows sum to 1)."""
    z = outputs.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def evaluate_outputs(preprocessor: Preprocessor, outputs: np.ndarray, y_true: np.ndarray,
                     index: pd.Index, split: str) -> Evaluation:
    """Figures for raw model ``outputs`` against ``y_true``: class codes (positions in
    ``preprocessor.classes``) for classification, values in the target's units for regression."""
    outputs = np.asarray(outputs)
    if len(outputs) != len(y_true):
        raise ValueError(f"{len(outputs)} predictions for {len(y_true)} targets")
    if len(outputs) == 0:
        raise ValueError("nothing to evaluate: no samples")
    if not np.isfinite(outputs).all():
        bad = int((~np.isfinite(outputs)).any(axis=1).sum()) if outputs.ndim == 2 else int((~np.isfinite(outputs)).sum())
        raise ValueError(f"the model's outputs are not finite (NaN or inf) for {bad} of {len(outputs)} samples; "
                         f"the weights have diverged: train with a lower learning_rate")
    if preprocessor.task == "classification":
        return _classification(preprocessor.classes, outputs, np.asarray(y_true, dtype=np.int64), index, split)
    predicted = preprocessor.decode_target(outputs.reshape(len(outputs), -1)[:, 0].astype(np.float64))
    return _regression(np.asarray(y_true, dtype=np.float64), predicted, index, split)


def _classification(classes: list[Any], outputs: np.ndarray, true: np.ndarray, index: pd.Index,
                    split: str) -> Evaluation:
    m = _metrics()
    k = len(classes)
    codes = np.arange(k)
    pred = outputs.argmax(axis=1)
    proba = softmax(outputs)
    labels = np.asarray(classes, dtype=object)
    notes: list[str] = []

    # Codes, not labels, go to scikit-learn: it needs one sortable type, the user's labels may mix.
    cm = m.confusion_matrix(true, pred, labels=codes)
    precision, recall, f1, support = m.precision_recall_fscore_support(true, pred, labels=codes, zero_division=0)
    rows = {c: [precision[i], recall[i], f1[i], int(support[i])] for i, c in enumerate(classes)}
    accuracy = float(m.accuracy_score(true, pred))
    rows_summary = {"accuracy": [np.nan, np.nan, accuracy, len(true)]}
    for average in ("macro", "weighted"):
        p, r, f, _ = m.precision_recall_fscore_support(true, pred, labels=codes, average=average, zero_division=0)
        rows_summary[f"{average} avg"] = [p, r, f, len(true)]
    report = pd.DataFrame([*rows.values(), *rows_summary.values()], columns=REPORT_COLUMNS,
                          index=pd.Index([*classes, *rows_summary], name="class", dtype=object))
    report["support"] = report["support"].astype(int)

    never_predicted = [c for i, c in enumerate(classes) if cm[:, i].sum() == 0]
    absent = [c for i, c in enumerate(classes) if support[i] == 0]
    if never_predicted:
        notes.append(f"precision (and F1) of classes never predicted is undefined and reported as 0: {never_predicted}")
    if absent:
        notes.append(f"recall (and F1) of classes without samples is undefined and reported as 0: {absent}")

    roc_auc: Optional[float] = None
    if k == 2:
        average = f"binary (positive class {classes[1]!r})"
        if absent:
            present = [c for i, c in enumerate(classes) if support[i] > 0]
            notes.append(f"ROC-AUC is undefined: the evaluated data holds only class {present}")
        else:
            roc_auc = float(m.roc_auc_score(true, proba[:, 1]))
    else:
        average = "macro one-vs-rest"
        if absent:
            notes.append(f"ROC-AUC (one-vs-rest) is undefined: classes {absent} have no samples in the evaluated data")
        else:
            roc_auc = float(m.roc_auc_score(true, proba, multi_class="ovr", average="macro", labels=codes))

    predictions = pd.DataFrame({"actual": labels[true], "predicted": labels[pred]}, index=index)
    for col in ("actual", "predicted"):
        predictions[col] = predictions[col].astype(classes_dtype(classes))
    probabilities = pd.DataFrame(proba, columns=pd.Index(classes, dtype=object), index=index)
    confusion = pd.DataFrame(cm, index=pd.Index(classes, name="actual", dtype=object),
                             columns=pd.Index(classes, name="predicted", dtype=object))
    return Evaluation(task="classification", split=split, metrics={"accuracy": accuracy, "roc_auc": roc_auc},
                      predictions=predictions, classes=list(classes), confusion_matrix=confusion, report=report,
                      probabilities=probabilities, roc_auc_average=average, notes=notes)


def _regression(actual: np.ndarray, predicted: np.ndarray, index: pd.Index, split: str) -> Evaluation:
    m = _metrics()
    notes: list[str] = []
    mae = float(m.mean_absolute_error(actual, predicted))
    rmse = float(m.root_mean_squared_error(actual, predicted))
    r2: Optional[float] = None
    if len(actual) < 2:
        notes.append("R² is undefined for a single sample")
    else:
        r2 = _finite_or_none(m.r2_score(actual, predicted))
        if np.ptp(actual) == 0:
            notes.append("the actual values are all equal, so R² compares against no variance "
                         "(scikit-learn reports 1.0 for a perfect fit, else 0.0)")
    predictions = pd.DataFrame({"actual": actual, "predicted": predicted, "residual": actual - predicted}, index=index)
    return Evaluation(task="regression", split=split, metrics={"mae": mae, "rmse": rmse, "r2": r2},
                      predictions=predictions, notes=notes)


# ---------------------------------------------------------------------- entry points

def evaluate_frame(model: "TrainedModel", df: pd.DataFrame) -> Evaluation:
    """``model`` on a raw DataFrame holding its feature columns and the target column."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"evaluate expects a pandas DataFrame with columns {model.feature_columns} and "
                        f"{model.preprocessor.target_column!r}, got {type(df).__name__}")
    pre = model.preprocessor
    target = pre.target_column
    if target not in df.columns:
        raise ValueError(f"the data lacks the target column {target!r}, which evaluation compares the "
                         f"predictions with; to predict without it use predict(df)")
    samples = model._samples(df)
    y = df[target].iloc[len(df) - len(samples):]      # a window is labelled with its last row
    if y.isna().any():
        raise ValueError(f"{int(y.isna().sum())} rows have no {target!r} value; drop them first "
                         f"(df.dropna(subset=[{target!r}]))")
    if pre.task == "classification":
        y_true = pre.encode_target(y)
    else:
        values = pd.to_numeric(y, errors="coerce")
        if values.isna().any():
            raise ValueError(f"the target column {target!r} holds values that are not numbers, e.g. "
                             f"{y[values.isna()].iloc[0]!r}; a regression model is evaluated on numbers")
        y_true = values.to_numpy(dtype=np.float64)
    return evaluate_outputs(pre, model._predict_fn(samples), y_true, y.index, "data")


def evaluate_validation(run: "RunHandle") -> Evaluation:
    """The run's model on the validation split it trained with (rows as positions in its DataFrame).

    Regression targets come back from the run's float32 training copy (to about 1e-7 of their
    spread); ``run.evaluate(df)`` on the DataFrame itself uses the exact values."""
    data = run.data
    pre = data.preprocessor
    if data.streamed:      # read a chunk at a time; only the outputs and targets are kept
        parts = [(run.backend.predict_outputs(x), y, rows) for x, y, rows in data.validation_batches(EVAL_CHUNK)]
        outputs, y, ids = (np.concatenate([p[i] for p in parts]) for i in range(3))
    else:
        ids = data.val_index
        samples = data.x[ids] if data.window is None else windows(data.x, data.window)[ids - (data.window - 1)]
        y = data.y[ids]
        outputs = run.backend.predict_outputs(np.ascontiguousarray(samples))
    y_true = y if pre.task == "classification" else pre.decode_target(y.astype(np.float64))
    return evaluate_outputs(pre, outputs, y_true, pd.Index(ids, name="row"), "validation")


def save_evaluation(run: "RunHandle", directory: Path) -> dict[str, Any]:
    """Write ``evaluation.json`` (the validation split) into ``directory``; never raises.

    Returns what ``metadata.json`` records under ``"evaluation"``: the file, or why there is none.
    A stale file from an earlier run in the same folder is removed when no new one is written.
    """
    target = Path(directory) / FILE_NAME
    if run.current_epoch == 0:
        target.unlink(missing_ok=True)
        return {"file": None, "skipped": "the run ended before its first epoch, so there is no model to evaluate"}
    try:
        evaluation = evaluate_validation(run)
        atomic_write_text(target, json.dumps(evaluation.to_dict(), indent=2, allow_nan=False) + "\n")
    except Exception as exc:  # evaluating is a courtesy; it must never fail the run it describes
        log.warning("could not evaluate the run on its validation split", exc_info=True)
        target.unlink(missing_ok=True)
        return {"file": None, "error": f"{type(exc).__name__}: {exc}"}
    return {"file": FILE_NAME, "split": "validation", "n_samples": evaluation.n_samples,
            "metrics": evaluation.to_dict()["metrics"]}
