"""Speed of the torch.func families: B=32 batched runs vs 32 sequential plain loops.

For each registered functional family (`tasks.functional`), one task is drawn
from its ``train`` split and trained two ways on the same work (32 runs, the
same seeds, ``n_updates`` updates each, the task's default hyperparameters):

(a) ``batched``: one `FunctionalBatchedRun` of B=32 (`torch.func` vmap), bare
    updates (`SupervisedBatchedRun.update`, no statistics);
(b) ``sequential``: the 32 runs' plain PyTorch loops (`FunctionalTorchRun`: the
    module, ``torch.optim``, the same minibatches), one after the other.

The ratio (b)/(a) is compared with the issue's targets: >= 5x for the transformer
and recurrent families, >= 8x for the MLP family, anything else reported only.

Then the hand-batched engine against torch.func on the same work: the
``digits_mlp`` family's task (hand-written ``baddbmm`` MLP, `tasks.nets.MlpSpec`)
and the same MLP as an ordinary ``nn.Sequential`` batched through torch.func,
same data, optimizer and batch size, B=32 (issue 24, item 5: keep a hand-batched
family only where it is >= 1.5x faster).

Last, decisions per second of `hpo_env.HPOVecEnv` over the functional train-split
mix at 8 and 32 envs (tasks drawn from `tasks.functional.splits.functional_distribution`),
and at 32 envs over `realistic_distribution("train")` (the default distribution with
the functional families mixed in): each task stepped a few decisions with zero
actions after its reset (printed without and with the reset's time).

Every number is measured in this process, side by side; the CPU is printed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from agents.common.platform import describe_platform, machine_fingerprint
from hpo_env.device import resolve_device

N_RUNS = 32
TARGETS = {
    "char_transformer": 5.0,
    "char_gru": 5.0,
    "char_lstm": 5.0,
    "table_resmlp": 8.0,
}
"""Issue 24's speed-up targets (batched vs sequential) per family; others are reported."""
KEEP_HAND_BATCHED = 1.5
"""A hand-batched family stays only where it is at least this much faster than torch.func."""


def cpu_name() -> str:
    """The CPU's model name (``lscpu``'s), or the platform's processor string."""
    return str(machine_fingerprint()["cpu_model"])


def _seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall time of ``repeats`` calls (the least disturbed by other processes)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def batched_seconds(task: Any, n_updates: int, repeats: int, device: torch.device) -> float:
    """Seconds for ``N_RUNS`` runs to do ``n_updates`` bare updates each, batched."""
    run = task.build(list(range(N_RUNS)), device=device)
    defaults = task.default_hparams()
    run.set_hyperparameters({k: torch.full((N_RUNS,), float(v)) for k, v in defaults.items()})
    run.update()  # warm-up: first-call allocations and vmap tracing

    def work() -> None:
        for _ in range(n_updates):
            run.update()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return _seconds(work, repeats)


def sequential_seconds(task: Any, n_updates: int, repeats: int) -> float:
    """Seconds for ``N_RUNS`` plain PyTorch loops to do ``n_updates`` updates each."""
    twins = [task.make_torch_run(seed) for seed in range(N_RUNS)]
    defaults = task.default_hparams()
    for twin in twins:
        for group in twin.optimizer.param_groups:
            group["lr"] = defaults["learning_rate"]

    def step(twin: Any) -> None:
        x, y = twin.next_batch()
        twin.optimizer.zero_grad()
        twin.loss_fn(twin.model(x), y).backward()
        twin.optimizer.step()

    for twin in twins:
        step(twin)  # warm-up

    def work() -> None:
        for twin in twins:
            for _ in range(n_updates):
                step(twin)

    return _seconds(work, repeats)


def family_speedups(
    quick: bool = False,
    seed: int = 0,
    device: torch.device | str = "cpu",
    print_fn: Callable[[str], None] = print,
) -> dict[str, float]:
    """Batched vs sequential per functional family; returns ``{family: ratio}``."""
    from tasks.distribution import get_family
    from tasks.functional import functional_families

    device = resolve_device(device)
    n_updates, repeats = (4, 1) if quick else (20, 2)
    ratios: dict[str, float] = {}
    for family in functional_families():
        task = get_family(family.name).sample_task(np.random.default_rng(seed), "train")
        batched = batched_seconds(task, n_updates, repeats, device)
        sequential = sequential_seconds(task, n_updates, repeats)
        ratio = sequential / batched
        ratios[family.name] = ratio
        target = TARGETS.get(family.name)
        verdict = (
            ""
            if target is None
            else f" target>={target:g}x {'met' if ratio >= target else 'NOT met'}"
        )
        print_fn(
            f"{family.name}: B={N_RUNS} batched {1e3 * batched / n_updates:.1f} ms/update vs "
            f"{N_RUNS} sequential plain loops {1e3 * sequential / n_updates:.1f} ms "
            f"-> {ratio:.2f}x{verdict}  [{task.name}]"
        )
    return ratios


