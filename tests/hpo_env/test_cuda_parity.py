"""CPU/GPU parity of what meta-training computes on a device (skipped without CUDA).

CI has no GPU; these run where one is lent (`hpo-rl bench engine --device cuda`'s
session). Float32 kernels reduce in other orders on a GPU, so the supervised engine
and the environment are compared within a tolerance over a few decisions, before
chaos can amplify rounding; the control physics is float64 elementwise arithmetic
and must agree to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpo_env import make_vec_env
from tasks.control.batched_env import BatchedControlEnv
from tasks.control.physics import CartPole
from tasks.distribution import task_by_name

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SUPERVISED = ["digits_mlp", "sinusoid_mlp", "teacher_regression_mlp"]


def _trained_stats(family: str, device: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    task = task_by_name(family)
    run = task.build([0, 1, 2, 3], device=device)
    run.set_hyperparameters({k: torch.full((4,), v) for k, v in task.default_hparams().items()})
    stats = run.train(task.updates_per_step)
    fields = ("train_loss", "train_loss_std", "grad_norm", "update_ratio")
    out = {name: getattr(stats, name).numpy() for name in fields}
    return out, run.evaluate().numpy()


@pytest.mark.parametrize("family", SUPERVISED)
def test_supervised_engine_matches_the_cpu(family: str) -> None:
    cpu_stats, cpu_val = _trained_stats(family, "cpu")
    gpu_stats, gpu_val = _trained_stats(family, "cuda")
    for name, value in cpu_stats.items():
        np.testing.assert_allclose(gpu_stats[name], value, rtol=1e-3, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(gpu_val, cpu_val, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("family", ["digits_mlp", "control_cartpole"])
def test_vec_env_matches_the_cpu_for_a_few_decisions(family: str) -> None:
    results = {}
    for device in ("cpu", "cuda"):
        vec = make_vec_env(4, seed=0, task=task_by_name(family), device=device)
        observations = [vec.reset()]
        rewards = []
        actions = np.zeros((4, len(vec.space)), dtype=np.float32)
        for _ in range(2):
            obs, reward, _, _ = vec.step(actions)
            observations.append(obs)
            rewards.append(reward)
        vec.close()
        results[device] = (np.stack(observations), np.stack(rewards))
        assert results[device][0].dtype == np.float32  # CPU NumPy whatever the device
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(results["cuda"][1], results["cpu"][1], rtol=1e-2, atol=1e-3)


def test_control_physics_matches_the_cpu_to_rounding() -> None:
    system = CartPole()
    gen = torch.Generator().manual_seed(0)
    resets = torch.rand(41, 2, 16, 4, dtype=torch.float64, generator=gen)
    actions = torch.randint(0, 2, (40, 2, 16), generator=gen)
    envs = {
        device: BatchedControlEnv(system, system.default_context(2, device), n_envs=16)
        for device in ("cpu", "cuda")
    }
    for device, env in envs.items():
        env.reset(resets[0].to(device))
    for t in range(40):
        cpu = envs["cpu"].step(actions[t], resets[t + 1])
        gpu = envs["cuda"].step(actions[t].cuda(), resets[t + 1].cuda())
        torch.testing.assert_close(gpu.obs.cpu(), cpu.obs, rtol=1e-5, atol=1e-6)
        assert torch.equal(gpu.terminated.cpu(), cpu.terminated)
