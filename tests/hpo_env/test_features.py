import math
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hpo_env.features as features_module
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


def _one_run_stats(train, std, first, grad, cos, ratio, val, progress, hparams) -> StepStats:
    """StepStats of one run (B=1) over 5 updates, from plain numbers."""
    return StepStats(
        train_loss=torch.tensor([train]),
        train_loss_std=torch.tensor([std]),
        train_loss_first=torch.tensor([first]),
        grad_norm=torch.tensor([grad]),
        grad_cosine=torch.tensor([cos]),
        update_ratio=torch.tensor([ratio]),
        n_updates=5,
        hparams=hparams,
        val_loss=torch.tensor([val]),
        progress=torch.tensor([progress]),
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
        s = _one_run_stats(
            train,
            std,
            first,
            grad,
            cos,
            ratio,
            val,
            progress,
            {"learning_rate": torch.tensor([lr])},
        )
        obs = fx.observe(s)
        arr = obs[0].numpy()
        assert np.isfinite(arr).all()
        assert (np.abs(arr) <= OBS_BOUND).all()
        assert space.contains(arr)


# -- the one-run float path (deploy) against the tensor path (the environment's) --

PARITY_SPACE = HyperparameterSpace.from_names(
    ["learning_rate", "momentum", "weight_decay", "entropy_coef"]
)
SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-30, 1e30, -1e30, 1e-45, 3.4e38, 1.0]


def _bits(t: torch.Tensor) -> list[int]:
    return t.reshape(-1).view(torch.int32).tolist()


def _assert_same_bits(fast: torch.Tensor, ref: torch.Tensor, where: str) -> None:
    assert fast.dtype == ref.dtype == torch.float32 and fast.shape == ref.shape
    if _bits(fast) != _bits(ref):
        names = FeatureExtractor.feature_names(PARITY_SPACE)
        bad = [
            (names[i], float(a), float(b))
            for i, (a, b) in enumerate(zip(fast.reshape(-1), ref.reshape(-1)))
            if _bits(a) != _bits(b)
        ]
        raise AssertionError(f"{where}: float path != tensor path at {bad}")


def _assert_same_state(fast: FeatureExtractor, ref: FeatureExtractor, where: str) -> None:
    for key in FeatureExtractor.STATE_KEYS:
        a, b = fast.state[key], ref.state[key]
        assert a.shape == b.shape == (1,), key
        if not (torch.isnan(a).all() and torch.isnan(b).all()):
            assert _bits(a) == _bits(b), f"{where}: state {key!r} {a} != {b}"
    # The hyperparameters at the start and at the previous decision, which the float
    # path also keeps as scalars between reads.
    for kind in ("initial_hparams", "previous_hparams"):
        a_map, b_map = getattr(fast, kind), getattr(ref, kind)
        assert a_map.keys() == b_map.keys(), f"{where}: {kind}"
        for name in a_map:
            assert _bits(a_map[name]) == _bits(b_map[name]), f"{where}: {kind}[{name!r}]"


def _number(rng: random.Random) -> float:
    r = rng.random()
    if r < 0.15:
        return rng.choice(SPECIAL)
    if r < 0.25:
        return -math.exp(rng.uniform(-5, 5))
    return math.exp(rng.uniform(-12, 12))


def _random_stats(rng: random.Random, progress: float, val_every: int, t: int) -> StepStats:
    hparams = {
        "learning_rate": torch.tensor([_number(rng)]),
        "momentum": torch.tensor([rng.uniform(-0.5, 1.5) if rng.random() < 0.9 else _number(rng)]),
    }
    if rng.random() < 0.3:
        hparams["weight_decay"] = torch.tensor([_number(rng)])
    if rng.random() < 0.2:
        del hparams["momentum"]
    measured = val_every > 0 and t % val_every == 0
    return StepStats(
        train_loss=torch.tensor([_number(rng)]),
        train_loss_std=torch.tensor([abs(_number(rng))]),
        train_loss_first=torch.tensor([_number(rng)]),
        grad_norm=torch.tensor([abs(_number(rng))]),
        grad_cosine=torch.tensor([rng.uniform(-1, 1) if rng.random() < 0.9 else _number(rng)]),
        update_ratio=torch.tensor([abs(_number(rng))]),
        n_updates=rng.choice([1, 3, 7, 60, 1000]),
        hparams=hparams,
        val_loss=torch.tensor([_number(rng) if measured else math.nan]),
        progress=torch.tensor([progress if rng.random() < 0.9 else _number(rng)]),
    )


