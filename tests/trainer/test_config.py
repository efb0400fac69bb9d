"""The config schema: the documented defaults, one clear error per bad field, introspection."""
from __future__ import annotations

import json

import pytest

import trainer
from trainer import ConfigError, Trainer, TrainingConfig, config_fields
from trainer.config import SCHEDULER_PARAMS

# The documented start request body (docs/api.md), verbatim.
REQUEST_EXAMPLE = {
    "name": "Deep learning model training", "algorithm_type": "deep_learning", "model_type": "mlp",
    "epochs": 100, "batch_size": 32, "learning_rate": 0.001, "hidden_units": [128, 64, 32],
    "dropout_rate": 0.2, "early_stopping_patience": 10, "learning_rate_scheduler": "step",
    "feature_columns": ["feature1", "feature2", "feature3"], "target_column": "target",
    "output_path": "/models/deep_learning_model",
}


def errors_of(**fields) -> list[dict]:
    with pytest.raises(ConfigError) as info:
        TrainingConfig(**fields)
    return info.value.errors


def only_error(**fields) -> dict:
    errors = errors_of(**fields)
    assert len(errors) == 1, errors
    return errors[0]


# ---------------------------------------------------------------------- defaults and round trips

def test_defaults_are_the_spec_table():
    c = TrainingConfig()
    assert (c.model_type, c.hidden_units, c.dropout_rate) == ("mlp", [64, 32], 0.2)
    assert (c.epochs, c.batch_size, c.learning_rate) == (100, 32, 0.001)
    assert (c.early_stopping_patience, c.min_delta) == (10, 0.001)
    assert (c.learning_rate_scheduler, c.step_size, c.gamma) == ("step", 30, 0.1)
    assert (c.patience, c.factor, c.T_max, c.eta_min) == (5, 0.5, 100, 0.0001)
    assert (c.validation_split, c.task, c.device, c.backend) == (0.2, "auto", "auto", "torch")
    assert c.algorithm_type == "deep_learning" and c.restore_best_weights is True


def test_spec_request_body_is_accepted_and_round_trips():
    c = TrainingConfig.from_dict(REQUEST_EXAMPLE)
    d = c.to_dict()
    assert {k: d[k] for k in REQUEST_EXAMPLE} == REQUEST_EXAMPLE
    assert TrainingConfig.from_dict(d) == c
    assert TrainingConfig.from_json(json.dumps(d)) == c
    json.dumps(d)  # JSON-safe


def test_documented_examples_are_accepted():
    basic = TrainingConfig(epochs=50, batch_size=64, learning_rate=0.001, hidden_units=[128, 64],
                           dropout_rate=0.3, early_stopping_patience=5, learning_rate_scheduler="step")
    complex_ = TrainingConfig(epochs=200, batch_size=32, learning_rate=0.0001, hidden_units=[256, 128, 64, 32],
                              dropout_rate=0.5, early_stopping_patience=15, learning_rate_scheduler="plateau",
                              feature_columns=["a", "b", "c", "d"], target_column="y")
    assert basic.hidden_units == [128, 64] and complex_.learning_rate_scheduler == "plateau"


@pytest.mark.parametrize("kind", ["step", "plateau", "cosine", "none"])
def test_every_scheduler_name_is_accepted(kind):
    assert TrainingConfig(learning_rate_scheduler=kind).learning_rate_scheduler == kind


def test_int_is_accepted_for_a_float_field():
    assert TrainingConfig(learning_rate=1).learning_rate == 1.0


# ---------------------------------------------------------------------- unknown keys

@pytest.mark.parametrize("typo, meant", [("learning_rat", "learning_rate"), ("hiden_units", "hidden_units"),
                                         ("epoch", "epochs"), ("early_stoping_patience", "early_stopping_patience"),
                                         ("dropout", "dropout_rate")])
