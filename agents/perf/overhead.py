"""``hpo-rl bench overhead``: the deployed scheduler's cost in a plain PyTorch loop.

An MLP on scikit-learn's digits (batch 64) is trained for the same number of
steps with and without a `TuningScheduler`, the arms measured in turn within one
run (so a machine busy with other work slows all alike); the overhead is the
median over paired rounds of tuned/plain - 1 (the fastest rounds' ratio is
printed too). The tuned arm is the scheduler as shipped (``nonfinite="rollback"``:
nothing per update beyond recording the loss). Other arms in the same rounds:

- ``plain_twin``, the plain loop again on its own model: the bench's resolution,
  what it reads when there is nothing to find (``overhead_aa_twin``). With the arms
  in a fixed order, identical arms measured up to 1.7% apart in 64 rounds on a
  2-core machine;
- ``reading``, the plain loop reading ``loss.item()`` every step
  (``overhead_vs_reading_loop``: the scheduler's cost in a loop that logs its loss);
- ``skip_guard``, ``nonfinite="skip"``, which checks every update's gradients
  (`agents.deploy.guard.NonFiniteGuard`; ``overhead_skip_guard``);
- ``tensor_loss``, ``sched.step(loss)`` with the loss tensor as in the README's
  loop (``overhead_tensor_loss``).

Each round runs the arms in a rotated order, so that every arm holds every
position equally often and none runs twice in a row (a repeat finds its model
still in the cache). The tuned arm also times its own ``sched.step`` calls:
``overhead_direct`` is that time over the plain round's, the scheduler's cost
inside the loop without its effect on the training steps' caches, a lower bound
that the machine's noise barely moves.
Then, where the extras are installed, the Lightning and Hugging Face Trainer loops
with and without the scheduler (`agents.perf.framework_overhead`, target <= 0.01).
The output ends with ``deploy_overhead=<fraction> ...`` (target: <= 0.03).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch

from agents.common.platform import describe_platform, machine_fingerprint
from agents.common.threads import torch_threads
from agents.deploy.budget import decisions_per_run
from agents.perf.decision_cost import decision_breakdown, describe_breakdown
from agents.perf.framework_overhead import robust_extra

TARGET_OVERHEAD = 0.03
BATCH_SIZE = 64
HIDDEN = (128, 128)
RUN_STEPS = 3000
"""Length of the run the scheduler is told about (the README's example)."""
ARMS = ("plain", "plain_twin", "reading", "tuned", "skip_guard", "tensor_loss")
"""No scheduler; the same on a second model (the bench's resolution); no scheduler but
``loss.item()`` every step (what a loop that logs its loss pays anyway); the scheduler
as shipped; the scheduler with ``nonfinite="skip"``; the scheduler given the loss tensor
(``sched.step(loss)``, the README's call)."""
SCHEDULED_ARMS = ("tuned", "skip_guard", "tensor_loss")
BREAKDOWN_DECISIONS = 40
"""Decisions timed part by part after the rounds (`agents.perf.decision_cost`): ~1 s."""


def arm_order(round_index: int) -> tuple[str, ...]:
    """`ARMS` rotated by ``round_index``: over ``len(ARMS)`` rounds each arm holds each
    position once, and the last arm of a round is never the first of the next."""
    shift = round_index % len(ARMS)
    return ARMS[shift:] + ARMS[:shift]


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


def _mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, HIDDEN[0]),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN[0], HIDDEN[1]),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN[1], 10),
    )


