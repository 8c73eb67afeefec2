"""Batched classic-control physics in torch: B runs x E environments per call.

Each system reproduces Gymnasium's reference dynamics (``CartPole-v1``,
``Acrobot-v1``, ``MountainCar-v0``, ``Pendulum-v1``) in float64, with the
constants that Gymnasium hard-codes lifted into a per-run *physics context*
(one value per run, shape [B]) so that tasks can vary them as the CARL
benchmark does. With the default context the trajectories match Gymnasium's
to float rounding (see ``tests/tasks/control/test_parity.py``).

A system is stateless: `initial_state`, `step_state` and `observe` are pure
functions of tensors. `BatchedControlEnv` adds what Gymnasium's wrappers add:
the time limit, episode bookkeeping and auto-reset. Randomness (start states)
comes in from the caller as uniforms, so the physics never owns a generator.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from hpo_env.errors import unknown_name_error

Context = Mapping[str, Tensor]
"""Physics constants, name -> float64 tensor broadcastable against [B, E] (usually [B, 1])."""


class ControlSystem:
    """A classic-control system: dynamics, start-state distribution and observation.

    Subclasses set the class attributes and implement the three methods.
    """

    name: ClassVar[str]
    gym_id: ClassVar[str]
    """The Gymnasium id whose dynamics the default context reproduces."""
    state_dim: ClassVar[int]
    obs_dim: ClassVar[int]
    n_actions: ClassVar[int]
    """Number of discrete actions (continuous systems: size of the torque grid a
    discrete policy uses, see `action_values`)."""
    max_episode_steps: ClassVar[int]
    return_range: ClassVar[tuple[float, float]]
    """(worst, best) episodic return under the time limit, for normalisation."""
    n_reset_uniforms: ClassVar[int]
    """Uniforms consumed per environment by `initial_state`."""
    context_defaults: ClassVar[dict[str, float]]
    """Gymnasium's constants, the default physics context."""

    def initial_state(self, u: Tensor) -> Tensor:
        """Start states [..., state_dim] float64 from uniforms u [..., n_reset_uniforms]
        (as Gymnasium's, the distribution does not depend on the physics context)."""
        raise NotImplementedError

    def step_state(
        self, state: Tensor, action: Tensor, context: Context
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One step: (next_state, reward float64, terminated bool), batched over leading dims."""
        raise NotImplementedError

    def observe(self, state: Tensor) -> Tensor:
        """Observation float32 [..., obs_dim], as Gymnasium returns it."""
        raise NotImplementedError

    def action_values(self, action: Tensor) -> Tensor:
        """What `step_state` receives for an action: discrete systems take the index
        itself; continuous ones map an integer index onto their grid and pass a
        floating-point action through unchanged."""
        return action

    def default_context(self, n_runs: int) -> dict[str, Tensor]:
        """The Gymnasium constants as a context of [B] float64 tensors."""
        return {
            k: torch.full((n_runs,), v, dtype=torch.float64)
            for k, v in self.context_defaults.items()
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self).__name__)


class CartPole(ControlSystem):
    """``CartPole-v1``: +1 per step including the terminating one, 500-step limit."""

    name = "cartpole"
    gym_id = "CartPole-v1"
    state_dim = 4
    obs_dim = 4
    n_actions = 2
    max_episode_steps = 500
    return_range = (0.0, 500.0)
    n_reset_uniforms = 4
    context_defaults: ClassVar[dict[str, float]] = {
        "gravity": 9.8,
        "masscart": 1.0,
        "masspole": 0.1,
        "length": 0.5,  # half the pole's length, as in Gymnasium
        "force_mag": 10.0,
    }
    tau = 0.02
    theta_threshold = 12 * 2 * math.pi / 360
    x_threshold = 2.4

    def initial_state(self, u: Tensor) -> Tensor:
        return -0.05 + 0.1 * u

    def step_state(
        self, state: Tensor, action: Tensor, context: Context
    ) -> tuple[Tensor, Tensor, Tensor]:
        x, x_dot, theta, theta_dot = state.unbind(-1)
        gravity, length, masspole = context["gravity"], context["length"], context["masspole"]
        total_mass = masspole + context["masscart"]
        polemass_length = masspole * length
        force = torch.where(action == 1, context["force_mag"], -context["force_mag"])
        costheta, sintheta = torch.cos(theta), torch.sin(theta)
        # Same operation order as Gymnasium, so rounding matches too.
        temp = (force + polemass_length * theta_dot.square() * sintheta) / total_mass
        thetaacc = (gravity * sintheta - costheta * temp) / (
            length * (4.0 / 3.0 - masspole * costheta.square() / total_mass)
        )
        xacc = temp - polemass_length * thetaacc * costheta / total_mass
        x = x + self.tau * x_dot
        x_dot = x_dot + self.tau * xacc
        theta = theta + self.tau * theta_dot
        theta_dot = theta_dot + self.tau * thetaacc
        next_state = torch.stack((x, x_dot, theta, theta_dot), dim=-1)
        terminated = (x.abs() > self.x_threshold) | (theta.abs() > self.theta_threshold)
        return next_state, torch.ones_like(x), terminated

    def observe(self, state: Tensor) -> Tensor:
        return state.float()


def _wrap_angle(x: Tensor) -> Tensor:
    # Gymnasium's `wrap` subtracts 2*pi while x > pi; one step moves an angle by
    # at most dt * max_vel < 2*pi, so two conditional passes cover every case.
    diff = 2 * math.pi
    for _ in range(2):
        x = torch.where(x > math.pi, x - diff, x)
        x = torch.where(x < -math.pi, x + diff, x)
    return x


class Acrobot(ControlSystem):
    """``Acrobot-v1`` ("book" dynamics, RK4 over dt=0.2): -1 per step, 0 on reaching the line."""

    name = "acrobot"
    gym_id = "Acrobot-v1"
    state_dim = 4
    obs_dim = 6
    n_actions = 3
    max_episode_steps = 500
    return_range = (-500.0, 0.0)
    n_reset_uniforms = 4
    context_defaults: ClassVar[dict[str, float]] = {
        "link_length_1": 1.0,
        "link_mass_1": 1.0,
        "link_mass_2": 1.0,
        "link_com_pos_1": 0.5,
        "link_com_pos_2": 0.5,
        "link_moi": 1.0,
        "gravity": 9.8,
        "torque": 1.0,
    }
    dt = 0.2
    max_vel_1 = 4 * math.pi
    max_vel_2 = 9 * math.pi

    def initial_state(self, u: Tensor) -> Tensor:
        # Gymnasium draws the start state in float32.
        return (-0.1 + 0.2 * u).float().double()

    @staticmethod
    def _constants(context: Context) -> dict[str, Tensor]:
        # Context-only products, computed once per step instead of once per RK4
        # stage; each keeps Gymnasium's association order so rounding is unchanged.
        m1, m2 = context["link_mass_1"], context["link_mass_2"]
        l1 = context["link_length_1"]
        lc1, lc2 = context["link_com_pos_1"], context["link_com_pos_2"]
        moi, g = context["link_moi"], context["gravity"]
        return {
            "m2": m2,
            "moi": moi,
            "m1_lc1sq": m1 * lc1**2,
            "l1sq_lc2sq": l1**2 + lc2**2,
            "two_l1_lc2": 2 * l1 * lc2,
            "lc2sq": lc2**2,
            "l1_lc2": l1 * lc2,
            "m2_lc2_g": m2 * lc2 * g,
            "neg_m2_l1_lc2": -m2 * l1 * lc2,
            "two_m2_l1_lc2": 2 * m2 * l1 * lc2,
            "m1lc1_m2l1_g": (m1 * lc1 + m2 * l1) * g,
            "m2_l1_lc2": m2 * l1 * lc2,
            "m2_lc2sq_moi": m2 * lc2**2 + moi,
        }

    @staticmethod
    def _dsdt(s: Tensor, torque: Tensor, c: dict[str, Tensor]) -> Tensor:
        theta1, theta2, dtheta1, dtheta2 = s.unbind(-1)
        cos2, sin2 = torch.cos(theta2), torch.sin(theta2)
        d1 = (
            c["m1_lc1sq"]
            + c["m2"] * (c["l1sq_lc2sq"] + c["two_l1_lc2"] * cos2)
            + c["moi"]
            + c["moi"]
        )
        d2 = c["m2"] * (c["lc2sq"] + c["l1_lc2"] * cos2) + c["moi"]
        phi2 = c["m2_lc2_g"] * torch.cos(theta1 + theta2 - math.pi / 2.0)
        phi1 = (
            c["neg_m2_l1_lc2"] * dtheta2**2 * sin2
            - c["two_m2_l1_lc2"] * dtheta2 * dtheta1 * sin2
            + c["m1lc1_m2l1_g"] * torch.cos(theta1 - math.pi / 2)
            + phi2
        )
        ddtheta2 = (torque + d2 / d1 * phi1 - c["m2_l1_lc2"] * dtheta1**2 * sin2 - phi2) / (
            c["m2_lc2sq_moi"] - d2**2 / d1
        )
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return torch.stack((dtheta1, dtheta2, ddtheta1, ddtheta2), dim=-1)

    def step_state(
        self, state: Tensor, action: Tensor, context: Context
    ) -> tuple[Tensor, Tensor, Tensor]:
        torque = (action.to(torch.float64) - 1.0) * context["torque"]
        c = self._constants(context)
        dt, dt2 = self.dt, self.dt / 2.0
        k1 = self._dsdt(state, torque, c)
        k2 = self._dsdt(state + dt2 * k1, torque, c)
        k3 = self._dsdt(state + dt2 * k2, torque, c)
        k4 = self._dsdt(state + dt * k3, torque, c)
        ns = state + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        theta1, theta2, dtheta1, dtheta2 = ns.unbind(-1)
        next_state = torch.stack(
            (
                _wrap_angle(theta1),
                _wrap_angle(theta2),
                dtheta1.clamp(-self.max_vel_1, self.max_vel_1),
                dtheta2.clamp(-self.max_vel_2, self.max_vel_2),
            ),
            dim=-1,
        )
        t1, t2 = next_state[..., 0], next_state[..., 1]
        terminated = -torch.cos(t1) - torch.cos(t2 + t1) > 1.0
        reward = torch.where(terminated, 0.0, -1.0).to(torch.float64)
        return next_state, reward, terminated

    def observe(self, state: Tensor) -> Tensor:
        t1, t2, d1, d2 = state.unbind(-1)
        return torch.stack(
            (torch.cos(t1), torch.sin(t1), torch.cos(t2), torch.sin(t2), d1, d2), dim=-1
        ).float()


class MountainCar(ControlSystem):
    """``MountainCar-v0``: -1 per step, 200-step limit, goal at position 0.5."""

    name = "mountaincar"
    gym_id = "MountainCar-v0"
    state_dim = 2
    obs_dim = 2
    n_actions = 3
    max_episode_steps = 200
    return_range = (-200.0, 0.0)
    n_reset_uniforms = 1
    context_defaults: ClassVar[dict[str, float]] = {"force": 0.001, "gravity": 0.0025}
    min_position = -1.2
    max_position = 0.6
    max_speed = 0.07
    goal_position = 0.5

    def initial_state(self, u: Tensor) -> Tensor:
        position = -0.6 + 0.2 * u[..., 0]
        return torch.stack((position, torch.zeros_like(position)), dim=-1)

    def step_state(
        self, state: Tensor, action: Tensor, context: Context
    ) -> tuple[Tensor, Tensor, Tensor]:
        position, velocity = state.unbind(-1)
        push = (action.to(torch.float64) - 1.0) * context["force"]
        velocity = velocity + push + torch.cos(3 * position) * (-context["gravity"])
        velocity = velocity.clamp(-self.max_speed, self.max_speed)
        position = (position + velocity).clamp(self.min_position, self.max_position)
        velocity = torch.where((position == self.min_position) & (velocity < 0), 0.0, velocity)
        terminated = position >= self.goal_position  # goal_velocity is 0 and velocity >= 0 there
        terminated = terminated & (velocity >= 0)
        return (
            torch.stack((position, velocity), dim=-1),
            torch.full_like(position, -1.0),
            terminated,
        )

    def observe(self, state: Tensor) -> Tensor:
        return state.float()


class Pendulum(ControlSystem):
    """``Pendulum-v1``: continuous torque in [-2, 2], never terminates, 200-step limit.

    `step_state` takes the torque itself; a discrete policy picks from a grid of
    `n_actions` torques via `action_values`.
    """

    name = "pendulum"
    gym_id = "Pendulum-v1"
    state_dim = 2
    obs_dim = 3
    n_actions = 5
    max_episode_steps = 200
    # Worst cost per step is pi^2 + 0.1 * 8^2 + 0.001 * 2^2.
    return_range = (-200.0 * (math.pi**2 + 6.4 + 0.004), 0.0)
    n_reset_uniforms = 2
    context_defaults: ClassVar[dict[str, float]] = {
        "g": 10.0,
        "m": 1.0,
        "l": 1.0,
        "max_torque": 2.0,
    }
    max_speed = 8.0
    dt = 0.05

    def initial_state(self, u: Tensor) -> Tensor:
        theta = -math.pi + 2 * math.pi * u[..., 0]
        theta_dot = -1.0 + 2.0 * u[..., 1]
        return torch.stack((theta, theta_dot), dim=-1)

    def action_values(self, action: Tensor) -> Tensor:
        if action.is_floating_point():  # already a torque
            return action
        return action.to(torch.float64) * (4.0 / (self.n_actions - 1)) - 2.0

    def step_state(
        self, state: Tensor, action: Tensor, context: Context
    ) -> tuple[Tensor, Tensor, Tensor]:
        th, thdot = state.unbind(-1)
        g, m, length = context["g"], context["m"], context["l"]
        max_torque = context["max_torque"]
        u = torch.minimum(torch.maximum(action.to(torch.float64), -max_torque), max_torque)
        th_normalized = torch.remainder(th + math.pi, 2 * math.pi) - math.pi
        costs = th_normalized**2 + 0.1 * thdot**2 + 0.001 * u**2
        newthdot = (
            thdot + (3 * g / (2 * length) * torch.sin(th) + 3.0 / (m * length**2) * u) * self.dt
        )
        newthdot = newthdot.clamp(-self.max_speed, self.max_speed)
        newth = th + newthdot * self.dt
        return (
            torch.stack((newth, newthdot), dim=-1),
            -costs,
            torch.zeros_like(th, dtype=torch.bool),
        )

    def observe(self, state: Tensor) -> Tensor:
        th, thdot = state.unbind(-1)
        return torch.stack((torch.cos(th), torch.sin(th), thdot), dim=-1).float()


SYSTEMS: dict[str, ControlSystem] = {
    s.name: s for s in (CartPole(), Acrobot(), MountainCar(), Pendulum())
}


def get_system(name: str) -> ControlSystem:
    """The system called ``name``, e.g. ``"cartpole"``."""
    if name not in SYSTEMS:
        raise unknown_name_error("control system", name, SYSTEMS)
    return SYSTEMS[name]


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


class BatchedControlEnv:
    """B runs x E environments of one system, each run with its own physics context.

    Auto-resets finished environments in the same step (the returned ``obs`` is
    the new episode's first observation; ``final_obs`` holds the last one).

    Args:
        system: the dynamics.
        context: name -> [B] float64 values; missing names take the defaults.
        n_envs: E, environments per run.

    Example:
        >>> env = BatchedControlEnv(CartPole(), CartPole().default_context(2), n_envs=3)
        >>> obs = env.reset(torch.full((2, 3, 4), 0.5))
        >>> step = env.step(torch.ones(2, 3, dtype=torch.long), torch.full((2, 3, 4), 0.5))
        >>> tuple(step.obs.shape), bool(step.terminated.any())
        ((2, 3, 4), False)
    """

    def __init__(self, system: ControlSystem, context: Mapping[str, Tensor], n_envs: int) -> None:
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
        n_runs = sizes.pop() if sizes else 1
        self.system = system
        self.n_runs = n_runs
        self.n_envs = n_envs
        full = system.default_context(n_runs)
        full.update(
            {k: torch.as_tensor(v, dtype=torch.float64).reshape(n_runs) for k, v in context.items()}
        )
        self._context_flat = full
        self.context = {k: v.reshape(n_runs, 1) for k, v in full.items()}
        self.state = torch.zeros(n_runs, n_envs, system.state_dim, dtype=torch.float64)
        self.elapsed = torch.zeros(n_runs, n_envs, dtype=torch.int64)
        self.running_return = torch.zeros(n_runs, n_envs, dtype=torch.float64)

    def reset(self, u: Tensor) -> Tensor:
        """Start every environment afresh from uniforms u [B, E, n_reset_uniforms]."""
        self.state = self.system.initial_state(u)
        self.elapsed.zero_()
        self.running_return.zero_()
        return self.system.observe(self.state)

    def set_context(self, indices: Sequence[int], context: Mapping[str, Tensor]) -> None:
        """Replace the physics context of runs ``indices`` (values [len(indices)])."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        for k, v in context.items():
            if k not in self._context_flat:
                raise ValueError(f"{self.system.name}: unknown context name {k!r}")
            self._context_flat[k][idx] = torch.as_tensor(v, dtype=torch.float64).reshape(-1)

    def reset_runs(self, indices: Sequence[int], u: Tensor) -> None:
        """Start every environment of runs ``indices`` afresh; u is [len(indices), E, k]."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        self.state[idx] = self.system.initial_state(u)
        self.elapsed[idx] = 0
        self.running_return[idx] = 0.0

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
            self.state, system.action_values(action), self.context
        )
        self.elapsed = self.elapsed + 1
        truncated = self.elapsed >= system.max_episode_steps
        done = terminated | truncated
        episode_return = self.running_return + reward
        episode_length = self.elapsed
        final_obs = system.observe(next_state)
        self.state = next_state  # a fresh tensor: safe to overwrite rows in place
        if bool(done.any()):
            # Reset only the finished environments (usually few), not all B x E.
            rows = done.nonzero(as_tuple=True)
            self.state[rows] = system.initial_state(reset_u[rows])
            obs = system.observe(self.state)
            self.elapsed = torch.where(done, 0, self.elapsed)
            self.running_return = torch.where(done, 0.0, episode_return)
        else:
            obs, self.running_return = final_obs, episode_return
        return EnvStep(
            obs, reward, terminated, truncated, done, final_obs, episode_return, episode_length
        )
