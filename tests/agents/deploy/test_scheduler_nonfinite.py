"""What a NaN/inf does to a deployed run, in each ``nonfinite`` mode: ``"rollback"``
(the default) returns to the last decision's parameters, ``"skip"`` drops the bad
update, ``"off"`` only cuts the learning rate."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from agents.deploy.scheduler import TuningScheduler
from tests.agents.support.scheduler_fixtures import (
    MlpStandInPolicy,
    ReplayPolicy,
    one_torch_thread,  # noqa: F401  (autouse)
    regression_loss,
    small_model,
)

INTERVAL = 4


def _update(model, opt, sched, i: int, scale: float = 1.0, as_tensor: bool = False) -> None:
    loss = regression_loss(model, i) * scale
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step(loss if as_tensor else loss.item())


def _snapshot(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _scheduler(opt, **kwargs) -> TuningScheduler:
    # A policy whose actions are zero: the learning rate moves only by back-offs.
    return TuningScheduler(
        ReplayPolicy(np.zeros((9, 2))), opt, total_steps=12, control_interval=INTERVAL, **kwargs
    )


@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, torch.optim.Adam], ids=["sgd", "adam"])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["float", "tensor"])
def test_rollback_returns_to_the_last_decision_and_training_goes_on(opt_cls, as_tensor):
    model = small_model()
    opt = opt_cls(
        model.parameters(), lr=0.05, **({"momentum": 0.9} if opt_cls is torch.optim.SGD else {})
    )
    sched = _scheduler(opt)
    for i in range(INTERVAL):  # one interval, then a decision
        _update(model, opt, sched, i, as_tensor=as_tensor)
    at_decision = _snapshot(model)
    lr = sched.get_last_lr()[0]
    _update(model, opt, sched, 4)
    _update(model, opt, sched, 5)
    with pytest.warns(UserWarning, match="went back to the last decision's"):
        _update(model, opt, sched, 6, scale=float("nan"), as_tensor=as_tensor)
        if as_tensor:  # a tensor loss is read at the decision
            assert not all(p.isfinite().all() for p in model.parameters())
            _update(model, opt, sched, 7, as_tensor=True)
    if not as_tensor:
        assert all(torch.equal(a, b) for a, b in zip(at_decision, model.parameters()))
        assert all(p not in opt.state for p in model.parameters())  # momenta start afresh
    assert all(p.isfinite().all() for p in model.parameters())
    assert sched.n_rollbacks == 1 and sched.n_backoffs == 1 and sched.n_skipped == 0
    assert opt.param_groups[0]["lr"] == pytest.approx(lr / 10, rel=1e-6)
    for i in range(sched.steps_done, 12):
        _update(model, opt, sched, i)
    assert all(p.isfinite().all() for p in model.parameters())
    assert len(sched.history) == 4 and math.isfinite(sched.history[-1]["loss"])


def test_rollback_catches_parameters_gone_non_finite_under_a_finite_loss():
    """A NaN gradient with a finite loss (the loss is reported as a number) is caught at
    the decision from the parameters' norm, which the tracker computes anyway."""
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = _scheduler(opt)
    start = _snapshot(model)
    for i in range(INTERVAL):
        loss = regression_loss(model, i)
        opt.zero_grad()
        loss.backward()
        if i == 2:
            model[0].weight.grad[0, 0] = float("inf")
        opt.step()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sched.step(loss.item())
    assert any("non-finite parameters" in str(w.message) for w in caught)
    assert all(torch.equal(a, b) for a, b in zip(start, model.parameters()))
    assert sched.n_rollbacks == 1 and sched.tracker.params_finite
    assert np.isfinite(sched.last_obs).all()


def test_rollback_survives_a_checkpoint():
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = _scheduler(opt)
    for i in range(INTERVAL + 1):
        _update(model, opt, sched, i)
    state = sched.state_dict()
    resumed = _scheduler(opt)
    resumed.load_state_dict(state)
    with pytest.warns(UserWarning, match="went back"):
        _update(model, opt, resumed, 5, scale=float("inf"))
    assert resumed.n_rollbacks == 1
    assert resumed.state_dict()["n_rollbacks"] == 1
    for i in range(6, 12):
        _update(model, opt, resumed, i)
    assert len(resumed.history) == 4  # decisions at 0, 4, 8, 12: the interval count survived


