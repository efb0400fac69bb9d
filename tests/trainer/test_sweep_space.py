"""A sweep's search space, checked against the config schema before anything runs."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from trainer import ConfigError, TrainingConfig, choice, log_uniform, sweep, uniform
from trainer.sweep import check_space, space_from_dict, space_to_dict, variable_fields
from trainer.sweep.space import decode_params, optuna_distributions

BASE = TrainingConfig(target_column="label")


def _refused(space: dict, field: str) -> str:
    with pytest.raises(ConfigError) as info:
        check_space(BASE, space)
    fields = [e["field"] for e in info.value.errors]
    assert field in fields, info.value
    return str(info.value)


def test_a_space_over_the_documented_fields_is_accepted() -> None:
    space = {"learning_rate": log_uniform(1e-4, 1e-1), "hidden_units": choice([[64, 32], [128, 64]]),
             "dropout_rate": uniform(0.0, 0.5), "batch_size": choice([32, 64, 128]), "epochs": uniform(2, 8)}
    assert check_space(BASE, space) == space
    dists = optuna_distributions(space)
    assert type(dists["epochs"]).__name__ == "IntDistribution" and dists["learning_rate"].log
    # Lists travel through Optuna as JSON text and come back as the config's values.
    assert decode_params({"hidden_units": "[64, 32]", "batch_size": 64}) == {"hidden_units": [64, 32], "batch_size": 64}


def test_an_unknown_field_is_refused_with_a_suggestion() -> None:
    assert "did you mean 'learning_rate'" in _refused({"learnig_rate": uniform(0.001, 0.01)}, "learnig_rate")


@pytest.mark.parametrize("field", ["output_path", "target_column", "device", "validation_split", "seed"])
def test_a_field_that_cannot_vary_is_refused(field: str) -> None:
    assert "cannot vary in a sweep" in _refused({field: choice([None, "x"])}, field)
    assert field not in {spec.name for spec in variable_fields()}


def test_the_fields_a_sweep_may_vary_are_listed_with_their_limits() -> None:
    fields = {spec.name: spec for spec in variable_fields()}
    assert {"learning_rate", "hidden_units", "dropout_rate", "batch_size", "optimizer"} <= set(fields)
    assert fields["dropout_rate"].maximum == 1.0 and fields["dropout_rate"].exclusive_max


@pytest.mark.parametrize("space, field, words", [
    ({"dropout_rate": uniform(0.0, 1.0)}, "dropout_rate", "goes above the field's limit (allowed: >= 0.0 and < 1.0)"),
    ({"learning_rate": log_uniform(0.0, 0.1)}, "learning_rate", "log_uniform() needs low > 0"),
    ({"learning_rate": uniform(-1.0, 0.1)}, "learning_rate", "goes below the field's limit"),
    ({"batch_size": uniform(8.5, 64)}, "batch_size", "integer field"),
    ({"batch_size": choice([32, 0])}, "batch_size", "the value 0 does not fit"),
    ({"hidden_units": uniform(1, 4)}, "hidden_units", "vary it with choice"),
    ({"optimizer": choice(["adam", "rmsprop"])}, "optimizer", "'rmsprop' does not fit"),
    ({"epochs": uniform(5, 5)}, "epochs", "low must be below high"),
    ({"batch_size": choice([])}, "batch_size", "has no values"),
    ({"batch_size": [32, 64]}, "batch_size", "expected uniform(low, high)"),
])
def test_a_range_or_value_outside_the_fields_limits_is_refused(space: dict, field: str, words: str) -> None:
    assert words in _refused(space, field)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        check_space(BASE, {"dropout_rate": uniform(0.0, 2.0), "nope": choice([1])})
    assert [e["field"] for e in info.value.errors] == ["dropout_rate", "nope"]


def test_the_space_round_trips_through_json_and_a_malformed_entry_is_named() -> None:
    space = {"learning_rate": log_uniform(1e-4, 1e-1), "hidden_units": choice([[8], [16, 8]])}
    assert space_from_dict(space_to_dict(space)) == space
    with pytest.raises(ConfigError) as info:
        space_from_dict({"learning_rate": {"distribution": "normal", "mean": 0.01}})
    assert info.value.errors[0]["field"] == "learning_rate" and "log_uniform" in str(info.value)


def test_a_refused_sweep_writes_nothing(clf_df: pd.DataFrame, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    config = {"target_column": "label", "epochs": 2}
    with pytest.raises(ConfigError, match="dropout_rate"):
        sweep(config, clf_df, {"dropout_rate": uniform(0.5, 1.5)}, output_path=out)
    with pytest.raises(ConfigError, match="regression task, which has no accuracy"):
        sweep({"target_column": "f1", "epochs": 2}, clf_df, {"batch_size": choice([32])}, metric="val_accuracy",
              output_path=out)
    with pytest.raises(ConfigError, match="sampler='grid' tries every combination"):
        sweep(config, clf_df, {"learning_rate": log_uniform(1e-3, 1e-1)}, sampler="grid", output_path=out)
    with pytest.raises(ConfigError, match="give output_path"):
        sweep(config, clf_df, {"batch_size": choice([32])})
    with pytest.raises(ConfigError, match="parallel"):
        sweep(config, clf_df, {"batch_size": choice([32])}, parallel=0, output_path=out)
    with pytest.raises(ConfigError, match="no sweep to resume"):
        sweep(config, clf_df, {"batch_size": choice([32])}, output_path=out, resume=True)
    with pytest.raises(ConfigError, match="label"):
        sweep(config, clf_df.rename(columns={"label": "nope"}), {"batch_size": choice([32])}, output_path=out)
    assert not out.exists()


def test_samplers_pruners_and_metrics_are_named_or_refused() -> None:
    import optuna

    from trainer.sweep.study import check_metric, make_pruner, make_sampler

    space = {"batch_size": choice([32, 64])}
    assert isinstance(make_pruner("asha"), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(make_pruner(None), optuna.pruners.NopPruner)
    assert isinstance(make_sampler("random", space, 0), optuna.samplers.RandomSampler)
    assert isinstance(make_sampler("grid", space, 0), optuna.samplers.GridSampler)
    mine = optuna.pruners.PercentilePruner(25.0)
    assert make_pruner(mine) is mine
    assert check_metric("val_accuracy", None) == "maximize" and check_metric("val_mae", None) == "minimize"
    for bad, call in (("pruner", lambda: make_pruner("hyperband!")), ("sampler", lambda: make_sampler("cma", space, 0)),
                      ("metric", lambda: check_metric("loss", None)),
                      ("direction", lambda: check_metric("val_loss", "down"))):
        with pytest.raises(ConfigError) as info:
            call()
        assert info.value.errors[0]["field"] == bad
