"""The same config behaves the same on PyTorch and TensorFlow: the learning rates the optimiser
really uses, early stopping and plateau decisions on a scripted val_loss sequence, restoring the
best weights, comparable accuracy, mixed precision; and a missing TensorFlow is named, not fatal."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from trainer import Callback, Trainer, TrainingState, preview_schedule
from trainer.devices import device_report, format_device_report

REPO = Path(__file__).resolve().parents[2]


def optimizer_lr(run: Trainer) -> float:
    """The learning rate the backend's optimiser will apply, read from the framework itself."""
    if run.config.backend == "torch":
        return run.backend.optimizer.param_groups[0]["lr"]
    return float(run.backend.optimizer.learning_rate.numpy())


class LearningRates(Callback):
    def __init__(self):
        self.applied: list[float] = []

    def on_epoch_begin(self, run, data):
        self.applied.append(optimizer_lr(run))


@pytest.mark.parametrize("schedule", [
    {"learning_rate_scheduler": "step", "step_size": 2, "gamma": 0.5},
    {"learning_rate_scheduler": "cosine", "T_max": 4, "eta_min": 0.0005},
], ids=["step", "cosine"])
def test_schedules_set_the_same_rates_in_each_backends_optimizer(backend, base_config, clf_df, schedule):
    cfg = base_config(epochs=6, learning_rate=0.01, **schedule)
    lrs = LearningRates()
    run = Trainer(cfg, clf_df, callbacks=[lrs]).fit()
    expected = preview_schedule(run.config)
    assert [h["learning_rate"] for h in run.history] == expected       # the same for every backend
    assert lrs.applied == pytest.approx(expected, rel=1e-6)           # TensorFlow keeps it in float32


SCRIPTED_VAL_LOSS = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.5, 0.4]


def test_scripted_val_losses_stop_reduce_and_restore_identically(backend, base_config, clf_df):
    # early stopping patience 4, min_delta 0.01: epoch 2 is the last improvement, so epochs 3-6
    # make wait reach 4 and the run stops after epoch 6 (epochs 7-8 never run).
    # plateau patience 1: epochs 3 and 4 are bad, the second one exceeds patience, so epoch 5 on
    # trains at half the rate.
    cfg = base_config(epochs=8, learning_rate=0.01, learning_rate_scheduler="plateau", patience=1, factor=0.5,
                      early_stopping=True, early_stopping_patience=4, min_delta=0.01, restore_best_weights=True)
    run = Trainer(cfg, clf_df)
    x = run.data.x[run.data.val_index]
    script = iter(SCRIPTED_VAL_LOSS)
    # Real training, scripted validation: the decisions under test depend only on val_loss.
    run.backend.evaluate = lambda: {"val_loss": next(script), "val_accuracy": 0.5}
    outputs_after: dict[int, np.ndarray] = {}
    run.add_callback(lambda event, data: outputs_after.__setitem__(data["metrics"]["epoch"], run.backend.predict_outputs(x))
                     if event == "epoch_end" else None)
    lrs = LearningRates()
    run.add_callback(lrs)
    run.fit()

    assert run.state == TrainingState.EARLY_STOPPED and run.current_epoch == 6
    assert run.best_metrics == {"loss": 0.9, "accuracy": 0.5, "epoch": 2}
    assert [h["learning_rate"] for h in run.history] == [0.01, 0.01, 0.01, 0.01, 0.005, 0.005]
    assert lrs.applied == pytest.approx([0.01, 0.01, 0.01, 0.01, 0.005, 0.005], rel=1e-6)
    # The weights at the end are epoch 2's, not epoch 6's.
    np.testing.assert_array_equal(run.backend.predict_outputs(x), outputs_after[2])
    assert not np.array_equal(outputs_after[2], outputs_after[6])


