"""The panel's config controls: generated from the schema, pre-filled by keywords, validated live."""
from __future__ import annotations

import subprocess
import sys

import ipywidgets as W
import numpy as np
import pandas as pd
import pytest

import trainer
from epoch_widgets import TrainingPanel
from epoch_widgets.panel.number_text import NumberText
from trainer.config import SCHEDULER_PARAMS, SEQUENCE_MODELS, ConfigError
from trainer.datasets import make_regression
from epoch_widgets.panel import fields


def visible(panel: TrainingPanel, name: str) -> bool:
    return panel.controls.rows[name].layout.display != "none"


def test_every_schema_field_has_a_control_of_its_type_with_its_default(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df)
    specs = trainer.config_fields()
    assert set(panel.controls.inputs) == {s.name for s in specs}
    values, parse_errors = panel.controls.values()
    assert parse_errors == {}
    for spec in specs:
        widget = panel.controls[spec.name]
        assert widget.description == fields.label(spec.name) and widget.description != ""
        assert spec.help in widget.tooltip and spec.name in widget.tooltip
        assert values[spec.name] == spec.default, spec.name
        if spec.type == "choice" and len(spec.choices) == 1:
            # Nothing to choose (algorithm_type): text, not a control.
            assert isinstance(widget, W.HTML) and widget.value == spec.choices[0]
        elif spec.type == "choice":
            assert isinstance(widget, W.Dropdown)
            assert [value for _label, value in widget.options] == list(spec.choices)
        elif spec.type == "bool":
            assert isinstance(widget, W.Checkbox)
        elif spec.type in ("int", "float") and not spec.optional:
            assert isinstance(widget, NumberText) and widget.kind == spec.type