@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, torch.optim.Adam], ids=["sgd", "adam"])
def test_skip_drops_only_the_bad_update(opt_cls):
    model = small_model()
    opt = opt_cls(model.parameters(), lr=0.05)
    sched = _scheduler(opt, nonfinite="skip")
    for i in range(3):
        _update(model, opt, sched, i)
    before = _snapshot(model)
    lr = sched.get_last_lr()[0]
    with pytest.warns(UserWarning, match="non-finite gradient: the optimizer update was skipped"):
        _update(model, opt, sched, 3, scale=float("nan"))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert sched.n_skipped == 1 and sched.n_backoffs == 1 and sched.n_rollbacks == 0
    assert sched.history[-1]["lrs"][0] == pytest.approx(lr / 10, rel=1e-6)
    for i in range(4, 12):  # training goes on, finite
        _update(model, opt, sched, i)
    assert all(p.isfinite().all() for p in model.parameters())
    sched.close()
    assert not opt._optimizer_step_pre_hooks  # close detached the guard


def test_off_lets_a_nan_loss_reach_the_weights():
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = TuningScheduler(MlpStandInPolicy(), opt, 8, 4, nonfinite="off")
    with pytest.warns(UserWarning, match="non-finite training loss"):
        _update(model, opt, sched, 0, scale=float("nan"))
    assert not all(p.isfinite().all() for p in model.parameters())
    assert sched.n_rollbacks == 0 and sched.n_backoffs == 1


def test_nonfinite_is_checked_and_skip_nonfinite_is_its_deprecated_spelling():
    opt = torch.optim.SGD(small_model().parameters(), lr=0.05)
    with pytest.raises(ValueError, match=r"nonfinite must be one of \['rollback', 'skip', 'off'\]"):
        TuningScheduler(MlpStandInPolicy(), opt, 8, 4, nonfinite="ignore")
    with pytest.raises(ValueError, match="pass nonfinite= alone"):
        TuningScheduler(MlpStandInPolicy(), opt, 8, 4, nonfinite="skip", skip_nonfinite=True)
    for old, new in ((True, "skip"), (False, "off")):
        with pytest.warns(DeprecationWarning, match=f"pass nonfinite='{new}'"):
            sched = TuningScheduler(MlpStandInPolicy(), opt, 8, 4, skip_nonfinite=old)
        assert sched.nonfinite == new and (sched.guard is not None) == (new == "skip")
        sched.close()
    assert TuningScheduler(MlpStandInPolicy(), opt, 8, 4).nonfinite == "rollback"


def test_a_nan_tensor_loss_is_judged_once_when_read():
    """A tensor loss is judged when the decision reads it, once; `state_dict` reads the
    pending losses to save them but judges nothing (saving never changes training)."""
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = _scheduler(opt)
    start = _snapshot(model)
    sched.step(torch.tensor(1.0), val_loss=torch.tensor(0.5))
    sched.step(torch.tensor(float("nan")), val_loss=torch.tensor(0.25))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = sched.state_dict()
    assert state["interval_val"] == 0.25 and state["pending_losses"][0] == 1.0
    assert math.isnan(state["pending_losses"][1])
    assert sched.n_backoffs == 0 and sched.n_rollbacks == 0
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")  # now something has reached the weights
    sched.step(torch.tensor(float("inf")))
    with pytest.warns(UserWarning, match="went back"):
        sched.step(2.0)  # the decision reads the NaN and the inf: one event
    assert sched.n_rollbacks == 1 and sched.n_backoffs == 1 and len(sched.history) == 2
    assert all(torch.equal(a, b) for a, b in zip(start, model.parameters()))


def test_a_nan_loss_whose_update_was_skipped_rolls_nothing_back():
    """A ``torch.amp.GradScaler`` (here: no optimizer step at all) skips the update of
    a non-finite loss itself: the parameters are finite and stay where they are."""
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = _scheduler(opt)
    for i in range(INTERVAL + 2):
        _update(model, opt, sched, i)
    before = _snapshot(model)
    with pytest.warns(UserWarning, match="the parameters are still finite"):
        sched.step(float("nan"))
    assert sched.n_rollbacks == 0 and sched.n_backoffs == 1
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p in opt.state for p in model.parameters())  # momenta kept
