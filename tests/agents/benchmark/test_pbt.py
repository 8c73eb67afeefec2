"""Population Based Training over Ray Tune as a benchmark method, on the tiny task.

`agents.benchmark.pbt.pbt_method()` is a `MethodSpec` passed to the benchmark like
any other method (nothing is registered at import time).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
import pytest

from tests.hpo_env.tiny_task import TinyRegressionTask


@pytest.fixture
def pbt() -> ModuleType:
    return importlib.import_module("agents.benchmark.pbt")


def test_config_accounting(pbt) -> None:
    DEFAULT_PBT, QUICK_PBT, PBTConfig = pbt.DEFAULT_PBT, pbt.QUICK_PBT, pbt.PBTConfig
    assert DEFAULT_PBT.compute_multiple() == 4.0 and DEFAULT_PBT.member_intervals(40) == 40
    equal = PBTConfig(population_size=4, accounting="equal_total")
    assert equal.compute_multiple() == 1.0 and equal.member_intervals(40) == 10
    assert equal.member_intervals(3) == 1
    assert DEFAULT_PBT.interval(40) == 10 and QUICK_PBT.interval(40) == 2
    lrs = PBTConfig(population_size=3, init_spread_decades=1.0).initial_lrs(0.01)
    np.testing.assert_allclose(lrs, [0.001, 0.01, 0.1])


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"population_size": 1}, ValueError, "population_size must be >= 2"),
        ({"quantile_fraction": 0.6}, ValueError, "quantile_fraction"),
        ({"search_decades": (1.0, -1.0)}, ValueError, "lo < hi"),
        ({"accounting": "equal"}, TypeError, "accounting"),
        ({"perturbation_factors": (1.2, 0.0)}, ValueError, "perturbation_factors"),
    ],
)
def test_config_rejects_bad_values(pbt, overrides, error, match) -> None:
    with pytest.raises(error, match=match):
        pbt.PBTConfig(**overrides)


def test_pbt_method_carries_its_compute(pbt) -> None:
    spec = pbt.pbt_method()
    assert isinstance(spec.runner, pbt.PBTRunner) and spec.runner.config == pbt.DEFAULT_PBT
    assert spec.compute_multiple == 4.0 and not spec.in_sweep
    assert pbt.pbt_method(pbt.QUICK_PBT).compute_multiple == 2.0
    equal = pbt.pbt_method(pbt.PBTConfig(accounting="equal_total"), name="pbt_equal")
    assert equal.compute_multiple == 1.0 and "equal_total" in equal.description


@pytest.mark.ray
@pytest.mark.slow
def test_pbt_work_item_on_tiny_task(pbt, ray_session) -> None:
    """Through the benchmark's own work-item path: the hot member (10x the start lr)
    diverges, PBT copies the good one over it, and the best member ends finite."""
    from agents.benchmark.methods import MethodSpec
    from agents.benchmark.work import Arm, WorkItem, run_work_item

    spec = MethodSpec("pbt", runner=pbt.PBTRunner(pbt.QUICK_PBT), compute_multiple=2.0)
    task = TinyRegressionTask()
    out = run_work_item(WorkItem(task, (1,), (Arm("pbt", "method", method=spec),)))
    (record,) = out["records"]
    assert record["label"] == "pbt" and record["seeds"] == [1]
    assert len(record["val_curve"][0]) == task.control_steps
    assert all(v is not None for v in record["hparams"]["learning_rate"][0])
    assert record["diverged"] == [False]
    assert record["final_objective"][0] < record["first_val"][0]
