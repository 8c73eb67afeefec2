"""Families of `FunctionalTask`: realistic architectures on shipped or generated data.

Six architectures (a causal character transformer, GRU and LSTM character
models, a causal 1-D CNN on characters, a GroupNorm 2-D CNN on images, a
residual LayerNorm MLP on tables) each appear in three *roles*, disjoint in
data sources **and** in (model, optimizer) pairs:

- ``train``: meta-training; registered as the family's ``"train"`` split;
- ``validation``: every choice (recipe, checkpoint, seed); a separate family
  object ``<name>_val`` whose only split is ``"heldout"`` (`validation_families`),
  not registered, so the conformance suite does not run the same code twice;
- ``test``: reported, never used to choose; the family's ``"heldout"`` split.

`ROLES` lists every (family, role) with its data sources and optimizers; the
assignment is checked for disjointness at import time (`check_roles_disjoint`).
Everything else about a task is drawn per task: sizes (width, depth, sequence
length, image size), activation, batch size, weight decay, label noise, input
and loss scale, clipping, and the run length ``T * K`` in
[`MIN_RUN_UPDATES`, `MAX_RUN_UPDATES`].

Example:
    >>> import numpy as np
    >>> task = CharTransformerFamily().sample_task(np.random.default_rng(0), "train")
    >>> task.family, MIN_RUN_UPDATES <= task.total_updates <= MAX_RUN_UPDATES
    ('char_transformer', True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from hpo_env.errors import ConfigError, unknown_name_error
from tasks.family import check_split
from tasks.functional.data import VOCAB, CharData, ImageData, TableData
from tasks.functional.models import (
    ACTIVATIONS,
    Cnn1dConfig,
    Cnn2dConfig,
    RecurrentConfig,
    ResMlpConfig,
    TransformerConfig,
)
from tasks.functional.task import FunctionalTask

T = TypeVar("T")
ROLE_NAMES = ("train", "validation", "test")
MIN_RUN_UPDATES = 400
MAX_RUN_UPDATES = 3000
CONTROL_STEPS = (40, 50, 60, 80, 100)
"""Episode lengths T (a deployed run makes ~50 decisions)."""
UPDATES_PER_STEP = (5, 8, 10, 15, 20, 30)
"""Inner updates per decision K (pairs with ``T * K`` outside the run-length range are redrawn)."""

DEFAULT_LR = {
    "char_transformer": {"sgd": 0.3, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 5e-4},
    "char_gru": {"sgd": 0.5, "adam": 3e-3, "adamw": 3e-3, "rmsprop": 2e-3},
    "char_lstm": {"sgd": 0.5, "adam": 3e-3, "adamw": 3e-3, "rmsprop": 2e-3},
    "char_cnn1d": {"sgd": 0.1, "adam": 2e-3, "adamw": 2e-3, "rmsprop": 1e-3},
    "image_cnn2d": {"sgd": 0.05, "adam": 2e-3, "adamw": 2e-3, "rmsprop": 1e-3},
    "table_resmlp": {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 5e-4},
}
"""A sensible constant learning rate per (architecture family, optimizer)."""
WEIGHT_DECAYS = {"sgd": (0.0, 1e-4, 5e-4), "adam": (0.0, 1e-5, 1e-4),
                 "adamw": (1e-2, 5e-2, 1e-1), "rmsprop": (0.0, 1e-5, 1e-4)}  # fmt: skip
"""Initial weight decay per optimizer (one drawn per task)."""
MOMENTUM = {"sgd": 0.9, "adam": 0.9, "adamw": 0.9, "rmsprop": 0.0}
"""Initial momentum (SGD) / beta1 (Adam, AdamW) / momentum (RMSprop, torch's default 0)."""


@dataclasses.dataclass(frozen=True)
class Role:
    """What one role of a family draws from."""

    sources: tuple[str, ...]
    """Data sources (see `tasks.functional.data`)."""
    optimizers: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class FamilyRoles:
    """The three roles of one architecture family."""

    model: str
    """What the architecture is, for the split table."""
    train: Role
    validation: Role
    test: Role

    def role(self, name: str) -> Role:
        if name not in ROLE_NAMES:
            raise unknown_name_error("role", name, ROLE_NAMES)
        return getattr(self, name)


TEXT = ("stdlib_source", "stdlib_docs", "sklearn_descr")
ROLES: dict[str, FamilyRoles] = {
    "char_transformer": FamilyRoles(
        "causal transformer, pre-LayerNorm, GELU, 1-3 layers",
        train=Role(("stdlib_source",), ("adamw", "sgd")),
        validation=Role(("stdlib_docs",), ("rmsprop",)),
        test=Role(("sklearn_descr",), ("adam",)),
    ),
    "char_gru": FamilyRoles(
        "GRU, 1-2 layers",
        train=Role(("stdlib_source",), ("adam", "rmsprop")),
        validation=Role(("stdlib_docs",), ("sgd",)),
        test=Role(("sklearn_descr",), ("adamw",)),
    ),
    "char_lstm": FamilyRoles(
        "LSTM, 1-2 layers",
        train=Role(("stdlib_source",), ("rmsprop", "sgd")),
        validation=Role(("stdlib_docs",), ("adamw",)),
        test=Role(("sklearn_descr",), ("adam",)),
    ),
    "char_cnn1d": FamilyRoles(
        "causal residual 1-D CNN, LayerNorm, 1-3 layers",
        train=Role(("stdlib_source",), ("sgd", "adamw")),
        validation=Role(("stdlib_docs",), ("adam",)),
        test=Role(("sklearn_descr",), ("rmsprop",)),
    ),
    "image_cnn2d": FamilyRoles(
        "2-D CNN, GroupNorm, 1-2 stages",
        train=Role(("digits",), ("sgd", "adam")),
        validation=Role(("bars",), ("adamw",)),
        test=Role(("shapes",), ("rmsprop",)),
    ),
    "table_resmlp": FamilyRoles(
        "residual MLP, LayerNorm, 1-3 blocks",
        train=Role(("teacher",), ("adamw", "rmsprop")),
        validation=Role(("wine", "iris"), ("adam",)),
        test=Role(("breast_cancer", "diabetes"), ("sgd",)),
    ),
}
"""Each architecture family's data sources and optimizers per role."""


def check_roles_disjoint(roles: dict[str, FamilyRoles] = ROLES) -> None:
    """Raise a `ConfigError` if two roles share a data source or a (model, optimizer) pair."""
    seen_sources: dict[str, str] = {}
    seen_pairs: dict[tuple[str, str], str] = {}
    for family, spec in roles.items():
        for role in ROLE_NAMES:
            entry = spec.role(role)
            for source in entry.sources:
                if seen_sources.setdefault(source, role) != role:
                    raise ConfigError(
                        f"data source {source!r} is in roles {seen_sources[source]!r} and {role!r}"
                    )
            for optimizer in entry.optimizers:
                pair = (family, optimizer)
                if seen_pairs.setdefault(pair, role) != role:
                    raise ConfigError(f"{pair} is in roles {seen_pairs[pair]!r} and {role!r}")


check_roles_disjoint()


def draw_run_length(rng: np.random.Generator) -> tuple[int, int]:
    """(T, K) with ``MIN_RUN_UPDATES <= T * K <= MAX_RUN_UPDATES``."""
    while True:
        t = int(rng.choice(CONTROL_STEPS))
        k = int(rng.choice(UPDATES_PER_STEP))
        if MIN_RUN_UPDATES <= t * k <= MAX_RUN_UPDATES:
            return t, k


def _pick(rng: np.random.Generator, options: Sequence[T]) -> T:
    return options[int(rng.integers(len(options)))]


@dataclasses.dataclass(frozen=True)
class FunctionalFamily:
    """One architecture family in one of two registrations: ``train`` + ``test`` roles
    (splits ``("train", "heldout")``), or the ``validation`` role alone (``("heldout",)``).

    Subclasses draw the architecture and data (`_draw`); this class draws the
    optimizer, the training choices and the run length.
    """

    arch: str = ""
    """Key of `ROLES` (set by each subclass)."""
    validation: bool = False
    """True: this is the ``<arch>_val`` registration (validation role as ``heldout``)."""

    @property
    def name(self) -> str:
        return f"{self.arch}_val" if self.validation else self.arch

    @property
    def splits(self) -> tuple[str, ...]:
        return ("heldout",) if self.validation else ("train", "heldout")

    def role_of(self, split: str) -> str:
        """The role (``train``, ``validation``, ``test``) a split of this family draws from."""
        check_split(self.name, split, self.splits)
        if self.validation:
            return "validation"
        return "train" if split == "train" else "test"

    def _draw(
        self, rng: np.random.Generator, source: str
    ) -> tuple[object, object, int, float | None]:
        """(data, model config, batch size, max_grad_norm) for one task."""
        raise NotImplementedError

    def sample_task(self, rng: np.random.Generator, split: str) -> FunctionalTask:
        role = ROLES[self.arch].role(self.role_of(split))
        source = str(_pick(rng, role.sources))
        optimizer = str(_pick(rng, role.optimizers))
        data, model, batch_size, clip = self._draw(rng, source)
        t, k = draw_run_length(rng)
        return FunctionalTask(
            family=self.name,
            data=data,  # type: ignore[arg-type]
            model=model,  # type: ignore[arg-type]
            optimizer=optimizer,
            batch_size=min(batch_size, data.n_train),  # type: ignore[attr-defined]
            default_learning_rate=DEFAULT_LR[self.arch][optimizer],
            control_steps=t,
            updates_per_step=k,
            default_momentum=MOMENTUM[optimizer],
            default_weight_decay=float(_pick(rng, WEIGHT_DECAYS[optimizer])),
            loss_scale=float(10.0 ** rng.uniform(-0.5, 0.5)),
            max_grad_norm=clip,
        )


MAX_CHAR_TOKENS = 256
"""Characters per minibatch (batch size x sequence length) of a character task: bigger
draws are redrawn, so that an update of 32 runs stays in the tens of milliseconds on
2 cores (meta-training runs thousands of them per task)."""


def _char_batch(rng: np.random.Generator, seq_len: int) -> int:
    while True:
        batch_size = int(_pick(rng, (4, 8, 16)))
        if batch_size * seq_len <= MAX_CHAR_TOKENS:
            return batch_size


def _char_data(rng: np.random.Generator, source: str) -> CharData:
    seq_len = int(_pick(rng, (16, 24, 32)))
    probe = CharData(source, seq_len, 1)
    room = probe.max_windows() - probe.n_val
    n_train = min(int(_pick(rng, (512, 1024, 2048))), room)
    return CharData(source, seq_len, n_train)


def _clip(rng: np.random.Generator) -> float | None:
    return None if rng.random() < 0.5 else float(_pick(rng, (0.5, 1.0, 5.0)))


@dataclasses.dataclass(frozen=True)
class CharTransformerFamily(FunctionalFamily):
    arch: str = "char_transformer"

    def _draw(
        self, rng: np.random.Generator, source: str
    ) -> tuple[object, object, int, float | None]:
        data = _char_data(rng, source)
        model = TransformerConfig(
            vocab=len(VOCAB),
            seq_len=data.seq_len,
            d_model=int(_pick(rng, (32, 48, 64))),
            n_heads=int(_pick(rng, (2, 4))),
            n_layers=int(rng.integers(1, 4)),
            mlp_ratio=int(_pick(rng, (2, 4))),
        )
        return data, model, _char_batch(rng, data.seq_len), _clip(rng)


@dataclasses.dataclass(frozen=True)
class CharRecurrentFamily(FunctionalFamily):
    arch: str = "char_gru"

    def _draw(
        self, rng: np.random.Generator, source: str
    ) -> tuple[object, object, int, float | None]:
        data = _char_data(rng, source)
        model = RecurrentConfig(
            cell=self.arch.removeprefix("char_"),
            vocab=len(VOCAB),
            seq_len=data.seq_len,
            hidden=int(_pick(rng, (32, 48, 64))),
            n_layers=int(rng.integers(1, 3)),
        )
        return data, model, _char_batch(rng, data.seq_len), _clip(rng)


@dataclasses.dataclass(frozen=True)
class CharCnn1dFamily(FunctionalFamily):
    arch: str = "char_cnn1d"

    def _draw(
        self, rng: np.random.Generator, source: str
    ) -> tuple[object, object, int, float | None]:
        data = _char_data(rng, source)
        model = Cnn1dConfig(
            vocab=len(VOCAB),
            seq_len=data.seq_len,
            channels=int(_pick(rng, (32, 48, 64))),
            n_layers=int(rng.integers(1, 4)),
            kernel=int(_pick(rng, (3, 5))),
            activation=str(_pick(rng, tuple(ACTIVATIONS))),
        )
        return data, model, _char_batch(rng, data.seq_len), _clip(rng)


def _label_noise(rng: np.random.Generator) -> float:
    return float(_pick(rng, (0.0, 0.0, 0.1, 0.2)))


def _input_scale(rng: np.random.Generator) -> float:
    return float(10.0 ** rng.uniform(-0.5, 0.5))


@dataclasses.dataclass(frozen=True)
class ImageCnn2dFamily(FunctionalFamily):
    arch: str = "image_cnn2d"

    def _draw(
        self, rng: np.random.Generator, source: str
    ) -> tuple[object, object, int, float | None]:
        size = 8 if source == "digits" else int(_pick(rng, (8, 12, 16)))
        data = ImageData(
            source,
            image_size=size,
            n_samples=int(_pick(rng, (512, 1024, 2048))),
            label_noise=_label_noise(rng),
            input_scale=_input_scale(rng),
        )
        channels = _pick(rng, ((8,), (8, 16), (16, 32)))
        model = Cnn2dConfig(
            image_size=size,
            n_classes=data.n_classes,
            channels=channels,
            groups=int(_pick(rng, (2, 4))),
            activation=str(_pick(rng, tuple(ACTIVATIONS))),
        )
        return data, model, int(_pick(rng, (16, 32, 64))), None


@dataclasses.dataclass(frozen=True)
class TableResMlpFamily(FunctionalFamily):
    arch: str = "table_resmlp"

    def _draw(
        self, rng: np.random.Generator, source: str
    ) -> tuple[object, object, int, float | None]:
        data = TableData(
            source,
            n_features=int(rng.integers(4, 33)),
            n_outputs=int(_pick(rng, (1, 2, 3, 5, 10))),
            n_samples=int(_pick(rng, (256, 512, 1024, 2048))),
            label_noise=_label_noise(rng),
            input_scale=_input_scale(rng),
        )
        n_in, n_out = data.shape
        model = ResMlpConfig(
            n_inputs=n_in,
            n_outputs=n_out,
            width=int(_pick(rng, (32, 64, 128))),
            n_blocks=int(rng.integers(1, 4)),
            activation=str(_pick(rng, tuple(ACTIVATIONS))),
        )
        return data, model, int(_pick(rng, (16, 32, 64))), None


FAMILY_CLASSES: dict[str, type[FunctionalFamily]] = {
    "char_transformer": CharTransformerFamily,
    "char_gru": CharRecurrentFamily,
    "char_lstm": CharRecurrentFamily,
    "char_cnn1d": CharCnn1dFamily,
    "image_cnn2d": ImageCnn2dFamily,
    "table_resmlp": TableResMlpFamily,
}


def functional_families() -> list[FunctionalFamily]:
    """The registered functional families: ``<arch>``, splits ``train`` and ``heldout`` (test)."""
    return [cls(arch=arch) for arch, cls in FAMILY_CLASSES.items()]


def validation_families() -> list[FunctionalFamily]:
    """The validation role of each architecture: ``<arch>_val``, split ``heldout`` only."""
    return [cls(arch=arch, validation=True) for arch, cls in FAMILY_CLASSES.items()]


def role_split(role: str) -> tuple[list[FunctionalFamily], str]:
    """(the families serving ``role``, the split of theirs that draws it)."""
    if role not in ROLE_NAMES:
        raise unknown_name_error("role", role, ROLE_NAMES)
    families = validation_families() if role == "validation" else functional_families()
    return families, "train" if role == "train" else "heldout"


def run_length_range(family: FunctionalFamily | None = None) -> tuple[int, int]:
    """(fewest, most) updates a sampled run can have (the same for every family here)."""
    lows = [t * k for t in CONTROL_STEPS for k in UPDATES_PER_STEP if t * k >= MIN_RUN_UPDATES]
    highs = [t * k for t in CONTROL_STEPS for k in UPDATES_PER_STEP if t * k <= MAX_RUN_UPDATES]
    return min(lows), max(highs)
