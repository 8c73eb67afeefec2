"""Ensemble meta-training (``TrainConfig.ensemble_size``): one run per seed, one bundle."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from agents.policy.ensemble import EnsemblePolicy
from agents.policy.tuning_policy import TuningPolicy
from agents.train.config import get_preset
from agents.train.members import member_dir, member_seeds
from agents.train.trainer import train
from hpo_env.errors import ConfigError
from tests.agents.train.test_trainer import tiny as tiny_run

SMALL = {
    "n_envs": 2,
    "n_steps": 8,
    "batch_size": 16,
    "total_timesteps": 32,
    "checkpoint_every": 16,
    "n_eval_tasks": 1,
    "eval_seeds": (1000,),
}
"""Two PPO updates of two runs: seconds per member."""


def tiny(out_dir: Path, **overrides):
    return tiny_run(out_dir, **{**SMALL, **overrides})


def test_member_seeds_count_up_from_the_seed():
    assert member_seeds(get_preset("smoke", seed=4, ensemble_size=3)) == [4, 5, 6]
    assert member_seeds(get_preset("smoke", seed=4)) == [4]
    with pytest.raises(ConfigError, match="ensemble_size must be >= 1"):
        get_preset("smoke", ensemble_size=0)


def test_ensemble_run_writes_members_and_a_mean_action_bundle(tmp_path: Path):
    bundle = train(tiny(tmp_path, seed=7, ensemble_size=2))
    assert bundle == tmp_path / "bundle"
    policy = TuningPolicy.load(bundle)
    assert isinstance(policy, EnsemblePolicy) and len(policy.members) == 2
    assert policy.metadata["ensemble"]["member_seeds"] == [7, 8]
    assert policy.metadata["config"]["ensemble_size"] == 2
    assert [m["seed"] for m in policy.metadata["training"]["members"]] == [7, 8]
    assert json.loads((tmp_path / "config.json").read_text())["ensemble_size"] == 2

    # Each member is the single run of its seed: the same weights as training it alone.
    alone = TuningPolicy.load(train(tiny(tmp_path / "alone", seed=8)))
    member = TuningPolicy.load(member_dir(tmp_path, 8) / "bundle")
    obs = np.random.default_rng(0).normal(size=(5, len(alone.feature_names))).astype(np.float32)
    np.testing.assert_array_equal(member.act(obs), alone.act(obs))
    np.testing.assert_array_equal(policy.members[1].act(obs), alone.act(obs))


def test_ensemble_resume_keeps_finished_members_and_trains_the_rest(tmp_path: Path):
    config = tiny(tmp_path, seed=1, ensemble_size=2)
    train(config)
    first = member_dir(tmp_path, 1) / "bundle" / "policy.safetensors"
    second = member_dir(tmp_path, 2)
    before = first.read_bytes(), first.stat().st_mtime_ns
    # A kill during member 2: its bundle and the ensemble's are gone, its checkpoints kept.
    for path in (second / "bundle", tmp_path / "bundle"):
        for f in sorted(path.rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
        path.rmdir()
    with pytest.raises(ConfigError, match="--resume"):
        train(config)  # a fresh start would overwrite the members
    bundle = train(config, resume_dir=tmp_path, resume_overrides={"total_timesteps": 32})
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before  # not retrained
    policy = TuningPolicy.load(bundle)
    assert isinstance(policy, EnsemblePolicy) and len(policy.members) == 2
    assert json.loads((second / "bundle" / "metadata.json").read_text())["training"]["resumed"]


@pytest.mark.slow  # two members in two worker processes: ~20 s
def test_members_side_by_side_equal_members_one_after_the_other(tmp_path: Path, capsys):
    sequential = TuningPolicy.load(train(tiny(tmp_path / "seq", seed=3, ensemble_size=2)))
    pooled = TuningPolicy.load(
        train(tiny(tmp_path / "pool", seed=3, ensemble_size=2, member_workers=2, progress_bar=True))
    )
    obs = np.random.default_rng(1).normal(size=(5, len(pooled.feature_names))).astype(np.float32)
    for a, b in zip(sequential.members, pooled.members):
        np.testing.assert_array_equal(a.act(obs), b.act(obs))
    assert [m["seed"] for m in pooled.metadata["training"]["members"]] == [3, 4]
    if "on 2 processes" not in capsys.readouterr().err:
        pytest.skip("one CPU core: the members ran one after the other")


class _Trained(Exception):
    """Raised by a stand-in member trainer: proves where the member ran."""


def _record_pid_and_stop(one, **kwargs):
    import os

    raise _Trained(os.getpid())


def test_ray_backend_trains_members_in_this_process(tmp_path: Path):
    """Side-by-side member processes would each start a Ray of their own: on the Ray
    backend the members share this process's session, one after the other."""
    import os

    from agents.train.members import train_ensemble

    config = get_preset("default", backend="ray", ray_workers=2, member_workers=3)
    with pytest.raises(_Trained) as raised:  # in-process: the exception itself, not ItemFailed
        train_ensemble(config, tmp_path / "run", _record_pid_and_stop, resuming=False, command="t")
    assert raised.value.args == (os.getpid(),)


def _finished_member(tmp_path: Path, training: dict) -> Path:
    from agents.policy.bundle import METADATA_FILE
    from agents.train.checkpoints import BUNDLE_DIR

    meta = tmp_path / BUNDLE_DIR / METADATA_FILE
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"training": training}))
    return tmp_path


def test_a_member_stopped_just_before_its_budget_is_finished_until_the_budget_rises(
    tmp_path: Path,
):
    from agents.train.members import member_finished

    # The nearest rollout boundary came 5 s before the 360 s budget.
    run = _finished_member(
        tmp_path,
        {
            "num_timesteps": 2048,
            "stopped_by_wall_time": True,
            "wall_time_s": 355.0,
            "wall_time_budget_s": 360.0,
        },
    )
    config = dataclasses.replace(get_preset("smoke"), total_timesteps=1_000_000)
    assert member_finished(run, dataclasses.replace(config, max_wall_time_s=360.0))
    assert not member_finished(run, dataclasses.replace(config, max_wall_time_s=600.0))
