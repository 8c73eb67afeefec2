"""Feature version 3 (run-relative, K-invariant): opt-in, bit-identical on every path."""

import random

import numpy as np
import pytest
import torch

import hpo_env.features as features_module
from hpo_env.errors import ConfigError
from hpo_env.features import (
    FEATURE_SPEC_VERSION,
    RUN_RELATIVE_SPEC_VERSION,
    FeatureExtractor,
)
from hpo_env.space import HyperparameterSpace
from hpo_env.stats import StepStats
from tests.hpo_env.test_features import (
    PARITY_SPACE,
    _assert_same_batch,
    _assert_same_bits,
    _random_batch_stats,
    _random_stats,
)

V3 = RUN_RELATIVE_SPEC_VERSION
SPACE = HyperparameterSpace.from_names(["learning_rate", "entropy_coef"])


def test_default_is_version_2_and_unchanged_names():
    assert FEATURE_SPEC_VERSION == 2
    assert FeatureExtractor(SPACE, 1).spec_version == 2
    names = FeatureExtractor.feature_names(SPACE)
    assert "learning_rate.position" in names
    assert names == FeatureExtractor.feature_names(SPACE, 2)


def test_version_3_has_no_absolute_hyperparameter_feature():
    names = FeatureExtractor.feature_names(SPACE, V3)
    assert not any(n.endswith(".position") for n in names)
    assert "learning_rate.log_change" in names and "learning_rate.last_change" in names
    fx = FeatureExtractor(SPACE, 1, spec_version=V3)
    obs = fx.reset({"learning_rate": torch.tensor([0.1])})
    assert obs.shape == (1, len(names)) == (1, FeatureExtractor.observation_size(SPACE, V3))
    assert FeatureExtractor.observation_space(SPACE, V3).shape == (len(names),)


@pytest.mark.parametrize("bad", [1, 4, "3", True])
def test_unknown_version_is_refused(bad):
    with pytest.raises(ConfigError, match="feature_spec_version"):
        FeatureExtractor(SPACE, 1, spec_version=bad)


def _stats(lr, t, k=10):
    return StepStats(
        train_loss=torch.tensor([1.0 / (1 + t)]),
        train_loss_std=torch.tensor([0.01]),
        train_loss_first=torch.tensor([1.1 / (1 + t)]),
        grad_norm=torch.tensor([0.5]),
        grad_cosine=torch.tensor([0.2]),
        update_ratio=torch.tensor([1e-3]),
        n_updates=k,
        hparams={"learning_rate": torch.tensor([lr])},
        progress=torch.tensor([0.1 * (t + 1)]),
    )


@pytest.mark.parametrize("start", [1e-4, 3e-3, 0.3])
def test_the_same_run_from_any_start_rate_looks_the_same(start):
    """Version 3 sees the rate only relative to the user's start: a run whose rate and
    statistics are the same up to the start rate gives the same observations."""
    ref, fx = (FeatureExtractor(SPACE, 1, spec_version=V3) for _ in range(2))
    torch.testing.assert_close(
        fx.reset({"learning_rate": torch.tensor([start])}),
        ref.reset({"learning_rate": torch.tensor([1e-2])}),
    )
    for t, factor in enumerate([1.0, 3.0, 3.0, 0.5]):
        a = fx.observe(_stats(start * factor, t))
        b = ref.observe(_stats(1e-2 * factor, t))
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # Version 2 tells the start apart (the absolute position).
    v2 = [FeatureExtractor(SPACE, 1) for _ in range(2)]
    assert not torch.equal(
        v2[0].reset({"learning_rate": torch.tensor([1e-4])}),
        v2[1].reset({"learning_rate": torch.tensor([0.3])}),
    )


# -- K-invariance: the same run observed every K and every 2K updates ---------------

T_UPDATES = 1200
_u = np.arange(T_UPDATES)
_LOSS = 2.0 * np.exp(-3 * _u / T_UPDATES) + 0.2  # one run's per-update losses
_RATIO = 1e-3 * np.exp(-_u / T_UPDATES)  # per-update ||dtheta|| / ||theta|| (one direction)
_GRAD = np.exp(-_u / T_UPDATES)


