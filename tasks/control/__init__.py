"""Control tasks: the base network is an RL policy trained on a classic-control system.

Batched torch physics (`physics`) validated against Gymnasium, a batched
actor-critic learner (`learner`), task configurations and families (`tasks`).
"""

from tasks.control.batched_env import BatchedControlEnv
from tasks.control.learner import CONTROL_HPARAMS, LOSS_OFFSET, ActorCriticConfig, ControlRun
from tasks.control.physics import SYSTEMS, ControlSystem, get_system
from tasks.control.tasks import (
    ACROBOT_DEFAULT,
    CARTPOLE_DEFAULT,
    ContextRange,
    ControlFamily,
    ControlTask,
    Region,
    control_families,
)

__all__ = [
    "ACROBOT_DEFAULT",
    "CARTPOLE_DEFAULT",
    "CONTROL_HPARAMS",
    "LOSS_OFFSET",
    "SYSTEMS",
    "ActorCriticConfig",
    "BatchedControlEnv",
    "ContextRange",
    "ControlFamily",
    "ControlRun",
    "ControlSystem",
    "ControlTask",
    "Region",
    "control_families",
    "get_system",
]