@pytest.mark.tensorflow
@pytest.mark.parametrize("backend", ["tensorflow"], ids=["torch-vs-tensorflow"])   # one test trains both
@pytest.mark.parametrize("model_type", ["mlp", "gru"])
def test_both_backends_learn_the_same_problem_about_equally_well(base_config, clf_df, seq_df, model_type):
    if model_type == "mlp":
        extra, df = {"epochs": 8}, clf_df
    else:
        extra, df = {"feature_columns": ["x", "noise"], "sequence_length": 6, "hidden_units": [16],
                     "dropout_rate": 0.0, "learning_rate": 0.01, "epochs": 6}, seq_df
    final = {}
    for name in ("torch", "tensorflow"):
        run = Trainer(base_config(model_type=model_type, **{**extra, "backend": name}), df).fit()
        assert run.state == TrainingState.COMPLETED, run.reason
        final[name] = run.history[-1]["val_accuracy"]
    assert min(final.values()) > 0.8, final
    assert abs(final["torch"] - final["tensorflow"]) < 0.06, final


def test_mixed_precision_trains_on_each_backend(backend, base_config, clf_df):
    run = Trainer(base_config(epochs=6, mixed_precision=True), clf_df)
    if backend == "torch":
        import torch
        dtypes = set()
        run.backend.model.register_forward_hook(lambda module, args, out: dtypes.add(out.dtype))
    run.fit()
    assert run.state == TrainingState.COMPLETED, run.reason
    assert run.history[-1]["val_accuracy"] > 0.85
    if backend == "torch":
        assert dtypes == {torch.bfloat16}          # autocast on the CPU computes in bfloat16
    else:
        assert run.backend.model.layers[1].compute_dtype == "float16"


# ---------------------------------------------------------------------- installation

MISSING_TENSORFLOW = textwrap.dedent("""
    import json, sys
    sys.modules["tensorflow"] = None            # as if tensorflow were not installed
    import trainer.devices
    frameworks_at_import = sorted(m for m in ("torch", "tensorflow", "keras") if sys.modules.get(m) is not None)
    from trainer import Trainer, available_backends, datasets
    from trainer.backends import BackendUnavailable
    df = datasets.make_classification(300)
    try:
        Trainer({"backend": "tensorflow", "target_column": "label", "epochs": 1}, df)
        message = None
    except BackendUnavailable as exc:
        message = str(exc)
    run = Trainer({"backend": "torch", "target_column": "label", "epochs": 1, "seed": 0}, df).fit()
    print(json.dumps({"message": message, "available": available_backends(), "torch_run": run.state.value,
                      "report": trainer.devices.device_report()["tensorflow"],
                      "frameworks_at_import": frameworks_at_import}))
""")


@pytest.mark.slow
def test_a_missing_tensorflow_names_the_package_and_torch_keeps_working(tmp_path):
    pytest.importorskip("torch")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", MISSING_TENSORFLOW], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "needs tensorflow, which is not installed" in result["message"]
    assert "pip install" in result["message"] and "tensorflow-cpu" in result["message"]
    assert result["available"] == {"torch": True, "tensorflow": False}
    assert result["torch_run"] == "completed"
    assert result["report"]["installed"] is False and "tensorflow-cpu" in result["report"]["install"]
    assert result["frameworks_at_import"] == []          # trainer.devices imports no framework


@pytest.mark.tensorflow
def test_device_report_lists_each_backends_gpus_and_mixed_precision():
    torch = pytest.importorskip("torch")
    report = device_report()
    assert set(report) == {"torch", "tensorflow"}
    assert report["torch"]["version"] == torch.__version__
    assert report["torch"]["gpus"] == [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    for info in report.values():
        assert info["installed"] and isinstance(info["gpus"], list) and info["mixed_precision"]
        if not info["gpus"]:
            assert info["notes"]                   # says why no GPU is visible
    lines = format_device_report(report).splitlines()
    assert lines[0].startswith(f"torch {torch.__version__}: ") and lines[1].startswith("tensorflow ")
