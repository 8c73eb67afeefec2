import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hpo_env.features import OBS_BOUND, FeatureExtractor
from hpo_env.space import HyperparameterSpace
from hpo_env.stats import StepStats

SPACE = HyperparameterSpace.from_names(["learning_rate", "entropy_coef"])
NAMES = FeatureExtractor.feature_names(SPACE)


def stats(train=1.0, val=float("nan"), progress=0.1, lr=0.1, **kw):
    base = dict(
        train_loss=torch.tensor([train]),
        train_loss_std=torch.tensor([kw.pop("std", 0.1)]),
        grad_norm=torch.tensor([kw.pop("grad", 1.0)]),
        grad_cosine=torch.tensor([kw.pop("cos", 0.5)]),
        update_ratio=torch.tensor([kw.pop("ratio", 1e-2)]),
        n_updates=kw.pop("n_updates", 10),
        hparams={"learning_rate": torch.tensor([lr])},
        val_loss=torch.tensor([val]),
        progress=torch.tensor([progress]),
    )
    base.update(kw)
    return StepStats(**base)


def feature(obs, name):
    return float(obs[0, NAMES.index(name)])


def test_observation_size_and_space_match():
    fx = FeatureExtractor(SPACE, 1)
    obs = fx.reset({"learning_rate": torch.tensor([0.1])})
    space = FeatureExtractor.observation_space(SPACE)
    assert obs.shape == (1, space.shape[0]) == (1, len(NAMES))
    assert space.contains(obs[0].numpy())


def test_reset_observation_sees_only_hyperparameters():
    fx = FeatureExtractor(SPACE, 1)
    obs = fx.reset({"learning_rate": torch.tensor([0.1])})
    assert feature(obs, "learning_rate.present") == 1.0
    assert feature(obs, "entropy_coef.present") == 0.0
    assert feature(obs, "learning_rate.position") == pytest.approx(
        SPACE["learning_rate"].normalized(torch.tensor(0.1)).item()
    )
    assert feature(obs, "val_staleness") == 1.0
    assert feature(obs, "log_train_ratio") == 0.0


def test_features_are_scale_free():
    """Multiplying every loss by 1000 leaves the observation unchanged."""
    outs = []
    for scale in (1.0, 1000.0):
        fx = FeatureExtractor(SPACE, 1)
        fx.reset({"learning_rate": torch.tensor([0.1])})
        seq = [(2.0, 1.9, 0.1), (1.0, 1.2, 0.2), (0.5, 0.8, 0.3)]
        for train, val, prog in seq:
            obs = fx.observe(stats(train * scale, val * scale, prog, std=0.1 * scale))
        outs.append(obs)
    assert torch.allclose(outs[0], outs[1], atol=1e-5)


def test_log_ratios_and_validation_bookkeeping():
    fx = FeatureExtractor(SPACE, 1)
    fx.reset({"learning_rate": torch.tensor([0.1])})
    fx.observe(stats(train=2.0, val=2.0, progress=0.25, train_loss_first=torch.tensor([4.0])))
    obs = fx.observe(stats(train=1.0, val=float("nan"), progress=0.5, lr=0.2))
    assert feature(obs, "log_train_ratio") == pytest.approx(math.log(1.0 / 4.0), abs=1e-5)
    assert feature(obs, "val_fresh") == 0.0 and feature(obs, "val_seen") == 1.0
    assert feature(obs, "val_staleness") == pytest.approx(0.25)
    assert feature(obs, "learning_rate.log_change") == pytest.approx(math.log10(2.0), abs=1e-5)
    obs = fx.observe(stats(train=0.9, val=3.0, progress=0.75))
    assert feature(obs, "val_above_best") == pytest.approx(math.log(3.0 / 2.0), abs=1e-5)
    assert feature(obs, "log_val_ratio") == pytest.approx(math.log(3.0 / 2.0), abs=1e-5)


def test_per_run_reset_leaves_other_runs_alone():
    fx = FeatureExtractor(SPACE, 2)
    hp = {"learning_rate": torch.tensor([0.1, 0.1])}
    fx.reset(hp)
    s = StepStats.cat([stats(train=2.0, val=1.0), stats(train=3.0, val=1.5)])
    fx.observe(s)
    before = {k: v.clone() for k, v in fx.state.items()}
    fx.reset(hp, mask=torch.tensor([True, False]))
    for key, value in fx.state.items():
        assert torch.isnan(value[0]) or key == "prev_progress"
        assert torch.equal(value[1:].nan_to_num(-7), before[key][1:].nan_to_num(-7))


def test_state_dict_round_trip_continues_identically():
    a = FeatureExtractor(SPACE, 1)
    a.reset({"learning_rate": torch.tensor([0.1])})
    a.observe(stats(train=2.0, val=1.0, progress=0.2))
    b = FeatureExtractor(SPACE, 1)
    b.load_state_dict(a.state_dict())
    nxt = stats(train=1.5, val=0.9, progress=0.4)
    assert torch.equal(a.observe(nxt), b.observe(nxt))


EXTREMES = st.sampled_from(
    [float("nan"), float("inf"), -float("inf"), 0.0, 1e-30, 1e30, -1e30, 1.0]
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(EXTREMES, min_size=9, max_size=9), steps=st.integers(1, 3))
def test_any_numeric_garbage_gives_a_finite_bounded_observation(values, steps):
    train, std, grad, cos, ratio, val, progress, lr, first = values
    fx = FeatureExtractor(SPACE, 1)
    space = FeatureExtractor.observation_space(SPACE)
    obs = fx.reset({"learning_rate": torch.tensor([lr])})
    assert space.contains(obs[0].numpy())
    for _ in range(steps):
        s = StepStats(
            train_loss=torch.tensor([train]),
            train_loss_std=torch.tensor([std]),
            train_loss_first=torch.tensor([first]),
            grad_norm=torch.tensor([grad]),
            grad_cosine=torch.tensor([cos]),
            update_ratio=torch.tensor([ratio]),
            n_updates=5,
            hparams={"learning_rate": torch.tensor([lr])},
            val_loss=torch.tensor([val]),
            progress=torch.tensor([progress]),
        )
        obs = fx.observe(s)
        arr = obs[0].numpy()
        assert np.isfinite(arr).all()
        assert (np.abs(arr) <= OBS_BOUND).all()
        assert space.contains(arr)
