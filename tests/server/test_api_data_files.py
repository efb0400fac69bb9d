"""The data file a task reads: opened by the worker inside the server's root (a link swapped in after
the server's check is refused, on resume too), and answers that name columns and counts but never
quote the file's values."""
from __future__ import annotations

import json

import pytest

from trainer import datasets

pytestmark = pytest.mark.server

SECRET_LABELS = {0: "outside-secret-label-a", 1: "outside-secret-label-b"}


def answer_text(body: dict) -> str:
    return json.dumps(body)


async def stopped_task(api, make_config, output: str) -> str:
    task_id = await api.start(make_config(epochs=100_000, output_path=output))
    await api.wait_for(task_id, lambda p: p["current_epoch"] >= 1)
    status, body = await api.call("POST", "stop", task_id)
    assert status == 200, body
    return task_id


async def test_a_data_file_swapped_for_a_link_out_of_the_root_is_not_read_on_resume(
        api, make_config, jp_root_dir, tmp_path):
    task_id = await stopped_task(api, make_config, "swapped")
    outside = tmp_path / "outside" / "secret.csv"
    outside.parent.mkdir()
    secret = datasets.make_classification(800, seed=9)
    secret["f1"] = secret["f1"] * 1000 + 123456.789
    secret["label"] = secret["label"].map(SECRET_LABELS)
    secret.to_csv(outside, index=False)
    (jp_root_dir / "data.csv").unlink()
    (jp_root_dir / "data.csv").symlink_to(outside)

    status, body = await api.call("POST", "resume", task_id)
    assert status == 400, body
    assert "data_path" in body["message"] and "symbolic link" in body["message"], body
    text = answer_text(body)
    assert "outside-secret" not in text and "123456" not in text and str(tmp_path) not in text
    assert (await api.progress(task_id))["training_state"] == "stopped"   # the task is as it was


async def test_a_folder_on_the_way_swapped_for_a_link_is_refused_on_resume(api, make_config, jp_root_dir, tmp_path):
    (jp_root_dir / "sets").mkdir()
    datasets.make_classification(800, seed=3).to_csv(jp_root_dir / "sets" / "data.csv", index=False)
    task_id = await stopped_task(api, lambda **kw: make_config(data_path="sets/data.csv", **kw), "folder-swap")
    outside = tmp_path / "elsewhere"
    (jp_root_dir / "sets").rename(outside)
    (jp_root_dir / "sets").symlink_to(outside, target_is_directory=True)
    status, body = await api.call("POST", "resume", task_id)
    assert status == 400 and "'sets' is a symbolic link" in body["message"], body


async def test_a_changed_file_is_refused_on_resume_naming_what_differs_but_no_values(
        api, make_config, jp_root_dir):
    task_id = await stopped_task(api, make_config, "changed")
    changed = datasets.make_classification(800, seed=3)
    changed["f2"] = changed["f2"] + 987.654321
    changed["label"] = changed["label"].map(SECRET_LABELS)
    changed.to_csv(jp_root_dir / "data.csv", index=False)
    status, body = await api.call("POST", "resume", task_id)
    assert status == 409, body
    assert "classes: other class labels (2 of them; the labels are not shown)" in body["message"]
    assert "means: other values computed from the data" in body["message"]
    text = answer_text(body)
    assert "outside-secret" not in text and "987" not in text


async def test_a_start_refused_for_bad_values_names_the_column_and_row_only(api, make_config, jp_root_dir):
    df = datasets.make_classification(800, seed=3)
    df["f1"] = df["f1"].astype(object)
    df.loc[7, "f1"] = "cell-secret-value"
    df.to_csv(jp_root_dir / "bad.csv", index=False)
    status, body = await api.call("POST", "start", body=make_config(data_path="bad.csv"))
    assert status == 400, body
    assert "column 'f1' is numeric except 1 value like the one in row 7" in body["message"], body
    assert "cell-secret" not in answer_text(body)

    one_class = datasets.make_classification(800, seed=3).assign(label="only-class-secret")
    one_class.to_csv(jp_root_dir / "one.csv", index=False)
    status, body = await api.call("POST", "start", body=make_config(data_path="one.csv"))
    assert status == 400 and "needs at least 2 classes, 'label' has 1" in body["message"], body
    assert "only-class-secret" not in answer_text(body)


async def test_an_evaluation_file_swapped_for_a_link_is_not_served(api, make_config, models_dir, tmp_path):
    task_id = await api.start(make_config(epochs=1, output_path="evaluated"))
    await api.wait_done(task_id)
    status, body = await api.call("GET", "evaluation", task_id)
    assert status == 200, body
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"outside": "secret-json"}))
    (models_dir / "evaluated" / "evaluation.json").unlink()
    (models_dir / "evaluated" / "evaluation.json").symlink_to(outside)
    status, body = await api.call("GET", "evaluation", task_id)
    assert status == 409 and "symbolic link" in body["message"] and "secret-json" not in answer_text(body), body


