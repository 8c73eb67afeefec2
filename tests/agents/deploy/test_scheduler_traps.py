"""Issue 22's scheduler traps: unsupported optimizers refused in one line; ``state_dict``
free of side effects and complete; the plot draws validation where it was passed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agents.deploy.scheduler import TuningScheduler
from hpo_env.errors import HpoRlError
from tests.agents.support.scheduler_fixtures import (
    MlpStandInPolicy,
    ReplayPolicy,
    one_torch_thread,  # noqa: F401  (autouse)
    regression_loss,
    small_model,
)


def _update(model, opt, sched, i: int, scale: float = 1.0) -> None:
    loss = regression_loss(model, i) * scale
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step(loss)  # a tensor: read at the decision, not now


def test_an_unsupported_optimizer_is_refused_in_one_line_naming_the_supported_ones():
    from agents.policy.tuning_policy import TuningPolicy

    model = small_model()
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0)
    lr_before = opt.param_groups[0]["lr"]
    with pytest.raises(HpoRlError) as caught:
        TuningPolicy.load("default").scheduler(opt, total_steps=100)
    message = str(caught.value)
    assert "\n" not in message and "LBFGS" in message
    for name in ("SGD", "Adam", "AdamW", "RMSprop"):
        assert f"torch.optim.{name}" in message
    assert opt.param_groups[0]["lr"] == lr_before  # refused before touching it


def test_state_dict_changes_nothing_even_with_a_pending_nan_loss():
    """Saving mid-interval, with a NaN tensor loss pending whose gradient has reached the
    weights: today's read-and-judge would roll the parameters back and cut the rate."""
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = TuningScheduler(ReplayPolicy(np.zeros((9, 2))), opt, total_steps=12, control_interval=4)
    _update(model, opt, sched, 0)
    _update(model, opt, sched, 1, scale=float("nan"))  # the weights are now NaN
    params = [p.detach().clone() for p in model.parameters()]
    lr, n_backoffs, n_rollbacks = sched.get_last_lr(), sched.n_backoffs, sched.n_rollbacks
    state = sched.state_dict()
    assert sched.get_last_lr() == lr
    assert (sched.n_backoffs, sched.n_rollbacks) == (n_backoffs, n_rollbacks) == (0, 0)
    for before, p in zip(params, model.parameters()):
        assert torch.equal(before.isnan(), p.detach().isnan())
    assert state["steps_done"] == 2 and math.isnan(state["pending_losses"][1])
    # The NaN is still judged at the decision, as without the checkpoint.
    with pytest.warns(UserWarning, match="went back"):
        for i in (2, 3):
            _update(model, opt, sched, i)
    assert sched.n_rollbacks == 1 and sched.n_backoffs == 1


def _histories(save_every_step: bool) -> list[dict]:
    model = small_model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = TuningScheduler(MlpStandInPolicy(seed=1), opt, total_steps=30, control_interval=4)
    for i in range(30):
        _update(model, opt, sched, i)
        if save_every_step:
            sched.state_dict()
    return [(h["step"], h["lrs"], repr(h["loss"])) for h in sched.history]


def test_saving_a_checkpoint_every_step_leaves_training_bit_identical():
    assert _histories(save_every_step=True) == _histories(save_every_step=False)


class _Run:
    def log(self, *args, **kwargs) -> None:
        pass


def test_state_dict_is_complete_and_round_trips():
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = TuningScheduler(
        ReplayPolicy(np.zeros((9, 2))), opt, total_steps=6, control_interval=4, nonfinite="skip"
    )
    _update(model, opt, sched, 0)
    with pytest.warns(UserWarning, match="update was skipped"):
        _update(model, opt, sched, 1, scale=float("nan"))
    sched.log.wandb_run = _Run()
    sched.log.last_logged_step = 50
    with pytest.warns(UserWarning, match="below the step already logged"):
        sched.log._log({"x": 1.0}, 10)
    with pytest.warns(UserWarning, match="more than total_steps"):
        for i in range(2, 8):
            _update(model, opt, sched, i)
    state = sched.state_dict()
    assert state["n_skipped"] == 1 and state["warned_nonfinite"]
    assert state["warned_overrun"] and state["warned_step_order"]

    model2 = small_model()
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.05)
    again = TuningScheduler(
        ReplayPolicy(np.zeros((9, 2))), opt2, total_steps=6, control_interval=4, nonfinite="skip"
    )
    again.load_state_dict(state)
    assert again.n_skipped == 1 and again.n_backoffs == sched.n_backoffs
    assert again.response.warned and again.log.warned_step_order and again._warned_overrun
    assert again.steps_done == sched.steps_done
    restored = again.state_dict()
    for key in ("n_skipped", "warned_nonfinite", "warned_overrun", "warned_step_order"):
        assert restored[key] == state[key]
    sched.close()
    again.close()


def test_plot_draws_a_validation_loss_at_the_step_it_was_passed(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from agents.deploy import schedule_plot

    drawn = {}

    def capture(fig, path, dpi=100):
        ax_loss = fig.axes[1]
        drawn["val"] = [line.get_xydata().tolist() for line in ax_loss.get_lines()][-1]

    monkeypatch.setattr(schedule_plot, "atomic_savefig", capture)
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = TuningScheduler(
        ReplayPolicy(np.zeros((20, 2))), opt, total_steps=200, control_interval=40
    )
    for i in range(1, 161):
        loss = regression_loss(model, i)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss.item(), val_loss=0.5 if i == 100 else None)
    sched.plot(tmp_path / "schedule.png")
    assert drawn["val"] == [[100.0, 0.5]]
