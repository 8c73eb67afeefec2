"""A killed and resumed offline run: one run id, one continuous history in the order
``wandb sync`` uploads its folders, read back from the offline transaction logs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.common.tracking import RUN_ID_FILE, offline_run_history
from tests.agents.common.test_tracking import wandb_env  # noqa: F401  (fixture)

CHILD = """
import os, signal, sys, time
from agents.common.tracking import Tracker, persistent_run_id
root, first, last, kill = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "kill"
tracker = Tracker().start({"seed": 0}, mode="offline", dir=root, id=persistent_run_id(root),
                          resume="allow")
for step in range(first, last):
    tracker.log({"loss": 1.0 / (1 + step)}, step=step)
if kill:
    # wandb's service writes what it was sent in the background: wait until the offline
    # log stops growing (a fixed sleep lost rows on a loaded machine), then no finish().
    import glob
    sizes, deadline = [], time.time() + 60
    while time.time() < deadline and (len(sizes) < 4 or len(set(sizes[-4:])) > 1):
        time.sleep(0.5)
        sizes.append(sum(os.path.getsize(f) for f in glob.glob(root + "/wandb/offline-run-*/*.wandb")))
    os.kill(os.getpid(), signal.SIGKILL)
tracker.finish()
"""


def _start(root: Path, first: int, last: int, kill: bool) -> None:
    """A separate process, as a killed and resumed ``hpo-rl train`` is. Without the
    ``WANDB_SERVICE`` that an earlier wandb run in this test process exported, the child
    would attach to this process's wandb service, which outlives the SIGKILL and then
    writes both starts into one folder."""
    args = [sys.executable, "-c", CHILD, str(root), str(first), str(last), "kill" if kill else "-"]
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    subprocess.run(args, timeout=180, check=not kill, capture_output=True, env=env)


@pytest.mark.slow  # two wandb starts in subprocesses
def test_killed_and_resumed_offline_run_syncs_as_one_continuous_history(wandb_env: Path):  # noqa: F811
    """wandb writes an offline log in blocks: a SIGKILL loses the rows since its last
    write (here up to ~100 of 3,000), which a resume from an earlier checkpoint logs again."""
    _start(wandb_env, 0, 3000, kill=True)  # logged 0-2999, then SIGKILL
    _start(wandb_env, 1000, 3500, kill=False)  # resumed from a checkpoint at step 1000
    run_id = (wandb_env / RUN_ID_FILE).read_text().strip()
    folders = offline_run_history(wandb_env, run_id)
    assert len(folders) == 2 and len(list(wandb_env.glob("wandb/offline-run-*"))) == 2
    killed, resumed = ([row["_step"] for row in rows] for rows in folders)
    assert killed == list(range(len(killed))) and len(killed) >= 1000
    assert resumed == list(range(1000, 3500))  # the resumed start did not begin again at 0
    # What W&B keeps when it uploads the folders in this order into the one run: each
    # row whose step is above the last kept one.
    kept: list[int] = []
    for step in killed + resumed:
        if not kept or step > kept[-1]:
            kept.append(step)
    assert kept == list(range(3500))