def benchmark_policy() -> tuple[Any, str]:
    """The shipped default policy, or (before one is shipped) a freshly initialised
    policy of the same kind: the cost of acting does not depend on the weights."""
    from agents.policy.bundle import BundleError
    from agents.policy.tuning_policy import TuningPolicy

    try:
        return TuningPolicy.load("default"), "default"
    except BundleError:
        pass
    from agents.policy.bundle import FORMAT_VERSION, BundleContents
    from hpo_env import DEFAULT_HPARAMS, FEATURE_SPEC_VERSION, FeatureExtractor, HyperparameterSpace

    space = HyperparameterSpace.from_names(DEFAULT_HPARAMS)
    names = FeatureExtractor.feature_names(space)
    gen = torch.Generator().manual_seed(0)
    widths = [64, 64]
    weights, fan_in = {}, len(names)
    for i, width in enumerate(widths):
        weights[f"layers.{i}.weight"] = torch.randn(width, fan_in, generator=gen) * 0.01
        weights[f"layers.{i}.bias"] = torch.zeros(width)
        fan_in = width
    weights["action_mean.weight"] = torch.randn(len(space), fan_in, generator=gen) * 0.01
    weights["action_mean.bias"] = torch.zeros(len(space))
    weights["log_std"] = torch.zeros(len(space))
    metadata = {
        "format_version": FORMAT_VERSION,
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "feature_names": names,
        "hparams": space.to_dicts(),
        "net_arch": widths,
        "activation": "tanh",
    }
    norm = {
        "mean": [0.0] * len(names),
        "var": [1.0] * len(names),
        "clip_obs": 10.0,
        "epsilon": 1e-8,
    }
    return TuningPolicy(
        BundleContents(weights, norm, metadata)
    ), "random-init (no shipped default bundle)"


def _round(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    scheduler: Any | None,
    read_loss: bool = False,
    tensor_loss: bool = False,
) -> tuple[float, float, float, list[float]]:
    """Wall and CPU (this thread) seconds of one pass over ``batches``, the wall
    seconds spent inside ``scheduler.step`` (timed in the float-loss arms only, 0.0 in
    the others; the two clock reads per step cost ~0.01% of a step), and each step's
    wall seconds (one clock read per step, in every arm alike).

    One loop per arm, written out: a branch inside a shared loop would be timed too."""
    loss_fn = torch.nn.functional.cross_entropy
    clock = time.perf_counter
    in_scheduler = 0.0
    ends: list[float] = []
    mark = ends.append
    cpu_start = time.thread_time()
    start = time.perf_counter()
    if scheduler is None and not read_loss:
        for x, y in batches:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            mark(clock())
    elif scheduler is None:
        for x, y in batches:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()
            mark(clock())
    elif not tensor_loss:
        for x, y in batches:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            value = loss.item()
            entered = clock()
            scheduler.step(value)
            left = clock()
            in_scheduler += left - entered
            mark(left)
    else:
        for x, y in batches:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step(loss)
            mark(clock())
    wall = time.perf_counter() - start
    steps = [b - a for a, b in zip([start, *ends[:-1]], ends)]
    return wall, time.thread_time() - cpu_start, in_scheduler, steps


def decision_steps(round_index: int, steps: int, interval: int) -> list[int]:
    """Indices of the steps of round ``round_index`` (0: the warm-up) in which a scheduler
    stepped once per update, from the first round on, decides: those that end an interval."""
    done = round_index * steps
    return [k for k in range(steps) if (done + k + 1) % interval == 0]


