"""Bundle metadata names the machine that made it; bundles without that entry still load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from agents.common.platform import FINGERPRINT_KEYS
from agents.policy.bundle import read_bundle
from agents.policy.tuning_policy import TuningPolicy
from agents.train.config import get_preset
from agents.train.export import build_metadata

SHIPPED = Path(__file__).resolve().parents[3] / "agents" / "policy" / "bundles" / "default"
SHIPPED_MEMBER = SHIPPED / "members" / "0"
"""A plain bundle: the shipped default is an ensemble of such members."""


def test_metadata_records_the_platform() -> None:
    config = get_preset("smoke")
    meta = build_metadata(config, config.space(), {}, None, {"num_timesteps": 0}, "hpo-rl train")
    platform = meta["platform"]
    assert set(platform) == set(FINGERPRINT_KEYS)
    assert platform["cpu_model"]
    assert platform["torch_version"] == torch.__version__
    assert platform["aten_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert json.loads(json.dumps(meta))["platform"] == platform


def test_a_bundle_without_platform_still_loads(tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(SHIPPED_MEMBER, old)
    meta_file = old / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta.pop("platform", None)  # bundles made before the entry existed
    meta_file.write_text(json.dumps(meta))
    assert "platform" not in read_bundle(old).metadata
    policy = TuningPolicy.load(old)
    obs = torch.zeros(1, policy.observation_size).numpy()
    assert policy.act(obs).shape == (1, len(policy.space))
