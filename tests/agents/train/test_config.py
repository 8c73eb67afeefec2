"""TrainConfig validation, presets and the `hpo-rl train` argument parsing (fast)."""

from __future__ import annotations

import argparse
import dataclasses
import warnings

import pytest

from agents.cli.train import config_from_args, register
from agents.common.validation import field_docs
from agents.train.config import PRESETS, TrainConfig, get_preset
from hpo_env.errors import ConfigError


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hpo-rl")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["train", *argv])


def test_presets_are_valid_named_instances():
    assert set(PRESETS) == {"smoke", "default", "baseline", "full", "recipe"}
    for config in PRESETS.values():
        assert isinstance(config, TrainConfig)
    smoke = PRESETS["smoke"]
    assert smoke.total_timesteps <= 1024 and smoke.n_envs <= 8
    assert PRESETS["full"].total_timesteps > PRESETS["default"].total_timesteps


def test_every_field_has_a_docstring():
    docs = field_docs(TrainConfig)
    missing = [f.name for f in dataclasses.fields(TrainConfig) if not docs.get(f.name)]
    assert not missing


def test_unknown_preset_suggests_closest():
    with pytest.raises(ValueError, match="did you mean 'smoke'"):
        get_preset("smok")


@pytest.mark.parametrize(
    ("field", "value"),
    [("n_envs", "8"), ("learning_rate", "fast"), ("net_arch", [64, 64]), ("progress_bar", 1)],
)
def test_wrong_types_name_field_and_value(field, value):
    with pytest.raises(TypeError, match=field):
        dataclasses.replace(PRESETS["smoke"], **{field: value})


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("n_envs", 0, "n_envs must be >= 1"),
        ("gamma", 1.5, r"gamma must be in \[0.0, 1.0\]"),
        ("learning_rate", -1.0, "learning_rate must be a finite number > 0"),
        ("net_arch", (), "net_arch"),
        ("control_weight", 2.0, "control_weight"),
        ("eval_seeds", (1, 1), "duplicates"),
        ("batch_size", 10_000, "exceeds the rollout size"),
        ("eval_every", -1, "eval_every"),
    ],
)
def test_out_of_range_values_raise(field, value, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(PRESETS["smoke"], **{field: value})


def test_hparam_typo_suggests_closest():
    with pytest.raises(ValueError, match="did you mean 'learning_rate'"):
        dataclasses.replace(PRESETS["smoke"], hparams=("learning_rat",))


def test_lr_prior_typo_suggests_closest_and_none_turns_it_off():
    with pytest.raises(ConfigError, match="did you mean 'cosine_warmup'"):
        dataclasses.replace(PRESETS["smoke"], lr_prior="cosine")
    assert PRESETS["default"].space()["learning_rate"].prior == "cosine_warmup"
    config = config_from_args(parse(["--preset", "smoke", "--lr-prior", "none"]))
    assert config.lr_prior is None and config.space()["learning_rate"].prior is None
    assert config_from_args(parse(["--preset", "smoke"])).lr_prior == "cosine_warmup"


def test_suspicious_settings_warn():
    with pytest.warns(UserWarning, match="does not divide"):
        dataclasses.replace(PRESETS["smoke"], batch_size=48)
    with pytest.warns(UserWarning, match="ignored with backend='local'"):
        dataclasses.replace(PRESETS["smoke"], ray_address="ray://x:1")


def test_dict_round_trip_and_unknown_key():
    config = PRESETS["default"]
    assert TrainConfig.from_dict(config.to_dict()) == config
    data = config.to_dict() | {"n_env": 3}
    with pytest.raises(ValueError, match="did you mean 'n_envs'"):
        TrainConfig.from_dict(data)


def test_cli_overrides_build_the_config():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = config_from_args(
            parse(
                [
                    "--preset",
                    "smoke",
                    "--net-arch",
                    "16",
                    "16",
                    "--seed",
                    "3",
                    "--wandb-mode",
                    "disabled",
                ]
            )
        )
    assert config.net_arch == (16, 16) and config.seed == 3 and config.wandb_mode == "disabled"
    assert config.n_steps == PRESETS["smoke"].n_steps


def test_cli_unknown_preset_suggests_closest():
    with pytest.raises(ValueError, match="did you mean 'default'"):
        config_from_args(parse(["--preset", "defualt"]))


def test_cli_help_documents_every_field(capsys):
    with pytest.raises(SystemExit):
        parse(["--help"])
    text = capsys.readouterr().out
    for field in dataclasses.fields(TrainConfig):
        assert "--" + field.name.replace("_", "-") in text
    assert "--resume" in text and "--preset" in text


def test_device_defaults_to_cpu_and_accepts_the_documented_names():
    assert PRESETS["default"].device == "cpu"
    for name in ("cpu", "cuda", "cuda:1", "auto"):
        assert get_preset("smoke", device=name).device == name


def test_bad_device_names_the_choices():
    from hpo_env.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"unknown device 'gpu', expected one of .*'auto'.*'cuda'"
    ):
        get_preset("smoke", device="gpu")


def test_cli_device_flows_into_the_training_env(monkeypatch):
    """``--device auto`` resolves to the CPU here, and the vec env's runs are built there."""
    import torch

    from agents.train.trainer import make_train_env

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = config_from_args(parse(["--preset", "smoke", "--device", "auto"]))
    assert config.device == "auto"
    env = make_train_env(config)
    env.reset()
    assert env.engine.device == torch.device("cpu")
    assert env.engine.run.device == torch.device("cpu")  # a supervised run (smoke: no control)
    env.close()


def test_cuda_device_without_cuda_fails_at_build_time_with_the_fix(monkeypatch):
    import torch

    from agents.train.trainer import make_train_env
    from hpo_env.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"CUDA is not available.*'cpu' or 'auto'"):
        make_train_env(get_preset("smoke", device="cuda"))


def test_a_small_batch_on_a_gpu_warns_with_the_fix(monkeypatch):
    """CI has no GPU: the resolver is made to answer CUDA, and the env is not built."""
    import torch

    from agents.train import trainer

    built = {}
    monkeypatch.setattr(trainer, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(trainer, "make_vec_env", lambda n, **kw: built.update(n=n, **kw))
    with pytest.warns(UserWarning, match=r"n_envs=32 on cuda.*raise --n-envs"):
        trainer.make_train_env(get_preset("default", device="cuda"))
    assert built["n"] == 32 and built["device"] == torch.device("cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.make_train_env(
            get_preset("default", device="cuda", n_envs=1024, total_timesteps=1_048_576)
        )
