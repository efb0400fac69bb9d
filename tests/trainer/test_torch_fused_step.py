"""``FusedAdamStep`` is ``optimizer.step()``: the same bits, step after step, through learning-rate
changes, reloaded state and parameters left without a gradient."""
from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from trainer.backends.torch_fused_step import FusedAdamStep  # noqa: E402


def pair(cls, **kwargs):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    twin = copy.deepcopy(model)
    return (model, cls(model.parameters(), lr=1e-2, fused=True, **kwargs)), \
           (twin, cls(twin.parameters(), lr=1e-2, fused=True, **kwargs))


def train_step(model, step, x, y, skip_last_layer=False):
    for p in model.parameters():
        p.grad = None
    out = model[:-1](x).sum(1, keepdim=True).expand(-1, 3) if skip_last_layer else model(x)
    torch.nn.functional.cross_entropy(out, y).backward()
    step()


def same(opt_a, opt_b) -> bool:
    """Equal parameters and equal optimiser state, bit for bit."""
    params = [p for g in opt_a.param_groups for p in g["params"]], [p for g in opt_b.param_groups for p in g["params"]]
    sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    return all(torch.equal(x, y) for x, y in zip(*params)) and sa.keys() == sb.keys() and \
        all(torch.equal(sa[k][n], sb[k][n]) for k in sa for n in sa[k])


@pytest.mark.parametrize("cls, kwargs", [(torch.optim.Adam, {}), (torch.optim.AdamW, {"weight_decay": 0.05}),
                                         (torch.optim.Adam, {"weight_decay": 0.01, "betas": (0.8, 0.99)})])
def test_the_shortcut_computes_what_optimizer_step_computes(cls, kwargs):
    (m1, o1), (m2, o2) = pair(cls, **kwargs)
    fast = FusedAdamStep(o2)
    assert fast.kernel is not None
    through_step = []
    real_step = o2.step
    o2.step = lambda: (through_step.append(1), real_step())
    gen = torch.Generator().manual_seed(1)
    for i in range(12):
        x, y = torch.randn(32, 6, generator=gen), torch.randint(0, 3, (32,), generator=gen)
        if i == 4:                                      # the schedule changes the rate between steps
            o1.param_groups[0]["lr"] = o2.param_groups[0]["lr"] = 3e-3
        if i == 7:                                      # a checkpoint is loaded: new state tensors
            saved = copy.deepcopy(o1.state_dict())
            o1.load_state_dict(saved)
            o2.load_state_dict(copy.deepcopy(saved))
        skip = i == 9                                   # a parameter without a gradient this step
        train_step(m1, o1.step, x, y, skip)
        train_step(m2, fast, x, y, skip)
        assert same(o1, o2), f"differs after step {i + 1}"
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))
    # Only the first step, the one after loading and the one with a missing gradient took step().
    assert len(through_step) == 3


def test_what_it_does_not_cover_goes_through_optimizer_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    assert FusedAdamStep(torch.optim.Adam(model.parameters(), lr=1e-3)).kernel is None          # not fused
    assert FusedAdamStep(torch.optim.Adam(model.parameters(), lr=1e-3, fused=True, amsgrad=True)).kernel is None
    assert FusedAdamStep(torch.optim.SGD(model.parameters(), lr=1e-3)).kernel is None
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    calls = []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(1))
    fast = FusedAdamStep(opt)
    for _ in range(3):
        model(torch.ones(1, 3)).sum().backward()
        fast()
    assert calls == [1, 1, 1]                           # hooks run: every step went through step()
