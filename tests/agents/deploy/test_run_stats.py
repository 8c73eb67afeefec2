"""`StatsTracker` computes `StepStats` exactly per hpo_env/stats.py from a plain torch loop."""

from __future__ import annotations

import math
import random
import struct

import numpy as np
import pytest
import torch

from agents.deploy.run_stats import StatsTracker, _mean_std
from tests.agents.support.scheduler_fixtures import one_torch_thread  # noqa: F401  (autouse)


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def _batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(i)
    return torch.randn(16, 4, generator=g), torch.randn(16, 2, generator=g)


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def test_stats_follow_the_contract():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
    tracker = StatsTracker(opt)
    k = 5
    prev_grad = None
    for interval in range(3):
        theta_start = _flat(model.parameters()).clone()
        losses = []
        for i in range(k):
            x, y = _batch(interval * k + i)
            loss = (model(x) - y).square().mean()
            opt.zero_grad()
            loss.backward()
            grad = _flat(p.grad for p in model.parameters()).clone()
            opt.step()
            losses.append(loss.item())
            tracker.record(loss.item())
        stats = tracker.end_interval({"learning_rate": 0.05}, progress=(interval + 1) / 3)
        t = torch.tensor(losses)
        assert stats.n_updates == k
        assert stats.train_loss.item() == pytest.approx(t.mean().item(), rel=1e-6)
        assert stats.train_loss_std.item() == pytest.approx(t.std(correction=0).item(), rel=1e-5)
        assert stats.train_loss_first.item() == losses[0]
        # The objective's gradient at the last update (weight decay is not in .grad).
        assert stats.grad_norm.item() == pytest.approx(grad.norm().item(), rel=1e-6)
        expected_cos = (
            0.0
            if prev_grad is None
            else torch.nn.functional.cosine_similarity(grad, prev_grad, dim=0).item()
        )
        assert stats.grad_cosine.item() == pytest.approx(expected_cos, abs=1e-6)
        theta_end = _flat(model.parameters())
        ratio = (theta_end - theta_start).norm() / (theta_start.norm() + 1e-12)
        assert stats.update_ratio.item() == pytest.approx(ratio.item(), rel=1e-5)
        assert stats.progress.item() == pytest.approx((interval + 1) / 3)
        assert math.isnan(stats.val_loss.item())
        assert stats.hparams["learning_rate"].item() == pytest.approx(0.05)
        prev_grad = grad


def test_single_update_interval_has_zero_std_and_val_is_kept():
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tracker = StatsTracker(model.parameters())
    x, y = _batch(0)
    loss = (model(x) - y).square().mean()
    loss.backward()
    opt.step()
    tracker.record(loss.item())
    stats = tracker.end_interval({}, progress=0.1, val_loss=0.7)
    assert stats.train_loss_std.item() == 0.0
    assert stats.val_loss.item() == pytest.approx(0.7)


def test_frozen_parameters_are_skipped_and_missing_grads_count_as_zero():
    model = _model()
    model[0].weight.requires_grad_(False)
    tracker = StatsTracker(
        [{"params": [model[0].weight, model[0].bias]}, {"params": model[2].parameters()}]
    )
    assert sum(p.numel() for p in tracker.params) == 8 + 8 * 2 + 2
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, y = _batch(1)
    loss = model[2](x.new_ones(16, 8)).sub(y).square().mean()  # model[0].bias gets no grad
    loss.backward()
    opt.step()
    tracker.record(loss.item())
    stats = tracker.end_interval({}, progress=0.5)
    expected = torch.cat([model[2].weight.grad.reshape(-1), model[2].bias.grad]).norm()
    assert stats.grad_norm.item() == pytest.approx(expected.item(), rel=1e-6)


def test_no_trainable_parameters_and_empty_interval_are_errors():
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        StatsTracker(frozen.parameters())
    tracker = StatsTracker(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(RuntimeError, match="record"):
        tracker.end_interval({}, progress=0.0)
    with pytest.raises(TypeError, match="tensors"):
        StatsTracker([1.0])


def test_state_dict_resumes_mid_interval():
    def run(split: int | None):
        model = _model(3)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        tracker = StatsTracker(opt)
        out = []
        for i in range(9):
            if i == split:
                state = {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "tracker": tracker.state_dict(),
                }
                model = _model(99)
                model.load_state_dict(state["model"])
                opt = torch.optim.SGD(model.parameters(), lr=0.05)
                opt.load_state_dict(state["opt"])
                tracker = StatsTracker(opt)
                tracker.load_state_dict(state["tracker"])
            x, y = _batch(i)
            loss = (model(x) - y).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tracker.record(loss.item())
            if (i + 1) % 3 == 0:
                s = tracker.end_interval({}, progress=(i + 1) / 9)
                out.append(
                    [
                        s.train_loss.item(),
                        s.grad_norm.item(),
                        s.grad_cosine.item(),
                        s.update_ratio.item(),
                    ]
                )
        return out

    assert run(split=4) == run(split=None)
    tracker = StatsTracker(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match="same model"):
        tracker.load_state_dict(StatsTracker(torch.nn.Linear(3, 3).parameters()).state_dict())


def test_float64_and_mixed_dtype_parameters_are_flattened_as_float32():
    """One ``cat`` promotes mixed dtypes exactly; the statistics are float32's."""
    model = _model(5)
    model[2].double()  # one float64 layer beside float32 ones
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tracker = StatsTracker(opt)
    x, y = _batch(0)
    loss = (model[2](model[1](model[0](x)).double()) - y.double()).square().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    tracker.record(loss.item())
    run = tracker.end_interval_run({"learning_rate": 0.05}, progress=0.5)
    grad = torch.cat([p.grad.reshape(-1).float() for p in model.parameters()])
    assert run.grad_norm == pytest.approx(grad.norm().item(), rel=1e-6)
    assert tracker.theta_start.dtype == torch.float32
    assert run.hparams == {"learning_rate": 0.05} and run.n_updates == 1


def test_mean_std_is_numpys_bit_for_bit():
    """The interval's loss mean and std in plain Python equal ``np.mean`` / ``np.std``
    in every bit, on lengths around the pairwise sum's block sizes and on NaN/inf."""
    rng = random.Random(0)

    def same(a: float, b: float) -> bool:
        return struct.pack("d", a) == struct.pack("d", b) or (math.isnan(a) and math.isnan(b))

    for trial in range(3000):
        n = rng.choice([1, 2, 7, 8, 9, 15, 16, 17, 60, 127, 128, 129, 136, 255, 257, 1000])
        values = [rng.uniform(-1, 1) * 10 ** rng.uniform(-8, 8) for _ in range(n)]
        if trial % 7 == 0:
            values[rng.randrange(n)] = rng.choice([math.nan, math.inf, -math.inf, -0.0, 1e308])
        mean, std = _mean_std(values)
        array = np.array(values)
        with np.errstate(all="ignore"):
            assert same(mean, float(np.mean(array))), (n, values)
            assert same(std, float(np.std(array))), (n, values)
