"""The torch backend's intra-op thread count: chosen per run by trials on copies, kept only where it
computes the same bits, applied inside the training slices only, and never chosen over the user's."""
from __future__ import annotations

import threading

import pytest

torch = pytest.importorskip("torch")

from trainer import Trainer  # noqa: E402
from trainer.backends import torch_threads  # noqa: E402
from trainer.backends.torch_threads import TrainThreads  # noqa: E402

CPU = torch.device("cpu")
needs_threads = pytest.mark.skipif(torch.get_num_threads() < 2, reason="torch runs one intra-op thread here")


@pytest.fixture
def backend() -> str:
    """Only the torch backend has these (the shared fixtures would run each test per backend)."""
    return "torch"


def comparable(history):
    return [{k: v for k, v in h.items() if k != "time_per_epoch"} for h in history]


def fresh_thread_count() -> int:
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    return seen[0]


@pytest.fixture
def tunable(monkeypatch):
    """This process's count counts as torch's default (no user choice), so runs try 1 thread."""
    for name in torch_threads.THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch_threads, "torch_default_threads", torch.get_num_threads)


def threads_with(candidates, base):
    t = TrainThreads(CPU)
    t.base, t.count, t.candidates = base, base, candidates
    return t


def fake_trial(seconds, tensors, calls):
    def trial(count):
        calls.append((count, torch.get_num_threads()))
        return seconds[count], tensors[count]
    return trial


# ---------------------------------------------------------------------- the decision

def test_the_faster_count_is_kept_when_it_computes_the_same_bits():
    before = torch.get_num_threads()
    same = [torch.arange(4.0)]
    calls = []
    t = threads_with((2, 1), base=before)
    t.choose(fake_trial({2: 0.004, 1: 0.002}, {2: same, 1: [torch.arange(4.0)]}, calls))
    assert t.decided and t.count == 1 and "timed per step (2: 4.00 ms, 1: 2.00 ms)" in t.how
    # Each count twice, in alternating order, each trial run at its own count.
    assert calls == [(2, 2), (1, 1), (1, 1), (2, 2)]
    assert torch.get_num_threads() == before


def test_a_count_that_computes_other_bits_is_never_kept_however_fast():
    t = threads_with((2, 1), base=torch.get_num_threads())
    t.choose(fake_trial({2: 0.004, 1: 0.001}, {2: [torch.tensor([1.0, 2.0])], 1: [torch.tensor([1.0, 2.0000002])]}, []))
    assert t.count == t.base and "1 thread(s) compute different bits" in t.how


def test_the_users_count_stays_when_the_other_is_not_clearly_faster_or_steps_are_large():
    same = {2: [torch.zeros(1)], 1: [torch.zeros(1)]}
    t = threads_with((2, 1), base=2)
    t.choose(fake_trial({2: 0.0040, 1: 0.0039}, same, []))        # within the noise margin
    assert t.count == 2
    calls = []
    t = threads_with((2, 1), base=2)
    t.choose(fake_trial({2: 0.5, 1: 0.001}, same, calls))          # big steps: threads pay, trials cost
    assert t.count == 2 and "large enough for 2 threads" in t.how and calls == [(2, 2)]


def test_a_pause_or_stop_during_the_trials_leaves_the_choice_for_later():
    calls = []
    t = threads_with((2, 1), base=torch.get_num_threads())
    t.choose(fake_trial({2: 0.004, 1: 0.001}, {2: [], 1: []}, calls), interrupted=lambda: len(calls) >= 1)
    assert not t.decided and t.count == t.base and calls == [(2, 2)]
    assert torch.get_num_threads() == t.base


def test_a_users_count_is_never_second_guessed(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    t = TrainThreads(CPU)
    assert t.decided and t.count == torch.get_num_threads() and t.how.startswith("set by the user")
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(torch_threads, "torch_default_threads", lambda: torch.get_num_threads() + 1)
    assert TrainThreads(CPU).decided                  # set_num_threads moved it off torch's default
    assert TrainThreads(torch.device("meta")).decided  # not the CPU: nothing to choose


# ---------------------------------------------------------------------- in a run

@needs_threads
def test_a_run_trains_with_its_count_and_leaves_the_callers_count_alone(tunable, monkeypatch, base_config, clf_df):
    monkeypatch.setattr(TrainThreads, "choose", lambda self, trial, interrupted: self.keep(1, "chosen by the test"))
    seen: dict[bool, set] = {True: set(), False: set()}

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

        def forward(self, x):
            seen[self.training].add(torch.get_num_threads())
            return self.net(x)

    before, fresh_before = torch.get_num_threads(), fresh_thread_count()
    run = Trainer(base_config(epochs=2), clf_df, model=Spy()).fit()
    assert run.state.value == "completed" and run.backend.train_threads == 1
    assert seen[True] == {1}                 # training slices, in worker threads
    assert seen[False] == {before}           # validation keeps the user's count
    assert torch.get_num_threads() == before and fresh_thread_count() == fresh_before


@needs_threads
def test_choosing_the_count_changes_nothing_in_the_results(tunable, monkeypatch, base_config, clf_df, reg_df):
    for df, cfg in ((clf_df, base_config(epochs=3)),
                    (reg_df, base_config(epochs=3, target_column="target", batch_size=16))):
        tuned = Trainer(cfg, df).fit()
        assert tuned.backend.threads.decided and "timed per step" in tuned.backend.threads.how
        with monkeypatch.context() as m:
            m.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))     # pinned: no trials at all
            pinned = Trainer(cfg, df).fit()
        assert pinned.backend.threads.how.startswith("set by the user")
        assert comparable(tuned.history) == comparable(pinned.history)
        assert all(torch.equal(a, b) for a, b in zip(tuned.backend.model.state_dict().values(),
                                                     pinned.backend.model.state_dict().values()))


@needs_threads
def test_a_model_that_cannot_be_copied_trains_with_the_users_count(tunable, base_config, clf_df):
    class Locked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lock = threading.Lock()          # deepcopy cannot copy a lock
            self.net = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.net(x)

    run = Trainer(base_config(epochs=1), clf_df, model=Locked()).fit()
    assert run.state.value == "completed" and run.backend.train_threads == torch.get_num_threads()
    assert "no trial possible (TypeError" in run.backend.threads.how
