"""Speed of the batched engine against the per-run loops it replaces.

On the same sampled supervised tasks, measures inner updates per second
(run-updates: B runs doing one update each count B) of

(a) a sequential loop over separate `nn.Module` + ``torch.optim`` runs, one per run,
    as a DACBench-style environment trains them (each task's `TorchRun` twin);
(b) the batched engine through the `BatchedRun` API (``train(K)``, statistics
    included) at B = 1, 16, 64;
(c) bare batched training at B = 64: `SupervisedBatchedRun.update` with no
    statistics and no environment (`bare_updates_per_second`);
(d) the whole environment at B = 64: `hpo_env.make_vec_env(64, task=...)` stepped
    with fixed actions (statistics, validation every decision, features, reward,
    auto-resets; `env_updates_per_second`), with the controller never shown
    validation, and again shown it at every decision (the full set measured every
    step), which with `cadence_mix_overhead` gives the cost over meta-training's
    mix of cadences;
(e) meta-training throughput per `agents.train.config` preset (when the caller
    passes the presets): the preset's vec env (its n_envs and task distribution)
    stepped with random actions over whole rounds of supervised tasks and of a
    control task from its distribution, weighted by how often each kind is drawn,
    in decisions and inner updates per second (`agents.perf.presets.preset_mix_throughput`). On an
    accelerator: each preset on the CPU
    (2 torch threads) and on the device at 32 to 1,024 envs, side by side, and
    whether 1,024 parallel runs of every family fit (`agents.perf.device_scaling`).

Everything batched runs on ``device`` (``cpu`` default; ``cuda``/``auto`` where
available); the sequential baseline is plain PyTorch on the CPU.

Ratios are measured side by side in one process; the last printed line is
``engine_speedup_b64=<ratio> env_overhead=<fraction> ...``: the geometric mean over
tasks of (b) at B=64 / (a), and the environment's extra time per inner update
over bare training, (c) / (d) - 1, with validation never shown, each task's the
median over pairs of alternating rounds of the two (`paired_env_overhead`); then
the same shown at every decision and over the mix of cadences. The validation
pass the reward needs at every decision is reported separately, since its cost
depends on the validation-set size, not on the environment's bookkeeping.
"""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from agents.common.platform import describe_platform
from agents.perf.presets import preset_mix_throughput
from agents.perf.presets import synchronize as _synchronize
from hpo_env.device import resolve_device
from hpo_env.episodes import DEFAULT_VAL_EVERY_CHOICES
from tasks.distribution import TaskDistribution, list_families
from tasks.supervised import SupervisedTask


def _timed(
    fn: Callable[[], int],
    min_seconds: float,
    device: torch.device | str = "cpu",
    warm_up: bool = True,
) -> float:
    """Run ``fn`` (returns run-updates done) until ``min_seconds`` pass; run-updates per second."""
    if warm_up:
        fn()  # first calls allocate and pick kernels
    _synchronize(device)
    done, start = 0, time.perf_counter()
    while True:
        done += fn()
        _synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


NEVER_SHOWN = {"val_every_choices": (0,)}
"""`make_vec_env` kwargs: every round's controller is never shown validation."""
SHOWN_EVERY_DECISION = {"val_every_choices": (1,)}
"""`make_vec_env` kwargs: every round's controller is shown validation at every decision."""


def cadence_mix_overhead(
    never: float, every: float, choices: Sequence[int] = DEFAULT_VAL_EVERY_CHOICES
) -> float:
    """The environment's overhead over meta-training's mix of validation cadences,
    from the overheads with validation never shown and shown at every decision: a
    round with cadence c measures the full set at 1/c of its decisions (0: none), so
    its overhead is taken as ``never + (every - never) / c`` and the ``choices`` (each
    round draws one uniformly) are averaged."""
    shown = [0.0 if c == 0 else 1.0 / c for c in choices]
    return never + (every - never) * float(np.mean(shown))


