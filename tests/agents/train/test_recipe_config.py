"""The ``recipe`` preset (issue 26's levers together) and its pieces in `TrainConfig`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.policy.tuning_policy import TuningPolicy
from agents.train.config import DEFAULT, PRESETS, TrainConfig, get_preset
from agents.train.trainer import make_train_env, train
from hpo_env.episodes import EpisodeEngine
from hpo_env.errors import ConfigError
from tasks.recipe_distribution import (
    RecipeDistribution,
    fast_recipe_distribution,
    functional_recipe_distribution,
    near_start,
    recipe_distribution,
)
from tests.agents.support.policies import SamplerOf
from tests.agents.support.train_distribution import TINY_DISTRIBUTION
from tests.agents.train.test_trainer import tiny


def test_default_preset_is_the_chosen_ablation_row():
    from agents.train.ablation import row_by_name
    from agents.train.config import BASELINE

    assert (BASELINE.paired_reward, BASELINE.feature_spec_version, BASELINE.task_groups) == (
        False,
        2,
        1,
    )
    assert BASELINE.distribution == "default"
    # `default` is the baseline with the `paired` row's levers, a 3-seed ensemble, for a
    # whole number of PPO updates.
    for name, value in row_by_name("paired").overrides:
        assert getattr(DEFAULT, name) == value
    assert DEFAULT.ensemble_size == 3
    assert DEFAULT.total_timesteps % (DEFAULT.n_steps * DEFAULT.n_envs) == 0
    recipe = PRESETS["recipe"]
    assert recipe.paired_reward and recipe.feature_spec_version == 3
    assert recipe.task_groups >= 8 and recipe.n_envs % recipe.task_groups == 0
    assert recipe.distribution == "tasks.recipe_distribution:recipe_distribution"
    same = ("total_timesteps", "n_envs", "n_steps", "batch_size", "gamma", "lr_prior")
    assert all(getattr(recipe, f) == getattr(BASELINE, f) for f in same)


def test_recipe_config_round_trips_through_json():
    config = get_preset("recipe")
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"task_groups": 3}, "task_groups"),
        ({"task_groups": 0}, "task_groups"),
        ({"feature_spec_version": 4}, "feature_spec_version"),
        ({"backend": "ray", "ray_workers": 3}, "ray_workers"),  # 8 task groups over 3
        ({"entropy_off_share": 1.5}, "entropy_off_share"),
        ({"entropy_off_share": 0.5, "distribution": "default"}, "fast_recipe_distribution"),
        ({"rl_lr_prior": "cosine"}, "rl_prior"),
        ({"control_start_lr": -1.0}, "control_start_lr"),
        ({"control_start_lr": 1e-3, "distribution": "default"}, "fast_recipe_distribution"),
    ],
)
def test_bad_lever_settings_are_refused(overrides, match):
    with pytest.raises((ConfigError, TypeError), match=match):
        get_preset("default", **overrides)


def test_every_rollout_sees_at_least_8_task_instances():
    config = get_preset("recipe", distribution=TINY_DISTRIBUTION, control_weight=None)
    env = make_train_env(dataclasses.replace(config, n_envs=16, task_groups=8))
    env.reset()
    tasks = {id(engine.task) for engine in env.engines}
    assert len(env.engines) == 8 and len(tasks) == 8


def test_recipe_distribution_tilts():
    dist = recipe_distribution("train", control_weight=0.0)
    assert isinstance(dist, RecipeDistribution)
    rng = np.random.default_rng(1)
    tasks = [dist.sample(rng) for _ in range(150)]
    sgd = [t for t in tasks if t.optimizer == "sgd" and t.family in dist.sgd.family_names]
    assert len(sgd) >= 0.15 * len(tasks)
    assert all(0.05 <= t.default_learning_rate <= 0.5 for t in sgd)
    near = [t for t in tasks if getattr(t, "lr_log10_range", None) == (-np.log10(2), np.log10(2))]
    near += [t for t in tasks if getattr(t, "lr_log10_spread", None) == np.log10(2)]
    assert 0.2 <= len(near) / len(tasks) <= 0.5
    starts = [near[0].initial_hparams(s)["learning_rate"] for s in range(20)]
    usual = near[0].default_learning_rate
    assert all(usual / 2 <= lr <= usual * 2 for lr in starts)
    assert any(
        "_" in f and f.split("_")[0] in ("char", "image", "table") for f in dist.family_names
    )


def test_functional_recipe_draws_the_cheap_module_families_at_its_share():
    dist = functional_recipe_distribution("train", functional_weight=0.2)
    fast = fast_recipe_distribution("train")
    share = {
        name: p for name, p in dist.probabilities.items() if name in ("table_resmlp", "image_cnn2d")
    }
    assert set(share) == {"table_resmlp", "image_cnn2d"}
    assert sum(share.values()) == pytest.approx(0.2)
    # The share comes out of the supervised families: the control share is the fast recipe's.
    assert dist.probabilities["control_cartpole"] == pytest.approx(
        fast.probabilities["control_cartpole"]
    )
    assert sum(dist.probabilities.values()) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    drawn = [dist.sample(rng) for _ in range(300)]
    cnn_sgd = [t for t in drawn if t.family == "image_cnn2d" and t.optimizer == "sgd"]
    assert cnn_sgd and all(0.05 <= t.default_learning_rate <= 0.5 for t in cnn_sgd)
    # Evaluation is the default's, so every recipe row is scored on the same tasks.
    assert (
        functional_recipe_distribution("heldout").family_names
        == fast_recipe_distribution("heldout").family_names
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"functional_weight": 1.5}, "functional_weight must be in"),
        ({"functional_weight": 0.9}, "more than the supervised share"),
        ({"functional_archs": ("char_gpt",)}, "functional_archs must name"),
        ({"functional_archs": ()}, "functional_archs must name"),
    ],
)
def test_functional_recipe_refuses_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        functional_recipe_distribution("train", **kwargs)


def test_recipe_heldout_is_the_validation_role():
    names = recipe_distribution("heldout", control_weight=0.0).family_names
    assert any(n.endswith("_val") for n in names)


def test_near_start_leaves_control_tasks_alone():
    class Control:
        pass

    task = Control()
    assert near_start(task, 2.0) is task


@pytest.mark.slow
def test_levers_train_a_bundle_that_loads_with_its_feature_version(tmp_path: Path):
    config = tiny(tmp_path, paired_reward=True, feature_spec_version=3, task_groups=2, n_envs=4)
    bundle = train(config)
    policy = TuningPolicy.load(bundle)
    assert policy.feature_spec_version == 3
    assert not any(n.endswith(".position") for n in policy.feature_names)
    assert policy.metadata["config"]["paired_reward"] is True


def test_entropy_off_share_trains_control_runs_as_sb3_defaults():
    dist = fast_recipe_distribution("train", control_weight=1.0, entropy_off_share=0.5)
    rng = np.random.default_rng(0)
    tasks = [dist.sample(rng) for _ in range(80)]
    off = [t for t in tasks if not t.entropy_controlled]
    assert 0.3 <= len(off) / len(tasks) <= 0.7
    assert all(t.name.endswith("+no-entropy") for t in off)
    # A share of 0 draws exactly what it drew before the lever existed.
    plain, tilted = fast_recipe_distribution("train"), fast_recipe_distribution("train")
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert [plain.sample(a).name for _ in range(30)] == [tilted.sample(b).name for _ in range(30)]


def test_rl_settings_reach_the_training_env_and_the_bundle(tmp_path: Path):
    config = get_preset("default", entropy_off_share=0.5, rl_lr_prior=None)
    assert config.distribution_kwargs()["entropy_off_share"] == 0.5
    assert "entropy_off_share" not in get_preset("default").distribution_kwargs()
    env = make_train_env(dataclasses.replace(config, n_envs=8, task_groups=2))
    assert env.engine.clocks[True].space["learning_rate"].prior is None
    assert env.engine.clocks[False].space["learning_rate"].prior == "cosine_warmup"
    bundle = train(tiny(tmp_path, rl_lr_prior=None))
    policy = TuningPolicy.load(bundle)
    assert policy.space["learning_rate"].prior == "cosine_warmup"
    assert policy.space.for_rl()["learning_rate"].prior is None


def test_control_start_lr_centres_control_starts_and_nothing_else():
    centred = fast_recipe_distribution("train", control_weight=0.5, control_start_lr=7e-4)
    plain = fast_recipe_distribution("train", control_weight=0.5)
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    pairs = [(centred.sample(a), plain.sample(b)) for _ in range(60)]
    control = [(c, p) for c, p in pairs if getattr(c, "is_rl", False)]
    assert control and all(c.default_learning_rate == 7e-4 for c, _ in control)
    assert all(p.default_learning_rate == 3e-3 for _, p in control)
    assert all(c == p for c, p in pairs if not getattr(c, "is_rl", False))
    starts = [
        control[0][0].initial_hparams(np.random.default_rng(i))["learning_rate"] for i in range(400)
    ]
    assert abs(np.median(np.log10(starts)) - np.log10(7e-4)) < 0.2


def test_a_control_run_without_entropy_offers_the_rate_alone():
    task = dataclasses.replace(
        fast_recipe_distribution("train", control_weight=1.0).base.task_by_name("control_cartpole"),
        entropy_controlled=False,
        control_steps=3,
        updates_per_step=2,
    )
    engine = EpisodeEngine(SamplerOf(task), get_preset("default").space(), n_runs=2)
    engine.start_round(np.random.default_rng(0))
    result = engine.step(np.zeros((2, len(engine.space.names)), dtype=np.float32))
    assert set(result.infos[0]["hparams"]) == {"learning_rate"}
    assert engine.run.entropy_coef.abs().max().item() == 0.0  # no entropy bonus at all
    names = engine.features.feature_names(engine.space)
    present = names.index("entropy_coef.present")
    assert result.obs[0][present] == 0.0
    with pytest.raises(ValueError, match="entropy_coef"):
        engine.run.set_hyperparameters({"entropy_coef": torch.ones(2)})
