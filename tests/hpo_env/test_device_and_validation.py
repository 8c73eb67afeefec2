"""The ``device`` option and the subsampled per-decision validation, end to end on the CPU.

No GPU is assumed: CUDA availability is patched where a test needs to know
what ``auto`` and ``cuda`` resolve to; everything that runs, runs on the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpo_env import make_vec_env
from hpo_env.device import DEVICE_CHOICES, resolve_device
from hpo_env.errors import ConfigError
from tests.hpo_env.tiny_task import TinyRegressionTask, TinySampler


class _RecordingTask(TinyRegressionTask):
    """The tiny task, remembering the device each build was asked for."""

    built_on: list[torch.device] = []  # noqa: RUF012 (a test-local log)

    def build(self, seeds, device="cpu"):  # type: ignore[no-untyped-def]
        _RecordingTask.built_on.append(device)
        return super().build(seeds, device)


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cpu_and_auto_resolve_to_cpu_without_cuda(no_cuda: None) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_prefers_cuda_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "CPU", ""])
def test_unknown_device_names_the_choices(bad: str) -> None:
    with pytest.raises(ConfigError, match="expected one of") as info:
        resolve_device(bad)
    for choice in ("auto", "cpu", "cuda"):
        assert repr(choice) in str(info.value)
    assert len(DEVICE_CHOICES) == 4


def test_cuda_without_cuda_says_what_to_use(no_cuda: None) -> None:
    with pytest.raises(ConfigError, match=r"CUDA is not available.*'cpu' or 'auto'"):
        resolve_device("cuda")


def test_device_flows_from_vec_env_to_task_build(no_cuda: None) -> None:
    _RecordingTask.built_on.clear()
    vec = make_vec_env(2, seed=0, distribution=TinySampler(), task=_RecordingTask(), device="auto")
    obs = vec.reset()
    obs, reward, _, _ = vec.step(np.zeros((2, len(vec.space)), dtype=np.float32))
    assert _RecordingTask.built_on == [torch.device("cpu")]
    assert vec.engine.device == torch.device("cpu")
    # What reaches SB3 is CPU NumPy whatever the device.
    assert isinstance(obs, np.ndarray) and isinstance(reward, np.ndarray)


def test_supervised_and_control_runs_live_on_the_requested_device() -> None:
    from tasks.control import CARTPOLE_DEFAULT
    from tasks.distribution import task_by_name

    supervised = task_by_name("digits_mlp").build([0, 1], device="cpu")
    assert supervised.theta.device == torch.device("cpu")
    assert supervised.train(1).train_loss.device == torch.device("cpu")
    control = CARTPOLE_DEFAULT.build([0], device="cpu")
    assert control.params.device == control.env.state.device == torch.device("cpu")
    assert control.evaluate().device == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        CARTPOLE_DEFAULT.build([0], device="tpu")


def _episode(val_fraction: float, val_every: int) -> tuple[np.ndarray, np.ndarray]:
    """Observations [T+1, B, D] and rewards [T, B] of one round of the tiny task."""
    task = TinyRegressionTask(control_steps=6)
    vec = make_vec_env(
        3,
        seed=5,
        distribution=TinySampler(),
        task=task,
        val_every_choices=(val_every,),
        val_fraction=val_fraction,
    )
    observations, rewards = [vec.reset()], []
    actions = np.random.default_rng(0).uniform(-1, 1, (task.control_steps, 3, len(vec.space)))
    for action in actions.astype(np.float32):
        obs, reward, dones, infos = vec.step(action)
        observations.append(
            np.stack([info["terminal_observation"] for info in infos]) if dones.all() else obs
        )
        rewards.append(reward)
    return np.stack(observations), np.stack(rewards)


@pytest.mark.parametrize("val_every", [1, 2, 0])
def test_subsampled_reward_keeps_observations_and_returns(val_every: int) -> None:
    full_obs, full_rewards = _episode(1.0, val_every)
    sub_obs, sub_rewards = _episode(0.25, val_every)
    # The controller is shown the full set whenever it is shown validation ...
    np.testing.assert_array_equal(sub_obs, full_obs)
    # ... and the episode's return still telescopes to log(first / final) on the full set.
    np.testing.assert_allclose(sub_rewards.sum(0), full_rewards.sum(0), rtol=0, atol=1e-5)
    if val_every != 1:  # where nobody is shown validation, the reward used the subsample
        assert not np.array_equal(sub_rewards, full_rewards)


def test_subsampled_episodes_are_deterministic() -> None:
    first, second = _episode(0.25, 0), _episode(0.25, 0)
    np.testing.assert_array_equal(first[1], second[1])


def test_val_fraction_is_validated() -> None:
    with pytest.raises(ConfigError, match="val_fraction"):
        make_vec_env(2, distribution=TinySampler(), val_fraction=0.0)
