"""The functional families: roles disjoint in data and (model, optimizer), randomised
tasks within the run-length range, data sources that ship or are generated, the split
table, and the distributions by role."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpo_env.errors import ConfigError
from tasks.distribution import list_families
from tasks.functional.data import (
    DOC_MODULES,
    SOURCE_MODULES,
    CharData,
    ImageData,
    TableData,
    text_codes,
)
from tasks.functional.families import (
    MAX_RUN_UPDATES,
    MIN_RUN_UPDATES,
    ROLE_NAMES,
    ROLES,
    FamilyRoles,
    Role,
    check_roles_disjoint,
    functional_families,
    validation_families,
)
from tasks.functional.splits import functional_distribution, realistic_distribution, split_table


def test_roles_are_disjoint_in_data_and_model_optimizer_pairs() -> None:
    for role in ROLE_NAMES:
        others = [r for r in ROLE_NAMES if r != role]
        sources = {s for spec in ROLES.values() for s in spec.role(role).sources}
        pairs = {(a, o) for a, spec in ROLES.items() for o in spec.role(role).optimizers}
        for other in others:
            assert not sources & {s for spec in ROLES.values() for s in spec.role(other).sources}
            assert not pairs & {
                (a, o) for a, spec in ROLES.items() for o in spec.role(other).optimizers
            }
    train_optimizers = {o for spec in ROLES.values() for o in spec.train.optimizers}
    assert train_optimizers == {"sgd", "adam", "adamw", "rmsprop"}


def test_an_overlap_is_refused() -> None:
    shared = FamilyRoles(
        "m", Role(("a",), ("sgd",)), Role(("a",), ("adam",)), Role(("c",), ("adamw",))
    )
    with pytest.raises(ConfigError, match="data source 'a'"):
        check_roles_disjoint({"x": shared})
    paired = FamilyRoles(
        "m", Role(("a",), ("sgd",)), Role(("b",), ("sgd",)), Role(("c",), ("adamw",))
    )
    with pytest.raises(ConfigError, match="'sgd'"):
        check_roles_disjoint({"x": paired})


def test_families_are_registered_and_validation_ones_are_not() -> None:
    registered = set(list_families())
    assert {f.name for f in functional_families()} <= registered
    assert not {f.name for f in validation_families()} & registered


@pytest.mark.parametrize(
    "family", functional_families() + validation_families(), ids=lambda f: f.name
)
def test_tasks_are_randomised_within_the_run_length_range(family) -> None:
    rng = np.random.default_rng(5)
    split = family.splits[0]
    role = ROLES[family.arch].role(family.role_of(split))
    tasks = [family.sample_task(rng, split) for _ in range(30)]
    assert len({t.name for t in tasks}) >= 20
    for task in tasks:
        assert MIN_RUN_UPDATES <= task.total_updates <= MAX_RUN_UPDATES
        assert task.optimizer in role.optimizers
        assert task.data.source in role.sources
        assert task.control_steps <= 100 and task.updates_per_step <= 50


@pytest.mark.parametrize("family", validation_families(), ids=lambda f: f.name)
def test_validation_families_train(family) -> None:
    """The conformance suite runs the registered families; these share their code."""
    task = family.sample_task(np.random.default_rng(1), "heldout")
    run = task.build([3])
    run.set_hyperparameters({"learning_rate": torch.tensor([task.default_learning_rate])})
    before = run.evaluate()
    stats = run.train(2)
    assert torch.isfinite(stats.train_loss).all() and torch.isfinite(run.evaluate()).all()
    assert before.shape == (1,)


def test_text_sources_are_distinct_and_nonempty() -> None:
    assert not set(SOURCE_MODULES) & set(DOC_MODULES)
    corpora = {s: text_codes(s) for s in ("stdlib_source", "stdlib_docs", "sklearn_descr")}
    for codes in corpora.values():
        assert len(codes) > 20_000 and int(codes.min()) >= 0 and int(codes.max()) < 96
    data = CharData("stdlib_docs", seq_len=12, n_train=40, n_val=8).generate(
        np.random.default_rng(0)
    )
    assert data.x_train.shape == (40, 12) and data.y_val.shape == (8, 12)
    torch.testing.assert_close(data.x_train[:, 1:], data.y_train[:, :-1])  # y is x shifted


def test_label_noise_touches_training_labels_only() -> None:
    clean = TableData("wine").generate(np.random.default_rng(4))
    noisy = TableData("wine", label_noise=0.5).generate(np.random.default_rng(4))
    assert torch.equal(clean.y_val, noisy.y_val)
    assert (clean.y_train != noisy.y_train).float().mean() > 0.1
    images = ImageData("shapes", image_size=12, n_samples=64, input_scale=3.0).generate(
        np.random.default_rng(0)
    )
    assert images.x_train.shape == (48, 1, 12, 12)
    assert 2.0 < float(images.x_train.std()) < 4.0


def test_data_errors_name_the_fix() -> None:
    with pytest.raises(ConfigError, match="did you mean 'iris'"):
        TableData("irsi")
    with pytest.raises(ConfigError, match="lower n_train"):
        CharData("sklearn_descr", seq_len=32, n_train=100_000).generate(np.random.default_rng(0))


def test_distributions_by_role() -> None:
    rng = np.random.default_rng(0)
    train = {functional_distribution("train").sample(rng).family for _ in range(40)}
    assert train == {f.name for f in functional_families()}
    val = functional_distribution("validation").sample(rng)
    assert val.family.endswith("_val") and val.data.source in {
        "stdlib_docs",
        "bars",
        "wine",
        "iris",
    }
    mixed = realistic_distribution("train", control_weight=0.25, functional_weight=0.6)
    shares = mixed.probabilities
    assert sum(shares[f.name] for f in functional_families()) == pytest.approx(0.6)
    with pytest.raises(ConfigError, match="did you mean"):
        functional_distribution("validaton")


def test_split_table_lists_every_family() -> None:
    table = split_table()
    lines = table.splitlines()
    assert lines[0] == "| family | data | model | optimizers | run length (updates) | split |"
    for name in [*list_families(), *(f.name for f in validation_families())]:
        assert any(line.startswith(f"| {name} |") for line in lines), name
    assert "| char_transformer | stdlib_source |" in table
    assert table.count("| validation |") == len(validation_families())