def _pair() -> tuple[FeatureExtractor, FeatureExtractor]:
    return FeatureExtractor(PARITY_SPACE, 1), FeatureExtractor(PARITY_SPACE, 1)


@pytest.mark.skipif(not features_module.SCALAR_PATH, reason="float path needs NumPy >= 2")
@pytest.mark.parametrize("val_every", [0, 1, 3])
@pytest.mark.parametrize("seed", range(8))
def test_one_run_float_path_is_bit_identical_to_the_tensor_path(seed, val_every):
    """Random histories with NaN/inf/zero/huge/tiny statistics and hyperparameters,
    with validation never (0), every interval or sparse; also the state it keeps."""
    rng = random.Random(seed * 10 + val_every)
    fast, ref = _pair()
    hparams = {"learning_rate": torch.tensor([_number(rng)]), "momentum": torch.tensor([0.9])}
    _assert_same_bits(fast.reset(hparams), ref.reset(hparams), "reset")
    progress = 0.0
    for t in range(40):
        progress += rng.uniform(0.0, 0.05)
        stats = _random_stats(rng, progress, val_every, t)
        where = f"seed {seed}, interval {t}"
        _assert_same_bits(fast._observe_one(stats), ref._observe_batched(stats), where)
        if t % 7 == 6:  # between reads, the float path folds into its own scalars
            _assert_same_state(fast, ref, where)
    _assert_same_state(fast, ref, "end")
    assert fast.state_dict().keys() == ref.state_dict().keys()


@pytest.mark.skipif(not features_module.SCALAR_PATH, reason="float path needs NumPy >= 2")
def test_observe_run_on_floats_matches_observe_on_step_stats():
    """The deployed scheduler's entry (`observe_run` on a `RunInterval` of floats)
    and `StepStats.from_run` / `StepStats.run` agree bit for bit with `observe`."""
    rng = random.Random(11)
    by_run, by_stats, ref = FeatureExtractor(PARITY_SPACE, 1), *_pair()
    hparams = {"learning_rate": torch.tensor([0.1]), "momentum": torch.tensor([0.9])}
    for fx in (by_run, by_stats, ref):
        fx.reset(hparams)
    for t in range(20):
        stats = _random_stats(rng, 0.05 * t, 2, t)
        run = stats.run(0)
        assert isinstance(run.train_loss, float) and run.n_updates == stats.n_updates
        again = StepStats.from_run(run)
        for name in ("train_loss", "grad_norm", "val_loss", "progress"):
            assert _bits(getattr(again, name)) == _bits(getattr(stats, name)), name
        obs = by_run.observe_run(run)
        assert isinstance(obs, np.ndarray) and obs.dtype == np.float32 and obs.shape[0] == 1
        _assert_same_bits(torch.from_numpy(obs), by_stats.observe(again), f"interval {t}")
        _assert_same_bits(torch.from_numpy(obs), ref._observe_batched(stats), f"interval {t}")
    with pytest.raises(ValueError, match="one run"):
        FeatureExtractor(PARITY_SPACE, 2).observe_run(run)


@pytest.mark.skipif(not features_module.SCALAR_PATH, reason="float path needs NumPy >= 2")
def test_one_run_float_path_on_a_scripted_run():
    """A plausible run: loss falls, then validation turns up (overfitting), one NaN
    loss, one interval without validation; checked after a state_dict round trip too."""
    fast, ref = _pair()
    hp = {"learning_rate": torch.tensor([0.1]), "momentum": torch.tensor([0.9])}
    fast.reset(hp)
    ref.reset(hp)
    script = [
        (2.3, 2.2, 0.05),
        (1.1, 1.2, 0.10),
        (0.7, math.nan, 0.15),
        (float("nan"), 0.9, 0.20),
        (0.4, 1.0, 0.25),
        (0.3, 1.3, 0.30),
    ]
    for i, (train, val, progress) in enumerate(script):
        lr = 0.1 * (1.5**i)
        stats_i = stats(train, val, progress, lr=lr, grad=1.0 / (i + 1), n_updates=60)
        _assert_same_bits(fast.observe(stats_i), ref._observe_batched(stats_i), f"step {i}")
        _assert_same_state(fast, ref, f"step {i}")
    resumed = FeatureExtractor(PARITY_SPACE, 1)
    resumed.load_state_dict(fast.state_dict())
    nxt = stats(0.25, 1.4, 0.35, lr=0.05)
    _assert_same_bits(resumed.observe(nxt), ref._observe_batched(nxt), "after resume")