def run_overhead_bench(
    quick: bool = False, seed: int = 0, frameworks: bool = True
) -> dict[str, float]:
    """Measure and print the scheduler's overhead; returns the numbers printed.

    Each arm trains its own model for the rounds in turn; each scheduler spans them
    all and decides at the interval a user gets by default on a ``RUN_STEPS`` run
    (the README's example: 3000 steps, 60 updates per decision for the shipped bundle).

    Args:
        quick: Fewer, shorter rounds (seconds, for CI); noisier.
        seed: Seeds the model initialisation and the minibatch order.
        frameworks: Also the Lightning and Hugging Face Trainer loops on a model whose
            step takes >= 10 ms (`agents.perf.framework_overhead`; each where installed).
    """
    # 66 rounds (11 rotations of the 6 arms): the median of fewer (24 pairs) moved by
    # +-0.01 between runs of the same code.
    n_rounds, steps = (len(ARMS), 60) if quick else (11 * len(ARMS), 120)
    # The CPU and kernel path these timings belong to (measured on one thread, below).
    print(describe_platform({**machine_fingerprint(), "torch_threads": 1}))
    x, y = _digits()
    gen = torch.Generator().manual_seed(seed)
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    while len(batches) < steps:
        perm = torch.randperm(x.shape[0], generator=gen)
        for i in range(0, x.shape[0] - BATCH_SIZE + 1, BATCH_SIZE):
            idx = perm[i : i + BATCH_SIZE]
            batches.append((x[idx], y[idx]))
    batches = batches[:steps]
    policy, policy_name = benchmark_policy()
    # One intra-op thread: the MLP's ops are small, and a second thread spin-waiting on a
    # busy machine swamps what is measured here.
    with torch_threads(1):
        arms: dict[str, Any] = {}
        for arm in ARMS:
            model = _mlp(seed)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            scheduler = None
            if arm in SCHEDULED_ARMS:
                # The interval a user gets by default on a RUN_STEPS run, over a budget
                # long enough for every round.
                total = max(RUN_STEPS, (n_rounds + 1) * steps)
                interval = max(1, RUN_STEPS // decisions_per_run(policy))
                nonfinite = "skip" if arm == "skip_guard" else "rollback"
                scheduler = policy.scheduler(
                    optimizer, total_steps=total, control_interval=interval, nonfinite=nonfinite
                )
            arms[arm] = (model, optimizer, scheduler)
        times: dict[str, list[float]] = {arm: [] for arm in ARMS}
        cpu_times: dict[str, list[float]] = {arm: [] for arm in ARMS}
        step_times: dict[str, list[float]] = {arm: [] for arm in ("plain", "plain_twin", "tuned")}
        decided: list[int] = []  # the tuned arm's decision steps, indices into step_times
        interval = arms["tuned"][2].control_interval
        in_scheduler: list[float] = []
        for r in range(n_rounds + 1):  # round 0 warms the arms up and is discarded
            for arm in arm_order(r):
                model, optimizer, scheduler = arms[arm]
                wall, cpu, inside, per_step = _round(
                    model, optimizer, batches, scheduler, arm == "reading", arm == "tensor_loss"
                )
                if r > 0:
                    times[arm].append(wall)
                    cpu_times[arm].append(cpu)
                    if arm in step_times:
                        step_times[arm].extend(per_step)
                    if arm == "tuned":
                        in_scheduler.append(inside)
            if r > 0:
                offset = (r - 1) * steps
                decided += [offset + k for k in decision_steps(r, steps, interval)]
        # Then where a decision's time goes, on one more run of the tuned arm's kind.
        model = _mlp(seed)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        scheduler = policy.scheduler(
            optimizer, total_steps=BREAKDOWN_DECISIONS * interval * 2, control_interval=interval
        )
        n_decisions = 4 if quick else BREAKDOWN_DECISIONS
        breakdown = decision_breakdown(scheduler, model, optimizer, batches, n_decisions)

    def paired_median(arm: str, against: str = "plain") -> float:
        return float(statistics.median(t / p - 1.0 for t, p in zip(times[arm], times[against])))

    # The headline is the median of paired rounds: the arms of a round ran back to back,
    # so load on the machine hits them alike. The fastest rounds are printed too.
    plain, tuned = min(times["plain"]), min(times["tuned"])
    paired = [t / p - 1.0 for t, p in zip(times["tuned"], times["plain"])]
    overhead = float(statistics.median(paired))
    result = {
        "plain_step_us": plain / steps * 1e6,
        "tuned_step_us": tuned / steps * 1e6,
        "plain_step_cpu_us": statistics.median(cpu_times["plain"]) / steps * 1e6,
        "control_interval": float(interval),
        "overhead_paired_median": overhead,
        "overhead_iqr_low": float(np.percentile(paired, 25)),
        "overhead_iqr_high": float(np.percentile(paired, 75)),
        # CPU time of this thread barely depends on other processes: a steadier check.
        "cpu_overhead": statistics.median(cpu_times["tuned"])
        / statistics.median(cpu_times["plain"])
        - 1.0,
        "overhead_fastest_rounds": tuned / plain - 1.0,
        "overhead_direct": float(
            statistics.median(s / p for s, p in zip(in_scheduler, times["plain"]))
        ),
        "overhead_aa_twin": paired_median("plain_twin"),
        "overhead_skip_guard": paired_median("skip_guard"),
        "overhead_vs_reading_loop": paired_median("tuned", against="reading"),
        "overhead_tensor_loss": paired_median("tensor_loss"),
        "deploy_overhead": overhead,
        # Steps paired by round and index with the plain arm's: the median difference on
        # steps without a decision, the decision steps' differences in full.
        "overhead_robust": robust_extra(step_times["tuned"], step_times["plain"], decided),
        "overhead_robust_aa_twin": robust_extra(step_times["plain_twin"], step_times["plain"], []),
    }
    print(
        f"mlp 64-{HIDDEN[0]}-{HIDDEN[1]}-10 on digits, batch {BATCH_SIZE}, SGD; {n_rounds} rounds "
        f"of {steps} steps, {len(ARMS)} arms in rotated order; policy={policy_name}; "
        f"control_interval={interval}; 1 torch thread"
    )
    print(
        f"plain_step_us={result['plain_step_us']:.1f} tuned_step_us={result['tuned_step_us']:.1f}"
    )
    print(
        f"paired round overhead IQR [{result['overhead_iqr_low']:.4f}, "
        f"{result['overhead_iqr_high']:.4f}]; fastest rounds {result['overhead_fastest_rounds']:.4f}"
    )
    print(
        f"overhead_aa_twin={result['overhead_aa_twin']:.4f} (median of paired rounds, the plain "
        "loop on a second model: what this bench reads when there is nothing to find)"
    )
    print(
        f"overhead_direct={result['overhead_direct']:.4f} (time inside sched.step over the plain "
        "round's, median of rounds: the scheduler's own cost, without its effect on the caches)"
    )
    print(
        f"overhead_robust={result['overhead_robust']:.4f} (per step, paired by round and "
        "index with the plain arm's: the median difference on steps without a decision, the "
        "decision steps' differences in full; the decisions' after-effect on the next steps "
        f"is not counted) overhead_robust_aa_twin={result['overhead_robust_aa_twin']:.4f}"
    )
    print(
        f"overhead_skip_guard={result['overhead_skip_guard']:.4f} (median of paired rounds, "
        'nonfinite="skip": every update\'s gradients checked)'
    )
    print(
        f"overhead_vs_reading_loop={result['overhead_vs_reading_loop']:.4f} (median of paired "
        "rounds, against a loop that calls loss.item() every step)"
    )
    print(
        f"overhead_tensor_loss={result['overhead_tensor_loss']:.4f} (median of paired rounds, "
        "sched.step(loss) with the loss tensor, as the README's loop)"
    )
    print(
        f"cpu_time_overhead={result['cpu_overhead']:.4f} (median thread CPU time per round; "
        f"plain_step_cpu_us={result['plain_step_cpu_us']:.1f})"
    )
    print(describe_breakdown(breakdown))
    result.update({f"breakdown_{k}": v for k, v in breakdown.items()})
    if frameworks:
        from agents.perf.framework_overhead import run_framework_overhead

        result.update(run_framework_overhead(policy, quick=quick, seed=seed))
    print(f"deploy_overhead={overhead:.4f} (median of paired rounds; target <= {TARGET_OVERHEAD})")
    return result
