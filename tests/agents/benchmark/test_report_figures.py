"""The benchmark's schedule and loss figures show every task, or say which subset."""

from __future__ import annotations

import pytest

from agents.benchmark import report

TASKS = [f"task_{i}" for i in range(5)]


def _result():
    return {
        "summary": {
            "methods": {"policy": {}, "constant": {}},
            "task_names": TASKS,
            "tasks": {t: {"oracle_lr": 0.1} for t in TASKS},
            "sweep_lrs": [],
            "robustness_factor": 1.25,
        },
        "records": [
            {
                "label": "policy",
                "task": t,
                "sweep_lr": None,
                "kind": "main",
                "hparams": {"learning_rate": [[0.1, 0.05, 0.02]]},
                "val_curve": [[1.0, 0.5, 0.4]],
            }
            for t in TASKS
        ],
    }


@pytest.mark.parametrize(("n_tasks", "scope"), [(None, "all 5 tasks"), (2, "2 of 5 tasks")])
def test_schedule_and_loss_figures_cover_the_tasks(tmp_path, monkeypatch, n_tasks, scope):
    figures = {}
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.__setitem__(path.name, fig))
    report.make_figures(_result(), tmp_path, n_tasks=n_tasks)
    for name in ("lr_schedules.png", "loss_curves.png"):
        fig = figures[name]
        titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
        assert titles == TASKS[: n_tasks or len(TASKS)]
        assert scope in fig._suptitle.get_text()