def write_parts(folder, df, sizes) -> None:
    """``df``'s rows as Parquet files of ``sizes`` rows in ``folder``/part=*/ (names sort in row order)."""
    start = 0
    for i, size in enumerate(sizes):
        (folder / f"part={i}").mkdir(parents=True)
        df.iloc[start:start + size].to_parquet(folder / f"part={i}" / f"rows-{i:03d}.parquet", index=False)
        start += size


async def history_of(api, task_id: str) -> list[dict]:
    assert (await api.wait_done(task_id))["training_state"] == "completed"
    status, body = await api.call("GET", "history", task_id)
    assert status == 200, body
    return [{k: v for k, v in h.items() if k != "time_per_epoch"} for h in body["history"]]


async def test_a_folder_or_glob_of_parquet_files_trains_to_the_history_of_the_same_rows_in_one_csv(
        api, make_config, jp_root_dir):
    df = datasets.make_classification(800, seed=3)     # the rows of data.csv, make_config's file
    write_parts(jp_root_dir / "sets", df, [300, 250, 250])
    (jp_root_dir / "sets" / "_SUCCESS").write_bytes(b"")
    histories = [await history_of(api, await api.start(make_config(epochs=2, data_path=path)))
                 for path in ("data.csv", "sets", "sets/part=*/*.parquet")]
    assert histories[0] == histories[1] == histories[2]


async def test_a_folder_taking_in_a_link_out_of_the_root_is_refused_at_start_naming_only_the_link(
        api, make_config, jp_root_dir, tmp_path):
    write_parts(jp_root_dir / "sets", datasets.make_classification(800, seed=3), [400, 400])
    secret = datasets.make_classification(50, seed=9)
    secret["f1"] = 123456.789
    secret.to_parquet(tmp_path / "secret.parquet", index=False)
    (jp_root_dir / "sets" / "part=1" / "rows-999.parquet").symlink_to(tmp_path / "secret.parquet")
    for path in ("sets", "sets/*/*.parquet"):
        status, body = await api.call("POST", "start", body=make_config(data_path=path))
        assert status == 400, body
        assert "'sets/part=1/rows-999.parquet' is a symbolic link" in body["message"], body
        assert "123456" not in answer_text(body) and str(tmp_path) not in answer_text(body)
    status, body = await api.call("GET", "tasks")
    assert status == 200 and body["tasks"] == [], body          # nothing was started


async def test_folders_and_globs_that_name_no_parquet_files_are_refused_with_the_fix(api, make_config, jp_root_dir):
    (jp_root_dir / "empty").mkdir()
    (jp_root_dir / "other.csv").write_text("f1,label\n1,0\n")
    for path, words in (("empty", "holds no Parquet file"), ("*.csv", "which is no Parquet file"),
                        ("nothing/*.parquet", "no file matches")):
        status, body = await api.call("POST", "start", body=make_config(data_path=path))
        assert status == 400 and words in body["message"] and body["errors"][0]["field"] == "data_path", body


async def test_a_streamed_task_reads_its_files_inside_the_root_to_the_history_of_a_streamed_run_here(
        api, make_config, jp_root_dir):
    from trainer import Trainer

    df = datasets.make_classification(800, seed=3)
    write_parts(jp_root_dir / "sets", df, [300, 250, 250])
    df.to_csv(jp_root_dir / "same.tsv", sep="\t", index=False)
    for path in ("sets", "same.tsv"):
        config = make_config(epochs=2, data_path=path, streaming=True)
        history = await history_of(api, await api.start(config))
        here = Trainer({**config, "data_path": None}, str(jp_root_dir / path)).fit()
        assert history == [{k: v for k, v in h.items() if k != "time_per_epoch"} for h in here.history]


async def test_a_resume_checks_a_folder_again_a_link_taken_in_since_is_refused_and_a_gone_folder_is_a_conflict(
        api, make_config, jp_root_dir, tmp_path):
    write_parts(jp_root_dir / "sets", datasets.make_classification(800, seed=3), [400, 400])
    task_id = await stopped_task(api, lambda **kw: make_config(data_path="sets", **kw), "folder-resume")
    datasets.make_classification(20, seed=9).to_parquet(tmp_path / "secret.parquet", index=False)
    (jp_root_dir / "sets" / "part=1" / "rows-500.parquet").symlink_to(tmp_path / "secret.parquet")
    status, body = await api.call("POST", "resume", task_id)
    assert status == 400 and "'sets/part=1/rows-500.parquet' is a symbolic link" in body["message"], body
    (jp_root_dir / "sets").rename(tmp_path / "moved")
    status, body = await api.call("POST", "resume", task_id)
    assert status == 409 and "is no longer there" in body["message"], body
    assert (await api.progress(task_id))["training_state"] == "stopped"   # the task is as it was