def sequential_updates_per_second(
    task: SupervisedTask, n_runs: int = 8, min_seconds: float = 1.0
) -> float:
    """Run-updates per second of ``n_runs`` separate `TorchRun` loops stepped one after another."""
    runs = [task.make_torch_run(seed) for seed in range(n_runs)]
    for run in runs:  # the same constant setting as the batched modes
        for group in run.optimizer.param_groups:
            group["lr"] = task.default_learning_rate

    def one_round() -> int:
        for run in runs:
            x, y = run.next_batch()
            run.optimizer.zero_grad()
            loss = run.loss_fn(run.model(x), y)
            loss.backward()
            run.optimizer.step()
            loss.item()  # a DACBench-style env reads the loss every update
        return len(runs)

    return _timed(one_round, min_seconds)


def _default_run(task: SupervisedTask, n_runs: int, device: torch.device | str = "cpu") -> Any:
    run = task.build(list(range(n_runs)), device=device)
    run.set_hyperparameters(
        {k: torch.full((n_runs,), v) for k, v in task.default_hparams().items()}
    )
    return run


def engine_updates_per_second(
    task: SupervisedTask,
    n_runs: int,
    min_seconds: float = 1.0,
    device: torch.device | str = "cpu",
) -> float:
    """Run-updates per second of ``task.build(n_runs seeds).train(K)`` (statistics included)."""
    run = _default_run(task, n_runs, device)

    def one_step() -> int:
        run.train(task.updates_per_step)
        return n_runs * task.updates_per_step

    return _timed(one_step, min_seconds, device)


def bare_updates_per_second(
    task: SupervisedTask,
    n_runs: int = 64,
    min_seconds: float = 1.0,
    device: torch.device | str = "cpu",
) -> float:
    """Run-updates per second of bare batched training: ``n_runs`` runs, no statistics,
    no environment. The environment-overhead benchmark divides by this."""
    run = _default_run(task, n_runs, device)

    def one_step() -> int:
        for _ in range(task.updates_per_step):
            run.update()
        return n_runs * task.updates_per_step

    return _timed(one_step, min_seconds, device)


def env_updates_per_second(
    task: SupervisedTask,
    n_runs: int = 64,
    min_seconds: float = 1.0,
    device: torch.device | str = "cpu",
    **vec_env_kwargs: Any,
) -> float:
    """Run-updates per second of the environment: ``make_vec_env(n_runs, task=task)``
    stepped with zero actions (hyperparameters held), resets included.

    ``vec_env_kwargs`` go to `hpo_env.make_vec_env` (e.g. ``val_every_choices`` or
    ``val_fraction``); the defaults are the environment's, as meta-training uses it.
    """
    from hpo_env import make_vec_env

    vec = make_vec_env(n_runs, seed=0, task=task, device=device, **vec_env_kwargs)
    vec.reset()
    actions = np.zeros((n_runs, len(vec.space)), dtype=np.float32)

    def one_step() -> int:
        vec.step(actions)
        return n_runs * task.updates_per_step

    return _timed(one_step, min_seconds, device)


