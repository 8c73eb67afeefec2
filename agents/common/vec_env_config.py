"""The meta-training environment a `agents.train.config.TrainConfig` describes, as
`hpo_env.make_vec_env` keyword arguments: one builder for every place that makes it.

The local trainer, each Ray worker (`agents.common.ray_vec_env`) and the preset benches
(`agents.perf.presets`) all read these, so a field the config gains (a distribution
keyword, a reward, a feature version) reaches every backend or none.
"""

from __future__ import annotations

from typing import Any

from hpo_env.distributions import resolve_sampler


def vec_env_kwargs_from_config(config: Any, split: str = "train") -> dict[str, Any]:
    """`make_vec_env` keyword arguments carried by ``config`` (a `TrainConfig`, or any
    object with some of its fields: ``distribution``, ``control_weight``, ``hparams``,
    ``device``, ``task_groups``, ``feature_spec_version``, ``paired_reward``).

    A registered distribution name travels as a name with its keyword arguments (each
    Ray worker resolves it); a ``module:factory`` distribution is resolved here and
    the sampler itself travels (pickled to Ray workers). ``device`` stays a name
    (``auto`` is resolved where the runs compute).
    """
    kwargs: dict[str, Any] = {"split": split}
    if getattr(config, "device", None) is not None:
        kwargs["device"] = config.device
    if hasattr(config, "space"):  # a TrainConfig: the names with the learning rate's prior
        kwargs["hparams"] = config.space()
    elif getattr(config, "hparams", None) is not None:
        kwargs["hparams"] = tuple(config.hparams)
    if hasattr(config, "distribution_kwargs"):
        extra = config.distribution_kwargs()
    else:
        control_weight = getattr(config, "control_weight", None)
        extra = {} if control_weight is None else {"control_weight": control_weight}
    distribution = getattr(config, "distribution", "default")
    if ":" in distribution:
        kwargs["distribution"] = resolve_sampler(distribution, split=split, **extra)
    else:
        kwargs["distribution"] = distribution
        if extra:
            kwargs["distribution_kwargs"] = extra
    if hasattr(config, "task_groups"):
        kwargs["task_groups"] = config.task_groups
    if hasattr(config, "feature_spec_version"):
        kwargs["feature_spec_version"] = config.feature_spec_version
    if hasattr(config, "paired_reward"):
        from hpo_env import RewardConfig

        kwargs["reward_config"] = RewardConfig(paired=config.paired_reward)
    return kwargs
