"""The torch backend's CUDA-graph path (``cuda_graphs=True``): refused with a reason where it cannot
work, and on a GPU a run that learns and repeats itself. The GPU tests skip without one."""
from __future__ import annotations

import pytest

from trainer import ConfigError, Trainer, TrainingConfig

torch = pytest.importorskip("torch")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def backend() -> str:
    """Only the torch backend has these (the shared fixtures would run each test per backend)."""
    return "torch"


@pytest.mark.parametrize("changes, words", [
    ({"backend": "tensorflow"}, "CUDA graphs are a PyTorch option"),
    ({"devices": 2}, "CUDA graphs train on one device, and devices is 2"),
    ({"devices": "auto"}, "devices is 'auto'; set devices=1"),
])
def test_cuda_graphs_are_refused_where_they_do_not_apply(changes, words):
    with pytest.raises(ConfigError) as info:
        TrainingConfig(target_column="label", cuda_graphs=True, **changes)
    assert info.value.errors[0]["field"] == "cuda_graphs" and words in info.value.errors[0]["message"]
    assert TrainingConfig(target_column="label", cuda_graphs=True, devices=[0]).cuda_graphs


def test_cuda_graphs_on_the_cpu_are_refused_naming_the_fix(base_config, clf_df):
    with pytest.raises(ConfigError) as info:
        Trainer(base_config(device="cpu", cuda_graphs=True), clf_df)
    err = info.value.errors[0]
    assert err["field"] == "cuda_graphs"
    assert "this run trains on cpu; set device='cuda'" in err["message"] and "cuda_graphs=False" in err["message"]


@needs_gpu
@pytest.mark.slow
def test_cuda_graphs_train_learn_and_repeat_a_seeded_run(base_config, clf_df, tmp_path):
    from trainer import TrainedModel, load_model
    cfg = base_config(device="cuda", cuda_graphs=True, epochs=6, batch_size=64)
    first = Trainer({**cfg, "output_path": str(tmp_path / "run")}, clf_df).fit()
    assert first.state.value == "completed", first.reason
    assert first.history[-1]["val_accuracy"] > 0.8
    again = Trainer(cfg, clf_df).fit()
    strip = lambda h: [{k: v for k, v in e.items() if k != "time_per_epoch"} for e in h]  # noqa: E731
    assert strip(again.history) == strip(first.history)
    # The weights the graphs trained are the model's own: saved and loaded, it predicts the same.
    assert (load_model(tmp_path / "run").predict(clf_df) == TrainedModel.from_run(first).predict(clf_df)).all()


@needs_gpu
@pytest.mark.slow
def test_cuda_graphs_with_a_short_last_batch_and_mixed_precision(base_config, clf_df):
    run = Trainer(base_config(device="cuda", cuda_graphs=True, mixed_precision=True,
                              epochs=3, batch_size=100), clf_df).fit()     # 960 rows: last batch of 60
    assert run.state.value == "completed", run.reason
    assert all(h["train_loss"] == h["train_loss"] for h in run.history)   # finite, not NaN
