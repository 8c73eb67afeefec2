"""`TuningScheduler` where torch (and Lightning) expect a scheduler; input checks;
tensor losses read once per decision; wandb steps; the plot (non-finite losses:
test_scheduler_nonfinite.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.optim.lr_scheduler import LRScheduler

from agents.deploy.scheduler import TuningScheduler
from tests.agents.support.scheduler_fixtures import (
    MlpStandInPolicy,
    one_torch_thread,  # noqa: F401  (autouse)
    regression_loss,
    small_model,
)


def _run(sched_kwargs=None, n_steps=12, as_tensor=False, opt_cls=torch.optim.SGD):
    model = small_model()
    opt = opt_cls(model.parameters(), lr=0.05)
    sched = TuningScheduler(
        MlpStandInPolicy(), opt, total_steps=n_steps, control_interval=4, **(sched_kwargs or {})
    )
    for i in range(n_steps):
        loss = regression_loss(model, i)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(loss if as_tensor else loss.item())
    return sched, model, opt


def test_is_a_torch_lr_scheduler_and_fits_a_generic_loop(tmp_path):
    sched, _, opt = _run()
    assert isinstance(sched, LRScheduler)
    assert sched.optimizer is opt
    assert sched.base_lrs == [0.05] and opt.param_groups[0]["initial_lr"] == 0.05
    assert sched.last_epoch == 12 == sched.steps_done
    assert sched.get_last_lr() == [opt.param_groups[0]["lr"]] == sched.get_lr()

    # A loop written against torch's interface only (what trainers do with any scheduler).
    def checkpoint(s: LRScheduler) -> dict:
        assert isinstance(s, LRScheduler)
        return {"sched": s.state_dict(), "lr": s.get_last_lr(), "epoch": s.last_epoch}

    torch.save(checkpoint(sched), tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    again = TuningScheduler(MlpStandInPolicy(), opt, total_steps=12, control_interval=4)
    again.load_state_dict(state["sched"])
    assert again.last_epoch == state["epoch"] and again.get_last_lr() == state["lr"]


@pytest.mark.slow  # importing Lightning takes seconds
def test_lightning_drives_it_as_a_step_scheduler():
    lightning = pytest.importorskip("lightning")

    policy = MlpStandInPolicy()
    seen: list[TuningScheduler] = []

    class Module(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 1)
            self.last_loss = None

        def training_step(self, batch, batch_idx):
            (x,) = batch
            loss = self.net(x).square().mean()
            self.last_loss = loss.detach()
            return loss

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.05)
            sched = TuningScheduler(policy, opt, total_steps=8, control_interval=2)
            seen.append(sched)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

        def lr_scheduler_step(self, scheduler, metric):
            # Lightning steps schedulers without arguments; this one needs the loss.
            scheduler.step(self.last_loss)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(32, 4)), 4)
    trainer = lightning.Trainer(
        max_steps=8, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(Module(), data)
    assert seen[0].steps_done == 8 and len(seen[0].history) == 5


def test_inputs_are_checked_with_the_expected_type():
    sched, _, _ = _run(n_steps=4)
    for bad in ("0.5", "abc", [1.0], True):
        with pytest.raises(TypeError, match=r"float or a one-element torch\.Tensor|needs this"):
            sched.step(bad)
    with pytest.raises(ValueError, match="one-element tensor"):
        sched.step(torch.ones(3))
    with pytest.raises(TypeError, match="val_loss must be a float"):
        sched.step(1.0, val_loss="0.3")
    with pytest.raises(TypeError, match="step must be a non-negative int"):
        sched.step(1.0, step=-1)
    assert sched.steps_done == 4  # nothing invalid was recorded
    with pytest.warns(UserWarning, match="more than total_steps"):  # budget was 4
        sched.step(np.float32(0.5))
        sched.step(np.array([0.5]))
    assert sched.steps_done == 6


class _CountingTensor(torch.Tensor):
    """Counts the reads that make the host wait for the tensor's device."""

    reads = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("item", "tolist", "__float__", "numpy", "__bool__"):
            _CountingTensor.reads += 1
        return super().__torch_function__(func, types, args, kwargs or {})


def test_tensor_losses_are_read_once_per_decision_and_decide_like_floats():
    floats, _, _ = _run()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a requires-grad loss is accepted without warnings
        tensors, _, _ = _run(as_tensor=True)
    assert str(tensors.history) == str(floats.history)

    sched = TuningScheduler(
        MlpStandInPolicy(), torch.optim.SGD(small_model().parameters(), lr=0.05), 12, 4
    )
    _CountingTensor.reads = 0
    for i in range(12):
        sched.step(torch.tensor(1.0 + i).as_subclass(_CountingTensor))
        assert _CountingTensor.reads == (i + 1) // 4
    assert len(sched.history) == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_loss_syncs_only_at_decisions():
    model = small_model().cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = TuningScheduler(MlpStandInPolicy(), opt, 8, 4)  # the default: no guard per update
    x = torch.randn(16, 4, device="cuda")
    for i in range(8):
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        torch.cuda.set_sync_debug_mode("error" if (i + 1) % 4 else 0)
        try:
            sched.step(loss)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert len(sched.history) == 3


class _Run:
    def __init__(self):
        self.logged: list[tuple[dict, int | None, bool | None]] = []

    def log(self, metrics, step=None, commit=None):
        self.logged.append((dict(metrics), step, commit))


def _drive(sched, n, step_of=None):
    for i in range(n):
        sched.step(1.0 / (i + 1), step=None if step_of is None else step_of(i))


