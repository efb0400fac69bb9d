"""Runs named by what sets them apart: only the settings that differ, short names, the full text
for tooltips; a run's own name (given or its folder's) comes first."""
from __future__ import annotations

from pathlib import Path

from epoch_widgets.charts.run_labels import RunLabel, difference_labels, run_names
from trainer import TrainingConfig
from trainer.run_records import RunRecord


def configs(*overrides: dict) -> list[dict]:
    return [TrainingConfig(**o).to_dict() for o in overrides]


def test_only_the_differing_settings_name_a_run_short_and_in_full() -> None:
    a, b = difference_labels(configs({"learning_rate": 0.01, "batch_size": 64, "name": "x", "output_path": "m/x"},
                                     {"learning_rate": 0.001, "batch_size": 32, "name": "y"}))
    assert a == RunLabel("lr 0.01, bs 64", "Learning rate 0.01; Batch size 64")     # name and folder left out
    assert b == RunLabel("lr 0.001, bs 32", "Learning rate 0.001; Batch size 32")


def test_identical_settings_name_nothing() -> None:
    assert difference_labels(configs({"seed": 1}, {"seed": 1, "name": "other"})) == [RunLabel("", "")] * 2


def test_a_schedulers_parameters_count_only_under_that_scheduler() -> None:
    step, cosine = difference_labels(configs({"learning_rate_scheduler": "step", "step_size": 4},
                                             {"learning_rate_scheduler": "cosine", "T_max": 12}))
    assert step == RunLabel("schedule step, step 4", "Schedule step; Decay every (epochs) 4")
    assert cosine == RunLabel("schedule cosine, T_max 12", "Schedule cosine; Half period (epochs) 12")


def test_the_short_label_keeps_the_most_telling_few_and_counts_the_rest() -> None:
    many, default = difference_labels(configs({"epochs": 5, "batch_size": 8, "learning_rate": 0.1,
                                               "dropout_rate": 0.5, "model_type": "lstm", "hidden_units": [8, 4]},
                                              {}))
    assert many.short == "lstm, lr 0.1, bs 8, +3 more"
    assert many.full == "Model lstm; Learning rate 0.1; Batch size 8; Hidden layers 8, 4; Epochs 5; Dropout 0.5"
    assert default.short == "mlp, lr 0.001, bs 32, +3 more"


def record(label: str, path: Path | None = None, **config: object) -> RunRecord:
    return RunRecord(label=label, config=TrainingConfig(**config).to_dict(), history=[], state="completed", path=path)


def test_a_run_with_a_name_keeps_it_and_one_without_is_named_by_what_differs(tmp_path: Path) -> None:
    names = run_names([record("run 2", learning_rate=0.01), record("run 1", learning_rate=0.1),
                       record("mlp1", tmp_path / "mlp1", learning_rate=0.05, output_path=str(tmp_path / "mlp1")),
                       record("mine", name="mine", learning_rate=0.05)])
    assert names == [RunLabel("lr 0.01", "run 2: Learning rate 0.01"), RunLabel("lr 0.1", "run 1: Learning rate 0.1"),
                     RunLabel("mlp1 (lr 0.05)", "mlp1: Learning rate 0.05"),
                     RunLabel("mine (lr 0.05)", "mine: Learning rate 0.05")]
    # The name the panel makes up (model and start time) says less than what differs: it goes to the tooltip.
    made_up = run_names([record("mlp 2026-12-07 16:43:12", name="mlp 2026-12-07 16:43:12", learning_rate=0.01),
                         record("lstm 2026-12-07 16:44:01", name="lstm 2026-12-07 16:44:01", model_type="lstm")])
    assert made_up == [RunLabel("mlp, lr 0.01", "mlp 2026-12-07 16:43:12: Model mlp; Learning rate 0.01"),
                       RunLabel("lstm, lr 0.001", "lstm 2026-12-07 16:44:01: Model lstm; Learning rate 0.001")]
    same = run_names([record("run 2"), record("run 1")])
    assert [n.short for n in same] == ["run 2", "run 1"]              # nothing differs: the numbers stay
