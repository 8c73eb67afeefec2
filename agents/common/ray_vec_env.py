"""`RayVecEnv`: a stable-baselines3 `VecEnv` whose workers are Ray actors each holding one batched run.

Seeding mirrors stable-baselines3: sub-environment ``i`` (global index) is
seeded ``seed + i``, and a worker's batched run uses the seed of its first
sub-environment, so worker ``w`` whose sub-environments start at global index
``offset_w`` is exactly ``make_vec_env(envs_per_worker[w], seed=seed + offset_w)``.
With one worker, `RayVecEnv` equals ``make_vec_env(num_envs, seed)`` step for step.

Example:
    >>> from agents.common.ray_backend import ensure_ray
    >>> from agents.common.ray_vec_env import RayVecEnv
    >>> ensure_ray(num_cpus=2)                          # doctest: +SKIP
    >>> env = RayVecEnv(n_workers=2, envs_per_worker=4, seed=0)  # doctest: +SKIP
    >>> obs = env.reset()                               # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from agents.common.ray_backend import (
    WORKER_START_TIMEOUT_S,
    _import_ray,
    default_local_cpus,
    ensure_ray,
    settle,
)
from agents.common.threads import configure_threads

T = TypeVar("T")
R = TypeVar("R")


def split_envs(n_envs: int, n_workers: int) -> list[int]:
    """Sub-environments per worker, as even as possible (first workers take the remainder).

    >>> split_envs(10, 4)
    [3, 3, 2, 2]
    """
    if not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive int, got {n_workers!r}")
    if not isinstance(n_envs, int) or n_envs < n_workers:
        raise ValueError(
            f"need at least one sub-environment per worker: n_envs={n_envs!r} < n_workers={n_workers}; "
            "lower the number of workers or raise n_envs"
        )
    base, extra = divmod(n_envs, n_workers)
    return [base + (1 if w < extra else 0) for w in range(n_workers)]


def _split_task_groups(kwargs: dict[str, Any], sizes: list[int]) -> list[dict[str, Any]]:
    """Each worker's `make_vec_env` kwargs: ``task_groups`` counts groups over all the
    sub-environments, so each worker trains its share of them at the same group size
    (``sum(sizes) / task_groups`` runs of one task), as the local backend does."""
    groups = kwargs.get("task_groups", 1)
    if groups == 1:
        return [kwargs] * len(sizes)
    total = sum(sizes)
    if total % groups or any(n % (total // groups) for n in sizes):
        raise ValueError(
            f"task_groups={groups} over {total} sub-environments makes groups of "
            f"{total / groups:g} runs, which do not split over workers of {sizes} "
            "sub-environments: use a number of workers that divides task_groups"
        )
    size = total // groups
    return [{**kwargs, "task_groups": n // size} for n in sizes]


class _VecEnvWorker:
    """What one Ray actor holds: one `HPOVecEnv` (one batched run)."""

    def __init__(
        self, num_envs: int, seed: int, vec_env_kwargs: dict[str, Any], torch_threads: int
    ) -> None:

        from hpo_env.vec_env import make_vec_env

        # Ray sets OMP_NUM_THREADS per actor, but torch may already be initialised
        # with all cores; several actors per machine must not oversubscribe them.
        configure_threads(torch_threads)
        self.env = make_vec_env(num_envs, seed=seed, **vec_env_kwargs)

    def spaces(self) -> tuple[gym.Space, gym.Space]:
        return self.env.observation_space, self.env.action_space

    def reset(
        self, seed: int | None, options: list[dict[str, Any]] | None
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        if seed is not None:
            self.env.seed(seed)
        if options:
            self.env.set_options(options)
        obs = np.asarray(self.env.reset())
        return obs, self.env.reset_infos

    def step(self, actions: np.ndarray) -> VecEnvStepReturn:
        # Arrays from Ray's object store are read-only; torch warns on them.
        return self.env.step(np.array(actions))

    def get_attr(self, attr_name: str, indices: list[int]) -> list[Any]:
        return self.env.get_attr(attr_name, indices)

    def set_attr(self, attr_name: str, value: Any, indices: list[int]) -> None:
        self.env.set_attr(attr_name, value, indices)

    def env_method(
        self, method_name: str, args: tuple[Any, ...], kwargs: dict[str, Any], indices: list[int]
    ) -> list[Any]:
        return self.env.env_method(method_name, *args, indices=indices, **kwargs)

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: list[int]) -> list[bool]:
        return self.env.env_is_wrapped(wrapper_class, indices)

    def close(self) -> None:
        self.env.close()

    def rng_state(self) -> dict[str, Any]:
        return dict(self.env.rng.bit_generator.state)

    def set_rng_state(self, state: dict[str, Any]) -> None:
        self.env.rng.bit_generator.state = state


def _writable(array: Any) -> Any:
    # Arrays that come out of Ray's object store are read-only views; local
    # VecEnvs hand out writable arrays, and wrappers may write in place.
    if isinstance(array, np.ndarray) and not array.flags.writeable:
        return array.copy()
    return array


class RayVecEnv(VecEnv):
    """A stable-baselines3 `VecEnv` whose sub-environments live in Ray actors.

    Worker ``w`` holds ``make_vec_env(envs_per_worker[w], seed=seed + offset_w,
    **vec_env_kwargs)`` where ``offset_w`` is the global index of its first
    sub-environment; ``num_envs = sum(envs_per_worker)``. Semantics are those
    of the local `HPOVecEnv`: auto-reset, ``terminal_observation`` and
    ``TimeLimit.truncated`` in infos; ``seed(s)`` then ``reset()`` reseeds
    every worker as if built with seed ``s``. ``get_attr`` / ``set_attr`` /
    ``env_method`` map global indices to (worker, local index); as in
    `HPOVecEnv`, a setting applies to every sub-environment of the workers
    that own any of the given indices (their sub-environments share one run).

    ``step_async`` sends the actions to all workers without waiting and
    ``step_wait`` gathers them, so workers step in parallel.

    Args:
        n_workers: number of Ray actors.
        envs_per_worker: sub-environments per actor, one int for all or one per worker.
        seed: seed of sub-environment 0 (see above).
        vec_env_kwargs: passed to `hpo_env.make_vec_env` in every worker
            (``split``, ``hparams``, ``distribution``, ``distribution_kwargs``, ...);
            must be picklable. ``task_groups`` counts groups over all workers: each
            worker trains its share of them (group size ``num_envs / task_groups``).
        num_cpus_per_worker: CPUs Ray reserves per actor (fractions allowed).
        torch_threads: torch threads per actor (default: ``max(1, int(num_cpus_per_worker))``).
        actor_options: extra `ray.remote` options for the actors (e.g. ``{"resources": ...}``).
        start_timeout_s: how long to wait for every worker's first answer before
            raising (Ray otherwise waits for ever for CPUs it cannot find).

    Ray must be initialised first (see `ensure_ray`).
    """

    def __init__(
        self,
        n_workers: int,
        envs_per_worker: int | Sequence[int],
        seed: int = 0,
        vec_env_kwargs: dict[str, Any] | None = None,
        num_cpus_per_worker: float = 1.0,
        torch_threads: int | None = None,
        actor_options: dict[str, Any] | None = None,
        start_timeout_s: float = WORKER_START_TIMEOUT_S,
    ) -> None:
        ray = _import_ray()
        if not ray.is_initialized():
            raise RuntimeError(
                "Ray is not initialised: call agents.common.ray_backend.ensure_ray(address) "
                "(or ray.init(...)) before building a RayVecEnv"
            )
        if not isinstance(n_workers, int) or n_workers < 1:
            raise ValueError(f"n_workers must be a positive int, got {n_workers!r}")
        sizes = (
            [envs_per_worker] * n_workers
            if isinstance(envs_per_worker, int)
            else list(envs_per_worker)
        )
        if len(sizes) != n_workers or any(not isinstance(n, int) or n < 1 for n in sizes):
            raise ValueError(
                f"envs_per_worker must be a positive int or {n_workers} positive ints, got {envs_per_worker!r}"
            )
        if not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if num_cpus_per_worker < 0:
            raise ValueError(f"num_cpus_per_worker must be >= 0, got {num_cpus_per_worker=}")
        self._check_capacity(ray, n_workers, num_cpus_per_worker)

        self.n_workers = n_workers
        self.envs_per_worker = sizes
        self.offsets = [0, *itertools.accumulate(sizes)][:-1]
        # Global sub-env index -> (worker, local index).
        self._slots = [(w, i) for w, n in enumerate(sizes) for i in range(n)]
        self._ray = ray
        self._futures: list[Any] | None = None
        self._closed = False
        threads = torch_threads if torch_threads is not None else max(1, int(num_cpus_per_worker))
        actor_cls = ray.remote(_VecEnvWorker).options(
            num_cpus=num_cpus_per_worker, **(actor_options or {})
        )
        kwargs = dict(vec_env_kwargs or {})
        self.workers = [
            actor_cls.remote(n, seed + offset, worker_kwargs, threads)
            for n, offset, worker_kwargs in zip(
                sizes, self.offsets, _split_task_groups(kwargs, sizes)
            )
        ]
        spaces = self._gather(
            [w.spaces.remote() for w in self.workers],
            timeout=start_timeout_s,
            what="starting the workers",
        )
        observation_space, action_space = spaces[0]
        super().__init__(sum(sizes), observation_space, action_space)

    @staticmethod
    def _check_capacity(ray: Any, n_workers: int, cpus: float, wait_s: float = 10.0) -> None:
        # Ray returns a killed actor's CPUs a moment later: an env built right after
        # another was closed (the next ensemble member) waits for them before warning.
        deadline = time.monotonic() + wait_s
        free = ray.available_resources().get("CPU", 0.0)
        while n_workers * cpus > free and time.monotonic() < deadline:
            time.sleep(0.1)
            free = ray.available_resources().get("CPU", 0.0)
        if n_workers * cpus > free:
            total = ray.cluster_resources().get("CPU", 0.0)
            warnings.warn(
                f"{n_workers} workers x {cpus:g} CPUs exceed the {free:g} free CPUs of the "
                f"cluster ({total:g} in all): workers will wait for CPUs to free up (or for the "
                "autoscaler); use fewer workers or a smaller num_cpus_per_worker",
                stacklevel=3,
            )

    # -- plumbing ---------------------------------------------------------------

    def _gather(
        self, refs: list[Any], timeout: float | None = None, what: str = "stepping"
    ) -> list[Any]:
        ray = self._ray
        try:
            return list(ray.get(refs, timeout=timeout))
        except ray.exceptions.GetTimeoutError as exc:
            raise RuntimeError(
                f"Ray workers did not answer within {timeout:g} s while {what}: the cluster "
                f"probably lacks free CPUs for {self.n_workers} workers "
                f"(cluster resources: {ray.cluster_resources()}); use fewer workers"
            ) from exc
        except ray.exceptions.RayActorError as exc:
            settle(ray, refs)
            raise RuntimeError(
                f"a Ray worker died while {what} ({exc}); its episodes are lost: restart "
                "training from the last checkpoint (hpo-rl train --resume)"
            ) from exc
        except Exception:
            settle(ray, refs)
            raise

    def _by_worker(self, indices: VecEnvIndices) -> dict[int, list[int]]:
        """{worker: [local indices]} in order of first appearance."""
        grouped: dict[int, list[int]] = {}
        for g in self._get_indices(indices):
            w, i = self._slots[g]
            grouped.setdefault(w, []).append(i)
        return grouped

    def _get_indices(self, indices: VecEnvIndices) -> Iterable[int]:
        resolved = list(super()._get_indices(indices))
        for g in resolved:
            if not 0 <= g < self.num_envs:
                raise IndexError(
                    f"sub-environment index {g} out of range for num_envs={self.num_envs}"
                )
        return resolved

    def _per_index(
        self, indices: VecEnvIndices, call: Callable[[Any, list[int]], Any]
    ) -> list[Any]:
        """Call ``call(worker, local_indices)`` per worker; results back in the order of ``indices``."""
        order = list(self._get_indices(indices))
        grouped = self._by_worker(order)
        refs = [call(self.workers[w], local) for w, local in grouped.items()]
        answers = {w: iter(res) for w, res in zip(grouped, self._gather(refs, what="querying"))}
        return [next(answers[self._slots[g][0]]) for g in order]

    # -- VecEnv API -------------------------------------------------------------

    def reset(self) -> VecEnvObs:
        if self._futures is not None:
            # A pending step is abandoned, as the VecEnv contract allows.
            self._gather(self._futures)
            self._futures = None
        refs = []
        for w, (n, offset) in enumerate(zip(self.envs_per_worker, self.offsets)):
            seed = self._seeds[offset]
            options = self._options[offset : offset + n]
            refs.append(self.workers[w].reset.remote(seed, options if any(options) else None))
        results = self._gather(refs, what="resetting")
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [info for _, infos in results for info in infos]
        return np.concatenate([obs for obs, _ in results])

    def step_async(self, actions: np.ndarray) -> None:
        if self._futures is not None:
            raise RuntimeError("step_async called twice without step_wait")
        actions = np.asarray(actions)
        if actions.shape[0] != self.num_envs:
            raise ValueError(
                f"expected actions for {self.num_envs} sub-environments, got shape {actions.shape}"
            )
        self._futures = [
            worker.step.remote(actions[offset : offset + n])
            for worker, n, offset in zip(self.workers, self.envs_per_worker, self.offsets)
        ]

    def step_wait(self) -> VecEnvStepReturn:
        if self._futures is None:
            raise RuntimeError("step_wait called before step_async")
        results = self._gather(self._futures)
        self._futures = None
        obs = np.concatenate([r[0] for r in results])
        rewards = np.concatenate([r[1] for r in results])
        dones = np.concatenate([r[2] for r in results])
        infos: list[dict[str, Any]] = []
        for r in results:
            for info in r[3]:
                if "terminal_observation" in info:
                    info["terminal_observation"] = _writable(info["terminal_observation"])
                infos.append(info)
        return obs, rewards, dones, infos

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._futures = None
        ray = self._ray
        if not ray.is_initialized():
            return
        # Killing frees the actors' CPUs at once; the workers hold nothing to flush.
        for worker in self.workers:
            ray.kill(worker)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name in ("observation_space", "action_space") and hasattr(self, attr_name):
            return [getattr(self, attr_name) for _ in self._get_indices(indices)]
        return self._per_index(indices, lambda w, local: w.get_attr.remote(attr_name, local))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        grouped = self._by_worker(indices)
        refs = [
            self.workers[w].set_attr.remote(attr_name, value, local) for w, local in grouped.items()
        ]
        self._gather(refs, what=f"setting {attr_name!r}")

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        return self._per_index(
            indices,
            lambda w, local: w.env_method.remote(method_name, method_args, method_kwargs, local),
        )

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return self._per_index(
            indices, lambda w, local: w.env_is_wrapped.remote(wrapper_class, local)
        )

    def get_rng_states(self) -> list[dict[str, Any]]:
        """Each worker's task/seed RNG state (`numpy` bit-generator states), for checkpoints.

        The local `HPOVecEnv` exposes one ``rng``; here there is one per worker.
        """
        return self._gather([w.rng_state.remote() for w in self.workers], what="reading RNG states")

    def set_rng_states(self, states: Sequence[dict[str, Any]]) -> None:
        """Restore what `get_rng_states` returned (same number of workers)."""
        if len(states) != self.n_workers:
            raise ValueError(
                f"expected {self.n_workers} RNG states (one per worker), got {len(states)}; "
                "resume with the same ray_workers as the checkpointed run"
            )
        self._gather(
            [w.set_rng_state.remote(s) for w, s in zip(self.workers, states)],
            what="restoring RNG states",
        )

    def __del__(self) -> None:
        # Best effort: actors of a forgotten env would otherwise hold CPUs until Ray stops.
        with contextlib.suppress(Exception):
            if not getattr(self, "_closed", True):
                self.close()


# -- the trainer's entry point -------------------------------------------------


def make_ray_vec_env(
    config: Any,
    vec_env_kwargs: dict[str, Any] | None = None,
    num_cpus_per_worker: float = 1.0,
    seed: int | None = None,
) -> RayVecEnv:
    """The trainer's Ray vector environment: ``config.n_envs`` sub-environments
    split over ``config.ray_workers`` actors.

    Connects to Ray first (`ensure_ray` with ``config.ray_address``). A local
    Ray gets all cores, or more logical CPUs than cores when the workers need
    them (the actors then share cores rather than wait for ever).

    Args:
        config: a `agents.train.config.TrainConfig` (``n_envs``, ``seed``,
            ``ray_workers``, ``ray_address``, and ``distribution`` /
            ``control_weight`` / ``hparams`` / ``torch_threads`` when present).
        vec_env_kwargs: `make_vec_env` keyword arguments; when given they replace
            the ones read from ``config`` (`agents.common.vec_env_config`).
        num_cpus_per_worker: CPUs Ray reserves per actor.
        seed: overrides ``config.seed``.

    Returns:
        A `RayVecEnv` equal, with one worker, to the local trainer's
        ``make_vec_env(n_envs, seed, ...)``.
    """
    missing = [
        f for f in ("n_envs", "seed", "ray_workers", "ray_address") if not hasattr(config, f)
    ]
    if missing:
        raise TypeError(
            f"make_ray_vec_env needs a config with fields {missing}, got {type(config).__name__}"
        )
    n_workers = config.ray_workers
    sizes = split_envs(config.n_envs, n_workers)
    if config.n_envs % n_workers:
        warnings.warn(
            f"n_envs={config.n_envs} does not divide evenly over ray_workers={n_workers}: "
            f"workers get {sizes} sub-environments and the smaller ones idle at each step",
            stacklevel=2,
        )
    local_cpus = max(os.cpu_count() or 1, default_local_cpus(n_workers, num_cpus_per_worker))
    ensure_ray(config.ray_address, num_cpus=None if config.ray_address else local_cpus)
    if vec_env_kwargs is None:
        from agents.common.vec_env_config import vec_env_kwargs_from_config

        vec_env_kwargs = vec_env_kwargs_from_config(config)
    return RayVecEnv(
        n_workers,
        sizes,
        seed=config.seed if seed is None else seed,
        vec_env_kwargs=vec_env_kwargs,
        num_cpus_per_worker=num_cpus_per_worker,
        torch_threads=getattr(config, "torch_threads", None),
    )
