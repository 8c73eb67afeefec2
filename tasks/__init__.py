"""What a training run is: batched base-network training runs, task families and
distributions over them with named train / held-out splits.

`tasks` may import `hpo_env` (for the protocols and `StepStats`); `hpo_env`
never imports `tasks`.
"""

from tasks.distribution import (
    TaskDistribution,
    default_distribution,
    get_family,
    list_families,
    list_tasks,
    register_family,
    task_by_name,
)
from tasks.engine import SupervisedBatchedRun, TorchRun
from tasks.family import SPLITS, TaskFamily
from tasks.supervised import SupervisedTask, supervised_families

__all__ = [
    "SPLITS",
    "SupervisedBatchedRun",
    "SupervisedTask",
    "TaskDistribution",
    "TaskFamily",
    "TorchRun",
    "default_distribution",
    "get_family",
    "list_families",
    "list_tasks",
    "register_family",
    "supervised_families",
    "task_by_name",
]
