"""Batched classic-control physics in torch: B runs x E environments per call.

The two systems the control families use share the context, the batched environment
and the reset/step conventions that the bit-exact parity tests pin. (MountainCar and
Pendulum, which no family used, were deleted; git history has them.)

Each system reproduces Gymnasium's reference dynamics (``CartPole-v1``,
``Acrobot-v1``) in float64, with the
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

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from hpo_env.errors import unknown_name_error

Context = Mapping[str, Tensor]
"""Physics constants, name -> float64 tensor broadcastable against [B, E] (usually [B, 1])."""


def _stack_last(parts: Sequence[Tensor]) -> Tensor:
    """``torch.stack(parts, dim=-1)`` stored component-major: a [..., k] view of a
    contiguous [k, ...] buffer.

    Every system's state and observation is used one component at a time
    (``unbind(-1)``), so component-major storage makes those planes contiguous, and
    stacking along the leading dimension is a plain copy instead of an interleave
    (measured 4x cheaper for CartPole at B x E = 65536).
    """
    return torch.stack(tuple(parts), dim=0).movedim(0, -1)


class Scratch:
    """Reusable temporaries of a step function, one buffer per name.

    A batched step makes a few dozen [B, E] temporaries; allocating them afresh
    every step costs page faults as the allocator hands large blocks back to the
    OS and takes them again (measured: a third of CartPole's step at B x E = 65536
    on a loaded 2-core machine). A step function given a `Scratch` writes its
    temporaries into these buffers instead; without one it allocates as usual.
    Only temporaries go here: what a step returns is always a fresh tensor.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def like(
        self, name: str, ref: Tensor, dtype: torch.dtype | None = None, *, n_planes: int = 0
    ) -> Tensor:
        """The buffer ``name`` with ``ref``'s shape and device (and ``dtype``, default
        ``ref``'s); with ``n_planes``, a stack [n_planes, *ref.shape] of such planes."""
        shape = (n_planes, *ref.shape) if n_planes else ref.shape
        dtype = ref.dtype if dtype is None else dtype
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype or buf.device != ref.device:
            buf = torch.empty(shape, dtype=dtype, device=ref.device)
            self._buffers[name] = buf
        return buf


class _Fresh(Scratch):
    """A `Scratch` that allocates every time (the pure-function default)."""

    def like(
        self, name: str, ref: Tensor, dtype: torch.dtype | None = None, *, n_planes: int = 0
    ) -> Tensor:
        shape = (n_planes, *ref.shape) if n_planes else ref.shape
        return torch.empty(shape, dtype=ref.dtype if dtype is None else dtype, device=ref.device)


