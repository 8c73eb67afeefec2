"""The light core: deploying a shipped policy needs no extra; a missing extra is
one `MissingExtraError` that names the pip command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.common.extras import require
from hpo_env.errors import HpoRlError, MissingExtraError

REPO = Path(__file__).resolve().parents[3]

# Makes the extras' packages unimportable in a child interpreter.
BLOCK_EXTRAS = """
import sys
for name in ('stable_baselines3', 'wandb', 'sklearn', 'matplotlib', 'ray', 'tqdm'):
    sys.modules[name] = None  # `import name` now raises ModuleNotFoundError
"""


def test_require_names_the_extra():
    assert require("json", extra="train", purpose="x").dumps({}) == "{}"
    with pytest.raises(MissingExtraError, match=r'pip install "hpo-rl\[plot\]"') as info:
        require("no_such_module_xyz", extra="plot", purpose="sched.plot()")
    assert isinstance(info.value, (HpoRlError, ImportError))


@pytest.mark.slow  # a fresh interpreter: seconds
def test_deploy_works_without_any_extra():
    code = (
        BLOCK_EXTRAS
        + """
import torch
from agents import TuningPolicy
from hpo_env.errors import MissingExtraError
model = torch.nn.Linear(3, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
sched = TuningPolicy.load("default").scheduler(opt, total_steps=20)
for _ in range(20):
    loss = model(torch.ones(2, 3)).square().mean()
    opt.zero_grad(); loss.backward(); opt.step(); sched.step(loss)
try:
    sched.plot("x.png")
except MissingExtraError as exc:
    print("plot:", exc)
try:
    import agents.deploy.sb3_callback
except MissingExtraError as exc:
    print("sb3:", exc)
print("ok", len(sched.history))
"""
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=REPO
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[-1].startswith("ok ")
    assert any(line.startswith("plot:") and 'pip install "hpo-rl[plot]"' in line for line in lines)
    assert any(line.startswith("sb3:") and 'pip install "hpo-rl[train]"' in line for line in lines)


@pytest.mark.slow
def test_cli_command_without_its_extra_is_one_line(tmp_path):
    code = (
        BLOCK_EXTRAS + "from agents.cli import main; sys.exit(main(['train', '--preset', 'smoke']))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install "hpo-rl[train]"' in lines[0], out.stderr
