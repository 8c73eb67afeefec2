"""Meta-training throughput of `agents.train.config` presets: a preset's vec env stepped
with random actions over whole rounds of its own tasks (`preset_throughput`), and over its
mix of supervised and control rounds (`preset_mix_throughput`).

Used by the engine bench (`agents.perf.engine`) and the device table
(`agents.perf.device_scaling`); it imports neither.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from tasks.distribution import TaskDistribution


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so a timer sees it (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def preset_throughput(
    config: Any,
    device: torch.device | str = "cpu",
    min_seconds: float = 3.0,
    seed: int = 0,
    tasks: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Meta-training throughput of one `agents.train.config.TrainConfig` preset.

    Steps the preset's vec env (its ``n_envs``, distribution, hyperparameters) with
    uniform random actions, as an untrained policy acts, round changes (new tasks)
    included: for ``min_seconds`` (at least one decision), or, given ``tasks`` (e.g.
    `draw_preset_tasks`), for exactly one whole round of each. The rounds make a
    workload that does not depend on ``n_envs`` or the device (a timed window covers
    one task's first decisions at 1,024 envs and several tasks at 32), so two settings
    can be compared fairly.

    Returns:
        ``{"decisions_per_s": ..., "updates_per_s": ...}``: control decisions and
        inner run-updates (one run doing one update counts 1) per second; and the
        totals they come from, ``decisions``, ``updates`` and ``seconds``.
    """
    from agents.common.vec_env_config import vec_env_kwargs_from_config
    from hpo_env import make_vec_env

    kwargs = {**vec_env_kwargs_from_config(config), "device": device}
    vec = make_vec_env(config.n_envs, seed=seed, **kwargs)
    tasks = list(tasks or [])
    if tasks:
        vec.fixed_task = tasks[0]
    vec.reset()
    rng = np.random.default_rng(seed)
    n_envs, n_actions = config.n_envs, len(vec.space)
    decisions = updates = rounds_done = 0
    synchronize(device)
    start = time.perf_counter()
    while True:
        task = vec.engine.task  # this decision's task (before a round change)
        assert task is not None, "reset() starts a round"
        k = task.updates_per_step
        last_of_round = vec.engine.round_step + 1 >= vec.engine.round_length
        if tasks and last_of_round:  # the round this step starts
            vec.fixed_task = tasks[(rounds_done + 1) % len(tasks)]
        vec.step(rng.uniform(-1.0, 1.0, size=(n_envs, n_actions)).astype(np.float32))
        decisions += n_envs
        updates += n_envs * k
        rounds_done += last_of_round
        synchronize(device)
        elapsed = time.perf_counter() - start
        if (rounds_done >= len(tasks)) if tasks else elapsed >= min_seconds:
            break
    vec.close()
    return {
        "decisions_per_s": decisions / elapsed,
        "updates_per_s": updates / elapsed,
        "decisions": float(decisions),
        "updates": float(updates),
        "seconds": elapsed,
    }


MAX_MIX_DRAWS = 1000
"""Draws `preset_mix_throughput` makes looking for its tasks before it gives up."""


def control_share(sampler: Any, n_draws: int = 2000, seed: int = 0) -> float:
    """The probability that a round of ``sampler`` is a control task: exact for a
    `tasks.distribution.TaskDistribution`, else the share of ``n_draws`` draws."""
    from tasks.control.tasks import ControlTask
    from tasks.distribution import control_families

    if isinstance(sampler, TaskDistribution):
        control = {family.name for family in control_families()}
        return float(sum(p for name, p in sampler.probabilities.items() if name in control))
    rng = np.random.default_rng(seed)
    return sum(isinstance(sampler.sample(rng), ControlTask) for _ in range(n_draws)) / n_draws


