"""The README's framework recipes run as written (the ```python blocks under the
"Use it with Lightning / Hugging Face / ChainedScheduler" heading), with the run's
budget of 3000 updates shortened and the user's objects (model, loader, ...) given."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from agents.deploy.scheduler import TuningScheduler

README = Path(__file__).resolve().parents[3] / "README.md"
HEADING = "## Use it with Lightning / Hugging Face / ChainedScheduler"


def recipes() -> dict[str, str]:
    """The section's ```python blocks, keyed by the bold label before each."""
    text = README.read_text()
    start = text.index(HEADING)
    end = text.index("\n## ", start + len(HEADING))
    section = text[start:end]
    blocks = re.findall(r"\*\*([^*]+)\*\*.*?```python\n(.*?)```", section, flags=re.DOTALL)
    return {label.split()[0].strip(): code for label, code in blocks}


@pytest.fixture
def shipped_policy_spy(monkeypatch):
    """Every scheduler the recipe makes (with the shipped bundle, as written)."""
    made: list[TuningScheduler] = []
    real_init = TuningScheduler.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(TuningScheduler, "__init__", init)
    return made


def _run(code: str, namespace: dict, n_steps: int) -> None:
    code = code.replace("3000", str(n_steps))
    exec(compile(code, f"{README}:frameworks", "exec"), {"torch": torch, **namespace})


def _regression(n: int = 320):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = x[:, :1] * 2 - x[:, 1:2]
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def test_the_section_has_the_three_recipes():
    assert set(recipes()) == {"ChainedScheduler", "Lightning", "Hugging"}


def test_chained_scheduler_recipe(shipped_policy_spy):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    namespace = {
        "model": model,
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        "loader": _regression(),
        "loss_fn": torch.nn.functional.mse_loss,
    }
    _run(recipes()["ChainedScheduler"], namespace, n_steps=20)
    (sched,) = shipped_policy_spy
    assert sched.steps_done == 20 and len(sched.history) == 1 + 20 // sched.control_interval


@pytest.mark.slow  # Lightning's import and Trainer take seconds
def test_lightning_recipe(shipped_policy_spy, tmp_path, monkeypatch):
    lightning = pytest.importorskip("lightning", reason="the [lightning] extra is not installed")
    monkeypatch.chdir(tmp_path)

    class MyModule(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(8, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

    _run(recipes()["Lightning"], {"MyModule": MyModule, "loader": _regression()}, n_steps=20)
    (sched,) = shipped_policy_spy
    assert sched.steps_done == 20 and len(sched.history) == 1 + 20 // sched.control_interval


@pytest.mark.slow  # importing transformers takes seconds
def test_hugging_face_recipe(shipped_policy_spy, tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers", reason="the [hf] extra is not installed")
    from tests.agents.deploy.test_hf import _Tokens

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=48, n_positions=16, n_embd=32, n_layer=1, n_head=2)
    namespace = {"model": transformers.GPT2LMHeadModel(config), "dataset": _Tokens()}
    _run(recipes()["Hugging"], namespace, n_steps=20)
    (sched,) = shipped_policy_spy
    assert sched.steps_done == 20 and len(sched.history) == 1 + 20 // sched.control_interval
