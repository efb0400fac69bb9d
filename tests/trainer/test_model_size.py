"""The size estimate: exact parameter counts for every built-in model on both backends, the memory
estimate, and the refusal of a model whose training cannot fit, before anything is built."""
from __future__ import annotations

import itertools
import json
import os
import resource

import pytest

from trainer import ConfigError, Trainer, TrainingConfig
from trainer.available_memory import Budget, cgroup_available, ram_available
from trainer.data import prepare_data
from trainer.memory_fit import Placement, check_fits, placements, refusal, too_big
from trainer.model_size import DataShape, ModelSpec, count_parameters, estimate_memory

# Several shapes per model type: one or three layers, with and without dropout, regression
# (one output) and three classes, few and many features.
ARCHITECTURES = [
    {"hidden_units": [16, 8], "dropout_rate": 0.2, "n_features": 4, "n_outputs": 3},
    {"hidden_units": [7], "dropout_rate": 0.0, "n_features": 13, "n_outputs": 1},
    {"hidden_units": [3, 5, 9], "dropout_rate": 0.5, "n_features": 1, "n_outputs": 2},
]
CASES = list(itertools.product(["mlp", "cnn", "lstm", "gru"], range(len(ARCHITECTURES))))


def case(model_type: str, index: int, backend: str) -> tuple[TrainingConfig, DataShape, dict]:
    arch = ARCHITECTURES[index]
    window = None if model_type == "mlp" else 6
    config = TrainingConfig(model_type=model_type, hidden_units=arch["hidden_units"], backend=backend,
                            dropout_rate=arch["dropout_rate"], sequence_length=6, device="cpu")
    shape = DataShape(arch["n_features"], arch["n_outputs"], window)
    spec = {"model_type": model_type, "n_features": arch["n_features"], "n_outputs": arch["n_outputs"],
            "hidden_units": arch["hidden_units"], "dropout_rate": arch["dropout_rate"], "sequence_length": window}
    return config, shape, spec


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024     # kB on Linux


@pytest.mark.parametrize("model_type,index", CASES)
def test_the_parameter_count_is_torchs_own(model_type, index):
    from trainer.backends.torch_models import build_model

    config, shape, spec = case(model_type, index, "torch")
    model = build_model(spec)
    assert count_parameters(config, shape) == sum(p.numel() for p in model.parameters())


@pytest.mark.tensorflow
@pytest.mark.parametrize("model_type,index", CASES)
def test_the_parameter_count_is_keras_own(model_type, index):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    pytest.importorskip("tensorflow")
    from trainer.backends.tf_models import build_model

    config, shape, spec = case(model_type, index, "tensorflow")
    assert count_parameters(config, shape) == build_model(spec, seed=0).count_params()


def test_the_lstm_counts_differ_between_backends_as_the_frameworks_do():
    # torch's LSTM keeps two biases per gate, Keras's one: 4 * units more parameters per layer.
    shape = DataShape(5, 2, 6)
    torch_count = count_parameters(TrainingConfig(model_type="lstm", hidden_units=[16, 8]), shape)
    keras_count = count_parameters(TrainingConfig(model_type="lstm", hidden_units=[16, 8], backend="tensorflow"), shape)
    assert torch_count - keras_count == 4 * (16 + 8)


def test_the_estimate_adds_weights_gradients_optimizer_state_and_activations():
    shape = DataShape(10, 2, None, n_rows=10_000, n_train=9990, n_val=10)
    adam = estimate_memory(ModelSpec.of(TrainingConfig(hidden_units=[512, 512])), shape)
    sgd = estimate_memory(ModelSpec.of(TrainingConfig(hidden_units=[512, 512], optimizer="sgd")), shape)
    n = adam.parameters
    assert adam.weights == adam.gradients == 4 * n
    assert adam.optimizer == 2 * 4 * n and sgd.optimizer == 4 * n          # Adam: two moments; SGD: momentum
    assert adam.total - sgd.total == 4 * n
    big_batch = estimate_memory(ModelSpec.of(TrainingConfig(hidden_units=[512, 512], batch_size=4096)), shape)
    assert big_batch.activations == 128 * adam.activations                 # grows with the batch
    many_val = estimate_memory(ModelSpec.of(TrainingConfig(hidden_units=[512, 512])), DataShape(10, 2, None, 10_000, 2000, 8000))
    assert many_val.evaluation and many_val.activations > adam.activations     # evaluation's chunk of samples
    assert json.loads(json.dumps(adam.to_dict()))["bytes"]["total"] == adam.total


