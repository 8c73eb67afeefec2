"""What a GPU buys meta-training, measured side by side with the CPU in one run.

`hpo-rl bench engine --device cuda` calls these after the engine bench:

- `preset_device_table`: each preset's vec env stepped with random actions (as
  `agents.perf.presets.preset_throughput` does) over the same ``n_rounds`` tasks,
  on the CPU with ``cpu_threads`` torch threads, then on the GPU at the preset's
  own ``n_envs`` and at each of ``gpu_n_envs``. The ratio ``{preset}_gpu_speedup`` is the GPU's best decisions
  per second over the CPU's at the preset as shipped: what a user gains by moving
  the same meta-training to the GPU and raising ``--n-envs`` to fill it.
- `runs_fit`: one vec env of ``n_runs`` parallel runs per train-split family,
  reset and stepped on the device, with the peak memory it took; an
  out-of-memory error is reported as a family that does not fit.

A small batch on a GPU is bound by kernel launches, not arithmetic, so the
speedup at the preset's own 32 envs is printed too: it is the honest answer for
a user who changes nothing but ``--device``.

One reading of each side is one sample of a noisy machine, so the preset the
target is about (``settle``) is measured again in ``repeats`` alternating pairs,
CPU then device then the other way round, and ``{settle}_gpu_speedup_paired`` is
the median of the pairs' ratios. Pairs do not remove differences between
machines: two runs of the same code on two machines read the ``default``
preset's CPU side 31% apart.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from agents.common.threads import torch_threads
from agents.perf.presets import draw_preset_tasks, preset_throughput
from tasks.distribution import list_families, task_by_name


def preset_device_table(
    presets: Mapping[str, Any],
    device: torch.device,
    *,
    cpu_threads: int = 2,
    gpu_n_envs: Sequence[int] = (1024,),
    n_rounds: int = 3,
    control_family: str | None = "control_cartpole",
    settle: str | None = "default",
    repeats: int = 3,
    seed: int = 0,
    print_fn: Callable[[str], None] = print,
) -> dict[str, float]:
    """Decisions per second of each preset on the CPU (``cpu_threads`` threads) and on
    ``device`` at the preset's ``n_envs`` and at each of ``gpu_n_envs``, each over the
    first ``n_rounds`` tasks ``seed`` draws (whole rounds, so every setting does the
    same mix of tasks). Those draws may hold no control task (15% of the default
    distribution), so one round of ``control_family``'s representative task under the
    ``default`` preset (else the first) is measured too, as the row ``{control_family}``.

    Returns ``{name}_cpu_decisions_per_s``, ``{name}_gpu_n{N}_decisions_per_s`` (N the
    sub-env count; updates likewise) and ``{name}_gpu_speedup`` (best GPU rate over the
    CPU rate at the preset's ``n_envs``); for the preset named ``settle`` (if present),
    also ``{settle}_gpu_speedup_paired``, the median ratio of ``repeats`` alternating
    CPU / device pairs at the best size (see `paired_speedup`).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    rows: list[tuple[str, Any, list[Any]]] = []
    for name, config in presets.items():
        rows.append((name, config, draw_preset_tasks(config, n_rounds, seed)))
    if control_family is not None and presets:
        base = presets.get("default", next(iter(presets.values())))
        rows.append((control_family, base, [task_by_name(control_family)]))
    summary: dict[str, float] = {}
    for name, config, tasks in rows:
        row, best_n = _device_row(
            name, config, tasks, device, cpu_threads, gpu_n_envs, seed, print_fn
        )
        summary.update(row)
        if name == settle and name in presets:
            summary.update(
                paired_speedup(
                    name, config, tasks, device, best_n, cpu_threads, repeats, seed, print_fn
                )
            )
    return summary


def paired_speedup(
    name: str,
    config: Any,
    tasks: list[Any],
    device: torch.device,
    n_envs: int,
    cpu_threads: int,
    repeats: int,
    seed: int,
    print_fn: Callable[[str], None] = print,
) -> dict[str, float]:
    """``repeats`` pairs of whole-round throughputs, the preset as shipped on the CPU and
    at ``n_envs`` on ``device``, back to back with the first side alternating: the median
    of the pairs' ratios is ``{name}_gpu_speedup_paired``, less moved by what else the
    machine is doing than one reading of each side."""

    def cpu_rate() -> float:
        return _cpu_throughput(config, tasks, cpu_threads, seed)["decisions_per_s"]

    def device_rate() -> float:
        return _device_throughput(config, n_envs, tasks, device, seed)["decisions_per_s"]

    ratios = []
    for r in range(repeats):
        if r % 2 == 0:
            cpu = cpu_rate()
            ratios.append(device_rate() / cpu)
        else:
            dev = device_rate()
            ratios.append(dev / cpu_rate())
    median = float(np.median(ratios))
    print_fn(
        f"{name}: {repeats} alternating pairs, CPU ({config.n_envs} envs) vs {device} "
        f"({n_envs} envs), ratios "
        + ", ".join(f"{r:.1f}" for r in ratios)
        + f"; {name}_gpu_speedup_paired={median:.1f}"
    )
    return {
        f"{name}_gpu_speedup_paired": median,
        f"{name}_gpu_speedup_paired_min": float(min(ratios)),
        f"{name}_gpu_speedup_paired_max": float(max(ratios)),
    }


def _device_row(
    name: str,
    config: Any,
    tasks: list[Any],
    device: torch.device,
    cpu_threads: int,
    gpu_n_envs: Sequence[int],
    seed: int,
    print_fn: Callable[[str], None],
) -> tuple[dict[str, float], int]:
    """One preset's row of the table, and the sub-env count of its best device rate."""
    cpu = _cpu_throughput(config, tasks, cpu_threads, seed)
    row = {
        f"{name}_cpu_decisions_per_s": cpu["decisions_per_s"],
        f"{name}_cpu_updates_per_s": cpu["updates_per_s"],
    }
    gpu_rates = {}
    for n_envs in sorted({config.n_envs, *gpu_n_envs}):
        rates = _device_throughput(config, n_envs, tasks, device, seed)
        gpu_rates[n_envs] = rates["decisions_per_s"]
        row[f"{name}_gpu_n{n_envs}_decisions_per_s"] = rates["decisions_per_s"]
        row[f"{name}_gpu_n{n_envs}_updates_per_s"] = rates["updates_per_s"]
    best_n = max(gpu_rates, key=gpu_rates.__getitem__)
    speedup = gpu_rates[best_n] / cpu["decisions_per_s"]
    same_envs = gpu_rates[config.n_envs] / cpu["decisions_per_s"]
    row[f"{name}_gpu_speedup"] = speedup
    row[f"{name}_gpu_speedup_same_envs"] = same_envs
    names = ", ".join(task.name.split("(")[0].split("[")[0] for task in tasks)
    print_fn(
        f"{name} ({names}): CPU ({cpu_threads} threads, {config.n_envs} envs) "
        f"{cpu['decisions_per_s']:.0f} decisions/s, {cpu['updates_per_s']:.0f} updates/s; "
        f"{device} "
        + ", ".join(f"{n} envs {r:.0f}" for n, r in gpu_rates.items())
        + f" decisions/s; {name}_gpu_speedup={speedup:.1f} (at {best_n} envs) "
        f"{name}_gpu_speedup_same_envs={same_envs:.2f}"
    )
    return row, best_n


def _cpu_throughput(config: Any, tasks: list[Any], cpu_threads: int, seed: int) -> dict[str, float]:
    """`preset_throughput` of the preset as shipped, on the CPU with ``cpu_threads``."""
    with torch_threads(cpu_threads):
        return preset_throughput(config, "cpu", seed=seed, tasks=tasks)


def _device_throughput(
    config: Any, n_envs: int, tasks: list[Any], device: torch.device, seed: int
) -> dict[str, float]:
    """`preset_throughput` at ``n_envs`` sub-envs on ``device``; its memory is released."""
    sized = dataclasses.replace(config, n_envs=n_envs)
    rates = preset_throughput(sized, device, seed=seed, tasks=tasks)
    _release(device)
    return rates


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def runs_fit(
    device: torch.device,
    n_runs: int = 1024,
    n_steps: int = 3,
    print_fn: Callable[[str], None] = print,
) -> dict[str, float]:
    """Build, reset and step ``n_steps`` decisions of a vec env of ``n_runs`` runs for
    each train-split family's representative task on ``device``.

    Returns ``runs_fit_families`` (how many fit), ``runs_fit_total`` and
    ``runs_fit_peak_mib`` (the largest peak device memory of one family; 0 on CPU,
    where torch keeps no such counter).
    """
    from hpo_env import make_vec_env

    is_cuda = device.type == "cuda"
    oom_errors: tuple[type[BaseException], ...] = (
        (torch.cuda.OutOfMemoryError,) if is_cuda else (MemoryError,)
    )
    fits, peak = 0, 0.0
    families = list_families("train")
    for family in families:
        _release(device)
        if is_cuda:
            torch.cuda.reset_peak_memory_stats(device)
        vec = None
        try:
            vec = make_vec_env(n_runs, seed=0, task=task_by_name(family), device=device)
            vec.reset()
            actions = np.zeros((n_runs, len(vec.space)), dtype=np.float32)
            for _ in range(n_steps):
                vec.step(actions)
            family_peak = torch.cuda.max_memory_allocated(device) / 2**20 if is_cuda else 0.0
            fits += 1
            peak = max(peak, family_peak)
            print_fn(f"  {family}: {n_runs} runs fit, peak {family_peak:.0f} MiB on {device}")
        except oom_errors as error:
            print_fn(f"  {family}: {n_runs} runs do NOT fit on {device}: {error}")
        finally:
            if vec is not None:
                vec.close()
            del vec
    print_fn(
        f"runs_fit={fits}/{len(families)} families at {n_runs} parallel runs, "
        f"runs_fit_peak_mib={peak:.0f}"
    )
    return {
        "runs_fit_families": float(fits),
        "runs_fit_total": float(len(families)),
        "runs_fit_peak_mib": peak,
    }