_FRESH = _Fresh()


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
        self,
        state: Tensor,
        action: Tensor,
        context: Context,
        *,
        scratch: Scratch | None = None,
        out: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One step: (next_state, reward float64, terminated bool), batched over leading dims.

        ``scratch`` holds reusable temporaries and ``out`` (a [state_dim, ...] buffer,
        possibly ``state``'s own component-major storage for an update in place) may
        receive the next state; systems that do not use them ignore them, so callers
        must use the returned ``next_state``.
        """
        raise NotImplementedError

    def observe(self, state: Tensor) -> Tensor:
        """Observation float32 [..., obs_dim], as Gymnasium returns it."""
        raise NotImplementedError

    def action_values(self, action: Tensor) -> Tensor:
        """What `step_state` receives for an action: discrete systems take the index
        itself; continuous ones map an integer index onto their grid and pass a
        floating-point action through unchanged."""
        return action

    def default_context(
        self, n_runs: int, device: torch.device | str | None = None
    ) -> dict[str, Tensor]:
        """The Gymnasium constants as a context of [B] float64 tensors on ``device``."""
        return {
            k: torch.full((n_runs,), v, dtype=torch.float64, device=device)
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
        self,
        state: Tensor,
        action: Tensor,
        context: Context,
        *,
        scratch: Scratch | None = None,
        out: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        s = _FRESH if scratch is None else scratch
        x, _, theta, theta_dot = state.unbind(-1)  # x_dot is read in the Euler step
        gravity, length, masspole = context["gravity"], context["length"], context["masspole"]
        force_mag = context["force_mag"]
        total_mass = masspole + context["masscart"]
        polemass_length = masspole * length
        # Gymnasium's operation order, so rounding matches too. Written as in-place
        # chains over reused buffers (the step is memory-bound): a * b == b * a exactly
        # in IEEE arithmetic, so swapping the operands of one operation is safe;
        # regrouping several would not be, and is never done. Fused torch kernels
        # (addcmul, addcdiv, add with alpha) are avoided: they measured not bit-equal
        # to the separate operations (fused multiply-add).
        # Temporaries live in two [2, ...] stacks, `work` and `accel`, so that the Euler
        # step and the termination test treat cart and pole in one pass each; a plane
        # is rewritten as soon as its value is dead, and independent subexpressions are
        # ordered so that four planes suffice (fewer distinct buffers per step keep
        # more of them in cache). `accel` ends up as (xacc, thetaacc).
        work = s.like("work", x, n_planes=2)
        accel = s.like("accel", x, n_planes=2)
        work_0, work_1 = work.unbind(0)  # planes named once: each indexing costs a call
        accel_0, accel_1 = accel.unbind(0)
        # Force: -force_mag for action 0, +force_mag for action 1 (Gymnasium's action
        # space; other actions raise), looked up per run in one pass (a gather
        # measured 3x cheaper than a comparison and a select on CPU).
        table = torch.cat((-force_mag, force_mag), dim=-1).expand(*x.shape[:-1], 2)
        index = action if action.dtype == torch.int64 else action.long()
        force = torch.gather(table, -1, index.expand_as(x), out=accel_0)
        costheta = torch.cos(theta, out=work_1)
        sintheta = torch.sin(theta, out=accel_1)
        # temp = (force + polemass_length * theta_dot**2 * sintheta) / total_mass
        temp = torch.mul(theta_dot, theta_dot, out=work_0)
        temp.mul_(polemass_length).mul_(sintheta).add_(force).div_(total_mass)
        # thetaacc = (gravity * sintheta - costheta * temp) / denom: the numerator first,
        # over sin's plane, then denom = length * (4/3 - masspole * costheta**2 / total_mass)
        thetaacc = sintheta.mul_(gravity).sub_(torch.mul(costheta, temp, out=accel_0))
        denom = torch.mul(costheta, costheta, out=accel_0)
        denom.mul_(masspole).div_(total_mass)
        torch.sub(state.new_tensor(4.0 / 3.0), denom, out=denom).mul_(length)
        thetaacc.div_(denom)
        # xacc = temp - polemass_length * thetaacc * costheta / total_mass, over denom's plane
        xacc = torch.mul(thetaacc, polemass_length, out=accel_0)
        xacc.mul_(costheta).div_(total_mass)
        torch.sub(temp, xacc, out=xacc)
        # Euler step (x + tau * x_dot, ...) on [2, 2, ...] views, (position, velocity)
        # x (cart, pole): the products go to the scratch stacks and each sum straight
        # into component-major storage, which may be the state's own (every state
        # plane is read before it is overwritten).
        planes = state.new_empty((4, *x.shape)) if out is None else out
        position_now, velocity_now = state.movedim(-1, 0).unflatten(0, (2, 2)).unbind(1)
        position, velocity = planes.unflatten(0, (2, 2)).unbind(1)
        torch.add(torch.mul(velocity_now, self.tau, out=work), position_now, out=position)
        torch.add(accel.mul_(self.tau), velocity_now, out=velocity)
        # |x| > x_threshold or |theta| > theta_threshold (the same as two comparisons
        # each for every float, NaN included), both at once. The comparison writes 0/1
        # floats and "either" is their sum: on CPU a comparison with bool output runs a
        # scalar loop (2x slower than with float output); this path measured ~20% less.
        magnitude = torch.abs(position, out=accel)
        torch.gt(magnitude, self._thresholds(magnitude), out=work)
        terminated = work_0.add_(work_1).bool()  # work = (x outside, theta outside)
        return planes.movedim(0, -1), torch.ones_like(x), terminated

    def _thresholds(self, ref: Tensor) -> Tensor:
        """(x_threshold, theta_threshold) as a [2, 1, ...] tensor against ``ref`` [2, ...]."""
        values = ref.new_tensor((self.x_threshold, self.theta_threshold))
        return values.reshape(2, *([1] * (ref.dim() - 1)))

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
        return _stack_last((dtheta1, dtheta2, ddtheta1, ddtheta2))

    def step_state(
        self,
        state: Tensor,
        action: Tensor,
        context: Context,
        *,
        scratch: Scratch | None = None,
        out: Tensor | None = None,
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
        next_state = _stack_last(
            (
                _wrap_angle(theta1),
                _wrap_angle(theta2),
                dtheta1.clamp(-self.max_vel_1, self.max_vel_1),
                dtheta2.clamp(-self.max_vel_2, self.max_vel_2),
            )
        )
        t1, t2 = next_state[..., 0], next_state[..., 1]
        terminated = -torch.cos(t1) - torch.cos(t2 + t1) > 1.0
        reward = torch.where(terminated, 0.0, -1.0).to(torch.float64)
        return next_state, reward, terminated

    def observe(self, state: Tensor) -> Tensor:
        t1, t2, d1, d2 = state.unbind(-1)
        return _stack_last(
            (torch.cos(t1), torch.sin(t1), torch.cos(t2), torch.sin(t2), d1, d2)
        ).float()


SYSTEMS: dict[str, ControlSystem] = {s.name: s for s in (CartPole(), Acrobot())}


def get_system(name: str) -> ControlSystem:
    """The system called ``name``, e.g. ``"cartpole"``."""
    if name not in SYSTEMS:
        raise unknown_name_error("control system", name, SYSTEMS)
    return SYSTEMS[name]
