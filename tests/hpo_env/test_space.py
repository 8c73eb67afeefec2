import math

import numpy as np
import pytest
import torch

from hpo_env.errors import ConfigError
from hpo_env.space import PRIORS, SCALAR_PRIORS, HyperparameterSpace, HyperparameterSpec


def test_log_action_is_bounded_multiplicative_change():
    spec = HyperparameterSpec("learning_rate", 1e-4, 1.0, log=True, max_step=0.5)
    value = torch.tensor([0.01, 0.01, 0.01])
    new = spec.apply(value, torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.allclose(
        new, torch.tensor([0.01 / math.sqrt(10), 0.01, 0.01 * math.sqrt(10)]), rtol=1e-5
    )


def test_action_outside_range_and_nan_are_clipped_to_bounds():
    spec = HyperparameterSpec("learning_rate", 1e-4, 1.0)
    new = spec.apply(torch.tensor([0.9, 1e-4, 0.5]), torch.tensor([5.0, -5.0, float("nan")]))
    assert new.tolist() == pytest.approx([1.0, 1e-4, 0.5])


def test_linear_spec_adds():
    spec = HyperparameterSpec("momentum", 0.0, 0.99, log=False, max_step=0.1)
    assert spec.apply(torch.tensor([0.5]), torch.tensor([1.0])).item() == pytest.approx(0.6)


def test_normalized_position_spans_minus_one_to_one():
    spec = HyperparameterSpec("learning_rate", 1e-4, 1.0)
    pos = spec.normalized(torch.tensor([1e-4, 1e-2, 1.0]))
    assert pos.tolist() == pytest.approx([-1.0, 0.0, 1.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"low": 1.0, "high": 0.1}, "expected low < high"),
        ({"low": 0.0, "high": 1.0}, "log-scale bound must be > 0"),
        ({"low": 1e-3, "high": 1.0, "max_step": 0.0}, "max_step must be > 0"),
        ({"low": float("nan"), "high": 1.0}, "finite number"),
    ],
)
def test_bad_bounds_raise_with_expected_and_actual(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HyperparameterSpec("learning_rate", **kwargs)


def test_unknown_name_suggests_closest():
    with pytest.raises(ValueError, match="did you mean 'learning_rate'"):
        HyperparameterSpace.from_names(["learning_rat"])


def test_space_skips_hyperparameters_a_run_does_not_use():
    space = HyperparameterSpace.from_names(["learning_rate", "entropy_coef"])
    out = space.apply({"learning_rate": torch.tensor([0.1])}, torch.tensor([[0.0, 1.0]]))
    assert set(out) == {"learning_rate"}
    with pytest.raises(ValueError, match="2 components"):
        space.apply({"learning_rate": torch.tensor([0.1])}, torch.tensor([[0.0]]))


def test_space_round_trips_through_dicts():
    space = HyperparameterSpace.from_names(["learning_rate", "momentum"])
    assert HyperparameterSpace.from_dicts(space.to_dicts()).specs == space.specs


def test_prior_scales_the_learning_rate_at_the_interval_midpoint():
    space = HyperparameterSpace.from_names(
        ["learning_rate", "entropy_coef"], lr_prior="cosine_warmup"
    )
    values = {
        "learning_rate": torch.tensor([1e-2, 1e-3]),
        "entropy_coef": torch.tensor([0.01, 0.01]),
    }
    warm = space.scheduled(values, 0.025)  # halfway through the 5% warm-up
    torch.testing.assert_close(warm["learning_rate"], torch.tensor([5e-3, 5e-4]))
    assert torch.equal(warm["entropy_coef"], values["entropy_coef"])  # no prior there
    torch.testing.assert_close(
        space.scheduled(values, 0.05)["learning_rate"], values["learning_rate"]
    )
    mid = space.scheduled(values, 0.525)["learning_rate"]  # half-way through the cosine
    torch.testing.assert_close(mid, values["learning_rate"] / 2)
    # The end anneals to the spec's lower bound, never to 0 or below.
    assert torch.equal(space.scheduled(values, 1.0)["learning_rate"], torch.full((2,), 1e-6))
    # Per-run progress.
    per_run = space.scheduled(values, torch.tensor([0.05, 0.525]))["learning_rate"]
    torch.testing.assert_close(per_run, torch.tensor([1e-2, 5e-4]))


def test_without_a_prior_scheduled_returns_the_values():
    space = HyperparameterSpace.from_names(["learning_rate"])
    values = {"learning_rate": torch.tensor([0.1])}
    assert space.scheduled(values, 0.9)["learning_rate"] is values["learning_rate"]
    assert not space.has_prior


def test_prior_round_trips_and_old_dicts_have_none():
    space = HyperparameterSpace.from_names(["learning_rate", "momentum"], lr_prior="cosine_warmup")
    assert space.has_prior
    assert HyperparameterSpace.from_dicts(space.to_dicts()).specs == space.specs
    # A bundle written before priors existed has no "prior" key: it loads without one.
    plain = HyperparameterSpace.from_names(["learning_rate"]).to_dicts()
    assert "prior" not in plain[0]
    assert HyperparameterSpace.from_dicts(plain).specs[0].prior is None


def test_bad_prior_raises_with_the_known_names():
    with pytest.raises(ValueError, match="did you mean 'cosine_warmup'"):
        HyperparameterSpace.from_names(["learning_rate"], lr_prior="cosine_warmpu")
    with pytest.raises(ValueError, match="must be log-scale"):
        HyperparameterSpec("momentum", 0.0, 0.99, log=False, prior="cosine_warmup")


def _f32_grid(n: int, seed: int) -> list[float]:
    """Values where rounding bites: random, bounds, just outside them, non-finite."""
    rng = np.random.default_rng(seed)
    edge = [0.0, -0.0, 1.0, -1.0, 1e-6, 10.0, 0.99, 1e-8, 11.0, -3.0]
    odd = [float("nan"), float("inf"), float("-inf")]
    return [float(np.float32(v)) for v in rng.uniform(-2.0, 2.0, n)] + edge + odd


@pytest.mark.parametrize("name", ["learning_rate", "momentum", "weight_decay", "entropy_coef"])
def test_apply_one_is_bit_identical_to_the_tensor_path(name):
    spec = HyperparameterSpace.from_names([name]).specs[0]
    values = [float(np.float32(v)) for v in np.geomspace(spec.low or 1e-6, spec.high, 23)]
    values += [spec.low, spec.high]
    for value in values:
        for action in _f32_grid(40, seed=len(name)):
            tensor = spec.apply(torch.tensor([value]), torch.tensor([action]))
            one = spec.apply_one(np.float32(value), action)
            assert isinstance(one, np.float32)
            assert np.float32(tensor.item()).tobytes() == one.tobytes(), (value, action)


@pytest.mark.parametrize("prior", sorted(PRIORS))
def test_scalar_priors_are_bit_identical_to_the_tensor_priors(prior):
    assert sorted(SCALAR_PRIORS) == sorted(PRIORS)
    spec = HyperparameterSpec("learning_rate", 1e-6, 10.0, prior=prior)
    progress = [(k + 0.5) / n for n in (7, 50, 333) for k in range(n)]
    progress += [0.0, 0.05, 0.049999, 0.050001, 1.0, -0.5, 2.0, float("nan")]
    for p in progress:
        tensor = PRIORS[prior](torch.tensor([p], dtype=torch.float32)).item()
        assert np.float32(tensor).tobytes() == SCALAR_PRIORS[prior](p).tobytes(), p
        for value in (1e-6, 3e-4, 0.1, 9.9):
            tensor = spec.scheduled(torch.tensor([value]), p).item()
            one = spec.scheduled_one(np.float32(value), p)
            assert np.float32(tensor).tobytes() == one.tobytes(), (value, p)


def test_space_one_run_twins_match_the_batched_methods():
    space = HyperparameterSpace.from_names(
        ["learning_rate", "momentum", "entropy_coef"], lr_prior="cosine_warmup"
    )
    values = {"learning_rate": np.float32(0.03), "momentum": np.float32(0.9)}
    action = [0.37, -0.81, 0.5]
    new = space.apply_one(values, action)
    expected = space.apply(
        {k: torch.tensor([v]) for k, v in values.items()}, torch.tensor([action])
    )
    assert set(new) == set(expected) == {"learning_rate", "momentum"}  # entropy_coef unused
    for name in new:
        assert new[name] == expected[name].item()
    scheduled = space.scheduled_one(new, 0.3)
    expected = space.scheduled({k: torch.tensor([v]) for k, v in new.items()}, 0.3)
    assert {k: float(v) for k, v in scheduled.items()} == {k: v.item() for k, v in expected.items()}
    with pytest.raises(ValueError, match="3 components"):
        space.apply_one(values, [0.0])


def test_rl_prior_is_read_through_for_rl_and_recorded_only_when_set_apart():
    same = HyperparameterSpace.from_names(["learning_rate"], lr_prior="cosine_warmup")
    assert same.for_rl() is same
    assert "rl_prior" not in same.to_dicts()[0]  # older bundles read exactly as before
    apart = HyperparameterSpace.from_names(
        ["learning_rate", "momentum"], lr_prior="cosine_warmup", rl_lr_prior=None
    )
    rl = apart.for_rl()
    assert rl["learning_rate"].prior is None and apart["learning_rate"].prior == "cosine_warmup"
    assert rl["momentum"] == apart["momentum"]
    again = HyperparameterSpace.from_dicts(apart.to_dicts())
    assert again.to_dicts() == apart.to_dicts() and again.for_rl()["learning_rate"].prior is None
    value = torch.tensor([0.1])
    assert torch.equal(rl.scheduled({"learning_rate": value}, 0.9)["learning_rate"], value)


def test_an_unknown_rl_prior_names_the_choices():
    with pytest.raises(ConfigError, match="rl_prior"):
        HyperparameterSpace.from_names(["learning_rate"], rl_lr_prior="cosine")
