"""Every ``hpo-rl bench`` names the CPU, torch and the ATen kernel path before it measures."""

from __future__ import annotations

import importlib

import pytest
import torch

from agents.cli import main
from agents.cli.bench import BENCHMARKS

FIRST_WORK = {
    "engine": "sample_bench_tasks",
    "control": "_bench_speedup_pair",
    "overhead": "_digits",
    "families": "family_speedups",
    "ray": "ensure_ray",
}
"""The first measuring step of each bench: stopped here, only the header has printed."""


class _Stop(Exception):
    pass


def _stop(*args: object, **kwargs: object) -> None:
    raise _Stop


def test_every_bench_is_covered() -> None:
    assert set(FIRST_WORK) == set(BENCHMARKS)


@pytest.mark.parametrize("which", sorted(FIRST_WORK))
def test_header_names_cpu_torch_and_capability_first(
    which: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if which == "ray":
        pytest.importorskip("ray")
    module = importlib.import_module(BENCHMARKS[which][0])
    monkeypatch.setattr(module, FIRST_WORK[which], _stop)
    with pytest.raises(_Stop):
        main(["bench", which, "--quick"])
    lines = capsys.readouterr().out.splitlines()
    assert lines, f"bench {which} printed nothing before measuring"
    header = lines[0]
    assert header.startswith("CPU: "), header
    assert torch.__version__ in header
    assert f"ATen capability {torch.backends.cpu.get_cpu_capability()}" in header
