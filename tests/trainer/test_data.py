"""Data preparation: column checks, encoding, missing values, labels, scaling, windows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer import ConfigError, TrainingConfig
from trainer.data import Preprocessor, prepare_data, windows


def prep(df: pd.DataFrame, **cfg):
    return prepare_data(TrainingConfig(**cfg), df, seed=0)


def error_fields(df: pd.DataFrame, **cfg) -> dict[str, dict]:
    with pytest.raises(ConfigError) as info:
        prep(df, **cfg)
    return {e["field"]: e for e in info.value.errors}


@pytest.fixture
def mixed_df() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 200
    return pd.DataFrame({"num": rng.normal(5, 2, n), "flag": rng.random(n) > 0.5,
                         "colour": rng.choice(["red", "green", "blue"], n),
                         "size": pd.Categorical(rng.choice(["S", "M"], n)),
                         "label": rng.choice(["cat", "dog", "bird"], n)})


# ---------------------------------------------------------------------- features

def test_categorical_columns_are_one_hot_encoded(mixed_df):
    d = prep(mixed_df, target_column="label")
    pre = d.preprocessor
    assert pre.numeric == ["num", "flag"]
    assert pre.categorical == {"colour": ["blue", "green", "red"], "size": ["M", "S"]}
    assert pre.n_features == 2 + 3 + 2 == d.x.shape[1]
    assert d.x.dtype == np.float32
    onehot = d.x[:, 2:5]
    assert (onehot.sum(axis=1) == 1).all()
    expected = (mixed_df["colour"].to_numpy()[:, None] == np.array(["blue", "green", "red"])).astype(np.float32)
    np.testing.assert_array_equal(onehot, expected)


def test_an_unseen_category_encodes_as_all_zeros(mixed_df):
    pre = prep(mixed_df, target_column="label").preprocessor
    row = mixed_df.head(1).assign(colour="purple")
    assert pre.transform(row)[0, 2:5].tolist() == [0, 0, 0]


def test_categories_come_from_the_training_split_only():
    df = pd.DataFrame({"c": ["a", "b"] * 50, "y": [0, 1] * 50})
    d0 = prep(df, target_column="y", validation_split=0.2)
    val_only = df.copy()
    val_only.loc[d0.val_index, "c"] = "only_in_validation"
    assert "only_in_validation" not in prep(val_only, target_column="y", validation_split=0.2).preprocessor.categorical["c"]


def test_too_many_categories_is_refused():
    df = pd.DataFrame({"id": [f"user{i}" for i in range(300)], "y": [0, 1] * 150})
    err = error_fields(df, target_column="y")["feature_columns"]
    assert err["value"] == "id" and "too many" in err["message"]


def test_unusable_column_types_are_refused_by_name():
    df = pd.DataFrame({"when": pd.date_range("2024-01-01", periods=20), "x": np.arange(20.0), "y": [0, 1] * 10})
    err = error_fields(df, target_column="y")["feature_columns"]
    assert err["value"] == "when" and "datetime" in err["message"] and "convert" in err["message"]


def test_all_columns_but_the_target_are_features_by_default(mixed_df):
    assert prep(mixed_df, target_column="label").preprocessor.feature_columns == ["num", "flag", "colour", "size"]


# ---------------------------------------------------------------------- missing values

def test_missing_values_are_reported_by_column_with_counts(mixed_df):
    df = mixed_df.copy()
    df.loc[[3, 7, 9], "num"] = np.nan
    df.loc[[4], "colour"] = None
    err = error_fields(df, target_column="label")["missing_values"]
    assert "'num' (3)" in err["message"] and "'colour' (1)" in err["message"]
    assert "impute" in err["message"]


def test_impute_uses_training_medians_and_zero_for_unknown_category(mixed_df):
    df = mixed_df.copy()
    df.loc[[3, 7], "num"] = np.nan
    df.loc[[4], "colour"] = None
    d = prep(df, target_column="label", missing_values="impute")
    pre = d.preprocessor
    train = df.iloc[d.train_index]
    assert pre.medians[0] == pytest.approx(train["num"].median())
    scaled_median = (pre.medians[0] - pre.means[0]) / pre.stds[0]
    assert d.x[3, 0] == pytest.approx(scaled_median) and d.x[7, 0] == pytest.approx(scaled_median)
    assert d.x[4, 2:5].tolist() == [0, 0, 0]
    assert np.isfinite(d.x).all()


def test_nullable_integer_columns_can_be_imputed():
    df = pd.DataFrame({"a": pd.array([1, 2, None, 4] * 10, dtype="Int64"), "y": [0, 1] * 20})
    d = prep(df, target_column="y", missing_values="impute")
    assert np.isfinite(d.x).all()
    assert "'a' (10)" in error_fields(df, target_column="y")["missing_values"]["message"]


def test_infinite_values_are_refused_by_column(clf_df):
    df = clf_df.copy()
    df.loc[5, "f2"] = np.inf
    df.loc[[7, 8], "f3"] = -np.inf
    err = error_fields(df, target_column="label")["feature_columns"]
    assert "'f2' (1)" in err["message"] and "'f3' (2)" in err["message"] and "replace" in err["message"]
    pre = prep(clf_df, target_column="label").preprocessor
    with pytest.raises(ValueError, match=r"infinite values in columns \['f2', 'f3'\]"):
        pre.transform(df)


def test_infinite_regression_targets_are_refused(reg_df):
    df = reg_df.copy()
    df.loc[3, "target"] = np.inf
    assert "infinite target" in error_fields(df, target_column="target")["target_column"]["message"]


def test_missing_targets_are_refused(clf_df):
    df = clf_df.astype({"label": float})
    df.loc[[1, 2], "label"] = np.nan
    err = error_fields(df, target_column="label")["target_column"]
    assert "2 rows" in err["message"] and "dropna" in err["message"]


def test_prediction_time_missing_values_are_named():
    df = pd.DataFrame({"a": np.arange(50.0), "y": [0, 1] * 25})
    pre = prep(df, target_column="y").preprocessor
    with pytest.raises(ValueError, match=r"\['a'\]"):
        pre.transform(pd.DataFrame({"a": [1.0, np.nan]}))
    with pytest.raises(ValueError, match="lacks feature columns"):
        pre.transform(pd.DataFrame({"b": [1.0]}))


# ---------------------------------------------------------------------- targets

def test_string_labels_binary():
    df = pd.DataFrame({"x": np.arange(40.0), "y": ["no", "yes"] * 20})
    d = prep(df, target_column="y")
    assert d.task == "classification" and d.preprocessor.classes == ["no", "yes"]
    assert d.y.tolist() == [0, 1] * 20
    assert d.preprocessor.decode_target(np.array([1, 0])).tolist() == ["yes", "no"]


def test_string_labels_multiclass(mixed_df):
    d = prep(mixed_df, target_column="label")
    assert d.preprocessor.classes == ["bird", "cat", "dog"] and d.preprocessor.n_outputs == 3
    decoded = d.preprocessor.decode_target(d.y)
    assert decoded.tolist() == mixed_df["label"].tolist()


def test_integer_and_boolean_labels_keep_their_type(clf_df):
    d = prep(clf_df, target_column="label")
    assert d.task == "classification" and d.preprocessor.classes == [0, 1]
    assert d.preprocessor.decode_target(np.array([1, 0])).dtype == np.int64
    df = pd.DataFrame({"x": np.arange(20.0), "y": [True, False] * 10})
    pre = prep(df, target_column="y").preprocessor
    assert pre.classes == [False, True] and pre.decode_target(np.array([1])).tolist() == [True]


def test_regression_target_is_scaled_with_training_statistics(reg_df):
    d = prep(reg_df, target_column="target")
    pre = d.preprocessor
    assert d.task == "regression" and pre.n_outputs == 1
    train_y = reg_df["target"].iloc[d.train_index]
    assert pre.target_mean == pytest.approx(train_y.mean())
    assert pre.target_std == pytest.approx(train_y.std(ddof=0))
    np.testing.assert_allclose(pre.decode_target(d.y.astype(np.float64)), reg_df["target"], rtol=1e-5, atol=1e-5)


def test_task_auto_and_override(reg_df):
    few_ints = pd.DataFrame({"x": np.arange(60.0), "y": np.arange(60) % 3})
    many_ints = pd.DataFrame({"x": np.arange(60.0), "y": np.arange(60)})
    assert prep(few_ints, target_column="y").task == "classification"
    assert prep(many_ints, target_column="y").task == "regression"
    assert prep(few_ints, target_column="y", task="regression").task == "regression"
    assert prep(many_ints, target_column="y", task="classification").preprocessor.n_outputs == 60


def test_regression_on_a_string_target_is_refused():
    df = pd.DataFrame({"x": np.arange(20.0), "y": ["a", "b"] * 10})
    err = error_fields(df, target_column="y", task="regression")["task"]
    assert "numeric target" in err["message"] and "classification" in err["message"]


def test_a_single_class_is_refused():
    df = pd.DataFrame({"x": np.arange(20.0), "y": ["a"] * 20})
    assert "at least 2 classes" in error_fields(df, target_column="y")["target_column"]["message"]


# ---------------------------------------------------------------------- split and scaling

def test_scaling_statistics_come_from_the_training_split_only():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(0, 1, 500), "y": rng.integers(0, 2, 500)})
    d0 = prep(df, target_column="y")
    df.loc[d0.val_index, "a"] += 100.0       # validation rows far away: must not move the stats
    d = prep(df, target_column="y")
    train = df["a"].iloc[d.train_index]
    assert d.preprocessor.means[0] == pytest.approx(train.mean())
    assert d.preprocessor.stds[0] == pytest.approx(train.std(ddof=0))
    assert abs(d.preprocessor.means[0]) < 0.5 and df["a"].mean() > 10
    assert abs(d.x[d.train_index, 0].mean()) < 1e-5


def test_split_is_seeded_disjoint_and_complete(clf_df):
    d = prepare_data(TrainingConfig(target_column="label", validation_split=0.25), clf_df, seed=3)
    assert len(d.val_index) == 300 and len(d.train_index) == 900
    assert sorted(np.concatenate([d.train_index, d.val_index]).tolist()) == list(range(1200))
    again = prepare_data(TrainingConfig(target_column="label", validation_split=0.25), clf_df, seed=3)
    other = prepare_data(TrainingConfig(target_column="label", validation_split=0.25), clf_df, seed=4)
    assert (again.val_index == d.val_index).all() and not (other.val_index == d.val_index).all()


def test_too_little_data_is_refused():
    df = pd.DataFrame({"x": [1.0], "y": [1.0]})
    assert "too few" in error_fields(df, target_column="y")["data"]["message"]


# ---------------------------------------------------------------------- windows

def test_windows_view_holds_consecutive_rows_ending_at_each_sample():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    w = windows(x, 3)
    assert w.shape == (4, 3, 2)
    np.testing.assert_array_equal(w[0], x[0:3])
    np.testing.assert_array_equal(w[3], x[3:6])


@pytest.mark.parametrize("model_type", ["cnn", "lstm", "gru"])
def test_sequence_models_validate_on_the_latest_windows(seq_df, model_type):
    d = prep(seq_df, target_column="label", feature_columns=["x", "noise"], model_type=model_type,
             sequence_length=8, validation_split=0.2)
    n_samples = len(seq_df) - 7
    assert d.window == 8 and d.preprocessor.sequence_length == 8
    assert d.train_index[0] == 7                          # first window ends at row 7
    assert len(d.train_index) + len(d.val_index) == n_samples
    assert d.train_index.max() < d.val_index.min()        # time order: validate on the future
    assert d.val_index[-1] == len(seq_df) - 1
    # Scaling statistics use only rows that training windows cover.
    rows = seq_df["x"].iloc[: d.train_index.max() + 1]
    assert d.preprocessor.means[0] == pytest.approx(rows.mean())


def test_mlp_has_no_window(seq_df):
    d = prep(seq_df, target_column="label", model_type="mlp", sequence_length=8)
    assert d.window is None and d.preprocessor.sequence_length is None


def test_sequence_shorter_than_a_window_is_refused():
    df = pd.DataFrame({"x": np.arange(5.0), "y": [0, 1, 0, 1, 0]})
    err = error_fields(df, target_column="y", model_type="lstm", sequence_length=10)["sequence_length"]
    assert "5 rows" in err["message"]


def test_validation_split_leaving_no_training_data_is_refused():
    df = pd.DataFrame({"x": np.arange(3.0), "y": [0, 1, 0]})
    with pytest.raises(ConfigError, match="validation_split"):
        prep(df, target_column="y", validation_split=0.9)


# ---------------------------------------------------------------------- persistence

def test_preprocessor_round_trips_through_json(mixed_df):
    import json
    pre = prep(mixed_df, target_column="label").preprocessor
    back = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    np.testing.assert_array_equal(back.transform(mixed_df), pre.transform(mixed_df))
    assert back.classes == pre.classes


# ---------------------------------------------------------------------- odd DataFrames
# Each gets one ConfigError naming the column and the fix (never a bare pandas error), or is
# handled correctly; prediction-time transform gives the same clear messages as ValueError.

def numbers(n: int = 40, **columns) -> pd.DataFrame:
    """``x`` (floats) and ``y`` (two classes) plus the given columns."""
    return pd.DataFrame({"x": np.arange(n, dtype=float), **columns, "y": [0, 1] * (n // 2)})


def only_error(df: pd.DataFrame, **cfg) -> dict:
    with pytest.raises(ConfigError) as info:
        prep(df, **cfg)
    assert len(info.value.errors) == 1, info.value.errors
    return info.value.errors[0]


def trained_on(df: pd.DataFrame, **cfg) -> Preprocessor:
    return prep(df, **{"target_column": "y", **cfg}).preprocessor


@pytest.mark.parametrize("value, kind", [([1, 2], "list"), ({"a": 1}, "dict")])
def test_a_column_of_lists_or_dicts_is_refused_with_the_fix(value, kind):
    df = numbers(a=[value] * 40)
    err = only_error(df, target_column="y")
    assert err["field"] == "feature_columns" and err["value"] == "a"
    assert f"holds {kind} values" in err["message"] and "row 0" in err["message"]
    assert ("json_normalize" if kind == "dict" else ".tolist()") in err["message"]


def test_a_target_of_lists_is_refused():
    df = numbers().assign(y=[[0], [1]] * 20)
    err = only_error(df, target_column="y")
    assert err["field"] == "target_column" and "holds list values" in err["message"]


def test_duplicate_column_names_are_refused_with_the_fix():
    df = pd.concat([numbers(), pd.DataFrame({"x": np.ones(40)})], axis=1)
    err = only_error(df, target_column="y")
    assert err["field"] == "feature_columns" and err["value"] == "x"
    assert "appears 2 times" in err["message"] and "df.columns.duplicated()" in err["message"]
    dup_target = pd.concat([numbers(), numbers()[["y"]]], axis=1)
    assert only_error(dup_target, target_column="y")["field"] == "target_column"
    # A duplicated column the run does not use is no problem.
    unused = pd.concat([numbers(), pd.DataFrame({"z": [1] * 40, "z ": [1] * 40})], axis=1)
    unused.columns = ["x", "y", "z", "z"]
    assert prep(unused, target_column="y", feature_columns=["x"]).x.shape == (40, 1)


def test_non_string_column_names_are_refused_with_the_rename():
    df = pd.DataFrame({5: np.arange(40.0), "y": [0, 1] * 20})
    err = only_error(df, target_column="y")
    assert "not strings" in err["message"] and "df.columns = df.columns.astype(str)" in err["message"]
    err = only_error(df, target_column="y", feature_columns=["5"])
    assert "did you mean" not in err["message"]
    assert "5 (a int)" in err["message"] and "df.columns.astype(str)" in err["message"]
    # Renamed as the message says, the same data trains.
    renamed = df.copy()
    renamed.columns = renamed.columns.astype(str)
    assert prep(renamed, target_column="y", feature_columns=["5"]).preprocessor.numeric == ["5"]


def test_complex_numbers_are_refused_not_cast():
    df = numbers(c=np.arange(40) * (1 + 1j))
    err = only_error(df, target_column="y")
    assert err["value"] == "c" and "complex" in err["message"] and "np.real" in err["message"]


def test_a_numeric_column_with_a_stray_string_names_value_and_row():
    values: list = list(np.arange(40.0))
    values[7] = "abc"
    err = only_error(numbers(a=values), target_column="y")
    assert err["value"] == "a"
    assert "column 'a' is numeric except 1 value like 'abc' (row 7)" in err["message"]
    assert "pd.to_numeric" in err["message"] and "impute" in err["message"]
    # As read from a CSV file: every value a string, many distinct ones.
    text = [f"{v:.3f}" for v in np.linspace(0, 1, 300)]
    text[12], text[250] = "n/a?", "oops"
    df = pd.DataFrame({"a": text, "y": [0, 1] * 150})
    assert "numeric except 2 values like 'n/a?' (row 12)" in only_error(df, target_column="y")["message"]


def test_a_numeric_target_with_a_stray_string_is_refused():
    y: list = list(np.linspace(0, 1, 40))
    y[3] = "?"
    err = only_error(numbers().assign(y=y), target_column="y")
    assert err["field"] == "target_column" and "numeric except 1 value like '?' (row 3)" in err["message"]


def test_values_beyond_float32_overflow_are_refused():
    a = np.arange(40.0)
    a[9] = 1e300
    err = only_error(numbers(a=a), target_column="y")
    assert err["value"] == "a" and "1e+300 (row 9)" in err["message"] and "rescale" in err["message"]
    target = np.linspace(0, 1, 40)
    target[2] = -1e300
    err = only_error(numbers().assign(y=target), target_column="y")
    assert err["field"] == "target_column" and "-1e+300" in err["message"]


@pytest.mark.parametrize("column, words", [
    (pd.timedelta_range("1s", periods=40, freq="s"), "total_seconds"),
    (pd.period_range("2024-01", periods=40, freq="M"), "convert it to numbers"),
    (pd.date_range("2024-01-01", periods=40, tz="Europe/Berlin"), "convert it to numbers"),
    ([b"raw"] * 40, "decode"),
    ([1, "a"] * 20, "astype(str)"),
])
def test_other_unusable_columns_are_refused_with_a_fix(column, words):
    err = only_error(numbers(a=column), target_column="y")
    assert err["value"] == "a" and words in err["message"]


def test_a_datetime_target_is_refused():
    df = numbers().assign(y=pd.date_range("2024-01-01", periods=40))
    err = only_error(df, target_column="y")
    assert err["field"] == "target_column" and "as a target" in err["message"]


def test_an_empty_or_columnless_dataframe_is_refused():
    assert only_error(numbers().iloc[:0], target_column="y")["message"] == "the DataFrame has no rows"
    assert "no columns" in only_error(pd.DataFrame(), target_column="y")["message"]


def test_multiindex_columns_are_refused_with_the_flattening():
    df = numbers()
    df.columns = pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")])
    err = only_error(df, target_column="y")
    assert "MultiIndex" in err["message"] and "'_'.join" in err["message"]


def test_a_one_row_dataframe_says_how_many_rows_it_needs():
    err = only_error(numbers(2).iloc[:1], target_column="y")
    assert "1 row," in err["message"] and "at least 2" in err["message"]


def test_object_columns_of_numbers_and_none_are_numeric_with_missing_values():
    a = pd.Series([1, 2.5, None] * 20, dtype=object)
    df = pd.DataFrame({"a": a, "y": [0, 1] * 30})
    assert "'a' (20)" in only_error(df, target_column="y")["message"]
    d = prep(df, target_column="y", missing_values="impute")
    assert d.preprocessor.numeric == ["a"] and not d.preprocessor.categorical and np.isfinite(d.x).all()


def test_a_column_with_no_values_is_refused():
    err = only_error(numbers(a=[None] * 40), target_column="y", missing_values="impute")
    assert err["value"] == "a" and "no values" in err["message"]


def test_nullable_and_arrow_dtypes_are_used_like_numpy_ones():
    pytest.importorskip("pyarrow")
    n = 40
    df = pd.DataFrame({
        "i": pd.array(range(n), dtype="Int64"), "f": pd.array(np.linspace(0, 1, n), dtype="Float64"),
        "b": pd.array([True, False] * 20, dtype="boolean"), "s": pd.array(["p", "q"] * 20, dtype="string[pyarrow]"),
        "d": pd.array(np.arange(n, dtype=float), dtype="double[pyarrow]"), "y": pd.array([0, 1] * 20, dtype="Int64")})
    d = prep(df, target_column="y")
    pre = d.preprocessor
    assert pre.numeric == ["i", "f", "b", "d"] and pre.categorical == {"s": ["p", "q"]}
    assert pre.classes == [0, 1] and d.y.tolist() == [0, 1] * 20 and np.isfinite(d.x).all()
    reg = df.assign(y=pd.array(np.linspace(0, 5, n), dtype="Float64"))
    assert prep(reg, target_column="y").task == "regression"
    flags = df.assign(y=pd.array([True, False] * 20, dtype="boolean"))
    assert trained_on(flags).decode_target(np.array([0, 1])).tolist() == [False, True]


def test_a_category_target_with_unused_categories_has_only_the_used_classes():
    y = pd.Categorical(["cat", "dog"] * 20, categories=["bird", "cat", "dog", "fish"])
    d = prep(numbers().assign(y=y), target_column="y")
    assert d.preprocessor.classes == ["cat", "dog"] and d.y.tolist() == [0, 1] * 20


# ---------------------------------------------------------------------- the same at prediction time

def test_prediction_refuses_odd_columns_as_clearly():
    pre = trained_on(numbers(c=["u", "v"] * 20))
    good = numbers(c=["u", "v"] * 20)
    assert pre.transform(good).shape == (40, 3)
    stray = good.astype({"x": object})
    stray.loc[4, "x"] = "abc"
    with pytest.raises(ValueError, match=r"column 'x' must hold numbers .* like 'abc' \(row 4\)"):
        pre.transform(stray)
    with pytest.raises(ValueError, match=r"column 'c' holds list values"):
        pre.transform(good.assign(c=[["u"]] * 40))
    with pytest.raises(ValueError, match=r"column 'x' has values up to 1e\+300"):
        pre.transform(good.assign(x=1e300))
    with pytest.raises(ValueError, match=r"complex"):
        pre.transform(good.assign(x=good.x * 1j))
    with pytest.raises(ValueError, match=r"appears 2 times"):
        pre.transform(pd.concat([good, good[["x"]]], axis=1))
    numbered = pd.DataFrame({"0": np.arange(40.0), "y": [0, 1] * 20})
    with pytest.raises(ValueError, match=r"not strings: rename them, df.columns = df.columns.astype\(str\)"):
        trained_on(numbered).transform(numbered.rename(columns={"0": 0}))
    multi = good.copy()
    multi.columns = pd.MultiIndex.from_product([["a"], multi.columns])
    with pytest.raises(ValueError, match="MultiIndex"):
        pre.transform(multi)


def test_prediction_accepts_numbers_written_as_text():
    pre = trained_on(numbers())
    as_text = numbers().assign(x=[str(v) for v in np.arange(40.0)])
    np.testing.assert_array_equal(pre.transform(as_text), pre.transform(numbers()))


# ---------------------------------------------------------------------- memory

def test_the_encoded_matrix_is_the_only_copy_of_the_data_and_epochs_reuse_one_buffer(clf_df):
    """Peak memory (benchmarks/bench_data_prep.py) rests on these: the torch tensors share the
    prepared float32 matrix, and every epoch gathers into the previous epoch's buffer."""
    torch = pytest.importorskip("torch")
    from trainer import Trainer
    from trainer.loop import epoch_order

    run = Trainer({"target_column": "label", "device": "cpu", "seed": 0, "epochs": 1}, clf_df)
    backend, data = run.backend, run.data
    assert data.x.dtype == np.float32 and data.x.flags.c_contiguous
    assert backend.samples.data_ptr() == data.x.ctypes.data
    n = len(data.train_index)
    buffers = []
    for epoch in range(3):
        backend.begin_epoch(epoch_order(0, epoch, n))
        buffers.append((backend._epoch_x.data_ptr(), backend._epoch_y.data_ptr()))
        ids = torch.from_numpy(data.train_index[epoch_order(0, epoch, n)])
        assert torch.equal(backend._epoch_x, torch.from_numpy(data.x)[ids])
        assert torch.equal(backend._epoch_y, torch.from_numpy(data.y)[ids])
    assert buffers[0] == buffers[1] == buffers[2]


@pytest.mark.slow
def test_the_data_preparation_benchmark_prints_a_row_per_size(capsys):
    """benchmarks/bench_data_prep.py runs end to end (its figures come from running it, never
    from a timed test)."""
    pytest.importorskip("torch")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_data_prep.py"
    spec = importlib.util.spec_from_file_location("bench_data_prep", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--rows", "3000", "6000", "--rounds", "1", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ") and "rows" not in line]
    assert rows == ["3,000", "6,000"] and "From 3,000 to 6,000 rows" in out
