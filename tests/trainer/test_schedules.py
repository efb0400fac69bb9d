"""Learning-rate schedules match torch.optim.lr_scheduler epoch by epoch, and the history records
the rate each epoch actually used."""
from __future__ import annotations

import numpy as np
import pytest

from trainer import Trainer, TrainingConfig, preview_schedule
from trainer.schedules import LRSchedule

torch = pytest.importorskip("torch")


def torch_rates(make_scheduler, epochs: int, base_lr: float, val_losses=None) -> list[float]:
    """The rate torch uses in each epoch, stepping its scheduler after each epoch as documented."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    sched = make_scheduler(opt)
    rates = []
    for e in range(epochs):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step(val_losses[e]) if val_losses is not None else sched.step()
    return rates


def our_rates(config: TrainingConfig, epochs: int, val_losses=None) -> list[float]:
    schedule = LRSchedule(config)
    rates = []
    for e in range(epochs):
        rates.append(schedule.lr(e))
        if val_losses is not None:
            schedule.observe(val_losses[e])
    return rates


@pytest.mark.parametrize("step_size, gamma, lr", [(30, 0.1, 1e-3), (3, 0.5, 0.01), (1, 0.9, 0.2), (7, 1.0, 0.05)])
def test_step_matches_torch_steplr(step_size, gamma, lr):
    cfg = TrainingConfig(learning_rate_scheduler="step", step_size=step_size, gamma=gamma, learning_rate=lr)
    ref = torch_rates(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=step_size, gamma=gamma), 100, lr)
    np.testing.assert_allclose(our_rates(cfg, 100), ref, rtol=1e-10)


@pytest.mark.parametrize("T_max, eta_min, lr", [(100, 1e-4, 1e-3), (10, 0.0, 0.1), (7, 1e-3, 0.01), (1, 1e-5, 1e-3)])
def test_cosine_matches_torch_cosineannealinglr(T_max, eta_min, lr):
    cfg = TrainingConfig(learning_rate_scheduler="cosine", T_max=T_max, eta_min=eta_min, learning_rate=lr)
    epochs = 3 * T_max + 5       # past T_max the rate rises again, in torch as here
    ref = torch_rates(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=T_max, eta_min=eta_min), epochs, lr)
    np.testing.assert_allclose(our_rates(cfg, epochs), ref, rtol=1e-9, atol=1e-15)


def plateau_sequence() -> list[float]:
    """Val losses with long plateaus, improvements just above and just below ReduceLROnPlateau's
    relative threshold (1e-4), and noise."""
    rng = np.random.default_rng(0)
    seq = [1.0, 0.9, 0.8]
    seq += [0.8] * 4                                  # flat
    seq += [0.8 * (1 - 0.5e-4)] * 2                   # improves by less than the threshold
    seq += [0.8 * (1 - 2e-4)]                         # improves by more than the threshold
    seq += list(0.7 + 0.05 * rng.random(25))          # noisy
    seq += list(np.linspace(0.6, 0.3, 10))            # steady improvement
    seq += [0.3] * 12
    return [float(v) for v in seq]


@pytest.mark.parametrize("patience, factor", [(5, 0.5), (0, 0.5), (2, 0.1), (3, 0.9)])
def test_plateau_matches_torch_reducelronplateau(patience, factor):
    losses = plateau_sequence()
    cfg = TrainingConfig(learning_rate_scheduler="plateau", patience=patience, factor=factor, learning_rate=0.01)
    ref = torch_rates(lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, mode="min", patience=patience, factor=factor),
                      len(losses), 0.01, losses)
    ours = our_rates(cfg, len(losses), losses)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    assert len(set(ref)) > 2        # the sequence really exercises reductions


def test_plateau_stops_reducing_below_eps():
    # ReduceLROnPlateau ignores reductions smaller than eps=1e-8.
    losses = [1.0] * 60
    cfg = TrainingConfig(learning_rate_scheduler="plateau", patience=0, factor=0.5, learning_rate=1e-6)
    ref = torch_rates(lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=0, factor=0.5), 60, 1e-6, losses)
    np.testing.assert_allclose(our_rates(cfg, 60, losses), ref, rtol=1e-12)


def test_none_is_constant():
    assert set(our_rates(TrainingConfig(learning_rate_scheduler="none", learning_rate=0.3), 20)) == {0.3}


def test_preview_before_training():
    step = TrainingConfig(learning_rate_scheduler="step", step_size=2, gamma=0.5, learning_rate=1.0, epochs=5)
    assert preview_schedule(step) == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert len(preview_schedule(step, epochs=12)) == 12
    cos = TrainingConfig(learning_rate_scheduler="cosine", T_max=4, eta_min=0.0, learning_rate=1.0, epochs=5)
    assert preview_schedule(cos) == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466, 0.0])
    plateau = TrainingConfig(learning_rate_scheduler="plateau", learning_rate=0.1, epochs=4)
    assert preview_schedule(plateau) == [0.1] * 4


def test_preview_of_a_running_plateau_schedule_starts_from_the_base_rate():
    schedule = LRSchedule(TrainingConfig(learning_rate_scheduler="plateau", patience=0, learning_rate=0.1))
    for v in (1.0, 1.0, 1.0):
        schedule.observe(v)
    assert schedule.lr(3) < 0.1 and schedule.preview(3) == [0.1] * 3


def test_plateau_state_round_trips():
    cfg = TrainingConfig(learning_rate_scheduler="plateau", patience=1, learning_rate=0.1)
    a = LRSchedule(cfg)
    for v in (1.0, 0.9, 0.95, 0.95):
        a.observe(v)
    b = LRSchedule(cfg)
    b.load_state_dict(a.state_dict())
    for v in (0.97, 0.96, 0.99):
        a.observe(v)
        b.observe(v)
        assert a.lr(0) == b.lr(0)


# ---------------------------------------------------------------------- in a real run

@pytest.mark.parametrize("kind, params", [("step", {"step_size": 2, "gamma": 0.5}),
                                          ("cosine", {"T_max": 3, "eta_min": 1e-4})])
def test_history_records_the_rate_used_in_each_epoch(backend, base_config, clf_df, kind, params):
    cfg = base_config(epochs=5, learning_rate_scheduler=kind, learning_rate=0.01, **params)
    run = Trainer(cfg, clf_df)
    seen: dict[int, set[float]] = {}
    if backend == "torch":
        # The optimiser's own rate while that epoch's batches run.
        def record(event, data):
            if event == "batch_end":
                seen.setdefault(data["epoch"], set()).add(run.backend.optimizer.param_groups[0]["lr"])
        run.add_callback(record)
    run.fit()
    expected = preview_schedule(TrainingConfig(**cfg))
    assert [h["learning_rate"] for h in run.history] == pytest.approx(expected, rel=1e-12)
    assert len(set(expected)) > 1
    for h in run.history if seen else ():
        assert seen[h["epoch"]] == {h["learning_rate"]}


def test_plateau_history_matches_torch_driven_by_the_same_val_losses(backend, base_config, clf_df):
    # patience 0 and a high rate make reductions likely; the comparison holds either way.
    cfg = base_config(epochs=8, learning_rate_scheduler="plateau", patience=0, factor=0.5, learning_rate=0.05)
    run = Trainer(cfg, clf_df).fit()
    losses = [h["val_loss"] for h in run.history]
    ref = torch_rates(lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=0, factor=0.5), 8, 0.05, losses)
    assert [h["learning_rate"] for h in run.history] == pytest.approx(ref, rel=1e-12)