def _observed_every(k, version):
    """Features of the run above, observed every ``k`` updates, by update count."""
    fx = FeatureExtractor(SPACE, 1, spec_version=version)
    fx.reset({"learning_rate": torch.tensor([0.1])})
    out = {}
    for start in range(0, T_UPDATES, k):
        window = slice(start, start + k)
        stats = StepStats(
            train_loss=torch.tensor([_LOSS[window].mean()]),
            train_loss_std=torch.tensor([_LOSS[window].std()]),
            train_loss_first=torch.tensor([_LOSS[start]]),
            grad_norm=torch.tensor([_GRAD[start + k - 1]]),
            grad_cosine=torch.tensor([0.3]),
            update_ratio=torch.tensor([_RATIO[window].sum()]),
            n_updates=k,
            hparams={"learning_rate": torch.tensor([0.1])},
            progress=torch.tensor([(start + k) / T_UPDATES]),
        )
        out[start + k] = fx.observe(stats)[0].numpy()
    return out


def _largest_gap(k, version):
    every_k, every_2k = _observed_every(k, version), _observed_every(2 * k, version)
    shared = [t for t in every_2k if t in every_k and t >= 4 * k]  # past the EMAs' start
    gaps = np.max([np.abs(every_k[t] - every_2k[t]) for t in shared], axis=0)
    return dict(zip(FeatureExtractor.feature_names(SPACE, version), gaps.tolist()))


@pytest.mark.parametrize("k", [8, 12, 30, 60])
def test_version_3_features_are_k_invariant(k):
    gaps = _largest_gap(k, V3)
    worst = max(gaps, key=gaps.get)
    assert gaps[worst] < 0.1, (worst, gaps[worst])


def test_version_2_moving_averages_depend_on_k():
    """What version 3 fixes: version 2's slope average decays per decision."""
    assert _largest_gap(12, 2)["train_slope_ema"] > 0.12
    assert _largest_gap(12, V3)["train_slope_ema"] < 0.06
    assert _largest_gap(60, 2)["train_noise"] > 0.03  # the trend inside a long interval
    assert _largest_gap(60, V3)["train_noise"] < 0.01


# -- the three paths agree bit for bit in version 3 too -------------------------------


@pytest.mark.skipif(not features_module.SCALAR_PATH, reason="float path needs NumPy >= 2")
@pytest.mark.parametrize("val_every", [0, 1, 3])
@pytest.mark.parametrize("seed", range(4))
def test_version_3_one_run_float_path_is_bit_identical(seed, val_every):
    rng = random.Random(seed * 10 + val_every)
    fast, ref = (FeatureExtractor(PARITY_SPACE, 1, spec_version=V3) for _ in range(2))
    hparams = {"learning_rate": torch.tensor([0.01]), "momentum": torch.tensor([0.9])}
    _assert_same_bits(fast.reset(hparams), ref.reset(hparams), "reset")
    progress = 0.0
    for t in range(40):
        progress += rng.uniform(0.0, 0.05)
        stats = _random_stats(rng, progress, val_every, t)
        _assert_same_bits(fast._observe_one(stats), ref._observe_batched(stats), f"{seed}/{t}")


@pytest.mark.skipif(not features_module.SCALAR_PATH, reason="array path needs NumPy >= 2")
@pytest.mark.parametrize("val_every", [0, 1, 3])
@pytest.mark.parametrize("seed", range(3))
def test_version_3_array_path_is_bit_identical(seed, val_every):
    rng = random.Random(1000 + seed * 10 + val_every)
    n = 9
    fast, ref = (FeatureExtractor(PARITY_SPACE, n, spec_version=V3) for _ in range(2))
    hparams = {"learning_rate": torch.tensor([rng.uniform(1e-4, 1.0) for _ in range(n)])}
    _assert_same_batch(fast.reset(hparams), ref.reset(hparams), "reset")
    progress = 0.0
    for t in range(30):
        progress += rng.uniform(0.0, 0.05)
        batch = _random_batch_stats(rng, n, progress, val_every, t)
        _assert_same_batch(fast._observe_arrays(batch), ref._observe_batched(batch), f"{t}")
