"""Batched physics vs Gymnasium's reference environments, step by step.

Both sides start from the same state and see the same actions; the
observations, rewards, termination and truncation must agree (1e-5) over
long horizons that include terminations, truncations and resets (after a
reset the Gymnasium state is re-synced to ours, since start states come from
different random streams).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from tasks.control.batched_env import BatchedControlEnv
from tasks.control.physics import (
    SYSTEMS,
    Acrobot,
    CartPole,
    ControlSystem,
    Scratch,
)

N_STEPS = {"cartpole": 1200, "acrobot": 800}


def _heuristic_action(
    system: ControlSystem, obs: np.ndarray, rng: np.random.Generator, competent: bool
) -> int | float:
    """A noisy controller or a random one, so that terminations and truncations both occur."""
    if not competent or rng.random() < 0.15:
        return int(rng.integers(system.n_actions))
    if system.name == "cartpole":
        return int(obs[2] + 0.5 * obs[3] > 0)
    return 2 if obs[5] > 0 else 0  # acrobot: pump energy along link 2's swing


def _sync(gym_env: gym.Env, env: BatchedControlEnv) -> None:
    gym_env.reset()
    gym_env.unwrapped.state = env.state[0, 0].numpy().copy()


@pytest.mark.parametrize("name", sorted(SYSTEMS))
def test_trajectory_matches_gymnasium(name: str) -> None:
    system = SYSTEMS[name]
    rng = np.random.default_rng(0)
    gym_env = gym.make(system.gym_id)
    env = BatchedControlEnv(system, system.default_context(1), n_envs=1)
    obs = env.reset(torch.as_tensor(rng.random((1, 1, system.n_reset_uniforms))))
    _sync(gym_env, env)
    n_terminated = n_truncated = n_episodes = 0
    for t in range(N_STEPS[name]):
        action = _heuristic_action(system, obs[0, 0].numpy(), rng, competent=n_episodes % 2 == 0)
        gym_obs, gym_reward, gym_term, gym_trunc, _ = gym_env.step(action)
        step = env.step(
            torch.tensor([[action]]), torch.as_tensor(rng.random((1, 1, system.n_reset_uniforms)))
        )
        np.testing.assert_allclose(
            step.final_obs[0, 0].numpy(), gym_obs, atol=1e-5, err_msg=f"step {t}"
        )
        assert step.reward[0, 0].item() == pytest.approx(gym_reward, abs=1e-5), f"step {t}"
        assert bool(step.terminated[0, 0]) == gym_term, f"terminated differs at step {t}"
        assert bool(step.truncated[0, 0]) == gym_trunc, f"truncated differs at step {t}"
        if gym_term or gym_trunc:
            n_terminated += gym_term
            n_truncated += gym_trunc and not gym_term
            n_episodes += 1
            _sync(gym_env, env)
        obs = step.obs
    # The horizon must have exercised the episode ends the system has.
    assert n_terminated > 0
    assert n_truncated > 0


@pytest.mark.filterwarnings("ignore:.*already returned terminated")
def test_state_matches_gymnasium_in_float64() -> None:
    """Beyond float32 observations: the float64 state itself, over 500 steps without resets."""
    for system in (CartPole(), Acrobot()):
        rng = np.random.default_rng(1)
        gym_env = gym.make(system.gym_id).unwrapped
        gym_env.reset(seed=0)
        ctx = {k: v.reshape(1, 1) for k, v in system.default_context(1).items()}
        state = torch.tensor([0.0, 0.0, 0.01, 0.0], dtype=torch.float64).reshape(1, 1, 4)
        gym_env.state = state[0, 0].numpy().copy()
        for t in range(500):
            action = int(rng.integers(system.n_actions))
            if system.name == "cartpole":  # keep the pole up so the state stays in range
                action = (
                    int(state[0, 0, 2] + 0.5 * state[0, 0, 3] > 0) if rng.random() > 0.2 else action
                )
            gym_env.step(action)
            state, _, _ = system.step_state(state, torch.tensor([[action]]), ctx)
            np.testing.assert_allclose(
                state[0, 0].numpy(), gym_env.state, atol=1e-9, err_msg=f"{system.name} step {t}"
            )


def test_nondefault_cartpole_context_matches_gymnasium_with_same_constants() -> None:
    system = CartPole()
    constants = {
        "gravity": 15.0,
        "masscart": 1.7,
        "masspole": 0.3,
        "length": 0.8,
        "force_mag": 14.0,
    }
    gym_env = gym.make("CartPole-v1").unwrapped
    gym_env.reset(seed=0)
    for k, v in constants.items():
        setattr(gym_env, k, v)
    gym_env.total_mass = constants["masspole"] + constants["masscart"]
    gym_env.polemass_length = constants["masspole"] * constants["length"]
    ctx = {k: torch.tensor([[v]], dtype=torch.float64) for k, v in constants.items()}
    state = torch.tensor([[[0.01, -0.02, 0.03, 0.0]]], dtype=torch.float64)
    gym_env.state = state[0, 0].numpy().copy()
    rng = np.random.default_rng(2)
    for t in range(300):
        action = (
            int(state[0, 0, 2] + 0.5 * state[0, 0, 3] > 0)
            if rng.random() > 0.2
            else int(rng.integers(2))
        )
        _, _, term, _, _ = gym_env.step(action)
        state, _, terminated = system.step_state(state, torch.tensor([[action]]), ctx)
        np.testing.assert_allclose(
            state[0, 0].numpy(), gym_env.state, atol=1e-9, err_msg=f"step {t}"
        )
        assert bool(terminated[0, 0]) == term
        if term:
            break


def test_runs_are_independent_of_batch_size_and_neighbours() -> None:
    """Run 0 stepped alone equals run 0 stepped next to runs with other physics."""
    system = CartPole()
    rng = np.random.default_rng(3)
    n_steps, n_envs = 200, 3
    actions = torch.as_tensor(rng.integers(0, 2, (n_steps, 3, n_envs)))
    resets = torch.as_tensor(rng.random((n_steps + 1, 3, n_envs, 4)))
    ctx3 = system.default_context(3)
    ctx3["gravity"] = torch.tensor([9.8, 25.0, float("nan")], dtype=torch.float64)
    alone = BatchedControlEnv(system, system.default_context(1), n_envs)
    batch = BatchedControlEnv(system, ctx3, n_envs)
    alone.reset(resets[0, :1])
    batch.reset(resets[0])
    for t in range(n_steps):
        a = alone.step(actions[t, :1], resets[t + 1, :1])
        b = batch.step(actions[t], resets[t + 1])
        assert torch.equal(a.obs[0], b.obs[0])
        assert torch.equal(a.terminated[0], b.terminated[0])


def test_step_results_are_not_overwritten_by_later_steps() -> None:
    """The env reuses buffers between steps; what a step returned must stay as it was."""
    system = CartPole()
    env = BatchedControlEnv(system, system.default_context(2), n_envs=64)
    gen = torch.Generator().manual_seed(0)
    env.reset(torch.rand(2, 64, 4, dtype=torch.float64, generator=gen))
    actions = torch.randint(0, 2, (30, 2, 64), generator=gen)
    held = []
    for t in range(30):
        step = env.step(actions[t], torch.rand(2, 64, 4, dtype=torch.float64, generator=gen))
        held.append((step, {k: v.clone() for k, v in vars(step).items()}))
    assert any(bool(step.done.any()) for step, _ in held)  # resets happened
    for step, copies in held:
        for name, value in vars(step).items():
            assert torch.equal(value, copies[name]), name


def test_flat_nonzero_matches_torch() -> None:
    from tasks.control.batched_env import flat_nonzero

    mask = torch.rand(3, 50, generator=torch.Generator().manual_seed(1)) > 0.8
    assert torch.equal(flat_nonzero(mask), mask.reshape(-1).nonzero().squeeze(1))
    assert flat_nonzero(torch.zeros(4, 4, dtype=torch.bool)).numel() == 0


def test_cartpole_step_in_place_and_with_scratch_equals_the_pure_step() -> None:
    """The env steps CartPole in place over reused buffers; the result must be bit-equal
    to the allocating step, NaN and out-of-range states included."""
    system = CartPole()
    gen = torch.Generator().manual_seed(4)
    state = (torch.rand(3, 37, 4, dtype=torch.float64, generator=gen) - 0.5) * 6
    state[0, :3] = float("nan")
    state[1, 0] = float("inf")
    ctx = {k: v.reshape(3, 1) for k, v in system.default_context(3).items()}
    ctx["length"] = torch.tensor([[0.5], [0.9], [0.2]], dtype=torch.float64)
    action = torch.randint(0, 2, (3, 37), generator=gen)
    expected = system.step_state(state, action, ctx)
    planes = state.movedim(-1, 0).contiguous()
    scratch = Scratch()
    for _ in range(2):  # the second call reuses the scratch buffers
        planes_now = planes.clone()
        got = system.step_state(
            planes_now.movedim(0, -1), action, ctx, scratch=scratch, out=planes_now
        )
        assert got[0].data_ptr() == planes_now.data_ptr()
        for a, b in zip(got, expected, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.contiguous().numpy().tobytes() == b.contiguous().numpy().tobytes()
