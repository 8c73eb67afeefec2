"""The transfer task suite: splits disjoint, test tasks outside the training families, clear errors."""

from __future__ import annotations

import dataclasses

import pytest

from agents.benchmark.transfer.suite import (
    OPTIMIZERS,
    START_REGIMES,
    TEST_TASKS,
    VALIDATION_TASKS,
    TaskSpec,
    tasks_for,
)
from hpo_env.errors import ConfigError

# The meta-training families (tasks/supervised): synthetic data and digits;
# plain MLPs and a CNN; SGD (with momentum), Adam, AdamW.
TRAINING_DATA = {"gaussian_mixture", "teacher_regression", "sinusoid", "digits", "digits_rows"}
TRAINING_MODELS = {"mlp", "cnn"}
TRAINING_OPTIMIZERS = {"sgd_momentum", "adam", "adamw"}


def test_splits_are_disjoint_and_labelled() -> None:
    test_names = {t.name for t in TEST_TASKS}
    validation_names = {t.name for t in VALIDATION_TASKS}
    assert not test_names & validation_names
    assert len(test_names) == len(TEST_TASKS) and len(validation_names) == len(VALIDATION_TASKS)
    assert {t.split for t in TEST_TASKS} == {"test"}
    assert {t.split for t in VALIDATION_TASKS} == {"validation"}
    assert [t.name for t in tasks_for("test")] == [t.name for t in TEST_TASKS]


def test_test_tasks_differ_from_training_in_data_and_architecture_or_optimizer() -> None:
    for task in TEST_TASKS:
        assert task.data not in TRAINING_DATA, task.name
        assert task.model not in TRAINING_MODELS or task.optimizer not in TRAINING_OPTIMIZERS, (
            task.name
        )


def test_test_split_covers_what_the_readme_promises() -> None:
    assert {t.optimizer for t in TEST_TASKS} == {"sgd_momentum", "adam", "adamw", "rmsprop"}
    assert {"gru", "lstm"} & {t.model for t in TEST_TASKS}
    assert {"cnn1d", "transformer"} <= {t.model for t in TEST_TASKS}
    assert sum(t.n_updates >= 2000 for t in TEST_TASKS) >= len(TEST_TASKS) / 2
    assert {t.start_regime for t in TEST_TASKS} == {"too low", "typical", "too high"}
    assert len(TEST_TASKS) >= 8 and len(VALIDATION_TASKS) >= 6


def test_a_task_of_the_other_split_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="--split test"):
        tasks_for("validation", [TEST_TASKS[0].name])
    with pytest.raises(ConfigError, match="did you mean 'wine_mlp_rmsprop'"):
        tasks_for("test", ["wine_mlp_rmsprp"])
    with pytest.raises(ConfigError, match="unknown split 'tset'"):
        tasks_for("tset")


def test_bad_task_specs_name_the_field(tiny_task: TaskSpec) -> None:
    with pytest.raises(ConfigError, match="n_updates"):
        dataclasses.replace(tiny_task, n_updates=0)
    with pytest.raises(ConfigError, match="start_lr"):
        dataclasses.replace(tiny_task, start_lr=-1.0)
    with pytest.raises(ConfigError, match="lower val_every"):
        dataclasses.replace(tiny_task, val_every=100)
    with pytest.raises(ConfigError, match="did you mean 'rmsprop'"):
        dataclasses.replace(tiny_task, optimizer="rmsprob")


def test_with_budget_scales_the_cadence() -> None:
    task = TEST_TASKS[0].with_budget(200)
    assert task.n_updates == 200 and task.val_every == 10


def test_validation_differs_from_test_in_data_and_model_optimizer_pairs() -> None:
    """Choices made on validation cannot fit the test tasks (issue 26): no data set and no
    (model, optimizer) pair of a test task is in validation; >= 10 tasks, all optimizers."""
    test_data = {t.data for t in TEST_TASKS}
    test_pairs = {(t.model, t.optimizer) for t in TEST_TASKS}
    assert len(VALIDATION_TASKS) >= 10
    for task in VALIDATION_TASKS:
        assert task.data not in test_data, task.name
        assert (task.model, task.optimizer) not in test_pairs, task.name
    assert {t.optimizer for t in VALIDATION_TASKS} == set(OPTIMIZERS)
    assert {t.start_regime for t in VALIDATION_TASKS} == set(START_REGIMES)