@pytest.mark.skipif(not features_module.SCALAR_PATH, reason="float path needs NumPy >= 2")
@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.sampled_from(SPECIAL), min_size=10, max_size=10),
    steps=st.integers(1, 3),
)
def test_one_run_float_path_matches_on_numeric_garbage(values, steps):
    train, std, grad, cos, ratio, val, progress, lr, first, momentum = values
    fast, ref = _pair()
    hp = {"learning_rate": torch.tensor([lr]), "momentum": torch.tensor([momentum])}
    _assert_same_bits(fast.reset(hp), ref.reset(hp), "reset")
    for step in range(steps):
        s = _one_run_stats(train, std, first, grad, cos, ratio, val, progress, hp)
        _assert_same_bits(fast._observe_one(s), ref._observe_batched(s), f"step {step}")
        _assert_same_state(fast, ref, f"step {step}")


# -- the environment's NumPy path (B runs) against the tensor path --


def _random_batch_stats(rng: random.Random, n: int, progress: float, val_every: int, t: int):
    items = [_random_stats(rng, progress, val_every, t) for _ in range(n)]
    k = items[0].n_updates
    same_k = [s.replace(n_updates=k) for s in items]
    names = set.intersection(*(set(s.hparams) for s in same_k))
    return StepStats.cat([s.replace(hparams={h: s.hparams[h] for h in names}) for s in same_k])


def _assert_same_batch(fast: torch.Tensor, ref: torch.Tensor, where: str) -> None:
    assert fast.dtype == ref.dtype == torch.float32 and fast.shape == ref.shape, where
    assert _bits(fast) == _bits(ref), f"{where}: array path != tensor path"


@pytest.mark.skipif(not features_module.SCALAR_PATH, reason="array path needs NumPy >= 2")
@pytest.mark.parametrize("val_every", [0, 1, 3])
@pytest.mark.parametrize("seed", range(6))
def test_batched_array_path_is_bit_identical_to_the_tensor_path(seed, val_every):
    """B runs of random histories with NaN/inf/zero/huge/tiny statistics, some runs
    restarting mid-way: observations and kept state equal bit for bit (NaN as NaN)."""
    rng = random.Random(1000 + seed * 10 + val_every)
    n = 9
    fast, ref = FeatureExtractor(PARITY_SPACE, n), FeatureExtractor(PARITY_SPACE, n)
    hparams = {"learning_rate": torch.tensor([_number(rng) for _ in range(n)])}
    _assert_same_batch(fast.reset(hparams), ref.reset(hparams), "reset")
    progress = 0.0
    for t in range(30):
        progress += rng.uniform(0.0, 0.05)
        batch = _random_batch_stats(rng, n, progress, val_every, t)
        where = f"seed {seed}, interval {t}"
        _assert_same_batch(fast._observe_arrays(batch), ref._observe_batched(batch), where)
        for key in FeatureExtractor.STATE_KEYS:
            a, b = fast.state[key], ref.state[key]
            assert a.dtype == b.dtype == torch.float32, f"{where}: state {key!r}"
            assert torch.equal(torch.isnan(a), torch.isnan(b)), f"{where}: state {key!r}"
            assert _bits(a.nan_to_num(0.0)) == _bits(b.nan_to_num(0.0)), f"{where}: {key!r}"
        if t % 7 == 3:
            mask = torch.tensor([rng.random() < 0.3 for _ in range(n)])
            _assert_same_batch(
                fast.reset(batch.hparams, mask=mask), ref.reset(batch.hparams, mask=mask), where
            )
