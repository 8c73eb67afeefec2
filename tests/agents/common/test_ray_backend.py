"""`RayVecEnv` and `ray_map` against the local vector environment, on a real Ray.

The parity tests are the contract: the same seeds give identical observation,
reward, done and terminal-observation traces through Ray actors and through
local `HPOVecEnv`s seeded as `agents.ray_backend` documents.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ray")

from agents.common.ray_backend import ray_map
from agents.common.ray_vec_env import RayVecEnv, make_ray_vec_env, split_envs
from hpo_env import make_vec_env
from tests.hpo_env.tiny_task import TinySampler

# Tests that start Ray or its actors are marked slow: both take seconds here.

KWARGS = {"distribution": TinySampler(), "hparams": ("learning_rate",)}


def _actions(n_envs: int, n_steps: int = 14, seed: int = 7) -> np.ndarray:
    """Seeded random actions [steps, envs, 1], some large enough to make runs
    diverge and restart mid-round."""
    return np.random.default_rng(seed).uniform(-1, 1, size=(n_steps, n_envs, 1)).astype(np.float32)


def _trace(env, actions: np.ndarray) -> list[tuple]:
    """(obs, reward, done, terminal obs) per step."""
    out = [(env.reset().copy(), None, None, None)]
    for step_actions in actions:
        obs, reward, done, infos = env.step(step_actions)
        terminal = [info.get("terminal_observation") for info in infos]
        truncated = [
            info.get("TimeLimit.truncated") for info in infos if "terminal_observation" in info
        ]
        assert all(t is False for t in truncated)
        out.append((obs.copy(), reward.copy(), done.copy(), terminal))
    return out


def _assert_same(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for step, (x, y) in enumerate(zip(a, b)):
        np.testing.assert_array_equal(x[0], y[0], err_msg=f"obs differ at step {step}")
        if x[1] is None:
            continue
        np.testing.assert_array_equal(x[1], y[1], err_msg=f"rewards differ at step {step}")
        np.testing.assert_array_equal(x[2], y[2], err_msg=f"dones differ at step {step}")
        for tx, ty in zip(x[3], y[3]):
            assert (tx is None) == (ty is None)
            if tx is not None:
                np.testing.assert_array_equal(tx, ty)


def _concat(traces: list[list[tuple]]) -> list[tuple]:
    out = []
    for steps in zip(*traces):
        obs = np.concatenate([s[0] for s in steps])
        if steps[0][1] is None:
            out.append((obs, None, None, None))
            continue
        out.append(
            (
                obs,
                np.concatenate([s[1] for s in steps]),
                np.concatenate([s[2] for s in steps]),
                [t for s in steps for t in s[3]],
            )
        )
    return out


@pytest.fixture(scope="module")
def two_workers(ray_session):
    """Two workers of uneven size (3 + 2), shared by the tests of this module.

    Its actors reserve no CPUs, so tasks of other tests can still be scheduled
    on the session's 2 CPUs while it lives."""
    env = RayVecEnv(2, [3, 2], seed=5, vec_env_kwargs=KWARGS, num_cpus_per_worker=0)
    yield env
    env.close()


@pytest.mark.ray
@pytest.mark.slow
def test_one_worker_equals_local_vec_env(ray_session) -> None:
    actions = _actions(4)  # 14 steps > two rounds of the tiny task: covers auto-reset
    env = RayVecEnv(1, 4, seed=3, vec_env_kwargs=KWARGS)
    try:
        ray_trace = _trace(env, actions)
        # seed() then reset() must replay the construction seed's episodes.
        env.seed(3)
        replay = _trace(env, actions)
    finally:
        env.close()
    local_trace = _trace(make_vec_env(4, seed=3, **KWARGS), actions)
    _assert_same(ray_trace, local_trace)
    _assert_same(replay, local_trace)
    assert any(s[2].any() for s in ray_trace[1:]), "the trace should include episode ends"


@pytest.mark.ray
@pytest.mark.slow
def test_two_workers_equal_concatenated_local_envs(two_workers) -> None:
    two_workers.seed(11)  # worker 0: seed 11, worker 1: seed 11 + 3 (its first global index)
    actions = _actions(5)
    ray_trace = _trace(two_workers, actions)
    local = _concat(
        [
            _trace(make_vec_env(3, seed=11, **KWARGS), actions[:, :3]),
            _trace(make_vec_env(2, seed=14, **KWARGS), actions[:, 3:]),
        ]
    )
    _assert_same(ray_trace, local)