def paired_env_overhead(
    task: SupervisedTask,
    n_runs: int = 64,
    rounds: int = 12,
    seconds_per_round: float = 0.15,
    device: torch.device | str = "cpu",
    **vec_env_kwargs: Any,
) -> float:
    """The environment's extra time per inner update over bare training, (c) / (d) - 1.

    Rounds time bare training and the environment back to back, so load on the machine
    hits both sides of a round alike (two separate timing windows moved the ratio by
    ±0.1 between runs). Whichever side goes second reads slower (on one task, rounds
    read 0.10–0.12 one way round and 0.25–0.43 the other), so the order alternates and
    each pair of consecutive rounds, one of each order, gives one ratio (the geometric
    mean of its two): the result is the median over those pairs. ``rounds`` is rounded
    up to an even number.

    ``vec_env_kwargs`` go to `hpo_env.make_vec_env`. Pin ``val_every_choices``: the
    environment draws a validation cadence per round, and a controller shown validation
    makes it measure the full set, so a measurement that spans a round change would
    otherwise mix cadences by how fast the machine is.
    """
    from hpo_env import make_vec_env

    bare_run = _default_run(task, n_runs, device)
    vec = make_vec_env(n_runs, seed=0, task=task, device=device, **vec_env_kwargs)
    vec.reset()
    actions = np.zeros((n_runs, len(vec.space)), dtype=np.float32)

    def bare() -> int:
        for _ in range(task.updates_per_step):
            bare_run.update()
        return n_runs * task.updates_per_step

    def env() -> int:
        vec.step(actions)
        return n_runs * task.updates_per_step

    bare()
    env()
    pair_ratios = []
    for _ in range((rounds + 1) // 2):
        product = 1.0
        for order in ((bare, env), (env, bare)):
            rates = {side: _timed(side, seconds_per_round, device, warm_up=False) for side in order}
            product *= rates[bare] / rates[env]
        pair_ratios.append(math.sqrt(product) - 1.0)
    vec.close()
    return float(np.median(pair_ratios))


def validation_seconds_per_decision(
    task: SupervisedTask, n_runs: int = 64, device: torch.device | str = "cpu"
) -> float:
    """Seconds of one ``evaluate()`` (the per-decision validation pass) at ``n_runs``."""
    run = _default_run(task, n_runs, device)
    run.evaluate()
    start = time.perf_counter()
    repeats = 5
    for _ in range(repeats):
        run.evaluate()
    return (time.perf_counter() - start) / repeats


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):  # not Linux: peak RSS is the best available
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_per_sub_env_mib(task: SupervisedTask, n_envs: int = 256, n_steps: int = 5) -> float:
    """Resident memory added by ``make_vec_env(n_envs, task=task)`` after a few steps, per sub-env."""
    from hpo_env import make_vec_env

    gc.collect()
    before = _rss_mib()
    vec = make_vec_env(n_envs, seed=0, task=task)
    vec.reset()
    actions = np.zeros((n_envs, len(vec.space)), dtype=np.float32)
    for _ in range(n_steps):
        vec.step(actions)
    grown = _rss_mib() - before
    vec.close()
    return max(grown, 0.0) / n_envs


def sample_bench_tasks(n_tasks: int, seed: int = 0) -> list[SupervisedTask]:
    """``n_tasks`` tasks from the supervised families of the ``train`` split, seeded."""
    names = [n for n in list_families("train") if not n.startswith("control")]
    dist = TaskDistribution({n: 1.0 for n in names}, split="train")
    rng = np.random.default_rng(seed)
    tasks: list[SupervisedTask] = []
    while len(tasks) < n_tasks:
        task = dist.sample(rng)
        if isinstance(task, SupervisedTask):
            tasks.append(task)
    return tasks