def hand_vs_functional_mlp(
    quick: bool = False, device: torch.device | str = "cpu", print_fn: Callable[[str], None] = print
) -> float:
    """Bare-update speed of the hand-batched ``digits_mlp`` task over the same MLP
    batched with torch.func (same data, optimizer, batch size, B=32); returns the ratio."""
    from tasks.distribution import task_by_name
    from tasks.functional.models import MlpConfig
    from tasks.functional.task import FunctionalTask

    device = resolve_device(device)
    n_updates, repeats = (10, 1) if quick else (50, 3)
    hand = task_by_name("digits_mlp")
    net = hand.net  # type: ignore[attr-defined]
    functional = FunctionalTask(
        family="digits_mlp_func",
        data=hand.data,  # type: ignore[attr-defined]
        model=MlpConfig(net.input_dim, tuple(net.hidden), net.output_dim, net.activation),
        optimizer=hand.optimizer,  # type: ignore[attr-defined]
        batch_size=hand.batch_size,  # type: ignore[attr-defined]
        default_learning_rate=hand.default_learning_rate,  # type: ignore[attr-defined]
    )
    hand_s = batched_seconds(hand, n_updates, repeats, device)
    func_s = batched_seconds(functional, n_updates, repeats, device)
    ratio = func_s / hand_s
    keep = "keep it" if ratio >= KEEP_HAND_BATCHED else "torch.func is within 1.5x: deletable"
    print_fn(
        f"hand-batched digits_mlp {1e3 * hand_s / n_updates:.2f} ms/update vs torch.func "
        f"{1e3 * func_s / n_updates:.2f} ms/update (B={N_RUNS}) -> hand is {ratio:.2f}x faster; "
        f"{keep}  [{hand.name}]"
    )
    return ratio


def env_decisions_per_second(
    n_envs: int,
    n_tasks: int,
    n_steps: int,
    seed: int = 0,
    device: torch.device | str = "cpu",
    distribution: Any = None,
) -> dict[str, float]:
    """Decisions/s of `hpo_env.HPOVecEnv` over ``n_tasks`` tasks drawn from ``distribution``
    (default: the functional train mix, `tasks.functional.splits.functional_distribution`)."""
    from hpo_env import make_vec_env
    from tasks.functional.splits import functional_distribution

    dist = distribution if distribution is not None else functional_distribution("train")
    rng = np.random.default_rng(seed)
    decisions, stepping, total = 0, 0.0, 0.0
    for _ in range(n_tasks):
        task = dist.sample(rng)
        start = time.perf_counter()
        vec = make_vec_env(n_envs, seed=seed, task=task, device=device)
        vec.reset()
        actions = np.zeros((n_envs, len(vec.space)), dtype=np.float32)
        stepped = time.perf_counter()
        for _ in range(n_steps):
            vec.step(actions)
        end = time.perf_counter()
        vec.close()
        decisions += n_envs * n_steps
        stepping += end - stepped
        total += end - start
    return {
        "decisions_per_s": decisions / stepping,
        "decisions_per_s_with_reset": decisions / total,
    }


def run_families_bench(quick: bool = False, seed: int = 0, device: str = "cpu") -> dict[str, float]:
    """``hpo-rl bench families``: every measurement above, printed; returns a summary."""
    print(f"{describe_platform()}; device: {device}")
    summary: dict[str, float] = {}
    ratios = family_speedups(quick=quick, seed=seed, device=device)
    summary.update({f"{name}_speedup": value for name, value in ratios.items()})
    summary["hand_over_func_mlp"] = hand_vs_functional_mlp(quick=quick, device=device)
    n_tasks, n_steps = (2, 2) if quick else (6, 5)
    for n_envs in (8, 32):
        rates = env_decisions_per_second(n_envs, n_tasks, n_steps, seed=seed, device=device)
        summary[f"decisions_per_s_{n_envs}"] = rates["decisions_per_s"]
        print(
            f"HPOVecEnv over the functional train mix, {n_envs} envs ({n_tasks} tasks x {n_steps} "
            f"decisions): {rates['decisions_per_s']:.1f} decisions/s stepping, "
            f"{rates['decisions_per_s_with_reset']:.1f} with the round's reset"
        )
    from tasks.functional.splits import realistic_distribution

    mixed = realistic_distribution("train")
    rates = env_decisions_per_second(
        32, n_tasks, n_steps, seed=seed, device=device, distribution=mixed
    )
    summary["realistic_decisions_per_s_32"] = rates["decisions_per_s"]
    print(
        f"HPOVecEnv over realistic_distribution('train') (default mix + functional families), "
        f"32 envs ({n_tasks} tasks x {n_steps} decisions): {rates['decisions_per_s']:.1f} "
        f"decisions/s stepping, {rates['decisions_per_s_with_reset']:.1f} with the round's reset"
    )
    print(" ".join(f"{k}={v:.3g}" for k, v in summary.items()))
    return summary