@pytest.mark.ray
@pytest.mark.slow
def test_attributes_map_to_worker_and_local_index(two_workers) -> None:
    two_workers.seed(0)
    two_workers.reset()
    seeds = two_workers.get_attr("run_seed")
    assert len(seeds) == 5
    assert two_workers.get_attr("run_seed", [4, 0]) == [seeds[4], seeds[0]]
    assert two_workers.get_attr("run_seed", 3) == [seeds[3]]
    assert [i["run_seed"] for i in two_workers.reset_infos] == seeds
    assert two_workers.get_attr("observation_space") == [two_workers.observation_space] * 5
    assert two_workers.env_is_wrapped(object, indices=[1, 3]) == [False, False]
    assert two_workers.env_method("_current_hparams", indices=[2, 3])[0].keys() == {"learning_rate"}

    # Settings apply to every sub-environment of the workers that own the indices.
    two_workers.set_attr("val_every", 5, indices=[3])
    assert two_workers.get_attr("val_every") == [
        *two_workers.get_attr("val_every", [0, 1, 2]),
        5,
        5,
    ]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        two_workers.get_attr("nope")
    with pytest.raises(IndexError, match="out of range"):
        two_workers.get_attr("run_seed", [5])


@pytest.mark.ray
@pytest.mark.slow
def test_step_protocol_errors(two_workers) -> None:
    two_workers.reset()
    with pytest.raises(RuntimeError, match="before step_async"):
        two_workers.step_wait()
    with pytest.raises(ValueError, match="expected actions for 5"):
        two_workers.step_async(np.zeros((4, 1), dtype=np.float32))
    obs, reward, done, infos = two_workers.step(np.zeros((5, 1), dtype=np.float32))
    assert obs.shape == (5, *two_workers.observation_space.shape) and obs.flags.writeable
    assert reward.shape == done.shape == (5,) and len(infos) == 5


@pytest.mark.ray
@pytest.mark.slow
def test_make_ray_vec_env_from_config(ray_session) -> None:
    class Config:  # the fields make_ray_vec_env reads from the trainer's TrainConfig
        n_envs, seed, ray_workers, ray_address = 3, 2, 2, None

    with pytest.warns(UserWarning, match="does not divide evenly"):
        env = make_ray_vec_env(Config(), vec_env_kwargs=KWARGS, num_cpus_per_worker=0)
    try:
        assert env.num_envs == 3 and env.envs_per_worker == [2, 1] and env.offsets == [0, 2]
    finally:
        env.close()


def test_split_envs() -> None:
    assert split_envs(10, 4) == [3, 3, 2, 2]
    assert split_envs(4, 2) == [2, 2]
    with pytest.raises(ValueError, match="at least one sub-environment per worker"):
        split_envs(1, 2)


def _square(x: int) -> int:
    return x * x


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


@pytest.mark.ray
@pytest.mark.slow
def test_ray_map_keeps_order_and_reports_failures(ray_session) -> None:
    seen = []
    assert ray_map(_square, list(range(6)), progress=lambda d, n: seen.append((d, n))) == [
        0,
        1,
        4,
        9,
        16,
        25,
    ]
    assert seen[-1] == (6, 6)
    assert ray_map(_square, []) == []
    with pytest.raises(ValueError, match="bad item 3"):
        ray_map(_fail_on_three, [1, 2, 3])


def test_task_groups_are_split_over_workers_at_one_group_size() -> None:
    from agents.common.ray_vec_env import _split_task_groups

    assert _split_task_groups({"task_groups": 8, "split": "train"}, [16, 16]) == [
        {"task_groups": 4, "split": "train"},
        {"task_groups": 4, "split": "train"},
    ]
    assert _split_task_groups({"split": "train"}, [3, 2]) == [{"split": "train"}] * 2
    with pytest.raises(ValueError, match="divides task_groups"):
        _split_task_groups({"task_groups": 8}, [17, 15])