def test_unknown_key_suggests_the_near_miss(typo, meant):
    err = only_error(**{typo: 1})
    assert err["field"] == typo
    assert f"did you mean {meant!r}" in err["message"]


def test_unknown_key_without_near_miss_lists_the_known_fields():
    err = only_error(colour="blue")
    assert "unknown field" in err["message"] and "learning_rate" in err["message"]


# ---------------------------------------------------------------------- wrong types

@pytest.mark.parametrize("field, value, allowed", [
    ("epochs", "10", "int"),                  # strings are not coerced
    ("epochs", 10.5, "int"),
    ("epochs", True, "int"),                  # nor booleans to numbers
    ("batch_size", None, "int"),
    ("learning_rate", "fast", "float"),
    ("hidden_units", "64", "a list of integers"),
    ("hidden_units", [64, "32"], "int"),
    ("early_stopping", "yes", "true or false"),
    ("feature_columns", "f1", "a list of column names"),
    ("target_column", 3, "a string or null"),
])
def test_wrong_type_names_field_value_and_what_is_allowed(field, value, allowed):
    err = only_error(**{field: value})
    assert err["field"].startswith(field)
    assert err["value"] == value
    assert repr(value) in err["message"] and allowed in err["message"]


# ---------------------------------------------------------------------- out of range

@pytest.mark.parametrize("field, value, allowed", [
    ("epochs", 0, ">= 1"),
    ("batch_size", -8, ">= 1"),
    ("learning_rate", 0.0, "> 0"),
    ("learning_rate", 50.0, "<= 10"),
    ("dropout_rate", 1.0, "< 1"),
    ("validation_split", 1.0, "< 1"),
    ("validation_split", 0.0, "> 0"),
    ("early_stopping_patience", 0, ">= 1"),
    ("gamma", 1.5, "<= 1"),
    ("factor", 1.0, "< 1"),
    ("min_delta", -0.1, ">= 0"),
    ("sequence_length", 1, ">= 2"),
    ("seed", -1, ">= 0"),
])
def test_out_of_range_names_field_value_and_range(field, value, allowed):
    err = only_error(**{field: value})
    assert err["field"] == field and err["value"] == value
    assert allowed in err["message"]


@pytest.mark.parametrize("field, value, allowed", [
    ("model_type", "transformer", "'mlp' | 'cnn' | 'lstm' | 'gru'"),
    ("learning_rate_scheduler", "exponential", "'step' | 'plateau' | 'cosine' | 'none'"),
    ("backend", "jax", "'torch' | 'tensorflow'"),
    ("optimizer", "rmsprop", "'adam'"),
])
def test_bad_choice_lists_the_choices(field, value, allowed):
    err = only_error(**{field: value})
    assert err["field"] == field and allowed in err["message"]


def test_hidden_units_need_positive_layers():
    err = only_error(hidden_units=[64, 0])
    assert err["field"] == "hidden_units" and "[0]" in err["message"]
    assert only_error(hidden_units=[])["field"] == "hidden_units"


def test_device_must_be_a_known_kind():
    assert "cuda:N" in only_error(device="gpu")["message"]
    assert TrainingConfig(device="cuda:1").device == "cuda:1"


def test_algorithm_type_other_than_deep_learning_is_refused():
    err = only_error(algorithm_type="random_forest")
    assert err["field"] == "algorithm_type" and "'deep_learning'" in err["message"]
    assert "random_forest" in err["message"]


def test_columns_listed_twice_or_as_both_feature_and_target():
    assert "listed twice" in only_error(feature_columns=["a", "b", "a"])["message"]
    err = only_error(feature_columns=["a", "y"], target_column="y")
    assert err["field"] == "target_column" and "remove it" in err["message"]


