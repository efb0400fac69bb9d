"""Early stopping: the pure state machine on scripted val_loss sequences, then a real run."""
from __future__ import annotations

import pytest

from trainer import Trainer, TrainingState
from trainer.early_stopping import EarlyStopping


def replay(values: list[float], patience: int, min_delta: float, enabled: bool = True):
    """Feed epochs 1..n; return (per-epoch improved flags, the epoch it stopped at, the machine)."""
    es = EarlyStopping(patience=patience, min_delta=min_delta, enabled=enabled)
    flags = []
    for epoch, v in enumerate(values, start=1):
        improved, stop = es.update(epoch, v)
        flags.append(improved)
        if stop:
            return flags, epoch, es
    return flags, None, es


def test_stops_after_patience_epochs_without_improvement():
    # Best at epoch 3; epochs 4, 5, 6 do not improve: with patience 3 it stops after epoch 6.
    flags, stopped, es = replay([1.0, 0.8, 0.6, 0.7, 0.65, 0.61, 0.5], patience=3, min_delta=0.0)
    assert flags == [True, True, True, False, False, False]
    assert stopped == 6 and es.best_epoch == 3 and es.best == 0.6 and es.stopped_epoch == 6


def test_improvement_resets_the_count():
    seq = [1.0, 1.1, 1.2, 0.9, 1.0, 1.0, 1.0]
    flags, stopped, es = replay(seq, patience=3, min_delta=0.0)
    assert flags == [True, False, False, True, False, False, False]
    assert stopped == 7 and es.best_epoch == 4


def test_min_delta_is_strict():
    # Values chosen to be exact in binary: 1.0 - 0.25 == 0.75 exactly.
    flags, _, es = replay([1.0, 0.75, 0.7499, 0.5], patience=10, min_delta=0.25)
    # 0.75 equals best - min_delta: not an improvement; 0.7499 is below it; 0.5 is not below 0.4999.
    assert flags == [True, False, True, False]
    assert es.best == 0.7499 and es.best_epoch == 3


def test_equal_loss_never_improves_even_with_zero_min_delta():
    flags, stopped, _ = replay([0.5, 0.5, 0.5], patience=2, min_delta=0.0)
    assert flags == [True, False, False] and stopped == 3


def test_patience_one_stops_at_the_first_bad_epoch():
    assert replay([0.5, 0.4, 0.45, 0.1], patience=1, min_delta=0.0)[1] == 3


def test_disabled_tracks_the_best_but_never_stops():
    flags, stopped, es = replay([1.0, 2.0, 3.0, 4.0, 0.5], patience=1, min_delta=0.0, enabled=False)
    assert stopped is None and flags[-1] is True and es.best_epoch == 5


def test_state_round_trips():
    _, _, es = replay([1.0, 0.9, 0.95], patience=5, min_delta=0.01)
    copy = EarlyStopping(patience=5, min_delta=0.01)
    copy.load_state_dict(es.state_dict())
    assert copy.update(4, 0.85) == es.update(4, 0.85)
    assert copy.state_dict() == es.state_dict()


def test_reason_says_what_happened():
    _, _, es = replay([1.0, 1.0, 1.0], patience=2, min_delta=0.001)
    text = es.reason()
    assert "min_delta=0.001" in text and "2 epochs" in text and "epoch 1" in text


# ---------------------------------------------------------------------- in a real run

def test_a_run_stops_early_and_restores_the_best_weights(backend, base_config, clf_df, tmp_path):
    # min_delta larger than any loss: only the first epoch can improve, so the run stops after
    # 1 + patience epochs and ends with epoch 1's weights.
    cfg = base_config(epochs=20, early_stopping=True, early_stopping_patience=2, min_delta=100.0,
                      restore_best_weights=True, output_path=str(tmp_path / "out"))
    run = Trainer(cfg, clf_df).fit()
    assert run.state == TrainingState.EARLY_STOPPED
    assert [h["epoch"] for h in run.history] == [1, 2, 3]
    assert "early stopping" in run.reason and "val_loss" in run.reason
    assert run.best_metrics["epoch"] == 1
    assert run.best_metrics["loss"] == run.history[0]["val_loss"]
    # The model now holds epoch 1's weights: evaluating it gives epoch 1's validation loss.
    assert run.backend.evaluate()["val_loss"] == pytest.approx(run.history[0]["val_loss"], rel=1e-5)


def test_without_restore_the_last_weights_stay(backend, base_config, clf_df):
    cfg = base_config(epochs=20, early_stopping=True, early_stopping_patience=2, min_delta=100.0,
                      restore_best_weights=False)
    run = Trainer(cfg, clf_df).fit()
    assert run.state == TrainingState.EARLY_STOPPED
    assert run.backend.evaluate()["val_loss"] == pytest.approx(run.history[-1]["val_loss"], rel=1e-5)
