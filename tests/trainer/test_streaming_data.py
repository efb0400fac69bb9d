"""Streamed tables (trainer/data/): what describe_table tells from metadata, the first pass's
statistics and split (the very numbers of the in-memory path), the epoch stream's order, windows
across blocks and resuming at any batch, and the clear errors for bad tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer import ConfigError
from trainer.config import TrainingConfig
from trainer.data import prepare_data, windows
from trainer.data.inputs import first_pass_progress, prepare_input, should_stream
from trainer.data.streamed import StreamedData
from trainer.data.table_info import check_columns, describe_table
from trainer.datasets import make_classification, make_regression

pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = make_classification(3000, features=4, classes=3, seed=2)
    df["colour"] = np.where(df.f2 > 0.5, "red", np.where(df.f2 < -0.5, "blue", "green"))
    return df


@pytest.fixture(scope="module")
def tables(frame, tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("tables")
    (d / "parts").mkdir()
    frame.to_parquet(d / "one.parquet", row_group_size=250)
    for i in range(3):       # a folder of three files, as Spark writes them
        frame.iloc[i * 1000:(i + 1) * 1000].to_parquet(d / "parts" / f"part-{i}.parquet", row_group_size=300)
    frame.to_csv(d / "t.csv", index=False)
    frame.to_csv(d / "t.tsv.gz", index=False, sep="\t")
    return {"file": str(d / "one.parquet"), "folder": str(d / "parts"), "glob": str(d / "parts" / "part-*.parquet"),
            "csv": str(d / "t.csv"), "tsv": str(d / "t.tsv.gz")}


def config(**kw) -> TrainingConfig:
    return TrainingConfig(**{"target_column": "label", "streaming": True, **kw})


# ---------------------------------------------------------------------- describe_table

def test_describe_table_reads_schema_and_rows_from_metadata(tables):
    one, folder, glob = (describe_table(tables[k]) for k in ("file", "folder", "glob"))
    assert one.rows == folder.rows == glob.rows == 3000
    assert one.schema == folder.schema == {"f1": "double", "f2": "double", "f3": "double", "f4": "double",
                                           "label": "int64", "colour": "large_string"}
    assert len(folder.files) == 3 and folder.files == glob.files and sum(folder.row_groups) == 12
    csv = describe_table(tables["csv"])
    assert csv.kind == "csv" and csv.rows is None and csv.schema["label"] == "int64"
    assert describe_table(tables["tsv"]).schema == csv.schema


def test_describe_table_names_each_problem_and_the_fix(tables, frame, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        describe_table(tmp_path / "nope.parquet")
    with pytest.raises(ConfigError, match="no file matches"):
        describe_table(str(tmp_path / "part-*.parquet"))
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(ConfigError, match="empty"):
        describe_table(tmp_path / "empty.parquet")
    frame.iloc[:0].to_parquet(tmp_path / "norows.parquet")
    with pytest.raises(ConfigError, match="no rows"):
        describe_table(tmp_path / "norows.parquet")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    frame.iloc[:10].to_parquet(mixed / "a.parquet")
    frame.iloc[10:20].drop(columns="f3").to_parquet(mixed / "b.parquet")
    with pytest.raises(ConfigError, match=r"'b.parquet' has another schema than 'a.parquet' \(no column 'f3'\)"):
        describe_table(mixed)
    dated = tmp_path / "dated.parquet"
    frame.assign(when=pd.Timestamp("2024-01-01")).iloc[:10].to_parquet(dated)
    with pytest.raises(ConfigError) as exc:
        check_columns(describe_table(dated), ["f1", "when", "missing"], {})
    messages = [e["message"] for e in exc.value.errors]
    assert "neither numbers nor text" in messages[0] and "not in the table" in messages[1]


# ---------------------------------------------------------------------- the first pass

@pytest.mark.parametrize("where", ["frame", "file", "folder", "csv", "tsv"])
def test_first_pass_statistics_and_split_equal_the_in_memory_path(frame, tables, where):
    cfg = config(seed=4)
    data = prepare_input(cfg, frame if where == "frame" else tables[where], 4)
    memory = prepare_data(cfg, frame, seed=4)
    assert isinstance(data, StreamedData)
    assert data.preprocessor.to_dict() == memory.preprocessor.to_dict()      # bit for bit: same float64 numbers
    assert (data.n_train, data.n_val) == (len(memory.train_index), len(memory.val_index))
    # Read from the table (a budget too small to keep them), then kept and read again from memory.
    for source in (small_buffer(data, 100), data, data):
        x, y, rows = (np.concatenate(p) for p in zip(*source.validation_batches(700)))
        np.testing.assert_array_equal(rows, memory.val_index)
        np.testing.assert_array_equal(x, memory.x[memory.val_index])
        np.testing.assert_array_equal(y, memory.y[memory.val_index])


def test_first_pass_fits_regression_imputation_and_windows_like_the_in_memory_path(tmp_path):
    df = make_regression(2000, seed=1)
    df.loc[::7, "f2"] = np.nan
    df.to_parquet(tmp_path / "r.parquet", row_group_size=128)
    for cfg in (config(target_column="target", missing_values="impute"),
                config(target_column="target", missing_values="impute", model_type="gru", sequence_length=6)):
        data = prepare_input(cfg, str(tmp_path / "r.parquet"), 1)
        memory = prepare_data(cfg, df, seed=1)
        assert data.preprocessor.to_dict() == memory.preprocessor.to_dict()
        x, y, rows = (np.concatenate(p) for p in zip(*data.validation_batches(100)))
        want = memory.x[memory.val_index] if cfg.model_type == "mlp" else \
            windows(memory.x, 6)[memory.val_index - 5]
        np.testing.assert_array_equal(x, want)


def test_progress_reports_both_passes_up_to_every_row(tables):
    seen = []
    with first_pass_progress(lambda phase, done, total: seen.append((phase, done, total))):
        prepare_input(config(), tables["folder"], 0)
    assert seen[0][0] == "statistics" and seen[-1] == ("scaling", 3000, 3000)
    assert ("statistics", 3000, 3000) in seen


def test_bad_values_in_a_later_block_are_refused_naming_column_and_row(frame, tmp_path):
    bad = frame.copy()
    bad["f3"] = bad["f3"].astype(object)
    bad.loc[2500, "f3"] = "unknown"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ConfigError, match=r"column 'f3' is numeric except 1 value like 'unknown' \(row 2500\)"):
        prepare_input(config(), str(tmp_path / "bad.csv"), 0)
    frame.assign(f1=frame.f1.where(frame.index != 2900, np.inf)).to_parquet(tmp_path / "inf.parquet", row_group_size=500)
    with pytest.raises(ConfigError, match=r"infinite values in feature columns 'f1' \(1\)"):
        prepare_input(config(), str(tmp_path / "inf.parquet"), 0)
    with pytest.raises(ConfigError, match="no target value"):
        frame.assign(label=frame.label.where(frame.index != 1234)).to_parquet(tmp_path / "nolabel.parquet")
        prepare_input(config(), str(tmp_path / "nolabel.parquet"), 0)
    with pytest.raises(ConfigError, match="'f9' is not in the data"):
        prepare_input(config(feature_columns=["f1", "f9"]), str(tmp_path / "nolabel.parquet"), 0)
    frame.assign(tags=[[1, 2]] * len(frame)).to_parquet(tmp_path / "lists.parquet")
    with pytest.raises(ConfigError, match=r"feature_columns: column 'tags' holds list<.*>, neither numbers nor text"):
        prepare_input(config(), str(tmp_path / "lists.parquet"), 0)


def test_auto_streams_only_what_would_not_fit_the_budget(frame, tables):
    assert not should_stream(config(streaming="auto"), tables["file"])
    assert should_stream(config(streaming="auto", memory_budget_mb=64), str(tables["file"])) is False
    big = describe_table(tables["file"])
    object.__setattr__(big, "rows", 20_000_000)            # as a 20M-row table's metadata would say
    assert should_stream(config(streaming="auto"), tables["file"], big)
    assert not should_stream(config(streaming="auto"), frame) and should_stream(config(streaming=True), frame)
    assert not isinstance(prepare_input(config(streaming=False), tables["file"], 0), StreamedData)
    frame.to_csv(tables["csv"] + ".zip", index=False)       # read whole: a zip archive cannot be streamed
    assert not isinstance(prepare_input(config(streaming="auto"), tables["csv"] + ".zip", 0), StreamedData)
    with pytest.raises(ConfigError, match="zip-compressed, which cannot be streamed"):
        prepare_input(config(), tables["csv"] + ".zip", 0)
    with pytest.raises(ConfigError, match="backend='torch' only"):
        prepare_input(config(backend="tensorflow"), tables["file"], 0)


# ---------------------------------------------------------------------- the epoch stream

def small_buffer(data: StreamedData, rows: int) -> StreamedData:
    return StreamedData(data.source, data.preprocessor, data.split, data.fingerprint, data.seed, rows)


@pytest.mark.parametrize("model", ["mlp", "lstm"])
def test_each_epoch_visits_every_training_sample_once_in_a_seeded_order(frame, tables, model):
    cfg = config(seed=9, model_type=model, sequence_length=4)
    data = small_buffer(prepare_input(cfg, tables["folder"], 9), 400)       # several shuffle buffers
    memory = prepare_data(cfg, frame, seed=9)
    want = memory.x[memory.train_index] if model == "mlp" else windows(memory.x, 4)[memory.train_index - 3]
    epoch = data.epoch(0, 64)
    x, y = (np.concatenate(p) for p in zip(*epoch.batches(0)))
    assert len(epoch.groups) > 3 and epoch.num_batches == -(-len(want) // 64)
    flat = lambda a: a.reshape(len(a), -1)                                      # noqa: E731
    key = lambda a: np.lexsort(flat(a).T)                                       # noqa: E731
    np.testing.assert_array_equal(flat(x)[key(x)], flat(want)[key(want)])
    assert not np.array_equal(x, want)                                          # shuffled
    again, other = data.epoch(0, 64), data.epoch(1, 64)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in again.batches(0)]), x)
    assert not np.array_equal(np.concatenate([b[0] for b in other.batches(0)]), x)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_starting_at_any_batch_gives_exactly_the_rest_of_the_epoch(tables, model):
    data = small_buffer(prepare_input(config(seed=3, model_type=model, sequence_length=5), tables["csv"], 3), 333)
    epoch = data.epoch(2, 50)
    whole = list(epoch.batches(0))
    for start in (1, 7, 13, epoch.num_batches - 1):
        rest = list(epoch.batches(start))
        assert len(rest) == len(whole) - start
        for (xa, ya), (xb, yb) in zip(rest, whole[start:]):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
