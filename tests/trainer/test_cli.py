"""The headless command line: demo and file data, config files and --set overrides, clear errors."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from trainer import load_model
from trainer.cli import main
from trainer.datasets import make_classification


def test_demo_trains_and_prints_one_line_per_epoch(capsys, tmp_path):
    out = tmp_path / "demo"
    assert main(["--demo", "--set", "epochs=2", "--set", f"output_path={json.dumps(str(out))}"]) == 0
    text = capsys.readouterr().out
    assert "Training mlp (classification" in text
    assert "epoch    1/2" in text and "epoch    2/2" in text
    assert "completed: finished all 2 epochs" in text and str(out) in text
    assert load_model(out).task == "classification"


@pytest.mark.parametrize("kind, expect", [("regression", "mae"), ("timeseries", "Training lstm")])
def test_other_demos(capsys, kind, expect):
    assert main(["--demo", kind, "--set", "epochs=1", "--set", "hidden_units=[8]"]) == 0
    assert expect in capsys.readouterr().out


def test_data_file_config_file_and_overrides(capsys, tmp_path):
    csv = tmp_path / "data.csv"
    make_classification(600, seed=3).to_csv(csv, index=False)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"target_column": "label", "epochs": 5, "hidden_units": [16],
                                  "output_path": str(tmp_path / "model")}))
    assert main(["--data", str(csv), "--config", str(config), "--set", "epochs=2",
                 "--set", "learning_rate_scheduler=cosine"]) == 0
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["epochs"] == 2 and saved["learning_rate_scheduler"] == "cosine" and saved["hidden_units"] == [16]
    assert "epoch    2/2" in capsys.readouterr().out


def test_data_path_may_come_from_the_config(capsys, tmp_path):
    csv = tmp_path / "data.csv"
    make_classification(300, seed=3).to_csv(csv, index=False)
    assert main(["--set", f"data_path={json.dumps(str(csv))}", "--set", "target_column=label", "--set", "epochs=1"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["--demo", "--set", "lerning_rate=0.1"], "did you mean 'learning_rate'"),
    (["--demo", "--set", "epochs=0"], "epochs"),
    (["--data", "/no/such/file.csv", "--set", "target_column=y"], "does not exist"),
    (["--demo", "--config", "{config}"], "not valid JSON"),
    (["--demo", "--config", "/no/such/config.json"], "cannot read config file"),
])
def test_bad_input_is_one_clear_line_and_exit_status_2(capsys, tmp_path, argv, message):
    bad = tmp_path / "bad.json"
    bad.write_text('{"epochs": 2,')
    argv = [a.replace("{config}", str(bad)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_column_in_a_data_file(capsys, tmp_path):
    csv = tmp_path / "data.csv"
    make_classification(100).to_csv(csv, index=False)
    assert main(["--data", str(csv), "--set", "target_column=lable"]) == 2
    assert "did you mean 'label'" in capsys.readouterr().err


def test_usage_errors_exit_through_argparse(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2 and "--demo" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--demo", "--set", "no_equals_sign"])


def test_a_failed_run_exits_1(capsys):
    assert main(["--demo", "regression", "--set", "epochs=2", "--set", "optimizer=\"sgd\"",
                 "--set", "learning_rate=10.0", "--set", "learning_rate_scheduler=none"]) == 1
    assert "failed:" in capsys.readouterr().out


@pytest.mark.slow
def test_module_entry_point_runs_in_a_fresh_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "trainer", "--demo", "--set", "epochs=1"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "completed: finished all 1 epochs" in proc.stdout


def test_resume_continues_a_checkpointed_run_and_refuses_other_settings(capsys, tmp_path):
    out = json.dumps(str(tmp_path / "run"))
    assert main(["--demo", "--set", "epochs=2", "--set", "hidden_units=[8]", "--set", f"output_path={out}"]) == 0
    capsys.readouterr()
    assert main(["--demo", "--resume", str(tmp_path / "run"), "--set", "epochs=4"]) == 0
    text = capsys.readouterr().out
    assert "epoch    1/4" not in text and "epoch    3/4" in text and "epoch    4/4" in text
    assert len(load_model(tmp_path / "run").history) == 4

    assert main(["--demo", "--resume", str(tmp_path / "run"), "--set", "epochs=6", "--set", "batch_size=8"]) == 2
    err = capsys.readouterr().err
    assert "batch_size" in err and "cannot change when resuming" in err


def test_a_new_run_into_another_runs_checkpoints_needs_overwrite(capsys, tmp_path):
    out = json.dumps(str(tmp_path / "demo"))
    assert main(["--demo", "--set", "epochs=1", "--set", f"output_path={out}"]) == 0
    assert main(["--demo", "--set", "epochs=2", "--set", f"output_path={out}"]) == 2
    assert "holds the checkpoints of another run (completed after epoch 1 of 1)" in capsys.readouterr().err
    assert main(["--demo", "--set", "epochs=2", "--set", f"output_path={out}", "--overwrite"]) == 0
    assert len(load_model(tmp_path / "demo").history) == 2


def test_a_run_without_checkpoints_is_not_replaced_without_overwrite(capsys, tmp_path):
    out = json.dumps(str(tmp_path / "nockpt"))
    assert main(["--demo", "--set", "epochs=1", "--set", "checkpoints=false", "--set", f"output_path={out}"]) == 0
    assert main(["--demo", "--set", "epochs=2", "--set", f"output_path={out}"]) == 2
    assert "holds the saved files of another run (completed after epoch 1 of 1" in capsys.readouterr().err
    assert len(load_model(tmp_path / "nockpt").history) == 1
    assert main(["--demo", "--set", "epochs=2", "--set", f"output_path={out}", "--overwrite"]) == 0
    assert len(load_model(tmp_path / "nockpt").history) == 2


def test_resume_finishes_a_run_killed_while_saving(capsys, tmp_path):
    out = tmp_path / "unsaved"
    assert main(["--demo", "--set", "epochs=2", "--set", f"output_path={json.dumps(str(out))}"]) == 0
    for name in ("metadata.json", "evaluation.json"):      # killed after the model file, before these
        (out / name).unlink()
    capsys.readouterr()
    assert main(["--demo", "--resume", str(out)]) == 0
    assert "completed: finished all 2 epochs" in capsys.readouterr().out
    assert len(load_model(out).history) == 2 and (out / "evaluation.json").is_file()