def test_wandb_uses_the_users_step_and_never_creates_one(monkeypatch):
    from agents.common import tracking

    def line_plot(run, key, xs, ys, title="", xname="x", step=None, commit=None):
        run.log({key: list(ys)}, step=step, commit=commit)  # no wandb import: a fake run

    monkeypatch.setattr(tracking, "line_plot", line_plot)
    run = _Run()
    sched = TuningScheduler(
        MlpStandInPolicy(),
        torch.optim.SGD(small_model().parameters(), lr=0.05),
        8,
        4,
        wandb_run=run,
    )
    # No step of the user's: every row rides along (commit=False), none is created.
    assert [c for _, _, c in run.logged] == [False]
    _drive(sched, 8)
    assert [(s, c) for _, s, c in run.logged] == [(None, False)] * 4  # 3 decisions + plot
    assert "schedule/learning_rate_plot" in run.logged[-1][0]

    run = _Run()
    sched = TuningScheduler(
        MlpStandInPolicy(),
        torch.optim.SGD(small_model().parameters(), lr=0.05),
        8,
        4,
        wandb_run=run,
    )
    _drive(sched, 8, step_of=lambda i: 10 * (i + 1))
    assert [s for _, s, _ in run.logged] == [None, 40, 80, 80]  # the plot joins the last row

    counter = {"step": 0}
    run = _Run()
    sched = TuningScheduler(
        MlpStandInPolicy(),
        torch.optim.SGD(small_model().parameters(), lr=0.05),
        8,
        4,
        wandb_run=run,
        step_fn=lambda: counter["step"],
    )
    counter["step"] = 10
    _drive(sched, 4)  # decision at the user's step 10
    with pytest.warns(UserWarning, match="below the step already logged"):
        _drive(sched, 4, step_of=lambda i: 3)  # decreasing: not logged
    assert [s for _, s, _ in run.logged] == [0, 10, None]  # the plot: commit=False
    assert "schedule/learning_rate_plot" in run.logged[-1][0]

    run = _Run()
    sched = TuningScheduler(
        MlpStandInPolicy(),
        torch.optim.SGD(small_model().parameters(), lr=0.05),
        8,
        4,
        wandb_run=run,
    )
    _drive(sched, 5, step_of=lambda i: i)
    sched.close(step=7)  # stopped before the last decision: close() logs the plot
    assert run.logged[-1][1] == 7 and "schedule/learning_rate_plot" in run.logged[-1][0]
    n = len(run.logged)
    sched.close()
    assert len(run.logged) == n


@pytest.mark.slow  # imports matplotlib
def test_plot_has_a_title_log_axes_and_the_users_start_rate(tmp_path, monkeypatch):
    import agents.deploy.schedule_plot as schedule_plot

    figures = []
    monkeypatch.setattr(
        schedule_plot, "atomic_savefig", lambda fig, path, **kw: figures.append(fig)
    )
    sched, _, _ = _run()
    sched.plot(tmp_path / "s.png")
    ax_lr, ax_loss = figures[0].axes
    assert ax_lr.get_title() and ax_lr.get_yscale() == "log" and ax_loss.get_yscale() == "log"
    marked = [line for line in ax_lr.get_lines() if line.get_linestyle() == "--"]
    assert marked and marked[0].get_ydata()[0] == pytest.approx(0.05)
    assert "your start lr" in " ".join(t.get_text() for t in ax_lr.get_legend().get_texts())


def test_counters_and_decision_steps_survive_mid_interval_reads_and_overrun():
    """Decisions fall every ``control_interval`` updates whatever the losses' types and
    however often `state_dict` reads the pending ones; `last_epoch` / ``_step_count``
    follow; running past ``total_steps`` warns once and keeps deciding."""
    opt = torch.optim.SGD(small_model().parameters(), lr=0.05)
    sched = TuningScheduler(MlpStandInPolicy(), opt, total_steps=10, control_interval=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(14):
            sched.step(torch.tensor(1.0 + i) if i % 3 == 1 else 1.0 + i)
            if i % 4 == 2:
                sched.state_dict()  # reads the pending losses mid-interval
            assert sched.steps_done == sched.last_epoch == i + 1 == sched._step_count - 1
    assert [h["step"] for h in sched.history] == [0, 3, 6, 9, 12]
    assert [h["loss"] for h in sched.history[1:3]] == [2.0, 5.0]  # means of 1-3 and 4-6
    overrun = [w for w in caught if "more than total_steps" in str(w.message)]
    assert len(overrun) == 1
    sched.last_epoch = 20  # torch's setter: the count moves, the interval (2 of 3) does not
    sched.step(1.0)
    assert sched.steps_done == 21 and len(sched.history) == 6
    assert sched.history[-1]["step"] == 21


def test_a_loss_tensor_keeps_no_graph_alive_and_a_complex_one_is_refused_at_the_call():
    import gc
    import weakref

    sched = TuningScheduler(
        MlpStandInPolicy(), torch.optim.SGD(small_model().parameters(), lr=0.05), 12, 4
    )

    class Saved:  # what the graph keeps for backward, boxed to see when it is freed
        def __init__(self, tensor: torch.Tensor) -> None:
            self.tensor = tensor

    kept: list[weakref.ref] = []

    def pack(tensor: torch.Tensor) -> Saved:
        box = Saved(tensor)
        kept.append(weakref.ref(box))
        return box

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda box: box.tensor):
        weights = torch.randn(1000, requires_grad=True)
        loss = (weights * torch.randn(1000)).sum()  # the product keeps both factors
    assert kept and all(ref() is not None for ref in kept)
    sched.step(loss)  # never backpropagated: only a detached loss may be kept
    del loss
    gc.collect()
    assert all(ref() is None for ref in kept)
    with pytest.raises(ValueError, match="real number"):
        sched.step(torch.tensor(1.0 + 1.0j))
    sched.step(torch.ones(1))  # a one-element tensor of any shape is a loss
    assert sched.steps_done == 2
