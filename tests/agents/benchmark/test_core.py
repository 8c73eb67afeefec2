"""The evaluation core: the one oracle, the final table, and the one executor interface."""

from __future__ import annotations

import numpy as np
import pytest

from agents.benchmark.core import FinalTable, choose_oracle
from agents.benchmark.executor import (
    ItemFailed,
    LocalExecutor,
    ProcessExecutor,
    RayExecutor,
    make_executor,
    map_in_order,
)
from agents.benchmark.stats import robustness, within_factor
from hpo_env.errors import ConfigError


def test_the_oracle_is_chosen_per_task_not_per_seed() -> None:
    # Task 0: point "a" is best on average, though "b" wins seed 1; the oracle
    # keeps "a" on every seed (the best constant for the task, not the luckiest run).
    grid = {
        "a": np.array([[1.0, 2.0], [5.0, 5.0]]),
        "b": np.array([[4.0, 1.5], [1.0, 1.0]]),
    }
    chosen, oracle = choose_oracle(grid)
    assert chosen == ["a", "b"]
    np.testing.assert_array_equal(oracle, [[1.0, 2.0], [1.0, 1.0]])
    per_seed_minimum = np.minimum(grid["a"], grid["b"])
    assert (oracle >= per_seed_minimum).all() and (oracle[0] != per_seed_minimum[0]).any()


def test_the_oracle_scores_by_mean_log_and_breaks_ties_to_the_earlier_point() -> None:
    # Mean 2.5 vs 2.0, but geometric means 1 vs 2: the log score picks "wide".
    grid = {"narrow": np.array([[2.0, 2.0]]), "wide": np.array([[0.1, 10.0]])}
    assert choose_oracle(grid)[0] == ["wide"]
    tie = {"first": np.array([[1.0, 4.0]]), "second": np.array([[2.0, 2.0]])}
    assert choose_oracle(tie)[0] == ["first"]
    with pytest.raises(ConfigError, match="at least one grid point"):
        choose_oracle({})


def test_final_table_checks_shapes() -> None:
    table = FinalTable.from_nested(
        {"policy": {"t1": [1.0, 2.0], "t2": [3.0, 4.0]}},
        {"policy": {"t1": [False, True], "t2": [False, False]}},
        ["t1", "t2"],
        [7, 8],
    )
    assert table["policy"].shape == (2, 2) and "policy" in table
    assert table.diverged["policy"].tolist() == [[False, True], [False, False]]
    with pytest.raises(ConfigError, match=r"\[tasks, seeds\]"):
        table.add("bad", [1.0, 2.0])


def test_robustness_counts_runs_within_the_factor() -> None:
    finals, oracle = np.array([[1.0, 1.3], [2.4, 3.0]]), np.array([[1.0, 1.0], [2.0, 2.0]])
    assert within_factor(finals, oracle, 1.25).tolist() == [[True, False], [True, False]]
    assert robustness(finals, oracle, 1.25) == 0.5


def _square(x: int) -> int:
    return x * x


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ZeroDivisionError("three")
    return x


def test_local_executor_yields_in_order_and_names_the_failing_item() -> None:
    assert list(LocalExecutor().map_unordered(_square, [1, 2, 3])) == [(0, 1), (1, 4), (2, 9)]
    seen = []
    with pytest.raises(ItemFailed) as raised:
        for index, _value in LocalExecutor().map_unordered(_fail_on_three, [1, 2, 3, 4]):
            seen.append(index)
    assert seen == [0, 1] and raised.value.index == 2
    assert isinstance(raised.value.error, ZeroDivisionError)
    with pytest.raises(ZeroDivisionError, match="three"):
        map_in_order(LocalExecutor(), _fail_on_three, [3])


def test_make_executor_maps_names_at_the_edge() -> None:
    assert isinstance(make_executor("local"), LocalExecutor)
    assert isinstance(make_executor("local", workers=2), ProcessExecutor)
    assert isinstance(make_executor("ray", ray_address="auto"), RayExecutor)
    with pytest.raises(ConfigError, match="backend"):
        make_executor("slurm")
    with pytest.raises(ConfigError, match="workers"):
        ProcessExecutor(0)


@pytest.mark.slow  # starts two worker processes: about a second
def test_process_executor_gives_the_results_of_local() -> None:
    items = list(range(6))
    assert map_in_order(ProcessExecutor(2), _square, items) == map_in_order(
        LocalExecutor(), _square, items
    )
    with pytest.raises(ItemFailed) as raised:
        dict(ProcessExecutor(2).map_unordered(_fail_on_three, items))
    assert raised.value.index == 3
