"""The tracking fields in the panel: loggers as a multi-select of the schema's choices, the MLflow
URI as optional text, both in a Tracking tab and both making the config."""
from __future__ import annotations

import ipywidgets as W
import pandas as pd
import pytest

from epoch_widgets import TrainingPanel
from trainer.config import ConfigError


def test_loggers_are_a_multi_select_of_the_schema_choices_in_a_tracking_tab(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label")
    loggers = panel.controls["loggers"]
    assert isinstance(loggers, W.SelectMultiple)
    assert [value for _label, value in loggers.options] == ["tensorboard", "mlflow"]
    assert loggers.value == () and panel.config.loggers == []
    tab = panel.controls.view
    tracking = tab.children[list(tab.titles).index("Tracking")]
    assert panel.controls.rows["loggers"] in tracking.children
    assert panel.controls.rows["mlflow_tracking_uri"] in tracking.children
    panel.close()


def test_chosen_loggers_and_a_tracking_uri_make_the_config(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label", loggers=["mlflow", "tensorboard"],
                          mlflow_tracking_uri="http://mlflow.example:5000", output_path="models/x")
    assert panel.controls["loggers"].value == ("mlflow", "tensorboard")
    config = panel.config
    assert config.loggers == ["mlflow", "tensorboard"] and config.mlflow_tracking_uri == "http://mlflow.example:5000"
    panel.controls["loggers"].value = ("tensorboard",)
    panel.controls["mlflow_tracking_uri"].value = ""
    assert panel.config.loggers == ["tensorboard"] and panel.config.mlflow_tracking_uri is None
    with pytest.raises(ConfigError, match="'tensorboard' \\| 'mlflow'"):
        panel.controls.set_value("loggers", ["wandb"])
    panel.close()
