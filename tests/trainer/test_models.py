"""Every model type learns a learnable synthetic problem clearly better than chance."""
from __future__ import annotations

import numpy as np
import pytest

from trainer import ConfigError, Trainer, TrainingState

SEQUENCE = {"feature_columns": ["x", "noise"], "sequence_length": 6, "hidden_units": [16],
            "dropout_rate": 0.0, "learning_rate": 0.01, "epochs": 6}


def baseline_mae(values) -> float:
    """MAE of always predicting the mean: what a model that learned nothing scores."""
    values = np.asarray(values, dtype=float)
    return float(np.abs(values - values.mean()).mean())


def test_mlp_classification(backend, base_config, clf_df):
    run = Trainer(base_config(epochs=8), clf_df).fit()
    assert run.state == TrainingState.COMPLETED
    assert run.history[-1]["val_accuracy"] > 0.85          # chance: ~0.5
    assert run.history[-1]["train_loss"] < run.history[0]["train_loss"]


def test_mlp_multiclass_with_string_labels(backend, base_config):
    from trainer.datasets import make_classification
    df = make_classification(1500, classes=4, seed=5)
    df["label"] = df["label"].map({0: "north", 1: "east", 2: "south", 3: "west"})
    run = Trainer(base_config(epochs=8), df).fit()
    assert run.history[-1]["val_accuracy"] > 0.6           # chance: ~0.25


def test_mlp_regression(backend, base_config, reg_df):
    run = Trainer(base_config(epochs=8, target_column="target"), reg_df).fit()
    last = run.history[-1]
    assert "val_accuracy" not in last and "train_accuracy" not in last
    assert last["val_mae"] < 0.25 * baseline_mae(reg_df["target"])


@pytest.mark.parametrize("model_type", ["cnn", "lstm", "gru"])
def test_sequence_model_classification_needs_the_window(backend, base_config, seq_df, model_type):
    # The label is the sign of x three rows back: no single row predicts it (an mlp stays at
    # chance, checked below), a window of 6 rows does.
    run = Trainer(base_config(model_type=model_type, **SEQUENCE), seq_df).fit()
    assert run.state == TrainingState.COMPLETED
    assert run.history[-1]["val_accuracy"] > 0.75          # chance: ~0.5


@pytest.mark.parametrize("model_type", ["cnn", "lstm", "gru"])
def test_sequence_model_regression(backend, base_config, seq_df, model_type):
    run = Trainer(base_config(model_type=model_type, target_column="y", **SEQUENCE), seq_df).fit()
    assert run.history[-1]["val_mae"] < 0.5 * baseline_mae(seq_df["y"])


def test_a_row_model_cannot_solve_the_window_task(backend, base_config, seq_df):
    # Control for the two tests above: the task really needs the window.
    run = Trainer(base_config(model_type="mlp", **SEQUENCE), seq_df).fit()
    assert run.history[-1]["val_accuracy"] < 0.62


# ---------------------------------------------------------------------- a user's own torch module

@pytest.fixture
def torch_only(backend):
    if backend != "torch":
        pytest.skip("a torch.nn.Module is for the torch backend")
    return pytest.importorskip("torch")


def test_own_torch_module_on_rows(torch_only, base_config, clf_df):
    nn = torch_only.nn
    model = nn.Sequential(nn.Linear(4, 24), nn.Tanh(), nn.Linear(24, 2))
    run = Trainer(base_config(epochs=8), clf_df, model=model).fit()
    assert run.backend.model is model                       # trained in place, not replaced
    assert run.history[-1]["val_accuracy"] > 0.85


def test_own_torch_module_on_windows(torch_only, base_config, seq_df):
    nn = torch_only.nn

    class LastSteps(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(6 * 2, 16), nn.ReLU(), nn.Linear(16, 2))

        def forward(self, x):                               # x: (batch, time, features)
            return self.net(x)

    run = Trainer(base_config(model_type="lstm", **SEQUENCE), seq_df, model=LastSteps()).fit()
    assert run.history[-1]["val_accuracy"] > 0.75


def test_own_module_with_the_wrong_output_width_is_refused(torch_only, base_config, clf_df):
    with pytest.raises(ConfigError) as info:
        Trainer(base_config(), clf_df, model=torch_only.nn.Linear(4, 3))
    err = info.value.errors[0]
    assert err["field"] == "model" and "(batch, 2)" in err["message"] and "(2, 3)" in err["message"]


def test_own_module_that_cannot_take_the_input_is_refused(torch_only, base_config, clf_df):
    with pytest.raises(ConfigError) as info:
        Trainer(base_config(), clf_df, model=torch_only.nn.Linear(7, 2))
    assert "shape (2, 4)" in info.value.errors[0]["message"]


def test_a_model_that_is_not_a_module_is_refused(torch_only, base_config, clf_df):
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        Trainer(base_config(), clf_df, model=lambda x: x)