def _geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def run_engine_bench(
    quick: bool = False,
    seed: int = 0,
    *,
    n_tasks: int | None = None,
    batch_sizes: Sequence[int] = (1, 16, 64),
    n_sequential_runs: int = 8,
    min_seconds: float | None = None,
    print_fn: Callable[[str], None] = print,
    device: str = "cpu",
    presets: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Measure and print (a) sequential, (b) engine at ``batch_sizes``, (c) bare B=64,
    (d) the environment at B=64, (e) meta-training throughput per preset.

    Args:
        quick: Fewer tasks and shorter timings (seconds in all, for CI).
        seed: Seed of the sampled tasks.
        n_tasks: Tasks to average over (default 2 if ``quick`` else 5).
        batch_sizes: B values for the engine; must include 64 for the headline ratio.
        n_sequential_runs: Separate runs in the sequential loop (its per-run cost is flat).
        min_seconds: Timing per measurement (default 0.3 if ``quick`` else 1.5).
        print_fn: Where the report lines go.
        device: Where batched runs compute (``cpu``, ``cuda``, ``cuda:N``, ``auto``).
        presets: Name -> `agents.train.config.TrainConfig` to measure (e) over whole
            rounds of its own task mix (`preset_mix_throughput`: 4 supervised tasks and
            one control task, 1 and 1 if ``quick``); None skips it.

    Returns:
        ``{"sequential": ..., "engine_b1": ..., "bare_b64": ..., "engine_speedup_b64": ...}``:
        geometric means over tasks of run-updates per second, and the ratio.
    """
    if 64 not in batch_sizes:
        raise ValueError(f"batch_sizes must include 64 for engine_speedup_b64, got {batch_sizes}")
    n_tasks = n_tasks if n_tasks is not None else (2 if quick else 5)
    min_seconds = min_seconds if min_seconds is not None else (0.3 if quick else 1.5)
    dev = resolve_device(device)
    print_fn(describe_platform())  # the CPU and kernel path these rates belong to
    tasks = sample_bench_tasks(n_tasks, seed)
    print_fn(
        f"engine bench: {n_tasks} tasks, device {dev}, torch threads={torch.get_num_threads()}, "
        f"run-updates/s (one run doing one update counts 1)"
    )
    per_task: dict[str, list[float]] = {}
    for task in tasks:
        row = {"sequential": sequential_updates_per_second(task, n_sequential_runs, min_seconds)}
        for b in batch_sizes:
            row[f"engine_b{b}"] = engine_updates_per_second(task, b, min_seconds, dev)
        row["bare_b64"] = bare_updates_per_second(task, 64, min_seconds, dev)
        row["env_b64"] = env_updates_per_second(task, 64, min_seconds, dev, **NEVER_SHOWN)
        # The headline: bare training and the environment in alternating rounds, the
        # controller never shown validation; then shown it at every decision (the full
        # set measured every step); then the full set for the reward too.
        for key, kwargs in (
            ("env_overhead_paired", NEVER_SHOWN),
            ("shown_paired", SHOWN_EVERY_DECISION),
            ("full_val_paired", {"val_fraction": 1.0, **NEVER_SHOWN}),
        ):
            row[key] = paired_env_overhead(
                task,
                64,
                rounds=6 if quick else 12,
                seconds_per_round=min_seconds / 10,
                device=dev,
                **kwargs,
            )
        # The same environment measuring the full validation set at every decision:
        # the cost before the subsampled reward, and the cost whenever the controller
        # is shown validation at every decision (``val_every=1``).
        row["env_full_val_b64"] = env_updates_per_second(
            task, 64, min_seconds, dev, val_fraction=1.0, **NEVER_SHOWN
        )
        # A full validation pass's share of that environment's time per inner update.
        val_per_update = validation_seconds_per_decision(task, 64, dev) / (
            64 * task.updates_per_step
        )
        row["validation_fraction"] = val_per_update * row["env_full_val_b64"]
        for key, value in row.items():
            per_task.setdefault(key, []).append(value)
        ratios = " ".join(
            f"b{b}={row[f'engine_b{b}'] / row['sequential']:.1f}x" for b in batch_sizes
        )
        print_fn(
            f"  {task.name}: sequential {row['sequential']:.0f}/s, engine "
            + ", ".join(f"B={b} {row[f'engine_b{b}']:.0f}/s" for b in batch_sizes)
            + f", bare B=64 {row['bare_b64']:.0f}/s, env B=64 {row['env_b64']:.0f}/s "
            f"(full validation every decision {row['env_full_val_b64']:.0f}/s); speedup {ratios}"
        )
    paired = per_task.pop("env_overhead_paired")
    paired_shown = per_task.pop("shown_paired")
    paired_full_val = per_task.pop("full_val_paired")
    summary = {key: _geomean(values) for key, values in per_task.items()}
    speedups = [e / s for e, s in zip(per_task["engine_b64"], per_task["sequential"])]
    summary["engine_speedup_b64"] = _geomean(speedups)
    summary["stats_overhead_b64"] = summary["bare_b64"] / summary["engine_b64"]
    # Geometric mean over tasks of each task's paired ratio (c)/(d); the unpaired
    # ratio of the separate windows is printed beside it.
    summary["env_overhead"] = _geomean([1.0 + x for x in paired]) - 1.0
    summary["env_overhead_unpaired"] = summary["bare_b64"] / summary["env_b64"] - 1.0
    summary["env_overhead_full_val"] = _geomean([1.0 + x for x in paired_full_val]) - 1.0
    summary["env_overhead_val_shown"] = _geomean([1.0 + x for x in paired_shown]) - 1.0
    summary["env_overhead_cadence_mix"] = (
        _geomean(
            [1.0 + cadence_mix_overhead(never, shown) for never, shown in zip(paired, paired_shown)]
        )
        - 1.0
    )
    val_share = float(np.mean(per_task["validation_fraction"]))
    # Time per update spent outside validation, relative to bare training.
    summary["env_overhead_excl_validation"] = (1.0 + summary["env_overhead_full_val"]) * (
        1.0 - val_share
    ) - 1.0
    print_fn(
        "geometric means: sequential {:.0f}/s; ".format(summary["sequential"])
        + "; ".join(
            f"engine B={b} {summary[f'engine_b{b}']:.0f}/s "
            f"({summary[f'engine_b{b}'] / summary['sequential']:.1f}x)"
            for b in batch_sizes
        )
        + f"; bare B=64 {summary['bare_b64']:.0f}/s "
        f"({summary['bare_b64'] / summary['sequential']:.1f}x; statistics cost "
        f"{100 * (1 - 1 / summary['stats_overhead_b64']):.0f}% of engine time)"
    )
    summary["memory_per_sub_env_mib"] = max(memory_per_sub_env_mib(t) for t in tasks)
    print_fn(
        f"memory: make_vec_env(256) adds {summary['memory_per_sub_env_mib']:.2f} MiB per "
        f"sub-environment (largest over the sampled tasks)"
    )
    print_fn(
        f"environment at B=64, the controller never shown validation: "
        f"{summary['env_b64']:.0f}/s; time per inner update "
        f"{100 * summary['env_overhead']:+.0f}% over bare training (median of pairs of "
        f"alternating rounds; {100 * summary['env_overhead_unpaired']:+.0f}% from the separate "
        "timings above; the reward measures a fixed quarter of the validation set). Shown "
        f"validation at every decision (the full set measured every step): "
        f"{100 * summary['env_overhead_val_shown']:+.0f}%; over meta-training's mix of "
        f"cadences {DEFAULT_VAL_EVERY_CHOICES} (0 = never): "
        f"{100 * summary['env_overhead_cadence_mix']:+.0f}%. The reward on the full set "
        f"too: {summary['env_full_val_b64']:.0f}/s, "
        f"{100 * summary['env_overhead_full_val']:+.0f}%, of which validation takes "
        f"{100 * val_share:.0f}% of the environment's time; without it "
        f"{100 * summary['env_overhead_excl_validation']:+.0f}%"
    )
    if dev.type != "cpu" and presets:
        # The same presets on the CPU and on the accelerator, side by side, and
        # whether 1,024 parallel runs of every family fit on it.
        from agents.perf.device_scaling import preset_device_table, runs_fit

        summary.update(
            preset_device_table(
                presets,
                dev,
                n_rounds=1 if quick else 3,
                repeats=2 if quick else 3,
                seed=seed,
                print_fn=print_fn,
            )
        )
        summary.update(runs_fit(dev, print_fn=print_fn))
    else:
        for name, config in (presets or {}).items():
            rates = preset_mix_throughput(config, dev, n_supervised=1 if quick else 4, seed=seed)
            summary[f"{name}_decisions_per_s"] = rates["decisions_per_s"]
            summary[f"{name}_updates_per_s"] = rates["updates_per_s"]
            kinds = ", ".join(
                f"{kind} {rates[f'{kind}_decisions_per_s']:.0f}/s"
                for kind in ("supervised", "control")
                if f"{kind}_decisions_per_s" in rates
            )
            print_fn(
                f"meta-training throughput, preset {name} ({config.n_envs} envs, distribution "
                f"{config.distribution!r}, control share {rates['control_share']:.2f} of rounds, "
                f"{100 * rates['control_time_share']:.0f}% of the time; decisions: {kinds}): "
                f"{name}_decisions_per_s={rates['decisions_per_s']:.1f} "
                f"{name}_updates_per_s={rates['updates_per_s']:.0f}"
            )
    print_fn(
        f"engine_speedup_b64={summary['engine_speedup_b64']:.2f} "
        f"env_overhead={summary['env_overhead']:.3f} "
        f"env_overhead_val_shown={summary['env_overhead_val_shown']:.3f} "
        f"env_overhead_cadence_mix={summary['env_overhead_cadence_mix']:.3f} "
        f"env_overhead_full_val={summary['env_overhead_full_val']:.3f}"
    )
    return summary