def test_several_problems_come_as_one_error_listing_each():
    errors = errors_of(epochs=0, batch_size="32", learning_rat=0.1, model_type="svm")
    assert {e["field"] for e in errors} == {"epochs", "batch_size", "learning_rat", "model_type"}
    with pytest.raises(ConfigError) as info:
        TrainingConfig(epochs=0, model_type="svm")
    text = str(info.value)
    assert "2 problems" in text and "epochs" in text and "model_type" in text


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_from_dict_and_from_json_refuse_non_objects():
    with pytest.raises(ConfigError, match="JSON object"):
        TrainingConfig.from_dict([1, 2])
    with pytest.raises(ConfigError, match="not valid JSON"):
        TrainingConfig.from_json("{epochs: 3")


# ---------------------------------------------------------------------- changing a config

def test_assignment_and_replace_are_validated():
    c = TrainingConfig(target_column="y")
    with pytest.raises(ConfigError) as info:
        c.epochs = 0
    assert info.value.errors[0]["field"] == "epochs"
    with pytest.raises(ConfigError) as info:
        c.feature_columns = ["a", "y"]
    assert info.value.errors[0]["field"] == "feature_columns"
    assert c.replace(epochs=7).epochs == 7 and c.epochs == 100
    with pytest.raises(ConfigError):
        c.replace(epochs=-1)


# ---------------------------------------------------------------------- against the data

def test_missing_columns_are_named_with_a_suggestion(clf_df):
    with pytest.raises(ConfigError) as info:
        Trainer({"target_column": "lable", "feature_columns": ["f1", "f9", "f2"]}, clf_df)
    errors = {e["field"]: e for e in info.value.errors}
    assert set(errors) == {"target_column", "feature_columns"}
    assert "did you mean 'label'" in errors["target_column"]["message"]
    assert errors["feature_columns"]["value"] == "f9" and "'f9'" in errors["feature_columns"]["message"]


def test_target_column_is_required_for_training(clf_df):
    with pytest.raises(ConfigError) as info:
        Trainer({"epochs": 1}, clf_df)
    assert info.value.errors[0]["field"] == "target_column"


def test_trainer_refuses_a_non_config(clf_df):
    with pytest.raises(ConfigError, match="TrainingConfig or a dict"):
        Trainer(["epochs", 3], clf_df)
    with pytest.raises(ConfigError, match="DataFrame"):
        Trainer({"target_column": "label"}, clf_df.to_numpy())


# ---------------------------------------------------------------------- introspection

def test_config_fields_describe_every_field():
    specs = {f.name: f for f in config_fields()}
    assert list(specs) == list(TrainingConfig.model_fields)
    defaults = TrainingConfig().to_dict()
    for name, spec in specs.items():
        assert spec.default == defaults[name], name
        assert spec.help and spec.group, name
    assert specs["epochs"].type == "int" and specs["epochs"].minimum == 1
    assert specs["learning_rate"].type == "float" and specs["learning_rate"].exclusive_min
    assert specs["dropout_rate"].maximum == 1.0 and specs["dropout_rate"].exclusive_max
    assert specs["model_type"].type == "choice" and specs["model_type"].choices == ("mlp", "cnn", "lstm", "gru")
    assert specs["hidden_units"].type == "list[int]" and specs["feature_columns"].type == "list[str]"
    assert specs["early_stopping"].type == "bool"
    assert specs["seed"].optional and specs["target_column"].optional and not specs["epochs"].optional


def test_scheduler_parameters_are_tagged_with_their_scheduler():
    specs = {f.name: f for f in config_fields()}
    for kind, params in SCHEDULER_PARAMS.items():
        for p in params:
            assert specs[p].scheduler == kind
    tagged = {f.name for f in config_fields() if f.scheduler}
    assert tagged == {p for params in SCHEDULER_PARAMS.values() for p in params}
    assert set(SCHEDULER_PARAMS) == set(specs["learning_rate_scheduler"].choices)


def test_public_names():
    for name in ("TrainingConfig", "ConfigError", "Trainer", "TrainingState", "StateError", "Callback",
                 "load_model", "config_fields", "preview_schedule", "FINAL_STATES"):
        assert hasattr(trainer, name)


