"""The numbers to read: the last epochs as a table (as fastai prints them), and the run's final
validation metrics once it ends."""
from __future__ import annotations

from html import escape
from typing import Any, Optional

import ipywidgets as W

from .. import theme
from ..charts.legend import fmt
from .progress import format_seconds

ROWS = 8
_CELL = f"padding:2px 10px;text-align:right;border-bottom:1px solid {theme.BORDER}"


def _columns(history: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(key, heading) of the history columns worth a column, in the trainer's order."""
    keys = list(history[-1]) if history else []
    names = {"epoch": "epoch", "train_loss": "train loss", "val_loss": "val loss",
             "train_accuracy": "train acc", "val_accuracy": "val acc", "train_mae": "train MAE",
             "val_mae": "val MAE", "learning_rate": "lr", "time_per_epoch": "time"}
    return [(k, names.get(k, k.replace("_", " "))) for k in keys]


def _cell(key: str, value: Any) -> str:
    if key == "epoch":
        return str(value)
    if key == "time_per_epoch":
        return format_seconds(value) if value >= 60 else f"{value:.2f}s"
    return fmt(value) if isinstance(value, (int, float)) else escape(str(value))


def table_html(history: list[dict[str, Any]], best_epoch: Optional[int], rows: int = ROWS) -> str:
    """The last ``rows`` epochs, the best epoch marked."""
    if not history:
        return f"<div style='color:{theme.FG_MUTED};padding:4px'>No epochs yet: the table fills as the run trains.</div>"
    cols = _columns(history)
    head = "".join(f"<th style='{_CELL};font-weight:600'>{escape(h)}</th>" for _k, h in cols)
    body = []
    shown = history[-rows:]
    if len(history) > rows:
        body.append(f"<tr><td colspan='{len(cols)}' style='{_CELL};text-align:left;color:{theme.FG_MUTED}'>"
                    f"… {len(history) - rows} earlier epochs (export CSV for all)</td></tr>")
    for entry in shown:
        best = entry.get("epoch") == best_epoch
        style = f"background:{theme.BG_ALT};font-weight:600" if best else ""
        mark = f" <span style='color:{theme.SUCCESS}' title='best epoch'>&#9670;</span>" if best else ""
        cells = "".join(f"<td style='{_CELL}'>{_cell(k, entry.get(k))}{mark if k == 'epoch' else ''}</td>"
                        for k, _h in cols)
        body.append(f"<tr style='{style}'>{cells}</tr>")
    return (f"<table class='ew-metrics' style='border-collapse:collapse;font-variant-numeric:tabular-nums;"
            f"color:{theme.FG};font-size:var(--jp-ui-font-size1, 13px)'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def final_html(state: str, history: list[dict[str, Any]], best: dict[str, Any], restored: bool,
               elapsed: Optional[float]) -> str:
    """The validation metrics a finished run ends with: its best epoch's, and its last epoch's."""
    if not history:
        return ""
    last = history[-1]
    metric = "accuracy" if "val_accuracy" in last else "mae"
    label = "accuracy" if metric == "accuracy" else "MAE"
    parts = [f"<b>{escape(state.replace('_', ' ').capitalize())}</b> after {len(history)} epochs"
             + (f" in {format_seconds(elapsed)}" if elapsed is not None else "") + "."]
    if best.get("epoch"):
        kept = " (its weights are the model's)" if restored else ""
        parts.append(f"Best epoch {best['epoch']}{kept}: val loss <b>{fmt(best.get('loss'))}</b>, "
                     f"val {label} <b>{fmt(best.get(metric))}</b>.")
    parts.append(f"Last epoch {last['epoch']}: val loss {fmt(last.get('val_loss'))}, "
                 f"val {label} {fmt(last.get('val_' + metric))}.")
    return (f"<div class='ew-final' style='border-left:3px solid {theme.SUCCESS};padding:4px 10px;margin:4px 0;"
            f"color:{theme.FG}'>" + " ".join(parts) + "</div>")


class MetricsTable:
    """The per-epoch table and, after a run, its final metrics."""

    def __init__(self, rows: int = ROWS) -> None:
        self.rows = rows
        self.final = W.HTML()
        self.table = W.HTML(table_html([], None))
        self.view = W.VBox([self.final, self.table], layout=W.Layout(overflow="auto hidden"))
        self._shown: tuple[int, Optional[int]] = (0, None)

    def update(self, history: list[dict[str, Any]], best_epoch: Optional[int]) -> None:
        key = (len(history), best_epoch)
        if key != self._shown:
            self._shown = key
            self.table.value = table_html(history, best_epoch, self.rows)

    def show_final(self, html: str) -> None:
        if self.final.value != html:
            self.final.value = html
