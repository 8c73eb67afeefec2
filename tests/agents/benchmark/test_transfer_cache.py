"""The transfer cache's keys name the code and the whole bundle (issue 22: stale runs)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from agents.benchmark.transfer import cache, methods
from agents.benchmark.transfer.protocol import TransferConfig, run_transfer
from agents.benchmark.transfer.suite import TaskSpec

SMALL = dict(grid_multipliers=(1.0,), sweep_multipliers=(1.0,), progress=False)


def _run(task: TaskSpec, out: Path, policy: str = "default") -> int:
    """Run a one-seed protocol; returns how many runs it trained (cache lines added)."""
    path = out / "runs.jsonl"
    before = len(path.read_text().splitlines()) if path.exists() else 0
    config = TransferConfig(
        split="validation", n_seeds=1, out_dir=str(out), policy=policy, quick=True, **SMALL
    )  # type: ignore[arg-type]
    run_transfer(config, baselines=[methods.Constant()], tasks=[task], stream=io.StringIO())
    return len(path.read_text().splitlines()) - before


def test_code_revision_is_a_hash_of_the_sources(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "fake_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = cache.code_revision.__wrapped__(("fake_pkg",))
    assert first == cache.code_revision.__wrapped__(("fake_pkg",))
    (package / "a.py").write_text("X = 2\n")
    assert cache.code_revision.__wrapped__(("fake_pkg",)) != first
    assert len(cache.code_revision()) == 16  # the real packages, no git needed


def test_the_bundle_fingerprint_covers_its_metadata(tmp_path: Path) -> None:
    from agents.policy.tuning_policy import resolve_bundle_path

    bundle = tmp_path / "bundle"
    shutil.copytree(resolve_bundle_path("default"), bundle)
    before = cache.policy_fingerprint(str(bundle))
    metadata = bundle / "metadata.json"
    metadata.write_text(metadata.read_text().replace("{", '{"note": "re-described", ', 1))
    assert cache.policy_fingerprint(str(bundle)) != before


@pytest.mark.slow  # 3 tiny runs, then 3 and 1 again: seconds
def test_a_code_or_bundle_change_reruns_instead_of_reusing_stale_runs(
    tiny_task: TaskSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agents.benchmark.transfer import protocol
    from agents.policy.tuning_policy import resolve_bundle_path

    bundle = tmp_path / "bundle"
    shutil.copytree(resolve_bundle_path("default"), bundle)
    out = tmp_path / "out"
    assert _run(tiny_task, out, str(bundle)) == 2  # constant, policy
    assert _run(tiny_task, out, str(bundle)) == 0  # same code and bundle: all reused
    # Same weights, new metadata (e.g. another prior recorded): the policy's run again.
    metadata = bundle / "metadata.json"
    metadata.write_text(metadata.read_text().replace("{", '{"note": "changed", ', 1))
    assert _run(tiny_task, out, str(bundle)) == 1
    # Another code revision: every run again.
    monkeypatch.setattr(protocol, "code_revision", lambda: "another-revision")
    assert _run(tiny_task, out, str(bundle)) == 2
