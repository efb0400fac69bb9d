"""The Sweep tab's search-space form: the fields it offers, ranges prefilled from the schema's
limits and the current settings, and what it refuses."""
from __future__ import annotations

import pytest

import trainer
from epoch_widgets.panel.sweep_space import SpaceForm, prefill, searchable
from trainer.config import FIELD_SPECS


def test_the_form_offers_what_a_run_learns_with_and_nothing_about_where_it_runs() -> None:
    form = SpaceForm()
    assert {"learning_rate", "dropout_rate", "batch_size", "hidden_units", "optimizer", "model_type",
            "epochs"} <= set(form.rows)
    assert not {"seed", "device", "backend", "output_path", "feature_columns", "checkpoint_keep"} & set(form.rows)
    assert all(searchable(FIELD_SPECS[name]) for name in form.rows)
    assert [n for n, r in form.rows.items() if r.vary.value] == ["dropout_rate", "learning_rate"]


def test_ranges_come_from_the_current_settings_inside_the_fields_limits() -> None:
    assert prefill(FIELD_SPECS["learning_rate"], 0.001) == ("log-uniform", [0.0001, 0.01])
    assert prefill(FIELD_SPECS["learning_rate"], 5.0)[1][1] == 10.0               # the field's maximum
    assert prefill(FIELD_SPECS["dropout_rate"], 0.2) == ("uniform", [0.0, 0.5])
    kind, (low, high) = prefill(FIELD_SPECS["dropout_rate"], 0.6)
    assert low == 0.0 and high < 1.0                                                # 1.0 is not allowed
    assert prefill(FIELD_SPECS["batch_size"], 32) == ("choice", [16, 32, 64])
    assert prefill(FIELD_SPECS["batch_size"], 1) == ("choice", [1, 2])
    assert prefill(FIELD_SPECS["hidden_units"], [64, 32]) == ("choice", [[32, 16], [64, 32], [128, 64]])
    assert prefill(FIELD_SPECS["optimizer"], "adam") == ("choice", ["adam", "adamw", "sgd"])
    form = SpaceForm()
    form.prefill({**trainer.TrainingConfig().to_dict(), "learning_rate": 0.01, "hidden_units": [16]})
    assert (form.rows["learning_rate"].low.value, form.rows["learning_rate"].high.value) == ("0.001", "0.1")
    assert form.rows["hidden_units"].choices.value == "8 | 16 | 32"
    form.rows["learning_rate"].low.value = "0.005"              # the user's edit stays
    form.prefill({**trainer.TrainingConfig().to_dict(), "learning_rate": 0.5})
    assert form.rows["learning_rate"].low.value == "0.005" and form.rows["learning_rate"].high.value == "0.1"
    assert form.rows["dropout_rate"].high.value == "0.5"


def test_the_ticked_rows_make_the_search_space_and_bad_rows_are_named() -> None:
    form = SpaceForm()
    form.prefill(trainer.TrainingConfig().to_dict())
    form.set_varied(["learning_rate", "hidden_units", "batch_size"])
    form.rows["batch_size"].kind.value = "uniform"
    form.rows["batch_size"].low.value, form.rows["batch_size"].high.value = "16", "128"
    chosen, problems = form.spec()
    assert problems == {}
    assert chosen == {"learning_rate": ("log-uniform", [0.0001, 0.01]),
                      "hidden_units": ("choice", [[32, 16], [64, 32], [128, 64]]),
                      "batch_size": ("uniform", [16, 128])}
    form.rows["learning_rate"].low.value = "0.1"
    form.rows["hidden_units"].choices.value = "64, x"
    form.rows["batch_size"].low.value = "16.5"
    with pytest.raises(ValueError) as info:
        form.space()
    text = str(info.value)
    assert "learning_rate: the range must go up" in text and "hidden_units: enter whole numbers" in text
    assert "batch_size: give both ends of the range as whole numbers" in text
    assert "the range must go up" in form.rows["learning_rate"].hint.value
