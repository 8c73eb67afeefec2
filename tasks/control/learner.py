"""The batched inner RL learner: B actor-critic agents trained in lockstep with A2C.

`ControlRun` implements `hpo_env.protocol.BatchedRun`. Each of its B runs is an
A2C agent (separate actor and critic MLPs, GAE advantages, Adam) learning one
classic-control system under its own physics context, over its own E
environments. All per-run state carries a leading run axis; every op is per
run (no reduction across runs before the final loss sum), so a run that blows
up to NaN leaves the others bit-identical, and run i depends only on the task
and ``seeds[i]``:

- ``CONTEXT_STREAM``: the run's physics context, drawn from the task's ranges;
- ``INIT_STREAM``: the actor and critic initialisation;
- ``HPARAM_STREAM``: the initial learning rate and entropy coefficient;
- ``ROLLOUT_STREAM``: start states and action sampling (counter-based, see `streams`);
- ``EVAL_STREAM``: the evaluation start states (the same ones at every evaluation).

One inner update = one rollout of ``n_steps`` over the E environments + one
gradient step. The statistics follow `hpo_env.stats`, with the RL training
objective as the "loss":

``objective = 1 + LOSS_OFFSET - normalised return``, where the normalised return
of a run is the mean over its E environments of the last *completed* training
episode's return mapped to [0, 1] by the system's return range (0 for an
environment that has not finished an episode yet). The offset keeps the
objective > 0 when the policy is perfect, so log-ratios of it stay finite.
`evaluate` uses the same form on greedy evaluation episodes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from hpo_env.stats import RL_LOSS_OFFSET, StepStats
from tasks.control.batched_env import BatchedControlEnv
from tasks.control.physics import get_system
from tasks.control.streams import stream_keys, uniforms
from tasks.engine import derive_seed, subsample_size
from tasks.nets import MlpSpec, n_params, split_params
from tasks.optim import BatchedAdam

CONTEXT_STREAM = 10
INIT_STREAM = 11
HPARAM_STREAM = 12
ROLLOUT_STREAM = 13
EVAL_STREAM = 14

CONTROL_HPARAMS = ("learning_rate", "entropy_coef")
LOSS_OFFSET = RL_LOSS_OFFSET
"""Added to ``1 - normalised return`` so the objective stays > 0 (`hpo_env.stats.RL_LOSS_OFFSET`)."""


@dataclasses.dataclass(frozen=True)
class ActorCriticConfig:
    """The inner A2C learner's fixed (uncontrolled) settings."""

    n_envs: int = 16
    """E, environments per run."""
    n_steps: int = 8
    """Rollout length per inner update (n); an update sees n * E transitions."""
    hidden: tuple[int, ...] = (32, 32)
    """Hidden widths of the actor and of the critic (tanh MLPs)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda (1.0 gives plain n-step returns, as SB3's A2C)."""
    value_coef: float = 0.5
    """Weight of the critic's squared error in the loss."""
    max_grad_norm: float | None = 0.5
    """Per-run clip of the global gradient norm (None: no clipping), as SB3's A2C."""
    normalize_advantage: bool = True
    """Standardise advantages per run and update, so ``entropy_coef`` means the same across systems."""
    adam_beta1: float = 0.9
    """Adam's beta1 (beta2 = 0.999, eps = 1e-8)."""
    max_param_abs: float = 30.0
    """Divergence guard: a run with a parameter outside [-max_param_abs, max_param_abs]
    counts as diverged and its parameters become NaN. Orthogonal init keeps weights
    within ~1.5 and healthy runs stay within ~4 (measured: lr 0.03 over a whole
    episode on CartPole and Acrobot); tanh units with weights this large are
    saturated for good (an RL run does not overflow the way a supervised loss
    does: at lr 10 Acrobot's weights freeze near 60 with the return at its
    floor), so this is where a too-hot run ends."""
    n_eval_envs: int = 8
    """Greedy evaluation episodes per run and `ControlRun.evaluate` call."""
    eval_max_steps: int = 200
    """Cap on an evaluation episode's length (keeps `evaluate` cheap; the return range is scaled to it)."""
    min_eval_subsample: int = 8
    """Fewest evaluation episodes a subsampled `ControlRun.evaluate` plays. Measured on
    CartPole at B=64: a quarter of 8 episodes saved only ~15% of the evaluation's time
    (its cost is the per-step loop, not the episode count) while adding reward noise
    of std 0.25 against a per-decision reward std of 0.55, so by default control
    runs always play all ``n_eval_envs`` episodes."""

    def __post_init__(self) -> None:
        for name in ("n_envs", "n_steps", "n_eval_envs", "eval_max_steps", "min_eval_subsample"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"ActorCriticConfig.{name} must be >= 1, got {getattr(self, name)!r}"
                )
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(
                f"ActorCriticConfig.hidden must be non-empty positive widths, got {self.hidden!r}"
            )
        if not 0.0 < self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(
                f"expected 0 < gamma <= 1 and 0 <= gae_lambda <= 1, got {self.gamma=}, {self.gae_lambda=}"
            )
        if not self.max_param_abs > 0:
            raise ValueError(f"max_param_abs must be > 0, got {self.max_param_abs!r}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm!r}")


