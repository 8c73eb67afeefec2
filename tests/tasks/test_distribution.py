"""Task families by name, distributions over them, named splits."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from hpo_env.protocol import Task, TaskSampler
from tasks.distribution import (
    TaskDistribution,
    default_distribution,
    get_family,
    list_families,
    list_tasks,
    register_family,
    task_by_name,
)
from tasks.family import TaskFamily
from tasks.supervised import DigitsMlpFamily, GaussianMixtureMlpFamily, supervised_families

SUPERVISED = [f.name for f in supervised_families()]


def test_every_family_is_registered_and_well_formed() -> None:
    names = list_families()
    assert set(SUPERVISED) <= set(names)
    assert len(SUPERVISED) >= 4
    for name in names:
        family = get_family(name)
        assert isinstance(family, TaskFamily) and family.name == name
        assert set(family.splits) <= {"train", "heldout"}


def test_control_families_join_the_registry() -> None:
    from tasks.control import control_families

    for family in control_families():
        assert get_family(family.name) is not None


def test_heldout_variants_never_appear_in_train() -> None:
    for family in supervised_families():
        if set(family.splits) != {"train", "heldout"}:
            continue
        rng = np.random.default_rng(0)
        train = {family.sample_task(rng, "train").name for _ in range(40)}
        heldout = {family.sample_task(rng, "heldout").name for _ in range(40)}
        assert not train & heldout, family.name
    assert get_family("digits_cnn").splits == ("heldout",)


def test_default_distribution_mixes_supervised_and_control() -> None:
    dist = default_distribution("train", control_weight=0.25)
    assert isinstance(dist, TaskSampler)
    probs = dist.probabilities
    control = sum(p for n, p in probs.items() if n.startswith("control"))
    assert control == pytest.approx(0.25)
    assert "digits_cnn" not in probs
    rng = np.random.default_rng(0)
    drawn = [dist.sample(rng) for _ in range(60)]
    assert all(isinstance(t, Task) for t in drawn)
    assert {t.family for t in drawn} == set(probs)
    held = default_distribution("heldout")
    assert "digits_cnn" in held.probabilities


def test_sampling_is_seeded_and_tasks_pickle() -> None:
    dist = default_distribution("train", control_weight=0.0)
    a = [dist.sample(np.random.default_rng(3)).name for _ in range(3)]
    b = [dist.sample(np.random.default_rng(3)).name for _ in range(3)]
    assert a == b
    task = dist.sample(np.random.default_rng(3))
    assert pickle.loads(pickle.dumps(task)).name == task.name


def test_include_restricts_families() -> None:
    dist = default_distribution("train", control_weight=0.0, include=["digits_mlp", "sinusoid_mlp"])
    assert set(dist.probabilities) == {"digits_mlp", "sinusoid_mlp"}


def test_entry_point_resolves_to_default_distribution() -> None:
    from hpo_env.distributions import resolve_sampler, resolve_task

    sampler = resolve_sampler("default", split="train", control_weight=0.0)
    assert isinstance(sampler, TaskDistribution)
    assert resolve_task(sampler, "digits_mlp").family == "digits_mlp"


def test_task_by_name_is_a_fixed_representative() -> None:
    assert task_by_name("digits_mlp").name == task_by_name("digits_mlp").name
    assert task_by_name("digits_mlp:heldout").net.activation not in ("relu", "tanh")
    assert task_by_name("digits_cnn").family == "digits_cnn"
    for name in list_tasks():
        assert isinstance(task_by_name(name), Task)
    assert "digits_cnn" in list_tasks("heldout") and "digits_cnn" not in list_tasks("train")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: get_family("digits_mpl"), "did you mean 'digits_mlp'"),
        (lambda: task_by_name("digit_mlp"), "did you mean 'digits_mlp'"),
        (lambda: task_by_name("digits_cnn:train"), "offers splits"),
        (lambda: default_distribution("heldot"), "did you mean 'heldout'"),
        (lambda: default_distribution("train", control_weight=1.5), r"\[0, 1\], got 1.5"),
        (lambda: default_distribution("train", include=["sinusoid"]), "sinusoid_mlp"),
        (lambda: TaskDistribution({"digits_mlp": -1.0}), "finite number >= 0, got -1.0"),
        (lambda: TaskDistribution({"digits_mlp": float("nan")}), "finite number"),
        (lambda: TaskDistribution({"digits_mlp": 0.0}), "positive sum"),
        (lambda: TaskDistribution({}), "at least one"),
        (lambda: TaskDistribution({"digits_cnn": 1.0}, split="train"), "offers splits"),
        (lambda: GaussianMixtureMlpFamily(n_classes=(1, 3)), r"2 <= low <= high, got \(1, 3\)"),
        (lambda: DigitsMlpFamily(n_train=(100, 1700)), "n_train \\+ n_val <= 1797"),
        (lambda: GaussianMixtureMlpFamily().sample_task(np.random.default_rng(), "test"), "split"),
    ],
)
def test_errors_name_expected_and_actual(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_register_family_rejects_duplicates_and_non_families(monkeypatch) -> None:
    import tasks.distribution as distribution

    list_families()  # load the built-in families, then work on a copy of the registry
    monkeypatch.setattr(distribution, "_REGISTRY", dict(distribution._REGISTRY))
    with pytest.raises(ValueError, match="already registered"):
        register_family(DigitsMlpFamily())
    with pytest.raises(TypeError, match="TaskFamily"):
        register_family(object())  # type: ignore[arg-type]
    custom = DigitsMlpFamily(name="digits_mlp_small", n_train=(100, 200))
    register_family(custom)
    assert get_family("digits_mlp_small") is custom
    dist = TaskDistribution([(custom, 1.0)])
    assert dist.sample(np.random.default_rng(0)).family == "digits_mlp_small"