def test_a_batch_never_holds_more_than_the_training_split():
    shape = DataShape(10, 2, None, n_rows=100, n_train=80, n_val=20)
    huge = estimate_memory(ModelSpec.of(TrainingConfig(batch_size=1_000_000)), shape)
    assert huge.batch_size == 80


def test_a_model_too_big_for_memory_is_refused_before_it_is_built(clf_df):
    before = peak_rss()
    with pytest.raises(ConfigError) as info:
        Trainer({"target_column": "label", "hidden_units": [65536] * 16, "device": "cpu"}, clf_df)
    # Building it would allocate 240 GiB of weights (one layer alone is 16 GiB).
    assert peak_rss() - before < 512 * 2**20
    fields = {e["field"] for e in info.value.errors}
    assert fields == {"hidden_units"}
    message = info.value.errors[0]["message"]
    assert "64,425,951,234 parameters" in message
    assert "GiB" in message and "available" in message and "Use fewer or narrower hidden layers" in message


@pytest.mark.tensorflow
def test_a_keras_model_too_big_for_memory_is_refused_before_it_is_built(clf_df):
    pytest.importorskip("tensorflow")
    before = peak_rss()
    with pytest.raises(ConfigError) as info:
        Trainer({"target_column": "label", "hidden_units": [65536] * 16, "device": "cpu",
                 "backend": "tensorflow"}, clf_df)
    assert peak_rss() - before < 512 * 2**20
    assert info.value.errors[0]["field"] == "hidden_units"


def test_a_moderately_big_model_fits_a_small_machine(clf_df):
    # 50 million parameters: about 1.2 GiB to train, which a laptop with 4 GiB free has.
    cfg = TrainingConfig(target_column="label", hidden_units=[4096] * 4, device="cpu", seed=0)
    (place,) = placements(cfg)
    estimate = place.need(ModelSpec.of(cfg), DataShape.of(prepare_data(cfg, clf_df)))
    assert estimate.parameters == 50_372_610
    assert 0.7 * 2**30 < estimate.total < 2 * 2**30


@pytest.mark.slow
def test_a_moderately_big_model_trains(clf_df):
    available = ram_available()
    if available is not None and available.bytes < 3 * 2**30:
        pytest.skip(f"this machine has {available.bytes / 2**30:.1f} GiB free now; the 1.2 GiB run is refused, rightly")
    run = Trainer({"target_column": "label", "hidden_units": [4096] * 4, "device": "cpu", "seed": 0,
                   "epochs": 1, "batch_size": 256}, clf_df.head(300)).fit()
    assert run.state.value == "completed"


def test_a_small_model_is_never_refused_even_on_a_full_machine():
    cfg = TrainingConfig(hidden_units=[64, 32])
    shape = DataShape(8, 2, None, n_rows=1000, n_train=800, n_val=200)
    need = Placement("RAM", "on the CPU").need(ModelSpec.of(cfg), shape)
    assert not too_big(need, Budget("RAM", 1, "a full machine"))
    big = Placement("RAM", "on the CPU").need(ModelSpec.of(cfg.replace(hidden_units=[4096] * 4)), shape)
    assert too_big(big, Budget("RAM", 2**30, "1 GiB")) and not too_big(big, Budget("RAM", 2 * 2**30, "2 GiB"))


def test_a_users_own_model_is_not_estimated(clf_df):
    cfg = TrainingConfig(target_column="label", hidden_units=[65536] * 16, device="cpu")
    assert check_fits(cfg, prepare_data(cfg, clf_df), model=object()) is None


def test_activations_that_dominate_name_batch_size_and_sequence_length_with_fixes_that_fit():
    cfg = TrainingConfig(model_type="lstm", hidden_units=[256], batch_size=8192, sequence_length=400)
    shape = DataShape(8, 2, 400, n_rows=100_000, n_train=80_000, n_val=200)
    place = Placement("RAM", "on the CPU")
    need = place.need(ModelSpec.of(cfg), shape)
    budget = Budget("RAM", 4 * 2**30, "a 4 GiB machine")
    assert need.total > budget.bytes and need.activations > need.model_state
    errors = refusal(cfg, shape, place, need, budget)
    by_field = {e["field"]: e["message"] for e in errors}
    assert set(by_field) == {"hidden_units", "batch_size", "sequence_length"}
    assert "a 4 GiB machine" in by_field["hidden_units"]
    suggested = int(by_field["batch_size"].split("batch_size=")[1].split()[0])
    assert suggested < cfg.batch_size
    smaller = place.need(ModelSpec.of(cfg.replace(batch_size=suggested)), shape)
    assert smaller.total <= budget.bytes


