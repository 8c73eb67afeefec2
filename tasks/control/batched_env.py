"""`BatchedControlEnv`: B runs x E environments of one control system, with what
Gymnasium's wrappers add (time limit, episode bookkeeping, auto-reset); the physics is
`tasks.control.physics`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from tasks.control.physics import ControlSystem, Scratch


@dataclasses.dataclass
class EnvStep:
    """What one batched step returns; every tensor is [B, E]."""

    obs: Tensor
    """Observation after the step; for finished episodes, the first of the next one."""
    reward: Tensor
    terminated: Tensor
    truncated: Tensor
    """Time limit reached (as Gymnasium's ``TimeLimit``: may coincide with ``terminated``)."""
    done: Tensor
    """``terminated | truncated``: the episode ended here and the environment was reset."""
    final_obs: Tensor
    """Observation the step reached before any auto-reset (for bootstrapping truncations)."""
    episode_return: Tensor
    """Return of the episode that ended at this step (meaningful where it ended)."""
    episode_length: Tensor


def flat_nonzero(mask: Tensor) -> Tensor:
    """Indices [n] int64 of the True entries of ``mask``, flattened, on ``mask``'s device.

    On CPU, NumPy's ``flatnonzero`` measured ~4x faster than ``torch.nonzero`` for the
    sparse masks of finished episodes (B x E = 65536); other devices use torch.
    """
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.reshape(-1).nonzero().squeeze(1)


class BatchedControlEnv:
    """B runs x E environments of one system, each run with its own physics context.

    Auto-resets finished environments in the same step (the returned ``obs`` is
    the new episode's first observation; ``final_obs`` holds the last one).
    The state is stored component-major (``state`` is a [B, E, state_dim] view of
    a [state_dim, B, E] buffer) so that the physics reads contiguous planes; steps
    update that buffer in place, so a ``state`` kept across a step changes with it
    (clone it to keep it).

    Args:
        system: the dynamics.
        context: name -> [B] float64 values; missing names take the defaults.
        n_envs: E, environments per run.
        device: where the state and context live (default: the context's device, else CPU).

    Example:
        >>> env = BatchedControlEnv(CartPole(), CartPole().default_context(2), n_envs=3)
        >>> obs = env.reset(torch.full((2, 3, 4), 0.5))
        >>> step = env.step(torch.ones(2, 3, dtype=torch.long), torch.full((2, 3, 4), 0.5))
        >>> tuple(step.obs.shape), bool(step.terminated.any())
        ((2, 3, 4), False)
    """

    def __init__(
        self,
        system: ControlSystem,
        context: Mapping[str, Tensor],
        n_envs: int,
        device: torch.device | str | None = None,
    ) -> None:
        unknown = set(context) - set(system.context_defaults)
        if unknown:
            raise ValueError(
                f"{system.name}: unknown context names {sorted(unknown)}, "
                f"expected a subset of {sorted(system.context_defaults)}"
            )
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs=}")
        sizes = {int(torch.as_tensor(v).numel()) for v in context.values()}
        if len(sizes) > 1:
            raise ValueError(
                f"every context value must have the same size B, got sizes {sorted(sizes)}"
            )
        if device is None:
            devices = {torch.as_tensor(v).device for v in context.values()}
            device = devices.pop() if len(devices) == 1 else torch.device("cpu")
        self.device = torch.device(device)
        n_runs = sizes.pop() if sizes else 1
        self.system = system
        self.n_runs = n_runs
        self.n_envs = n_envs
        full = system.default_context(n_runs, self.device)
        full.update(
            {
                k: torch.as_tensor(v, dtype=torch.float64).reshape(n_runs).to(self.device)
                for k, v in context.items()
            }
        )
        self._context_flat = full
        self.context = {k: v.reshape(n_runs, 1) for k, v in full.items()}
        self._planes = torch.zeros(
            system.state_dim, n_runs, n_envs, dtype=torch.float64, device=self.device
        )
        self._scratch = Scratch()
        # Episode counters, reset lazily: entries listed in `_pending` (environments
        # reset at the end of the last step) hold their finished episode's values
        # until the next step overwrites them, which saves two full copies per step.
        self._elapsed = torch.zeros(n_runs, n_envs, dtype=torch.int64, device=self.device)
        self._running_return = torch.zeros(n_runs, n_envs, dtype=torch.float64, device=self.device)
        self._pending = torch.zeros(0, dtype=torch.int64, device=self.device)
        self._longest = 0
        """An upper bound on `elapsed` (exact after each recount), so that steps skip
        the truncation test while no episode can have reached the time limit."""

    @property
    def elapsed(self) -> Tensor:
        """Steps taken in each environment's current episode, int64 [B, E]."""
        return self._settled(self._elapsed, 0)

    @property
    def running_return(self) -> Tensor:
        """Return so far of each environment's current episode, float64 [B, E]."""
        return self._settled(self._running_return, 0.0)

    def _settled(self, counter: Tensor, start: float) -> Tensor:
        settled = counter.clone()
        settled.view(-1)[self._pending] = start
        return settled

    @property
    def state(self) -> Tensor:
        """[B, E, state_dim] float64 (a view of the component-major buffer)."""
        return self._planes.movedim(0, -1)

    @state.setter
    def state(self, value: Tensor) -> None:
        # A copy: steps update the planes in place, which must not reach ``value``.
        self._planes = (
            value.to(self._planes).movedim(-1, 0).clone(memory_format=torch.contiguous_format)
        )

    def reset(self, u: Tensor) -> Tensor:
        """Start every environment afresh from uniforms u [B, E, n_reset_uniforms]."""
        self.state = self.system.initial_state(u.to(self.device))
        # Fresh tensors: the old ones may be held as a step's episode_length / return.
        self._elapsed = torch.zeros_like(self._elapsed)
        self._running_return = torch.zeros_like(self._running_return)
        self._pending = self._pending[:0]
        self._longest = 0
        return self.system.observe(self.state)

    def set_context(self, indices: Sequence[int], context: Mapping[str, Tensor]) -> None:
        """Replace the physics context of runs ``indices`` (values [len(indices)])."""
        idx = torch.as_tensor(list(indices), dtype=torch.long, device=self.device)
        for k, v in context.items():
            if k not in self._context_flat:
                raise ValueError(f"{self.system.name}: unknown context name {k!r}")
            value = torch.as_tensor(v, dtype=torch.float64).reshape(-1).to(self.device)
            self._context_flat[k][idx] = value

    def reset_runs(self, indices: Sequence[int], u: Tensor) -> None:
        """Start every environment of runs ``indices`` afresh; u is [len(indices), E, k]."""
        idx = torch.as_tensor(list(indices), dtype=torch.long, device=self.device)
        self._planes[:, idx] = self.system.initial_state(u.to(self.device)).movedim(-1, 0)
        self._elapsed, self._running_return = self.elapsed, self.running_return  # fresh copies
        self._pending = self._pending[:0]
        self._elapsed[idx] = 0
        self._running_return[idx] = 0.0

    def observe(self) -> Tensor:
        return self.system.observe(self.state)

    def step(self, action: Tensor, reset_u: Tensor) -> EnvStep:
        """Advance every environment by one step, auto-resetting finished ones.

        Args:
            action: [B, E] discrete action indices.
            reset_u: [B, E, n_reset_uniforms] uniforms for the start states of
                environments that finish now (unused elsewhere).
        """
        system = self.system
        next_state, reward, terminated = system.step_state(
            self.state,
            system.action_values(action),
            self.context,
            scratch=self._scratch,
            out=self._planes,  # in place: no second state buffer to pull through the cache
        )
        elapsed = self._elapsed + 1
        episode_return = self._running_return + reward
        pending = self._pending  # episodes that started at the end of the last step
        if pending.numel():
            # index_fill_ / index_copy_: measured faster than indexed assignment.
            elapsed.view(-1).index_fill_(0, pending, 1)
            episode_return.view(-1).index_copy_(
                0, pending, reward.reshape(-1).index_select(0, pending)
            )
        # The truncation test (a full pass) only once some episode may have reached the
        # limit, which the bound rules out for most steps when episodes are short.
        self._longest += 1
        if self._longest >= system.max_episode_steps:
            self._longest = int(elapsed.max())
        if self._longest >= system.max_episode_steps:
            truncated = elapsed >= system.max_episode_steps
            done = terminated | truncated
        else:
            truncated = torch.zeros_like(terminated)
            done = terminated.clone()
        final_obs = system.observe(next_state)
        self._adopt(next_state)
        # Reset only the finished environments (usually few), not all B x E, on flat
        # indices: a masked select over [B, E] costs a full pass per tensor.
        finished = flat_nonzero(done)
        self._elapsed, self._running_return, self._pending = elapsed, episode_return, finished
        obs = final_obs
        if finished.numel():
            u = reset_u.to(self.device).reshape(-1, reset_u.shape[-1]).index_select(0, finished)
            start = system.initial_state(u)  # [n, state_dim]
            self._planes.view(system.state_dim, -1).index_copy_(1, finished, start.t())
            obs = self._patch_rows(final_obs, finished, system.observe(start))
        return EnvStep(obs, reward, terminated, truncated, done, final_obs, episode_return, elapsed)

    def _adopt(self, next_state: Tensor) -> None:
        """Make ``next_state`` [B, E, state_dim] the state (a no-op when it was stepped in place)."""
        planes = next_state.movedim(-1, 0)
        if planes.data_ptr() != self._planes.data_ptr():  # a system that ignored ``out``
            self._planes = planes.contiguous()

    @staticmethod
    def _patch_rows(obs: Tensor, rows: Tensor, values: Tensor) -> Tensor:
        """A copy of ``obs`` [B, E, d] with flat rows ``rows`` replaced by ``values`` [n, d].

        `observe` is row-wise, so patching the reset rows equals observing the whole
        new state, at a fraction of the cost.
        """
        planes = obs.movedim(-1, 0).clone(memory_format=torch.contiguous_format)
        planes.view(planes.shape[0], -1).index_copy_(1, rows, values.t())
        return planes.movedim(0, -1)