def test_a_field_with_one_allowed_value_is_text_that_still_refuses_others(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label", algorithm_type="deep_learning")
    assert panel.config.algorithm_type == "deep_learning"
    with pytest.raises(ConfigError, match="algorithm_type"):
        panel.controls.set_value("algorithm_type", "random_forest")
    panel.controls.set_enabled(False)                   # a run starts: no control to disable there
    assert panel.valid


def test_backend_dropdown_lists_the_schema_choices(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, backend="torch")
    backend = trainer.config.FIELD_SPECS["backend"]
    assert [v for _l, v in panel.controls["backend"].options] == list(backend.choices)
    assert panel.controls["backend"].value == "torch"


def test_columns_come_from_the_dataframe(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df)
    features, target = panel.controls["feature_columns"], panel.controls["target_column"]
    assert isinstance(features, W.SelectMultiple)
    assert [v for _l, v in features.options] == list(clf_df.columns)
    assert [v for _l, v in target.options] == [None, *clf_df.columns]


def test_keywords_prefill_the_controls_and_make_the_config(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label", feature_columns=["f1", "f2"], epochs=30,
                          hidden_units=[128, 64], learning_rate=0.01, learning_rate_scheduler="cosine",
                          T_max=15, seed=7, output_path="models/x")
    assert panel.controls["epochs"].value == 30
    assert panel.controls["hidden_units"].value == "128, 64"
    assert panel.controls["feature_columns"].value == ("f1", "f2")
    assert panel.valid and panel.errors == {}
    assert not panel.start_button.disabled
    cfg = panel.config
    assert (cfg.epochs, cfg.hidden_units, cfg.learning_rate, cfg.T_max, cfg.seed) == (30, [128, 64], 0.01, 15, 7)
    assert cfg.feature_columns == ["f1", "f2"] and cfg.target_column == "label"
    assert cfg.output_path == "models/x"


@pytest.mark.parametrize("scheduler", sorted(SCHEDULER_PARAMS))
def test_only_the_chosen_schedulers_parameters_are_shown(clf_df: pd.DataFrame, scheduler: str) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label")
    panel.controls["learning_rate_scheduler"].value = scheduler
    all_params = {p for params in SCHEDULER_PARAMS.values() for p in params}
    shown = {p for p in all_params if visible(panel, p)}
    assert shown == set(SCHEDULER_PARAMS[scheduler])
    assert visible(panel, "learning_rate") and visible(panel, "epochs")


def test_sequence_length_is_shown_for_sequence_models_only(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label")
    assert not visible(panel, "sequence_length")
    for model in SEQUENCE_MODELS:
        panel.controls["model_type"].value = model
        assert visible(panel, "sequence_length")


def test_invalid_value_disables_start_and_shows_the_reason_beside_the_control(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label", epochs=5)
    assert not panel.start_button.disabled
    panel.controls["epochs"].value = 0
    assert panel.start_button.disabled and not panel.valid
    hint = panel.controls.hints["epochs"].value
    assert "must be at least 1" in hint and "Input should be" not in panel.controls.hint_text("epochs")
    assert "Epochs" in panel.message.value and "Start is disabled" in panel.message.value
    assert set(panel.errors) == {"epochs"} and "greater than or equal to 1" in panel.errors["epochs"]
    panel.controls["epochs"].value = 3
    assert not panel.start_button.disabled and panel.valid
    assert panel.controls.hint_text("epochs") == fields.help_text("epochs")     # back to the help
    assert panel.message.value == ""


def test_unparsable_text_is_reported_beside_its_control(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label")
    panel.controls["hidden_units"].value = "128, lots"
    assert "whole numbers separated by commas" in panel.controls.hints["hidden_units"].value
    panel.controls["seed"].value = "abc"
    assert "whole number, or leave it empty" in panel.controls.hints["seed"].value
    assert panel.start_button.disabled
    panel.controls["hidden_units"].value = "16"
    panel.controls["seed"].value = ""
    assert panel.valid and panel.config.hidden_units == [16] and panel.config.seed is None


def test_several_problems_show_at_once(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label")
    panel.controls["dropout_rate"].value = 1.5
    panel.controls["hidden_units"].value = "x"
    assert {"dropout_rate", "hidden_units"} <= set(panel.errors)
    assert panel.controls.hint_text("dropout_rate") == "must be less than 1"
    assert "ew-hint-error" in panel.controls.hints["hidden_units"].value


def test_a_missing_target_is_listed_beside_invalid_fields_not_after_their_fix(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df)                  # no target column chosen
    panel.controls["epochs"].value = 0                  # a schema problem
    panel.controls["hidden_units"].value = "x"          # a parse problem
    assert set(panel.errors) == {"epochs", "hidden_units", "target_column"}
    for label in ("Epochs", "Hidden layers", "Target column"):
        assert label in panel.message.value
    panel.controls["target_column"].value = "label"
    assert set(panel.errors) == {"epochs", "hidden_units"}
    assert panel.start_button.disabled


def test_a_target_is_required_before_start(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df)
    assert panel.start_button.disabled
    assert "required" in panel.controls.hints["target_column"].value
    panel.controls["target_column"].value = "label"
    assert not panel.start_button.disabled


def test_the_target_is_never_a_feature(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label")
    features = panel.controls["feature_columns"]
    assert [v for _l, v in features.options] == ["f1", "f2", "f3", "f4"]      # the target is not offered
    assert "all 4 columns except the target" in panel.controls.hint_text("feature_columns")
    features.value = ("f1", "f2")
    assert panel.controls.hint_text("feature_columns") == "2 of 4 columns"
    panel.controls["target_column"].value = "f2"                             # a feature becomes the target
    assert features.value == ("f1",) and "label" in [v for _l, v in features.options]
    assert "'f2' is the target now" in panel.controls.hint_text("feature_columns")
    assert panel.valid and panel.config.feature_columns == ["f1"]
    with pytest.raises(ConfigError, match="cannot also be a feature"):
        panel.controls.set_value("feature_columns", ["f1", "f2"])
    with pytest.raises(ConfigError, match="also in feature_columns|cannot also be a feature"):
        TrainingPanel(data=clf_df, feature_columns=["f1", "label"], target_column="label")


def test_a_hidden_fields_problem_is_listed_in_the_message(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label", learning_rate_scheduler="cosine", T_max=0)
    assert "Half period (epochs)" in panel.message.value
    panel.controls["learning_rate_scheduler"].value = "step"
    assert not visible(panel, "T_max")
    assert "Half period (epochs)" in panel.message.value and "hidden for this choice" in panel.message.value
    assert "\u26a0" in panel.controls.view.titles[panel.controls.group_order.index("scheduler")]


def test_bad_keywords_raise_a_clear_error(clf_df: pd.DataFrame) -> None:
    with pytest.raises(ConfigError) as exc:
        TrainingPanel(data=clf_df, learning_rat=0.1)
    assert exc.value.errors[0]["field"] == "learning_rat" and "learning_rate" in exc.value.errors[0]["message"]
    with pytest.raises(ConfigError) as exc:
        TrainingPanel(data=clf_df, model_type="transformer")
    assert "'mlp'" in str(exc.value) and "transformer" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        TrainingPanel(data=clf_df, target_column="lable")
    assert "not in the data" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        TrainingPanel(data=[[1, 2]])
    assert "DataFrame" in str(exc.value)


def test_an_emptied_number_box_is_an_error_not_silently_put_back(clf_df: pd.DataFrame) -> None:
    # ipywidgets' IntText put the last number back in the browser, unheard by the kernel.
    panel = TrainingPanel(data=clf_df, target_column="label", epochs=12)
    box = panel.controls["epochs"]
    box.set_state({"value": ""})                        # what the browser sends when it is emptied
    assert box.value == "" and panel.errors["epochs"] == "empty: enter a whole number"
    assert panel.controls.hint_text("epochs") == "empty: enter a whole number" and panel.start_button.disabled
    box.set_state({"value": "1.5"})
    assert panel.errors["epochs"] == "enter a whole number"
    box.set_state({"value": "20"})
    assert box.value == 20 and panel.config.epochs == 20 and panel.valid
    rate = panel.controls["learning_rate"]
    rate.set_state({"value": "0.02"})
    assert rate.value == 0.02 and panel.config.learning_rate == 0.02
    rate.set_state({"value": " "})
    assert panel.errors["learning_rate"] == "empty: enter a number"
    with pytest.raises(ConfigError, match="epochs"):
        panel.controls.set_value("epochs", "ten")          # from code: refused at once, as before


def test_out_of_range_keywords_are_shown_not_raised(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label", learning_rate=-1.0)
    assert panel.controls["learning_rate"].value == -1.0
    assert "must be more than 0" in panel.controls.hints["learning_rate"].value
    assert panel.start_button.disabled


def test_data_path_loads_a_table_and_offers_its_columns(clf_df: pd.DataFrame, tmp_path) -> None:
    csv = tmp_path / "train.csv"
    clf_df.to_csv(csv, index=False)
    panel = TrainingPanel(data_path=str(csv), target_column="label")
    assert [v for _l, v in panel.controls["target_column"].options] == [None, *clf_df.columns]
    assert [v for _l, v in panel.controls["feature_columns"].options] == ["f1", "f2", "f3", "f4"]
    assert panel.valid and len(panel.data) == len(clf_df)

    panel.controls["data_path"].value = str(tmp_path / "missing.csv")
    assert "no file at" in panel.controls.hints["data_path"].value
    assert panel.start_button.disabled and panel.data is None


def test_data_path_is_locked_when_a_dataframe_is_given(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label")
    assert panel.controls["data_path"].disabled
    assert "DataFrame given as data" in panel.controls["data_path"].placeholder


def test_without_data_start_says_how_to_give_it() -> None:
    panel = TrainingPanel(epochs=3)
    assert panel.start_button.disabled
    assert "pass data=DataFrame" in panel.message.value


def test_lr_panel_previews_the_schedule_before_start(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label", epochs=100, learning_rate=0.1,
                          learning_rate_scheduler="step", step_size=30, gamma=0.5)
    preview = panel.curves.lr_preview
    cfg = panel.config
    assert list(preview.x) == list(range(1, 101))
    np.testing.assert_allclose(preview.y, trainer.preview_schedule(cfg))
    assert preview.y[29] == 0.1 and preview.y[30] == 0.05
    panel.controls["learning_rate_scheduler"].value = "cosine"
    np.testing.assert_allclose(panel.curves.lr_preview.y, trainer.preview_schedule(panel.config))
    assert panel.curves.lr_preview.y[-1] < 0.1


def test_regression_targets_plot_mae_instead_of_accuracy() -> None:
    panel = TrainingPanel(data=make_regression(300), target_column="target")
    assert panel.curves.metric_figure.title == "Mean absolute error"
    panel2 = TrainingPanel(data=make_regression(300).assign(label=lambda d: d.target > 10), target_column="label")
    assert panel2.curves.metric_figure.title == "Accuracy"


def test_repr_is_short_and_stable(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label", epochs=30)
    assert repr(panel) == "TrainingPanel(state='pending', epoch=0/30)"
    assert panel._repr_mimebundle_()["text/plain"] == repr(panel)


def test_controls_are_standard_ipywidgets_and_bqplot_only(clf_df: pd.DataFrame) -> None:
    import bqplot
    panel = TrainingPanel(data=clf_df, target_column="label")
    # What the browser renders: ipywidgets' and bqplot's own models only (a Python subclass such
    # as the LR finder's view is a VBox there), so nothing beyond those two needs installing.
    frontends = {w._model_module for w in _walk(panel)}
    assert frontends == {"@jupyter-widgets/base", "@jupyter-widgets/controls", "bqplot", "bqscales"}
    modules = {type(w).__module__.split(".")[0] for w in _walk(panel) if w is not panel}
    assert modules <= {"ipywidgets", "bqplot", "bqscales", "epoch_widgets"}
    assert isinstance(panel.curves.loss_figure, bqplot.Figure)


def test_importing_the_package_does_not_load_widgets() -> None:
    code = ("import sys, epoch_widgets; "
            "print(any(m in sys.modules for m in ('ipywidgets', 'bqplot', 'epoch_widgets.panel', 'epoch_widgets.charts')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _walk(root: W.Widget) -> list[W.Widget]:
    seen, out, stack = set(), [], [root]
    while stack:
        item = stack.pop()
        if isinstance(item, W.Widget) and id(item) not in seen:
            seen.add(id(item))
            out.append(item)
            stack.extend(getattr(item, k) for k in item.keys)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return out
