from __future__ import annotations

import argparse
import dataclasses
import io
import json

import numpy as np
import pytest

import agents.benchmark.protocol as evaluation
from agents.benchmark import work
from agents.benchmark.config import BenchmarkConfig
from agents.benchmark.report import FIGURES
from agents.cli import benchmark as benchmark_cli
from agents.cli import main
from agents.cli.benchmark import run_and_report
from agents.controllers import rollout as rollout_module
from tests.agents.support.policies import StandInPolicy, TinyTaskWithDefaults

TINY = BenchmarkConfig(
    n_seeds=2,
    grid_size=4,
    grid_decades=(-1.0, 1.0),
    sweep_lrs=(1e-3, 1e-1),
    n_bootstrap=50,
    quick=True,
)
TASKS = [TinyTaskWithDefaults(), TinyTaskWithDefaults(name="tiny_b", dim=5, default_lr=0.02)]


@pytest.mark.slow
def test_benchmark_writes_results_report_and_figures(tmp_path):
    stream = io.StringIO()
    result = run_and_report(
        TINY,
        policy=StandInPolicy(),
        out_dir=tmp_path,
        tasks=TASKS,
        progress=False,
        stream=stream,
        wandb_mode="disabled",
    )
    data = json.loads((tmp_path / "results.json").read_text())
    assert {"config", "policy", "seeds", "summary", "records", "items", "wall_s"} <= set(data)
    methods = data["summary"]["methods"]
    assert {
        "policy",
        "constant_default",
        "cosine",
        "step_decay",
        "plateau",
        "hypergradient",
        "best_of_grid",
    } <= set(methods)
    for name, m in methods.items():
        assert (
            m["iqm_ratio_ci"][0] <= m["iqm_ratio"] <= m["iqm_ratio_ci"][1] or name == "best_of_grid"
        )
        assert 0.0 <= m["divergence_rate"] <= 1.0
        if name != "policy":
            assert 0.0 <= m["win_rate_policy_vs"] <= 1.0
            counts = (m["wins_policy_vs"], m["ties_policy_vs"], m["losses_policy_vs"])
            assert sum(counts) == len(data["seeds"]) * len(data["summary"]["task_names"])
    assert methods["best_of_grid"]["iqm_ratio"] == pytest.approx(1.0)
    assert methods["best_of_grid"]["compute_multiple"] == 4.0
    assert all(t["status"] in ("MET", "NOT MET") for t in data["summary"]["targets"])
    assert min(data["seeds"]) >= 2**31 + 1000
    md = (tmp_path / "results.md").read_text()
    assert "| policy |" in md and "Quick mode" in md and "MET" in md
    row = next(line for line in md.splitlines() if line.startswith("| constant_default |"))
    c = methods["constant_default"]
    assert f"| {c['wins_policy_vs']} / {c['ties_policy_vs']} / {c['losses_policy_vs']} |" in row
    for name in FIGURES:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    printed = stream.getvalue()
    assert "Targets:" in printed and ("NOT MET" in printed or "[    MET]" in printed)
    assert set(result["files"]) == {"results.json", "results.md", *FIGURES}


@pytest.mark.slow
def test_benchmark_command_line_quick(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(evaluation, "resolve_tasks", lambda names: TASKS)
    monkeypatch.setattr("agents.cli.benchmark.QUICK_BENCHMARK", TINY)
    monkeypatch.setitem(work._POLICY_CACHE, "stand-in", StandInPolicy())
    code = main(
        [
            "benchmark",
            "--quick",
            "--policy",
            "stand-in",
            "--out",
            str(tmp_path),
            "--no-progress",
            "--pbt",
            "off",
        ]
    )
    assert code == 0
    assert (tmp_path / "results.md").exists()
    assert "Targets:" in capsys.readouterr().out


def test_pbt_joins_quick_mode_when_ray_is_installed(monkeypatch):
    import importlib.util

    parser = argparse.ArgumentParser()
    benchmark_cli.register(parser.add_subparsers())
    quick = parser.parse_args(["benchmark", "--quick"])
    full = parser.parse_args(["benchmark"])
    has_ray = importlib.util.find_spec("ray") is not None

    def names(args):
        return [m.name for m in benchmark_cli.methods_from_args(args)]

    assert ("pbt" in names(quick)) == has_ray
    assert "pbt" not in names(full)
    forced = parser.parse_args(["benchmark", "--pbt", "on", "--methods", "cosine"])
    assert names(forced) == ["cosine", "pbt"]
    off = parser.parse_args(["benchmark", "--quick", "--pbt", "off"])
    assert "pbt" not in names(off)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert not benchmark_cli.wants_pbt("auto", quick=True)


def test_benchmark_command_line_errors_are_one_line(capsys):
    # --pbt off: importing the PBT plugin would register it for every later test.
    args = ["benchmark", "--quick", "--methods", "cosin", "--no-progress", "--pbt", "off"]
    assert main(args) == 2
    assert "did you mean 'cosine'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.ray
def test_ray_backend_matches_local(ray_session):
    ray_config = dataclasses.replace(TINY, backend="ray", arms_per_item=5, sweep_lrs=())
    local = evaluation.run_benchmark(
        dataclasses.replace(ray_config, backend="local"),
        policy=StandInPolicy(),
        tasks=TASKS[:1],
        progress=False,
    )
    remote = evaluation.run_benchmark(
        ray_config, policy=StandInPolicy(), tasks=TASKS[:1], progress=False
    )
    assert len(remote["items"]) == len(local["items"]) > 1
    for name, m in local["summary"]["methods"].items():
        np.testing.assert_allclose(
            remote["summary"]["methods"][name]["final"], m["final"], rtol=1e-5
        )


def _halved_lr_runner(task, seeds, *, val_every, initial_lr, initial_hparams):
    from agents.controllers.schedules import ConstantController

    lr = (initial_lr or initial_hparams["learning_rate"]) / 2
    return rollout_module.rollout(
        ConstantController({"learning_rate": lr}), task, seeds, val_every=val_every
    )


def test_methods_passed_as_objects_join_the_benchmark():
    from agents.benchmark.methods import DEFAULT_METHODS, MethodSpec, select_methods

    halved = MethodSpec("halved", runner=_halved_lr_runner, compute_multiple=2.0, in_sweep=False)
    chosen = [*select_methods(["cosine"], DEFAULT_METHODS), halved]
    config = dataclasses.replace(TINY, sweep_lrs=(0.01,))
    result = evaluation.run_benchmark(
        config, policy=StandInPolicy(), tasks=TASKS[:1], progress=False, methods=chosen
    )
    methods = result["summary"]["methods"]
    assert set(methods) == {"policy", "cosine", "halved", "best_of_grid"}
    assert methods["halved"]["compute_multiple"] == 2.0
    assert "robustness" not in methods["halved"] and "robustness" in methods["cosine"]
    assert result["config"]["methods"] == ["cosine", "halved"]
    with pytest.raises(ValueError, match="reserved"):
        evaluation.run_benchmark(
            config, policy=StandInPolicy(), tasks=TASKS[:1], methods=[*chosen, halved]
        )
