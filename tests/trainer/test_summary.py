"""The model summary: layers, output shapes and parameter counts from the frameworks themselves
(torchinfo, Keras), for the built-in models and a user's own, before a run exists
(``model_summary``, the panel's Model tab) and from a run (``run.summary()``)."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trainer import ConfigError, Trainer, TrainingConfig
from trainer.data import prepare_data
from trainer.model_size import DataShape, count_parameters
from trainer.summary import LAYER_COLUMNS, ModelSummary, model_summary, parameter_count

REPO = Path(__file__).resolve().parents[2]
MODEL_TYPES = ["mlp", "cnn", "lstm", "gru"]


def config(backend: str, model_type: str, **overrides):
    cfg = {"backend": backend, "model_type": model_type, "hidden_units": [16, 8], "dropout_rate": 0.1,
           "sequence_length": 6, "device": "cpu", "seed": 0, "epochs": 2, "batch_size": 32}
    if model_type == "mlp":
        cfg.update(target_column="label")
    else:
        cfg.update(target_column="label", feature_columns=["x", "noise"])
    cfg.update(overrides)
    return cfg


def data_for(model_type, clf_df, seq_df):
    return clf_df if model_type == "mlp" else seq_df


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def check_table(summary: ModelSummary) -> None:
    assert list(summary.layers.columns) == LAYER_COLUMNS
    assert summary.layers["parameters"].sum() == summary.total_parameters
    assert summary.layers["trainable_parameters"].sum() == summary.trainable_parameters
    json.dumps(summary.to_dict())           # JSON-safe
    assert f"{summary.total_parameters:,}" in repr(summary)
    assert "<table" in summary._repr_html_() and f"{summary.total_parameters:,}" in summary._repr_html_()


# ---------------------------------------------------------------------- torch

@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_a_config_summary_counts_what_torch_counts(model_type, clf_df, seq_df):
    from trainer.backends.torch_models import build_model

    df = data_for(model_type, clf_df, seq_df)
    cfg = config("torch", model_type)
    summary = model_summary(cfg, df)
    prepared = prepare_data(TrainingConfig(**cfg), df)
    shape = DataShape.of(prepared)
    built = build_model({"model_type": model_type, "n_features": shape.n_features, "n_outputs": shape.n_outputs,
                         "hidden_units": [16, 8], "dropout_rate": 0.1, "sequence_length": shape.window})
    assert summary.total_parameters == sum(p.numel() for p in built.parameters())
    assert summary.trainable_parameters == summary.total_parameters
    assert summary.model_type == model_type and summary.backend == "torch" and summary.built
    assert summary.layers["output_shape"].iloc[-1] == (None, 2)
    assert summary.memory is not None and summary.memory.parameters == summary.total_parameters
    assert summary.fits is True and summary.errors == [] and summary.problem is None
    assert "Total params" in summary.text                      # torchinfo's own summary
    check_table(summary)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_a_runs_summary_counts_the_model_it_holds(model_type, clf_df, seq_df):
    run = Trainer(config("torch", model_type), data_for(model_type, clf_df, seq_df))
    summary = run.summary()
    assert summary.total_parameters == sum(p.numel() for p in run.backend.model.parameters())
    assert summary.total_parameters == parameter_count(run.backend.model)
    assert next(run.backend.model.parameters()).device.type == "cpu"     # not moved to the meta device
    check_table(summary)


def test_the_layer_table_names_and_shapes_the_torch_layers(seq_df):
    summary = Trainer(config("torch", "lstm"), seq_df).summary()
    rows = summary.layers.set_index("name")
    assert rows.loc["layers.0", "type"] == "LSTM" and rows.loc["layers.0", "output_shape"] == (None, 6, 16)
    assert rows.loc["head", "type"] == "Linear" and rows.loc["head", "parameters"] == 8 * 2 + 2


class FrozenEncoderNet:
    """Built lazily so importing this test module needs no torch."""

    @staticmethod
    def make():
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
                self.head = nn.Linear(8, 2)
                self.scale = nn.Parameter(torch.ones(2))      # a parameter of the model itself
                self.encoder[0].requires_grad_(False)

            def forward(self, x):
                return self.head(self.encoder(x)) * self.scale

        return Net()


def test_a_users_torch_module_is_summarised_with_its_frozen_layers(clf_df):
    net = FrozenEncoderNet.make()
    run = Trainer(config("torch", "mlp"), clf_df, model=net)
    for summary in (run.summary(), model_summary(config("torch", "mlp"), clf_df, model=net)):
        assert summary.model_type == "custom" and summary.model_class == "Net"
        assert summary.total_parameters == 4 * 8 + 8 + 8 * 2 + 2 + 2 == sum(p.numel() for p in net.parameters())
        assert summary.trainable_parameters == 8 * 2 + 2 + 2
        rows = summary.layers.set_index("name")
        assert rows.loc["encoder.0", "parameters"] == 40 and rows.loc["encoder.0", "trainable_parameters"] == 0
        assert rows.loc["encoder.0", "output_shape"] == (None, 8)
        assert rows.loc["head", "parameters"] == 18
        assert "frozen" in summary._repr_html_()
        assert summary.memory is not None and summary.memory.trainable_parameters == 20
        check_table(summary)


def test_summarising_while_training_changes_nothing(clf_df):
    # Summaries taken at every epoch of a seeded run leave it exactly as one without them.
    quiet = Trainer(config("torch", "mlp", epochs=3), clf_df).fit()
    run = Trainer(config("torch", "mlp", epochs=3), clf_df)
    taken = []
    run.add_callback(lambda event, data: taken.append(run.summary().total_parameters)
                     if event in ("epoch_begin", "epoch_end") else None)
    run.fit()
    assert len(taken) == 6 and len(set(taken)) == 1
    strip = lambda h: [{k: v for k, v in e.items() if k != "time_per_epoch"} for e in h]  # noqa: E731
    assert strip(run.history) == strip(quiet.history)


def test_a_config_too_big_to_train_is_summarised_without_building_it(clf_df):
    before = peak_rss()
    summary = model_summary(config("torch", "mlp", hidden_units=[65536] * 16), clf_df)
    assert peak_rss() - before < 512 * 2**20
    assert summary.fits is False and [e["field"] for e in summary.errors] == ["hidden_units"]
    assert "parameters" in summary.problem and "GiB" in summary.problem
    assert summary.built          # a torch model on the meta device has shapes but no memory
    shape = DataShape.of(prepare_data(TrainingConfig(**config("torch", "mlp")), clf_df))
    assert summary.total_parameters == count_parameters(
        TrainingConfig(**config("torch", "mlp", hidden_units=[65536] * 16)), shape)
    assert json.loads(json.dumps(summary.to_dict()))["fits"] is False
    assert "hidden_units" in summary._repr_html_()


@pytest.mark.slow
def test_a_torch_summary_does_not_import_tensorflow():
    code = textwrap.dedent("""
        import sys
        from trainer.datasets import make_classification
        from trainer.summary import model_summary
        s = model_summary({"target_column": "label", "device": "auto"}, make_classification(200))
        assert s.total_parameters > 0
        print("tensorflow" in sys.modules, "keras" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------- tensorflow

@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    pytest.importorskip("tensorflow")
    import trainer.backends.tf_backend  # noqa: F401
    return pytest.importorskip("keras")


@pytest.mark.tensorflow
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_keras_summaries_count_what_keras_counts(keras, model_type, clf_df, seq_df):
    df = data_for(model_type, clf_df, seq_df)
    summary = model_summary(config("tensorflow", model_type), df)
    run = Trainer(config("tensorflow", model_type), df)
    from_run = run.summary()
    assert summary.total_parameters == from_run.total_parameters == run.backend.model.count_params()
    assert summary.backend == "tensorflow" and summary.built and "Total params" in summary.text
    assert summary.layers["output_shape"].iloc[-1] == (None, 2)
    check_table(summary)
    check_table(from_run)


@pytest.mark.tensorflow
def test_a_users_keras_models_are_summarised(keras, clf_df):
    inputs = keras.Input((4,))
    frozen = keras.layers.Dense(8, activation="tanh", name="encoder")
    frozen.trainable = False
    outputs = keras.layers.Dense(2, name="out")(frozen(inputs))
    functional = keras.Model(inputs, outputs)

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(5)
            self.out = keras.layers.Dense(2)

        def call(self, x):
            return self.out(self.hidden(x))

    sub = Sub()
    sub(keras.ops.zeros((1, 4)))
    cfg = config("tensorflow", "mlp")
    summary = Trainer(cfg, clf_df, model=functional).summary()
    assert summary.model_type == "custom"
    assert summary.total_parameters == functional.count_params() == 4 * 8 + 8 + 8 * 2 + 2
    assert summary.trainable_parameters == 8 * 2 + 2
    rows = summary.layers.set_index("name")
    assert rows.loc["encoder", "trainable_parameters"] == 0 and rows.loc["encoder", "output_shape"] == (None, 8)
    check_table(summary)
    sub_summary = model_summary(cfg, clf_df, model=sub)
    assert sub_summary.total_parameters == sub.count_params() == 4 * 5 + 5 + 5 * 2 + 2
    assert sub_summary.layers["parameters"].tolist() == [25, 12]
    check_table(sub_summary)


@pytest.mark.tensorflow
def test_a_keras_config_too_big_to_build_is_summarised_from_the_config(keras, clf_df):
    before = peak_rss()
    summary = model_summary(config("tensorflow", "mlp", hidden_units=[65536] * 16), clf_df)
    assert peak_rss() - before < 512 * 2**20
    assert summary.fits is False and not summary.built
    assert summary.layers["type"].tolist().count("Dense") == 17
    check_table(summary)


def test_a_model_of_the_other_framework_is_refused_naming_the_field(clf_df):
    with pytest.raises(ConfigError) as info:
        model_summary(config("torch", "mlp"), clf_df, model=object())
    assert info.value.errors[0]["field"] == "model" and "torch.nn.Module" in info.value.errors[0]["message"]


def test_a_tiny_mlps_training_memory_is_estimated_near_its_real_peak(clf_df):
    # A 2,466-parameter MLP adds 8 to 14 MiB to a process that has imported torch; the summary
    # used to say about 0.3 GiB, almost all of it the framework's import, which is spent already.
    from trainer.memory_fit import placements, too_big
    from trainer.model_size import ModelSpec

    cfg = TrainingConfig(target_column="label", hidden_units=[64, 32], device="cpu")
    summary = model_summary(cfg, clf_df)
    assert summary.total_parameters == 2_466
    assert 4 * 2**20 < summary.memory.total < 32 * 2**20 and summary.fits
    assert "framework 16 MiB" in summary.memory.breakdown()
    # The refusal still counts a fresh process's framework memory.
    (place,) = placements(cfg)
    need = place.need(ModelSpec.of(cfg), DataShape.of(prepare_data(cfg, clf_df)))
    assert need.overhead == 256 * 2**20
    big = TrainingConfig(target_column="label", hidden_units=[65536] * 16, device="cpu")
    assert model_summary(big, clf_df).errors and not model_summary(big, clf_df).fits
