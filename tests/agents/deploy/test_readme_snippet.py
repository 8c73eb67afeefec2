"""The README's deploy example runs as written (first ```python block under a "Deploy" heading)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from agents.deploy.scheduler import TuningScheduler
from tests.agents.support.scheduler_fixtures import random_tuning_policy

README = Path(__file__).resolve().parents[3] / "README.md"
CANONICAL = """\
from agents import TuningPolicy
sched = TuningPolicy.load("default").scheduler(optimizer, total_steps=3000)
for x, y in loader:
    loss = loss_fn(model(x), y); optimizer.zero_grad(); loss.backward(); optimizer.step()
    sched.step(loss.item())
"""


def deploy_snippet(text: str) -> str | None:
    """The first ```python block after a Markdown heading that mentions "Deploy"."""
    heading = re.search(r"^#+[^\n]*\bDeploy", text, flags=re.MULTILINE | re.IGNORECASE)
    if heading is None:
        return None
    block = re.search(
        r"^```python[^\n]*\n(.*?)^```", text[heading.end() :], flags=re.MULTILINE | re.DOTALL
    )
    return block.group(1) if block else None


def _namespace() -> dict:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    x = torch.randn(60 * 16, 8)
    y = (x[:, :3].argmax(1)).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    return {
        "model": model,
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        "loader": loader,
        "loss_fn": torch.nn.functional.cross_entropy,
    }


def _run(snippet: str) -> dict:
    namespace = _namespace()
    exec(compile(snippet, str(README) + ":Deploy", "exec"), namespace)
    sched = namespace["sched"]
    assert isinstance(sched, TuningScheduler)
    assert sched.steps_done == len(namespace["loader"])
    # One decision before training, then one per control interval.
    assert len(sched.history) == 1 + sched.steps_done // sched.control_interval
    return namespace


def test_readme_has_the_deploy_snippet():
    snippet = deploy_snippet(README.read_text())
    assert snippet is not None, "README.md needs a ```python block under a 'Deploy' heading"
    assert "TuningPolicy.load" in snippet and ".scheduler(" in snippet and "sched.step(" in snippet


def test_snippet_runs_with_any_bundle(monkeypatch, tmp_path):
    from agents.policy.tuning_policy import TuningPolicy

    random_tuning_policy(decisions_per_run=50).save(tmp_path / "bundle")
    real_load = TuningPolicy.load
    monkeypatch.setattr(
        TuningPolicy,
        "load",
        classmethod(lambda cls, name="default": real_load(tmp_path / "bundle")),
    )
    _run(deploy_snippet(README.read_text()) or CANONICAL)


def test_snippet_runs_with_the_shipped_default():
    from agents.policy.tuning_policy import shipped_bundle_names

    assert "default" in shipped_bundle_names(), (
        "the package must ship agents/policy/bundles/default"
    )
    _run(deploy_snippet(README.read_text()) or CANONICAL)


def test_extraction():
    text = "# x\n```python\nnope\n```\n## Deploy into your loop\ntext\n```python\nyes = 1\n```\n```python\nno\n```\n"
    assert deploy_snippet(text) == "yes = 1\n"
    assert deploy_snippet("# Install\n```python\nx\n```\n") is None