def _orthogonal_init(net: MlpSpec, generator: torch.Generator, head_gain: float) -> Tensor:
    """One run's flat parameters: orthogonal weights (gain sqrt(2) hidden, ``head_gain``
    output) and zero biases, as stable-baselines3 initialises actor-critic MLPs."""
    parts = []
    shapes = net.param_shapes()
    for j, shape in enumerate(shapes):
        if len(shape) == 1:
            parts.append(torch.zeros(shape))
            continue
        gain = head_gain if j == len(shapes) - 2 else math.sqrt(2.0)
        weight = torch.empty(shape)
        torch.nn.init.orthogonal_(weight, gain=gain, generator=generator)
        parts.append(weight.reshape(-1))
    return torch.cat(parts)


def _sample_categorical(logits: Tensor, u: Tensor) -> Tensor:
    """Inverse-CDF sampling: one index per row of ``logits`` [..., A] from ``u`` [...]."""
    cdf = torch.softmax(logits, dim=-1).cumsum(-1)
    # Counting the first A-1 CDF entries below u gives an index in [0, A-1];
    # NaN logits give index 0 instead of raising.
    return (cdf[..., :-1] < u.unsqueeze(-1)).sum(-1)


class ControlTaskSpec(Protocol):
    """What `ControlRun` reads of its task (`tasks.control.tasks.ControlTask` is one).

    A protocol here, not an import of `tasks.control.tasks` (which imports this
    module): the two stay one-way."""

    @property
    def system(self) -> str: ...

    @property
    def learner(self) -> ActorCriticConfig: ...

    @property
    def entropy_controlled(self) -> bool: ...

    def draw_context(self, rng: np.random.Generator) -> dict[str, float]: ...

    def initial_hparams(self, rng: np.random.Generator) -> dict[str, float]: ...


