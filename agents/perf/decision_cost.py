"""Where a deployed decision's time goes, inside a training loop (`hpo-rl bench overhead`).

A decision runs right after a training step has filled the caches with the model's
data, so its parts cost several times what they cost measured alone (a digits MLP loop
on an Intel Xeon: 470-800 us in the loop, ~350 us alone). This trains one more run with a
fresh scheduler and times, at each decision, the decision as a whole and its three
largest parts:

- the gradient statistics (`agents.deploy.run_stats.StatsTracker.measure`: copies and
  reductions of parameter-sized vectors; grows with the model);
- the features (`hpo_env.features.FeatureExtractor.observe_run`: float32 scalar code);
- the policy (``policy.act``: the members' forward passes).

What is left (reading the interval's losses, applying the action to the optimizer, the
history) is the rest. Each part is timed by a wrapper on this run's objects alone (two
clock reads, ~0.1 us), so the arms of the overhead bench are untouched.

This run trains one model alone, so its caches are warmer than the bench's rotating
arms' (2026-12-08, Intel Xeon: a decision here 473 us, inside the arms' rounds ~730 us
from ``overhead_direct``): read it for the parts' shares, not for the headline.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

PARTS = ("statistics", "features", "policy")


class _Timed:
    """Seconds spent in each wrapped callable, per call."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        calls = self.seconds.setdefault(name, [])
        clock = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                calls.append(clock() - start)

        return timed


class _TimedPolicy:
    """``policy`` with its ``act`` timed; everything else passed through."""

    def __init__(self, policy: Any, timed: _Timed) -> None:
        self._policy = policy
        self.act = timed.wrap("policy", policy.act)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._policy, name)


def decision_breakdown(
    scheduler: Any,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    n_decisions: int,
) -> dict[str, float]:
    """Median microseconds of a decision and of its parts, over ``n_decisions`` decisions
    of ``scheduler`` (fresh, driving ``optimizer``) in a plain loop over ``batches``
    (cycled), the loss handed over as a float.

    Returns ``decision_us``, ``statistics_us``, ``features_us``, ``policy_us`` and
    ``rest_us`` (the decision's median less its parts' medians), and ``decisions``.

    Raises:
        ValueError: ``n_decisions`` < 1 or no batches.
    """
    if n_decisions < 1 or not batches:
        raise ValueError(
            f"need n_decisions >= 1 and some batches, got {n_decisions} and {len(batches)}"
        )
    timed = _Timed()
    scheduler.tracker.measure = timed.wrap("statistics", scheduler.tracker.measure)
    scheduler.features.observe_run = timed.wrap("features", scheduler.features.observe_run)
    scheduler.policy = _TimedPolicy(scheduler.policy, timed)
    scheduler._end_interval = timed.wrap("decision", scheduler._end_interval)
    loss_fn = torch.nn.functional.cross_entropy
    steps = n_decisions * scheduler.control_interval
    for i in range(steps):
        x, y = batches[i % len(batches)]
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step(loss.item())
    decisions = timed.seconds.get("decision", [])
    if not decisions:
        raise RuntimeError(f"no decision in {steps} steps: the scheduler never decided")
    result = {"decisions": float(len(decisions))}
    result["decision_us"] = statistics.median(decisions) * 1e6
    for part in PARTS:
        result[f"{part}_us"] = statistics.median(timed.seconds.get(part, [0.0])) * 1e6
    result["rest_us"] = result["decision_us"] - sum(result[f"{p}_us"] for p in PARTS)
    return result


def describe_breakdown(result: dict[str, float]) -> str:
    """One line for the bench's output (no ``key=value``: the README's speed table takes
    only the bench's headline keys)."""
    return (
        f"a decision inside this loop: {result['decision_us']:.0f} us, median of "
        f"{result['decisions']:.0f} (gradient statistics {result['statistics_us']:.0f}, "
        f"features {result['features_us']:.0f}, the policy {result['policy_us']:.0f}, "
        f"the rest {result['rest_us']:.0f})"
    )
