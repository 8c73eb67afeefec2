"""How much noise the subsampled per-decision validation adds to the reward.

``python scripts/reward_noise.py [--fraction 0.25] [--n-runs 32] [--n-tasks 5]``

For each task, B runs train one episode at their initial hyperparameters; after
every decision both the full validation set and the fixed subsample are
measured (one pass, `evaluate_prefixes`), and the per-decision rewards
``log(prev / val)`` are formed both ways, with the episode's first and last
measurements on the full set as the environment does. Training does not depend
on evaluation, so both reward series belong to the same runs. Prints the std
of the per-decision rewards, the std of their difference (the added noise) and
the largest difference of the episode returns (0 up to rounding: they telescope).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from agents.perf.engine import sample_bench_tasks
from tasks.control import CARTPOLE_DEFAULT


def reward_series(task, n_runs: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-decision rewards [T, B] with full and with subsampled validation."""
    run = task.build(list(range(n_runs)))
    first = run.evaluate()
    full_vals, sub_vals = [first], [first]
    for t in range(task.control_steps):
        run.train(task.updates_per_step)
        full, sub = run.evaluate_prefixes((1.0, fraction))
        last = t == task.control_steps - 1
        full_vals.append(full)
        sub_vals.append(full if last else sub)
    logs = [torch.log(torch.stack(v).double()).numpy() for v in (full_vals, sub_vals)]
    return logs[0][:-1] - logs[0][1:], logs[1][:-1] - logs[1][1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=0.25)
    parser.add_argument("--n-runs", type=int, default=32)
    parser.add_argument("--n-tasks", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tasks = [*sample_bench_tasks(args.n_tasks, seed=0), CARTPOLE_DEFAULT]
    for task in tasks:
        full, sub = reward_series(task, args.n_runs, args.fraction)
        ok = np.isfinite(full).all(0) & np.isfinite(sub).all(0)  # drop diverged runs
        full, sub = full[:, ok], sub[:, ok]
        inner = slice(0, -1)  # the last decision uses the full set both ways
        print(
            f"{task.name}: runs {ok.sum()}/{len(ok)}; per-decision reward std full "
            f"{full.std():.4f}, subsampled {sub.std():.4f}; std of the difference "
            f"{(sub - full)[inner].std():.4f} (corr {np.corrcoef(full.ravel(), sub.ravel())[0, 1]:.3f}); "
            f"max |return difference| {np.abs(sub.sum(0) - full.sum(0)).max():.2e}"
        )


if __name__ == "__main__":
    main()
