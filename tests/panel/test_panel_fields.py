"""Labels, help and short messages: what a person reads beside each control."""
from __future__ import annotations

import pandas as pd
import pytest

import trainer
from epoch_widgets import TrainingPanel
from epoch_widgets.panel import fields
from epoch_widgets.panel.controls import CONTROLS_HEIGHT
from epoch_widgets.panel.messages import short_message
from trainer import ConfigError, TrainingConfig


def test_every_field_has_a_human_label_and_help_from_the_schema() -> None:
    for spec in trainer.config_fields():
        label = fields.label(spec.name)
        assert label and label != spec.name and "_" not in label, spec.name
        assert fields.help_text(spec.name), spec.name
    assert fields.label("early_stopping_patience") == "Patience (epochs)"
    assert fields.label("T_max") == "Half period (epochs)"
    assert fields.label("checkpoint_every_epochs") == "Checkpoint every N epochs"


def test_rarely_used_fields_sit_under_advanced_in_every_tab(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label")
    controls = panel.controls
    advanced = {name for name in controls.specs if fields.is_advanced(name)}
    assert {"device", "devices", "mixed_precision", "min_delta", "checkpoint_keep"} <= advanced
    assert not {"epochs", "learning_rate", "target_column", "model_type"} & advanced
    for group, accordion in controls.advanced.items():
        assert accordion.titles == ("Advanced",) and accordion.selected_index is None     # folded
        inside = set(accordion.children[0].children)
        assert inside == {controls.rows[n] for n in advanced if controls.specs[n].group == group}
    # 8. Every tab page has one fixed height, so switching tabs moves nothing below.
    assert {page.layout.height for page in controls.view.children} == {CONTROLS_HEIGHT}


def test_an_open_advanced_section_scrolls_the_tab_instead_of_squashing_its_fields(clf_df: pd.DataFrame) -> None:
    # A page is a flex column of fixed height: its items keep their own height only when they do
    # not shrink (flex-shrink 0), so an opened Advanced section makes the page scroll. The browser
    # test measures the rendered heights.
    panel = TrainingPanel(data=clf_df, target_column="label")
    for page in panel.controls.view.children:
        assert page.layout.overflow == "hidden auto"
        for child in page.children:
            assert child.layout.flex == "0 0 auto", child


@pytest.mark.parametrize("values, field, expected", [
    ({"epochs": 0}, "epochs", "must be at least 1"),
    ({"batch_size": 0}, "batch_size", "must be at least 1"),
    ({"epochs": 10**7}, "epochs", "must be at most 1,000,000"),
    ({"learning_rate": -1.0}, "learning_rate", "must be more than 0"),
    ({"dropout_rate": 1.5}, "dropout_rate", "must be less than 1"),
    ({"model_type": "x"}, "model_type", "choose one of mlp, cnn, lstm or gru"),
    ({"epochs": "10"}, "epochs", "enter a whole number"),
    ({"hidden_units": []}, "hidden_units", "enter at least 1 value"),
])
def test_validation_errors_become_short_messages(values: dict, field: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        TrainingConfig(**values)
    entry = exc.value.errors[0]
    assert "Input should be" in entry["message"] or "List should" in entry["message"]   # the API keeps the details
    short = short_message(field, entry["message"])
    assert short == expected
    assert len(short) < 45


def test_our_own_messages_only_lose_the_got_prefix() -> None:
    with pytest.raises(ConfigError) as exc:
        TrainingConfig(device="gpu")
    assert short_message("device", exc.value.errors[0]["message"]) == "must be 'auto', 'cpu', 'cuda' or 'cuda:N'"


def test_an_error_keeps_the_input_box_its_width_and_its_details_in_the_tooltip(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label", batch_size=0)
    hint = panel.controls.hints["batch_size"].value
    assert ">must be at least 1<" in hint and "allowed: int &gt;= 1" in hint       # short text, full title
    assert panel.controls["batch_size"].layout.width == "420px"
    assert panel.controls["batch_size"].layout.flex == "0 0 auto"


def test_cosine_period_other_than_the_epochs_gets_a_hint(clf_df: pd.DataFrame) -> None:
    panel = TrainingPanel(data=clf_df, target_column="label", epochs=30, learning_rate_scheduler="cosine", T_max=100)
    assert "longer than the 30 epochs" in panel.controls.hint_text("T_max")
    assert "ew-hint-warning" in panel.controls.hints["T_max"].value and panel.valid     # a hint, not an error
    panel.controls["T_max"].value = 10
    assert "rises again after epoch 10" in panel.controls.hint_text("T_max")
    panel.controls["T_max"].value = 30
    assert panel.controls.hint_text("T_max") == fields.help_text("T_max")
