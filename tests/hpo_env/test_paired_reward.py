"""The paired (twin) reward: every run has a twin driven by the prior alone."""

import numpy as np
import pytest
import torch

from hpo_env import RewardConfig
from hpo_env.episodes import EpisodeEngine
from hpo_env.errors import ConfigError
from hpo_env.reward import paired_reward
from hpo_env.space import HyperparameterSpace
from tests.hpo_env.tiny_task import TinyRegressionTask, TinySampler

B = 3


def engine(paired=True, n_runs=B, prior="cosine_warmup"):
    space = HyperparameterSpace.from_names(["learning_rate"], lr_prior=prior)
    return EpisodeEngine(TinySampler(), space, n_runs, RewardConfig(paired=paired))


def play(eng, seed, actions, val_every=1):
    """One round; returns (observations, rewards, infos at each step)."""
    rng = np.random.default_rng(seed)
    obs = [eng.start_round(rng, task=TinyRegressionTask(), val_every=val_every)]
    rewards, infos = [], []
    while not eng.round_over:
        result = eng.step(actions(eng))
        obs.append(result.obs)
        rewards.append(result.reward)
        infos.append(result.infos)
    return np.stack(obs), np.stack(rewards), infos


def zeros(eng):
    return np.zeros((eng.n_runs, 1), dtype=np.float32)


@pytest.mark.parametrize("prior", ["cosine_warmup", None])
def test_action_zero_earns_exactly_nothing(prior):
    for seed in range(3):
        eng = engine(prior=prior)
        _, rewards, infos = play(eng, seed, zeros)
        assert rewards.shape == (TinyRegressionTask().control_steps, B)
        assert np.all(rewards == 0.0)
        assert all(info["episode_return"] == 0.0 for info in infos[-1])
        assert all(info["twin_val_loss"] == info["val_loss"] for info in infos[-1])


def test_return_is_log_of_twin_over_run_final_loss():
    def half_up(eng):  # some correction: not the prior's
        return np.full((eng.n_runs, 1), 0.5, dtype=np.float32)

    eng = engine()
    _, rewards, infos = play(eng, 4, half_up)
    for i, info in enumerate(infos[-1]):
        expected = np.log(info["twin_val_loss"] / info["val_loss"])
        assert rewards[:, i].sum() == pytest.approx(expected, abs=1e-5)
        assert info["episode_return"] == pytest.approx(expected, abs=1e-5)
        assert expected != 0.0


def test_a_clearly_bad_action_loses_to_the_twin():
    def slash(eng):  # cut the rate 10x at every decision, only run 0
        actions = zeros(eng)
        actions[0] = -1.0
        return actions

    for seed in range(3):
        _, rewards, _ = play(engine(), seed, slash)
        returns = rewards.sum(0)
        assert returns[0] < -0.05, returns
        assert np.all(returns[1:] == 0.0)


def test_policy_sees_only_its_own_rows():
    paired, plain = engine(paired=True), engine(paired=False)
    obs_p, _, infos_p = play(paired, 7, zeros)
    obs_u, _, infos_u = play(plain, 7, zeros)
    assert paired.run.n_runs == 2 * B and plain.run.n_runs == B
    assert obs_p.shape == obs_u.shape
    assert len(infos_p[-1]) == B
    # The twins are extra rows: the policy's observations are today's, bit for bit.
    np.testing.assert_array_equal(obs_p, obs_u)
    assert [i["val_loss"] for i in infos_p[-1]] == [i["val_loss"] for i in infos_u[-1]]


def test_deterministic():
    def noisy(eng):
        return np.sin(np.arange(eng.n_runs, dtype=np.float32) + eng.round_step)[:, None]

    a = play(engine(), 11, noisy)
    b = play(engine(), 11, noisy)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_a_diverged_run_restarts_with_its_twin_on_one_seed():
    eng = engine()
    rng = np.random.default_rng(0)
    eng.start_round(rng, task=TinyRegressionTask(), val_every=1)
    actions = zeros(eng)
    actions[1] = 1.0
    eng.run.set_hyperparameters({"learning_rate": torch.tensor([0.05, 5.0, 0.05] * 2)})
    eng.base_hparams = {"learning_rate": torch.tensor([0.05, 5.0, 0.05])}
    result = eng.step(actions)
    assert result.terminated.tolist() == [False, True, False]
    assert result.infos[1]["diverged"]
    assert result.reward[1] <= -RewardConfig().divergence_penalty
    eng.reset_runs([1], rng)
    seed = eng.run_seeds[1]
    fresh = TinyRegressionTask().build([seed])
    hp = eng.run.get_hyperparameters()["learning_rate"]
    assert hp[1] == hp[1 + B] == fresh.get_hyperparameters()["learning_rate"][0]
    torch.testing.assert_close(eng.run.w[1], eng.run.w[1 + B], rtol=0, atol=0)
    # After the restart, the run and its twin are tied again under action 0.
    while not eng.round_over:
        assert eng.step(zeros(eng)).reward[1] == 0.0


def test_paired_reward_rules():
    cfg = RewardConfig(paired=True)
    one, two = torch.ones(2), torch.full((2,), 2.0)
    no, yes = torch.zeros(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    # The run halves its loss, the twin does not move: log 2 each.
    r = paired_reward(two, one, two, two, no, torch.zeros(2), cfg)
    torch.testing.assert_close(r, torch.full((2,), float(np.log(2.0))))
    # Diverging alone takes back the gains and pays the penalty.
    r = paired_reward(two, one * float("nan"), two, two, yes, torch.full((2,), 0.5), cfg)
    torch.testing.assert_close(r, torch.full((2,), -0.5 - cfg.divergence_penalty))
    # Diverging with the twin: a tie (the return comes back to 0).
    r = paired_reward(two, one, two, two, yes, torch.full((2,), 0.5), cfg, twin_diverged=yes)
    torch.testing.assert_close(r, torch.full((2,), -0.5))


def test_paired_must_be_a_bool():
    with pytest.raises(ConfigError, match="paired"):
        RewardConfig(paired="yes")


def test_an_rl_tasks_twin_keeps_the_start_rate_without_an_rl_prior():
    """Control (RL) tasks read the space's RL prior: with none, a twin is the user's
    constant rate, while a supervised task's twin still anneals (same engine)."""
    from tasks.control import ControlTask

    space = HyperparameterSpace.from_names(
        ["learning_rate"], lr_prior="cosine_warmup", rl_lr_prior=None
    )
    eng = EpisodeEngine(TinySampler(), space, 2, RewardConfig(paired=True))
    rng = np.random.default_rng(0)
    task = ControlTask(control_steps=4, updates_per_step=2)
    eng.start_round(rng, task=task, val_every=1)
    start = eng.twin_hparams["learning_rate"].clone()
    seen = []
    while not eng.round_over:
        result = eng.step(np.full((2, 1), -1.0, dtype=np.float32))  # the policy cuts
        seen.append([info["hparams"]["learning_rate"] for info in result.infos])
        assert torch.equal(eng.twin_hparams["learning_rate"], start)
    # The policy's own rows get no prior either: each cut is exactly 10**-0.5.
    np.testing.assert_allclose(
        seen, start.numpy() * 10.0 ** (-0.5 * np.arange(1, 5))[:, None], rtol=1e-5
    )
    assert eng.clock.space["learning_rate"].prior is None
    eng.start_round(rng, task=TinyRegressionTask(), val_every=1)
    assert eng.clock.space["learning_rate"].prior == "cosine_warmup"
