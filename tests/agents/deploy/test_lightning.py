"""Lightning steps a `TuningScheduler` itself; `TuningLightningCallback` feeds the losses."""

from __future__ import annotations

import pytest
import torch

from agents.deploy.scheduler import TuningScheduler
from tests.agents.support.scheduler_fixtures import MlpStandInPolicy

lightning = pytest.importorskip("lightning", reason="the [lightning] extra is not installed")

N_STEPS, INTERVAL = 300, 20


class Regression(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)
        )
        self.losses: list[float] = []
        self.sched: TuningScheduler | None = None

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.losses.append(loss.item())
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
        self.sched = TuningScheduler(
            MlpStandInPolicy(seed=2), opt, total_steps=N_STEPS, control_interval=INTERVAL
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.sched, "interval": "step"}}


@pytest.mark.slow  # Lightning's import and Trainer take seconds
def test_lightning_runs_the_policy_with_no_override(tmp_path):
    from agents.deploy.lightning import TuningLightningCallback

    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=g)
    y = x[:, :1] * 2 - x[:, 1:2]
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:64], y[:64]), 64)
    module = Regression()
    used: list[float] = []
    trainer = lightning.Trainer(
        max_steps=N_STEPS,
        val_check_interval=100,
        check_val_every_n_epoch=None,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[TuningLightningCallback()],
    )

    class Hook(lightning.Callback):
        def on_fit_start(self, trainer, pl_module):
            opt = trainer.optimizers[0]
            opt.register_step_pre_hook(lambda o, a, k: used.append(o.param_groups[0]["lr"]))

    trainer.callbacks.append(Hook())
    trainer.fit(module, data, val)
    sched = module.sched
    assert sched.steps_done == N_STEPS == len(used)
    assert len(sched.history) == 1 + N_STEPS // INTERVAL
    for before, entry in zip(sched.history, sched.history[1:]):
        # The rates the optimizer used between two decisions are the earlier one's.
        assert set(used[before["step"] : entry["step"]]) == {before["lrs"][0]}
        # Each decision saw its own interval's losses, paired update by update.
        mean = sum(module.losses[before["step"] : entry["step"]]) / INTERVAL
        assert entry["loss"] == pytest.approx(mean, rel=1e-6)
    assert len({h["lrs"][0] for h in sched.history}) > 1  # the policy moved the rate
    # Validation after updates 100 and 200 reached the next decisions, at their steps.
    assert [h["val_step"] for h in sched.history if h["val_step"] is not None] == [100, 200]
