"""`observe(loss)` + argument-free `step()`: the loops that step a scheduler themselves
(`ChainedScheduler`, `SequentialLR`, frameworks) get the decisions `step(loss)` makes."""

from __future__ import annotations

import pytest
import torch
from torch.optim.lr_scheduler import ChainedScheduler, LinearLR, SequentialLR

from agents.deploy.scheduler import TuningScheduler
from tests.agents.support.scheduler_fixtures import (
    MlpStandInPolicy,
    one_torch_thread,  # noqa: F401  (autouse)
    regression_loss,
    small_model,
)

N_STEPS, INTERVAL = 24, 4


def _rates_used(opt) -> list[float]:
    """The learning rate of every ``optimizer.step()``, as the update read it."""
    used: list[float] = []
    opt.register_step_pre_hook(lambda o, args, kwargs: used.append(o.param_groups[0]["lr"]))
    return used


def _train(feed: str, n_steps: int = N_STEPS):
    """``feed``: "step" = step(loss); "before" = observe(loss), then step();
    "after" = step(), then observe(loss.item()) (the HF Trainer's order and type);
    "after_tensor" = step(), then observe(loss) (Lightning's: the batch's loss tensor)."""
    model = small_model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    used = _rates_used(opt)
    sched = TuningScheduler(
        MlpStandInPolicy(seed=3), opt, total_steps=n_steps, control_interval=INTERVAL
    )
    for i in range(n_steps):
        loss = regression_loss(model, i)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if feed == "step":
            sched.step(loss, val_loss=0.5 if i == 9 else None)
        elif feed == "before":
            sched.observe(loss, val_loss=0.5 if i == 9 else None)
            sched.step()
        else:
            sched.step()
            observed = loss if feed == "after_tensor" else loss.item()
            sched.observe(observed, val_loss=0.5 if i == 9 else None)
    return sched, used


def _decisions(sched) -> list:
    return [(h["step"], h["lrs"], repr(h["loss"])) for h in sched.history]


@pytest.mark.parametrize("feed", ["before", "after", "after_tensor"])
def test_observe_then_step_makes_the_decisions_step_loss_makes(feed):
    reference, used_reference = _train("step")
    sched, used = _train(feed)
    assert _decisions(sched) == _decisions(reference)
    assert used == used_reference  # the rates the optimizer actually used
    assert len(sched.history) == 1 + N_STEPS // INTERVAL
    assert [h["val_step"] for h in sched.history if h["val_step"] is not None] == [10]


def test_chained_scheduler_steps_it_unmodified():
    reference, used_reference = _train("step")
    model = small_model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    used = _rates_used(opt)
    sched = TuningScheduler(
        MlpStandInPolicy(seed=3), opt, total_steps=N_STEPS, control_interval=INTERVAL
    )
    chained = ChainedScheduler([sched])
    for i in range(N_STEPS):
        loss = regression_loss(model, i)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.observe(loss, val_loss=0.5 if i == 9 else None)
        chained.step()
    assert used == used_reference and _decisions(sched) == _decisions(reference)
    assert chained.get_last_lr() == sched.get_last_lr()


def test_sequential_lr_warms_up_then_hands_over():
    warmup = 5
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    used = _rates_used(opt)
    sched = TuningScheduler(
        MlpStandInPolicy(seed=3), opt, total_steps=N_STEPS, control_interval=INTERVAL
    )
    decided_first = sched.get_last_lr()[0]
    ramp = LinearLR(opt, start_factor=0.1, total_iters=warmup)
    sequence = SequentialLR(opt, [ramp, sched], milestones=[warmup])
    for i in range(warmup + N_STEPS):
        loss = regression_loss(model, i)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.observe(loss)
        sequence.step()
    assert used[0] == pytest.approx(0.005)  # the ramp's start
    assert used[:warmup] == sorted(used[:warmup])  # rising
    assert used[warmup] == decided_first  # the policy's first decision, at the milestone
    assert sched.steps_done == N_STEPS  # it counts only its own updates
    assert len(sched.history) == 1 + sched.steps_done // INTERVAL
    decided = {h["step"]: h["lrs"][0] for h in sched.history}
    for step, lr in decided.items():  # every decision reached the optimizer
        if warmup + step < len(used):
            assert used[warmup + step] == lr


def test_step_without_any_loss_for_a_whole_interval_names_the_fix():
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = TuningScheduler(MlpStandInPolicy(), opt, total_steps=20, control_interval=INTERVAL)
    for _ in range(INTERVAL):
        sched.step()  # losses may come later (observe)
    with pytest.raises(TypeError, match=r"observe\(loss\)"):
        sched.step()
    with pytest.raises(TypeError, match="needs loss=, val_loss= or both"):
        sched.observe()