def test_asking_for_a_gpu_that_is_not_there_is_a_config_error(clf_df):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError) as info:
        Trainer({"target_column": "label", "device": "cuda"}, clf_df)
    err = info.value.errors[0]
    assert err["field"] == "device" and "device='cpu'" in err["message"]


@pytest.mark.parametrize("field", [f.name for f in config_fields() if f.type == "float"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_nan_and_infinities_are_refused_in_every_float_field(field, value):
    err = only_error(**{field: value})
    assert err["field"] == field and "finite number" in err["message"]
    config = TrainingConfig()
    with pytest.raises(ConfigError, match=field):
        setattr(config, field, value)          # assignment is validated too


# ---------------------------------------------------------------------- size limits

def test_every_string_and_list_field_has_a_size_limit_in_the_schema():
    from trainer.config_values import MAX_COLUMN_NAME, MAX_COLUMNS, MAX_NAME, MAX_PATH, MAX_URI

    props = TrainingConfig.model_json_schema()["properties"]

    def limits(schema):
        """(maxLength or maxItems) of every string or array branch of a property's schema."""
        branches = schema.get("anyOf", [schema])
        return [b.get("maxLength" if b["type"] == "string" else "maxItems") for b in branches
                if b.get("type") in ("string", "array") and "enum" not in b and "const" not in b]

    unbounded = [name for name, schema in props.items() if None in limits(schema)]
    assert unbounded == []
    assert props["name"]["maxLength"] == MAX_NAME
    assert props["feature_columns"]["maxItems"] == MAX_COLUMNS
    assert props["feature_columns"]["items"]["maxLength"] == MAX_COLUMN_NAME
    assert limits(props["data_path"]) == limits(props["output_path"]) == [MAX_PATH]
    assert limits(props["mlflow_tracking_uri"]) == [MAX_URI]


def test_oversized_strings_and_lists_are_refused_naming_the_limit():
    with pytest.raises(ConfigError, match=r"name: .*too long: at most 1000 characters"):
        TrainingConfig(name="x" * 1001)
    with pytest.raises(ConfigError, match=r"mlflow_tracking_uri: .*at most 2048 characters"):
        TrainingConfig(mlflow_tracking_uri="http://h/" + "x" * 2048)
    with pytest.raises(ConfigError, match=r"feature_columns\[0\]: .*at most 1024 characters"):
        TrainingConfig(feature_columns=["c" * 1025])
    with pytest.raises(ConfigError, match="at most 4096 GPU indices"):
        TrainingConfig(devices=",".join(map(str, range(5000))))
    assert len(TrainingConfig(feature_columns=[f"c{i}" for i in range(10_000)]).feature_columns) == 10_000


def test_huge_column_lists_are_checked_in_linear_time_with_short_errors():
    import time

    started = time.perf_counter()
    with pytest.raises(ConfigError) as too_many:
        TrainingConfig(feature_columns=[f"column_{i}" for i in range(200_000)])
    # Each repeated 10,000 times: the old count-per-element check took minutes for this.
    with pytest.raises(ConfigError) as repeated:
        TrainingConfig(feature_columns=[f"c{i % 5000}" for i in range(10_000)])
    assert time.perf_counter() - started < 1.0
    assert "at most 10000 items" in str(too_many.value) and "(200000 items)" in str(too_many.value)
    assert len(str(too_many.value)) < 1000
    message = str(repeated.value)
    assert "columns listed twice: ['c0', 'c1', 'c10'" in message and "and 4980 more" in message
    assert len(message) < 1500


def test_a_config_with_thousands_of_problems_lists_the_first_ones():
    body = {f"unknown_{i}": i for i in range(5000)}
    with pytest.raises(ConfigError) as caught:
        TrainingConfig.from_dict(body)
    errors = caught.value.errors
    assert len(errors) == 21 and errors[-1]["message"].startswith("and 4980 more problems")
