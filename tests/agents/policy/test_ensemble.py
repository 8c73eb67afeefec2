"""Ensemble bundles: several seeds' policies acting on their mean action."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.benchmark.transfer.cache import BUNDLE_FILES, policy_fingerprint
from agents.policy.bundle import BundleKeyError, write_bundle
from agents.policy.ensemble import EnsemblePolicy, is_ensemble, member_paths, write_ensemble
from agents.policy.stacked_actor import StackedActor
from agents.policy.tuning_policy import TuningPolicy
from tests.agents.policy.test_bundle import make_contents


@pytest.fixture
def members(tmp_path: Path) -> list[Path]:
    return [write_bundle(tmp_path / f"seed{s}", make_contents(seed=s)) for s in range(3)]


def observations(policy: TuningPolicy, n: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, policy.observation_size)).astype(np.float32)


def test_the_action_is_the_clipped_mean_of_the_members(tmp_path: Path, members: list[Path]):
    path = write_ensemble(tmp_path / "ensemble", members)
    assert is_ensemble(path)
    policy = TuningPolicy.load(path)
    assert isinstance(policy, EnsemblePolicy) and len(policy.members) == 3
    singles = [TuningPolicy.load(m) for m in members]
    obs = observations(policy)
    means = []
    for single in singles:  # each member normalises with its own statistics
        with torch.no_grad():
            means.append(single.action_mean(torch.from_numpy(single.normalize(obs))).numpy())
    expected = np.clip(np.mean(means, axis=0), -1.0, 1.0)
    np.testing.assert_allclose(policy.act(obs), expected, rtol=1e-6, atol=1e-7)
    assert policy.act(obs[0]).shape == (len(policy.space),)
    assert policy.metadata["ensemble"]["n_members"] == 3


def test_an_ensemble_of_copies_acts_as_its_member(tmp_path: Path, members: list[Path]):
    # Its layers run stacked in NumPy (`StackedActor`), the member's in torch: the same
    # action to float32 rounding, not to the bit.
    path = write_ensemble(tmp_path / "ensemble", [members[0], members[0]])
    obs = observations(TuningPolicy.load(members[0]))
    np.testing.assert_allclose(
        TuningPolicy.load(path).act(obs), TuningPolicy.load(members[0]).act(obs), atol=1e-6
    )


def member_means(singles: list[TuningPolicy], obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.mean(
            [s.action_mean(torch.from_numpy(s.normalize(obs))).numpy() for s in singles], axis=0
        )


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_stacked_members_match_their_torch_means_with_and_without_normalisation(
    tmp_path: Path, activation: str
):
    contents = [make_contents(seed=s) for s in range(3)]
    contents[1].normalization["norm_obs"] = False  # VecNormalize(norm_obs=False)
    for c in contents:
        c.metadata["activation"] = activation
    paths = [write_bundle(tmp_path / f"m{j}", c) for j, c in enumerate(contents)]
    policy = TuningPolicy.load(write_ensemble(tmp_path / "ensemble", paths))
    singles = [TuningPolicy.load(p) for p in paths]
    obs = observations(policy, n=64) * 20.0  # past the clip too
    obs[3, 2] = np.nan
    expected = np.clip(member_means(singles, obs), -1.0, 1.0)
    actual = policy.act(obs)
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    assert isinstance(policy._stacked, StackedActor)  # the path every decision takes
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)
    assert np.isnan(actual[3]).all() == np.isnan(expected[3]).all()
    np.testing.assert_array_equal(policy.act(obs[5]), policy.act(obs[5:6])[0])


def test_members_of_other_widths_act_member_by_member(tmp_path: Path):
    paths = [
        write_bundle(tmp_path / "narrow", make_contents(net_arch=(8, 8), seed=0)),
        write_bundle(tmp_path / "wide", make_contents(net_arch=(16, 4), seed=1)),
    ]
    policy = TuningPolicy.load(write_ensemble(tmp_path / "ensemble", paths))
    obs = observations(policy)
    expected = np.clip(member_means([TuningPolicy.load(p) for p in paths], obs), -1.0, 1.0)
    np.testing.assert_allclose(policy.act(obs), expected, rtol=1e-6, atol=1e-7)
    assert policy._stacked is None


def test_it_deploys_as_a_scheduler(tmp_path: Path, members: list[Path]):
    policy = TuningPolicy.load(write_ensemble(tmp_path / "ensemble", members))
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = policy.scheduler(opt, total_steps=40, control_interval=4)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        sched.step(loss.item())
    rates = [row["hyperparameters"]["learning_rate"] for row in sched.history]
    assert len(rates) >= 10 and all(np.isfinite(rates)) and len(set(rates)) > 1


def test_members_with_another_interface_are_refused_and_nothing_is_written(
    tmp_path: Path, members: list[Path]
):
    other = write_bundle(tmp_path / "other", make_contents(hparams=("learning_rate",)))
    with pytest.raises(BundleKeyError, match="differs from member 0"):
        write_ensemble(tmp_path / "ensemble", [members[0], other])
    assert not (tmp_path / "ensemble").exists()
    with pytest.raises(ValueError, match="at least 2"):
        EnsemblePolicy([TuningPolicy.load(members[0])])


def test_a_member_outside_the_bundle_is_refused(tmp_path: Path, members: list[Path]):
    path = write_ensemble(tmp_path / "ensemble", members)
    meta = json.loads((path / "metadata.json").read_text())
    meta["ensemble"]["members"][1] = "../seed1"
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleKeyError, match="outside"):
        TuningPolicy.load(path)
    with pytest.raises(BundleKeyError, match="outside"):
        member_paths(path)


def test_member_paths_are_the_copied_members_in_order(tmp_path: Path, members: list[Path]):
    path = write_ensemble(tmp_path / "ensemble", members)
    found = member_paths(path)
    assert found == [(path / "members" / str(j)).resolve() for j in range(3)]
    for copy, original in zip(found, members):
        assert (copy / "policy.safetensors").read_bytes() == (
            original / "policy.safetensors"
        ).read_bytes()


def test_saving_round_trips(tmp_path: Path, members: list[Path]):
    policy = TuningPolicy.load(write_ensemble(tmp_path / "ensemble", members))
    copy = TuningPolicy.load(policy.save(tmp_path / "copy"))
    obs = observations(policy)
    np.testing.assert_array_equal(copy.act(obs), policy.act(obs))


def test_the_transfer_cache_sees_a_member_change(tmp_path: Path, members: list[Path]):
    path = write_ensemble(tmp_path / "ensemble", members)
    before = policy_fingerprint(str(path))
    write_bundle(path / "members" / "2", make_contents(seed=9))
    assert policy_fingerprint(str(path)) != before
    # An ordinary bundle's fingerprint is what it was before ensembles existed
    # (its three files only), so cached transfer runs of plain bundles stay valid.
    digest = hashlib.sha1()
    for name in BUNDLE_FILES:
        digest.update(f"{name}\0".encode())
        digest.update((members[0] / name).read_bytes())
    assert policy_fingerprint(str(members[0])) == digest.hexdigest()[:16]


def test_cli_writes_a_loadable_ensemble(tmp_path: Path, members: list[Path], capsys):
    from agents.cli import main

    assert main(["ensemble", str(tmp_path / "ens"), *map(str, members)]) == 0
    assert "ensemble of 3 bundles" in capsys.readouterr().out
    assert isinstance(TuningPolicy.load(tmp_path / "ens"), EnsemblePolicy)
    assert main(["ensemble", str(tmp_path / "one"), str(members[0])]) == 2  # a one-line error
