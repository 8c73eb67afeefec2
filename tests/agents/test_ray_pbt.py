"""Population Based Training over Ray Tune as a benchmark method, on the tiny task."""

from __future__ import annotations

import numpy as np
import pytest

from agents.pbt import DEFAULT_PBT, QUICK_PBT, PBTConfig, PBTRunner, register_pbt_method
from tests.hpo_env.tiny_task import TinyRegressionTask


def test_config_accounting() -> None:
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
def test_config_rejects_bad_values(overrides, error, match) -> None:
    with pytest.raises(error, match=match):
        PBTConfig(**overrides)


def test_registration_reports_compute() -> None:
    from agents.baselines import available_methods, get_method

    spec = register_pbt_method(QUICK_PBT)
    try:
        assert get_method("pbt") is spec and isinstance(spec.runner, PBTRunner)
        assert spec.compute_multiple == 2.0 and not spec.in_sweep
    finally:
        # Keep the registry as other tests expect it.
        from agents import baselines

        baselines._METHODS.pop("pbt", None)
    assert "pbt" not in available_methods()


@pytest.mark.ray
@pytest.mark.slow
def test_pbt_work_item_on_tiny_task(ray_session) -> None:
    """Through the benchmark's own work-item path: the hot member (10x the start lr)
    diverges, PBT copies the good one over it, and the best member ends finite."""
    from agents.baselines import MethodSpec
    from agents.evaluation import Arm, WorkItem, run_work_item

    spec = MethodSpec("pbt", runner=PBTRunner(QUICK_PBT), compute_multiple=2.0)
    task = TinyRegressionTask()
    out = run_work_item(WorkItem(task, (1,), (Arm("pbt", "method", method=spec),)))
    (record,) = out["records"]
    assert record["label"] == "pbt" and record["seeds"] == [1]
    assert len(record["val_curve"][0]) == task.control_steps
    assert all(v is not None for v in record["hparams"]["learning_rate"][0])
    assert record["diverged"] == [False]
    assert record["final_objective"][0] < record["first_val"][0]