class ControlRun:
    """B A2C agents on one control task, trained in lockstep (a `BatchedRun`).

    Args:
        task: the `ControlTask` (system, context ranges, learner configuration).
        seeds: one non-negative seed per run.
        device: where the runs compute; random draws are made on the CPU (or are
            counter-based), so results match across devices up to float rounding.
            Statistics, validation and hyperparameters come back on the CPU.

    Example:
        >>> from tasks.control.tasks import CARTPOLE_DEFAULT
        >>> run = CARTPOLE_DEFAULT.build([0, 1])
        >>> stats = run.train(2)
        >>> tuple(stats.train_loss.shape), run.evaluate().shape
        ((2,), torch.Size([2]))
    """

    def __init__(
        self, task: ControlTaskSpec, seeds: Sequence[int], device: torch.device | str = "cpu"
    ) -> None:
        if len(seeds) < 1:
            raise ValueError(f"ControlRun needs at least one seed, got {list(seeds)!r}")
        self.task = task
        self.device = dev = torch.device(device)
        cfg = task.learner
        self.system = get_system(task.system)
        b, e = len(seeds), cfg.n_envs
        self.actor_net = MlpSpec(self.system.obs_dim, cfg.hidden, self.system.n_actions, "tanh")
        self.critic_net = MlpSpec(self.system.obs_dim, cfg.hidden, 1, "tanh")
        self.n_actor_params = n_params(self.actor_net)
        n_total = self.n_actor_params + n_params(self.critic_net)
        self.params = torch.zeros(b, n_total, device=dev)
        self.optimizer = BatchedAdam(b, (n_total,), device=dev)
        self._beta1 = torch.full((b,), cfg.adam_beta1, dtype=torch.float64, device=dev)
        self._no_decay = torch.zeros(b, dtype=torch.float64, device=dev)
        context = self.system.default_context(b, dev)
        self.env = BatchedControlEnv(self.system, context, e, dev)
        self.eval_env = BatchedControlEnv(self.system, context, cfg.n_eval_envs, dev)
        self.rollout_keys = torch.zeros(b, 2, dtype=torch.int64, device=dev)
        self.rollout_counter = torch.zeros(b, dtype=torch.int64, device=dev)
        self.eval_keys = torch.zeros(b, 2, dtype=torch.int64, device=dev)
        self.obs = torch.zeros(b, e, self.system.obs_dim, device=dev)
        self.recent_return = torch.zeros(b, e, dtype=torch.float64, device=dev)
        """Raw return of each environment's last completed training episode."""
        self.learning_rate = torch.zeros(b, device=dev)
        self.entropy_coef = torch.zeros(b, device=dev)
        self.prev_grad = torch.zeros(b, self.n_actor_params, device=dev)
        self.has_prev_grad = torch.zeros(b, dtype=torch.bool, device=dev)
        self.n_env_steps = 0
        """Environment steps taken per run so far (the same for every run)."""
        self.reset_runs(range(b), seeds)

    # -- BatchedRun protocol ----------------------------------------------------

    @property
    def n_runs(self) -> int:
        return int(self.params.shape[0])

    @property
    def hparam_names(self) -> tuple[str, ...]:
        # A task without the entropy bonus (SB3's default ent_coef=0) offers the rate alone.
        return CONTROL_HPARAMS if self.task.entropy_controlled else ("learning_rate",)

    def get_hyperparameters(self) -> dict[str, Tensor]:
        values = {
            "learning_rate": self.learning_rate.cpu().clone(),
            "entropy_coef": self.entropy_coef.cpu().clone(),
        }
        return {name: values[name] for name in self.hparam_names}

    def set_hyperparameters(self, values: Mapping[str, Tensor]) -> None:
        unknown = set(values) - set(self.hparam_names)
        if unknown:
            raise ValueError(
                f"unknown hyperparameters {sorted(unknown)}, expected a subset of {list(self.hparam_names)}"
            )
        for name, value in values.items():
            value = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
            if value.shape[0] != self.n_runs:
                raise ValueError(
                    f"{name} must have shape [{self.n_runs}], got {tuple(value.shape)}"
                )
            setattr(self, name, value.to(self.device, copy=True))

    def reset_runs(self, indices: Sequence[int], seeds: Sequence[int]) -> None:
        indices, seeds = list(indices), [int(s) for s in seeds]
        if len(indices) != len(seeds):
            raise ValueError(
                f"expected one seed per index, got {len(indices)} indices and {len(seeds)} seeds"
            )
        task, system = self.task, self.system
        contexts = system.default_context(len(indices))
        for j, (i, seed) in enumerate(zip(indices, seeds)):
            for name, value in task.draw_context(
                np.random.default_rng(derive_seed(seed, CONTEXT_STREAM))
            ).items():
                contexts[name][j] = value
            init_gen = torch.Generator().manual_seed(derive_seed(seed, INIT_STREAM))
            actor = _orthogonal_init(self.actor_net, init_gen, head_gain=0.01)
            critic = _orthogonal_init(self.critic_net, init_gen, head_gain=1.0)
            self.params[i] = torch.cat([actor, critic])
            for name, value in task.initial_hparams(
                np.random.default_rng(derive_seed(seed, HPARAM_STREAM))
            ).items():
                getattr(self, name)[i] = value
        self.env.set_context(indices, contexts)
        self.eval_env.set_context(indices, contexts)
        self.optimizer.reset_slots(indices)
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.device)
        self.rollout_keys[idx] = stream_keys(seeds, ROLLOUT_STREAM).to(self.device)
        self.eval_keys[idx] = stream_keys(seeds, EVAL_STREAM).to(self.device)
        self.rollout_counter[idx] = 1  # draw 0 is the start states below
        u = uniforms(
            self.rollout_keys[idx],
            torch.zeros(len(indices), dtype=torch.int64, device=self.device),
            (self.task.learner.n_envs, system.n_reset_uniforms),
        )
        self.env.reset_runs(indices, u)
        self.obs[idx] = system.observe(self.env.state[idx])
        self.recent_return[idx] = system.return_range[0]  # "no episode yet" counts as the worst
        self.prev_grad[idx] = 0.0
        self.has_prev_grad[idx] = False

    def train(self, n_updates: int) -> StepStats:
        if n_updates < 1:
            raise ValueError(f"n_updates must be >= 1, got {n_updates=}")
        theta_start = self.params[:, : self.n_actor_params].clone()
        losses = []
        pg_grad = self.prev_grad
        for k in range(n_updates):
            loss, grad = self._update(want_pg_grad=k == n_updates - 1)
            losses.append(loss)
            if grad is not None:
                pg_grad = grad
        loss_k = torch.stack(losses)  # [K, B]
        theta_end = self.params[:, : self.n_actor_params]
        grad_norm = pg_grad.norm(dim=1)
        cosine = torch.nn.functional.cosine_similarity(pg_grad, self.prev_grad, dim=1, eps=1e-12)
        cosine = torch.where(self.has_prev_grad, cosine, torch.zeros_like(cosine))
        self.prev_grad = pg_grad
        self.has_prev_grad = torch.ones_like(self.has_prev_grad)
        finite = torch.isfinite(self.params).all(dim=1)
        episode_return = torch.where(finite, self._normalised_recent_return(), math.nan)
        # One stacked copy to the CPU (one device sync) for all [B] statistics.
        summary = torch.stack(
            (
                loss_k.mean(0),
                loss_k[0],
                loss_k.std(0, correction=0) if n_updates > 1 else torch.zeros_like(loss_k[0]),
                grad_norm,
                cosine,
                (theta_end - theta_start).norm(dim=1) / (theta_start.norm(dim=1) + 1e-12),
            )
        ).cpu()
        return StepStats(
            train_loss=summary[0],
            train_loss_first=summary[1],
            train_loss_std=summary[2],
            grad_norm=summary[3],
            grad_cosine=summary[4],
            update_ratio=summary[5],
            n_updates=n_updates,
            hparams=self.get_hyperparameters(),
            episode_return=episode_return.cpu(),  # float64, as the returns
        )

    def evaluate(self, fraction: float = 1.0) -> Tensor:
        """``1 + LOSS_OFFSET - normalised return`` of the greedy policy, float32 [B] on the CPU.

        Each run plays ``n_eval_envs`` episodes from the same start states at
        every call (its own ``EVAL_STREAM``), capped at ``eval_max_steps`` steps;
        the return range is scaled to that horizon. NaN for a run whose
        parameters are not finite. ``fraction`` < 1 plays only the first
        ``ceil(fraction * n_eval_envs)`` of those episodes (a fixed subsample), but
        at least ``min_eval_subsample`` of them.
        """
        return self.evaluate_prefixes((fraction,))[0]

    @torch.no_grad()
    def evaluate_prefixes(self, fractions: Sequence[float]) -> Tensor:
        """`evaluate` at several ``fractions`` from one set of episodes, float32 [F, B] (CPU)."""
        cfg, system = self.task.learner, self.system
        floor = min(cfg.min_eval_subsample, cfg.n_eval_envs)
        sizes = [max(floor, subsample_size(f, cfg.n_eval_envs)) for f in fractions]
        n_episodes = max(sizes)
        horizon = min(cfg.eval_max_steps, system.max_episode_steps)
        # The first n start states of the full set: subsamples are nested prefixes.
        u = uniforms(
            self.eval_keys,
            torch.zeros(self.n_runs, dtype=torch.int64, device=self.device),
            (cfg.n_eval_envs, system.n_reset_uniforms),
        )[:, :n_episodes]
        state = system.initial_state(u)
        actor = split_params(self.actor_net, self.params[:, : self.n_actor_params])
        total = torch.zeros(self.n_runs, n_episodes, dtype=torch.float64, device=self.device)
        done = torch.zeros(self.n_runs, n_episodes, dtype=torch.bool, device=self.device)
        for _ in range(horizon):
            action = self.actor_net.forward(actor, system.observe(state)).argmax(-1)
            state, reward, terminated = system.step_state(
                state, system.action_values(action), self.eval_env.context
            )
            total += torch.where(done, 0.0, reward)
            done |= terminated
            if bool(done.all()):
                break
        lo, hi = (r * horizon / system.max_episode_steps for r in system.return_range)
        normalised = ((total - lo) / (hi - lo)).clamp(0.0, 1.0)
        finite = torch.isfinite(self.params).all(dim=1)
        rows = []
        for n in sizes:
            val = 1.0 + LOSS_OFFSET - normalised[:, :n].mean(dim=1)
            rows.append(torch.where(finite, val, math.nan).float())
        return torch.stack(rows).cpu()

    # -- internals ----------------------------------------------------------------

    def _normalised_recent_return(self) -> Tensor:
        lo, hi = self.system.return_range
        return ((self.recent_return - lo) / (hi - lo)).mean(dim=1)

    def _update(self, want_pg_grad: bool) -> tuple[Tensor, Tensor | None]:
        """One rollout + one A2C step; returns (objective before the step [B], pg gradient or None)."""
        cfg, system = self.task.learner, self.system
        b, e, n = self.n_runs, cfg.n_envs, cfg.n_steps
        pa = self.n_actor_params
        obs_seq, action_seq, reward_seq, term_seq, trunc_seq, final_seq = [], [], [], [], [], []
        with torch.no_grad():
            actor = split_params(self.actor_net, self.params[:, :pa])
            obs = self.obs
            # One draw per update: [B, n, E, action uniform + start-state uniforms].
            u_all = uniforms(
                self.rollout_keys, self.rollout_counter, (n, e, 1 + system.n_reset_uniforms)
            )
            self.rollout_counter += 1
            for t in range(n):
                logits = self.actor_net.forward(actor, obs)
                action = _sample_categorical(logits, u_all[:, t, :, 0])
                step = self.env.step(action, u_all[:, t, :, 1:])
                self.recent_return = torch.where(step.done, step.episode_return, self.recent_return)
                obs_seq.append(obs)
                action_seq.append(action)
                reward_seq.append(step.reward)
                term_seq.append(step.terminated)
                trunc_seq.append(step.truncated)
                final_seq.append(step.final_obs)
                obs = step.obs
            self.obs = obs
            self.n_env_steps += n
        finite = torch.isfinite(self.params).all(dim=1)
        objective = torch.where(
            finite, 1.0 + LOSS_OFFSET - self._normalised_recent_return(), math.nan
        ).float()

        flat = self.params.detach().requires_grad_(True)
        actor = split_params(self.actor_net, flat[:, :pa])
        critic = split_params(self.critic_net, flat[:, pa:])
        obs_all = torch.stack(obs_seq, dim=1).reshape(b, n * e, -1)  # [B, n*E, d], time-major rows
        logits = self.actor_net.forward(actor, obs_all)
        log_probs = torch.log_softmax(logits, dim=-1)
        actions = torch.stack(action_seq, dim=1).reshape(b, n * e, 1)
        log_prob = log_probs.gather(-1, actions).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        values = self.critic_net.forward(critic, torch.cat([obs_all, self.obs], dim=1)).squeeze(-1)

        with torch.no_grad():
            v = values.detach().reshape(b, n + 1, e)
            rewards = torch.stack(reward_seq, dim=1).float()  # [B, n, E]
            term = torch.stack(term_seq, dim=1)
            trunc = torch.stack(trunc_seq, dim=1)
            done = term | trunc
            bootstrap = trunc & ~term
            if bool(bootstrap.any()):
                # A time-limit cut is not a real end: bootstrap from the last state's value.
                rb, rt, re = bootstrap.nonzero(as_tuple=True)
                rows = split_params(self.critic_net, self.params[rb, pa:])
                final_obs = torch.stack(final_seq, dim=1)[rb, rt, re].unsqueeze(1)
                final_v = self.critic_net.forward(rows, final_obs).reshape(-1)
                rewards = rewards.index_put((rb, rt, re), rewards[rb, rt, re] + cfg.gamma * final_v)
            not_done = (~done).float()
            advantages = torch.zeros(b, n, e, device=self.device)
            running = torch.zeros(b, e, device=self.device)
            for t in reversed(range(n)):
                delta = rewards[:, t] + cfg.gamma * v[:, t + 1] * not_done[:, t] - v[:, t]
                running = delta + cfg.gamma * cfg.gae_lambda * not_done[:, t] * running
                advantages[:, t] = running
            returns = (advantages + v[:, :n]).reshape(b, n * e)
            advantages = advantages.reshape(b, n * e)
            if cfg.normalize_advantage:
                advantages = (advantages - advantages.mean(1, keepdim=True)) / (
                    advantages.std(1, keepdim=True) + 1e-8
                )

        pg_loss = -(advantages * log_prob).mean(1)
        value_loss = (returns - values[:, : n * e]).square().mean(1)
        loss = pg_loss - self.entropy_coef * entropy.mean(1) + cfg.value_coef * value_loss
        pg_grad = None
        if want_pg_grad:
            (pg_full,) = torch.autograd.grad(pg_loss.sum(), flat, retain_graph=True)
            pg_grad = pg_full[:, :pa]
        (grad,) = torch.autograd.grad(loss.sum(), flat)
        if cfg.max_grad_norm is not None:
            norm = grad.norm(dim=1, keepdim=True)
            grad = grad * (cfg.max_grad_norm / (norm + 1e-6)).clamp_max(1.0)
        self.optimizer.step(self.params, grad, self.learning_rate, self._beta1, self._no_decay)
        blown = ~(self.params.abs() <= cfg.max_param_abs).all(dim=1, keepdim=True)  # NaN too
        self.params.masked_fill_(blown, math.nan)
        return objective, pg_grad