def mix_rates(parts: Sequence[tuple[float, Mapping[str, float], int]]) -> dict[str, float]:
    """Long-run rates of rounds drawn at random: ``parts`` holds (probability of a
    round of this kind, `preset_throughput` totals over its rounds, number of those
    rounds). Rates are expected work per round over expected seconds per round (a
    renewal process), not an average of the kinds' rates."""
    seconds = sum(p * totals["seconds"] / n for p, totals, n in parts)
    return {
        "decisions_per_s": sum(p * totals["decisions"] / n for p, totals, n in parts) / seconds,
        "updates_per_s": sum(p * totals["updates"] / n for p, totals, n in parts) / seconds,
    }


def preset_mix_throughput(
    config: Any,
    device: torch.device | str = "cpu",
    n_supervised: int = 4,
    seed: int = 0,
) -> dict[str, float]:
    """A preset's meta-training throughput over its own mix of tasks.

    A control decision costs several supervised ones, and a control task is one draw
    in seven of the ``default`` distribution, so a short window from the first draws
    usually sees none. Instead: whole rounds of the first ``n_supervised`` supervised
    tasks and of the first control task ``seed`` draws from the preset's distribution
    (`preset_throughput`), combined by `mix_rates` with the distribution's
    `control_share`.

    Returns:
        ``decisions_per_s`` and ``updates_per_s`` of the mix; ``supervised_*`` and
        ``control_*`` rates of each kind alone; ``control_share`` (of rounds) and
        ``control_time_share`` (of the time).
    """
    from tasks.control.tasks import ControlTask

    if n_supervised < 1:
        raise ValueError(f"n_supervised must be >= 1, got {n_supervised}")
    sampler = preset_sampler(config)
    share = control_share(sampler, seed=seed)
    want_supervised = n_supervised if share < 1.0 else 0
    rng = np.random.default_rng(seed)
    supervised: list[Any] = []
    control: Any | None = None
    for _ in range(MAX_MIX_DRAWS):
        if len(supervised) >= want_supervised and (control is not None or share == 0.0):
            break
        task = sampler.sample(rng)
        if isinstance(task, ControlTask):
            control = control if control is not None else task
        elif len(supervised) < want_supervised:
            supervised.append(task)
    else:
        raise RuntimeError(
            f"{MAX_MIX_DRAWS} draws from the preset's distribution gave {len(supervised)} of "
            f"{want_supervised} supervised tasks and {int(control is not None)} control task; "
            "is its control share right?"
        )
    result: dict[str, float] = {"control_share": share}
    parts: list[tuple[float, Mapping[str, float], int]] = []
    expected_seconds: dict[str, float] = {}  # per drawn round, by kind
    for kind, weight, tasks in (
        ("supervised", 1.0 - share, supervised),
        ("control", share, [control] if control is not None else []),
    ):
        if tasks:
            totals = preset_throughput(config, device, seed=seed, tasks=tasks)
            parts.append((weight, totals, len(tasks)))
            expected_seconds[kind] = weight * totals["seconds"] / len(tasks)
            result[f"{kind}_decisions_per_s"] = totals["decisions_per_s"]
            result[f"{kind}_updates_per_s"] = totals["updates_per_s"]
    result["control_time_share"] = expected_seconds.get("control", 0.0) / sum(
        expected_seconds.values()
    )
    result.update(mix_rates(parts))
    return result


def draw_preset_tasks(config: Any, n_rounds: int, seed: int = 0) -> list[Any]:
    """The first ``n_rounds`` tasks ``seed`` draws from a preset's training distribution
    (what `preset_throughput` runs as whole rounds)."""
    if n_rounds < 1:
        raise ValueError(f"n_rounds must be >= 1, got {n_rounds}")
    sampler = preset_sampler(config)
    rng = np.random.default_rng(seed)
    return [sampler.sample(rng) for _ in range(n_rounds)]


def preset_sampler(config: Any) -> Any:
    """The task sampler of a preset's training distribution, as meta-training builds it."""
    from agents.common.vec_env_config import vec_env_kwargs_from_config
    from hpo_env.distributions import resolve_sampler

    kwargs = vec_env_kwargs_from_config(config)
    return resolve_sampler(
        kwargs["distribution"], split=kwargs["split"], **kwargs.get("distribution_kwargs", {})
    )