def test_weights_that_dominate_name_hidden_units_only():
    cfg = TrainingConfig(hidden_units=[16384] * 8)
    shape = DataShape(8, 2, None, n_rows=1000, n_train=800, n_val=200)
    place = Placement("RAM", "on the CPU")
    errors = refusal(cfg, shape, place, place.need(ModelSpec.of(cfg), shape), Budget("RAM", 8 * 2**30, "test"))
    assert [e["field"] for e in errors] == ["hidden_units"]
    assert "hidden_units=[4096] * 8" in errors[0]["message"] or "hidden_units=[2048] * 8" in errors[0]["message"]


def test_several_cpu_processes_each_hold_a_copy(clf_df):
    cfg = TrainingConfig(target_column="label", hidden_units=[256, 256], device="cpu", devices=2, batch_size=64)
    shape = DataShape.of(prepare_data(cfg, clf_df))
    (multi,) = placements(cfg)
    (single,) = placements(cfg.replace(devices=1))
    two, one = multi.need(ModelSpec.of(cfg), shape), single.need(ModelSpec.of(cfg), shape)
    assert two.replicas == 2 and two.batch_size == 32
    # Two processes' model state and the kernel's copy of the weights.
    assert two.model_state == 2 * one.model_state + one.weights


def test_ram_available_is_positive_and_at_most_the_machines():
    budget = ram_available()
    assert budget is not None and budget.where == "RAM"
    with open("/proc/meminfo") as f:
        total = int(next(line for line in f if line.startswith("MemTotal:")).split()[1]) * 1024
    assert 0 < budget.bytes <= total


def test_a_cgroup_v2_limit_caps_the_available_memory(tmp_path):
    group = tmp_path / "fs" / "user.slice" / "job"
    group.mkdir(parents=True)
    (tmp_path / "fs" / "memory.max").write_text("max\n")
    (group / "memory.max").write_text(str(4 * 2**30))
    (group / "memory.current").write_text(str(3 * 2**30))
    (group / "memory.stat").write_text(f"anon 123\ninactive_file {2**30}\n")   # reclaimable cache
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice/job\n")
    left, source = cgroup_available(str(proc), str(tmp_path / "fs"))
    assert left == 2 * 2**30 and "4.0 GiB" in source


def test_a_cgroup_v1_limit_caps_the_available_memory_and_no_limit_is_none(tmp_path):
    memory = tmp_path / "fs" / "memory" / "job"
    memory.mkdir(parents=True)
    (memory / "memory.limit_in_bytes").write_text(str(2 * 2**30))
    (memory / "memory.usage_in_bytes").write_text(str(2**29))
    (memory / "memory.stat").write_text("total_inactive_file 0\n")
    (tmp_path / "fs" / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712")
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/job\n0::/\n")
    assert cgroup_available(str(proc), str(tmp_path / "fs"))[0] == 2 * 2**30 - 2**29
    (memory / "memory.limit_in_bytes").write_text("9223372036854771712")
    assert cgroup_available(str(proc), str(tmp_path / "fs")) is None


def test_weights_built_in_ram_before_moving_to_a_gpu_are_refused_in_ram_terms():
    cfg = TrainingConfig(hidden_units=[65536] * 16)
    shape = DataShape(8, 2, None, n_rows=1000, n_train=800, n_val=200)
    place = Placement("RAM", "to build the model before moving it to the GPU", weights_only=True)
    need = place.need(ModelSpec.of(cfg), shape)
    assert need.gradients == need.optimizer == need.activations == 0 and need.weights == 4 * need.parameters
    (error,) = refusal(cfg, shape, place, need, Budget("RAM", 16 * 2**30, "test"))
    assert "the RAM needs about" in error["message"] and "before moving it to the GPU" in error["message"]


@pytest.mark.parametrize("visible, index, expected", [
    (None, 1, "1"), ("2,3", 1, "3"), ("GPU-8f2a,GPU-77c1", 0, "GPU-8f2a"), ("0", 1, None), ("MIG-abc", 0, None)])
def test_cuda_visible_devices_map_to_the_gpus_nvidia_smi_knows(monkeypatch, visible, index, expected):
    from trainer.available_memory import _visible_to_physical

    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert _visible_to_physical(index) == expected
