"""The transfer tasks: realistic plain-PyTorch runs outside the meta-training families.

The default preset's meta-training families are synthetic Gaussian-mixture /
teacher-regression / sinusoid MLPs and MLPs on scikit-learn's digits, with SGD,
Adam, AdamW or RMSprop. Every task here differs from them in data; all test tasks
but one differ in architecture too (``wine_mlp_rmsprop`` is a plain MLP with a
training optimizer: only its data is new); digit images (meta-training data)
appear only in the validation split, which differs from test in data and in
(model, optimizer) pairs.

Two disjoint lists:

- ``"validation"``: for every choice (recipe, checkpoint, training seed);
- ``"test"``: reported once, never used to choose anything.

Start learning rates are *given by the user*: each task says whether its start
is too low, typical or too high for its optimizer, as a user would pick it.
"""

from __future__ import annotations

import dataclasses

from hpo_env.errors import ConfigError, unknown_name_error

SPLITS = ("validation", "test")
OPTIMIZERS = ("sgd_momentum", "adam", "adamw", "rmsprop")
START_REGIMES = ("too low", "typical", "too high")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One transfer task: what a user trains, how, and from which learning rate."""

    name: str
    """Unique name, ``<data>_<model>_<optimizer>``."""
    split: str
    """``"validation"`` (for choosing) or ``"test"`` (reported once, never for choosing)."""
    data: str
    """``wine``, ``breast_cancer``, ``iris``, ``diabetes``, ``digits`` (scikit-learn
    tables), ``moons``, ``classification``, ``friedman`` (its seeded generators),
    ``digits_rows`` (digit images read row by row), ``chars`` or ``docs`` (character
    corpora: scikit-learn's descriptions, the standard library's docstrings)."""
    model: str
    """``mlp`` (GELU), ``resmlp`` (residual, LayerNorm), ``gru``, ``lstm``, ``cnn1d``
    (causal char CNN) or ``transformer`` (one causal block)."""
    optimizer: str
    """``sgd_momentum`` (momentum 0.9), ``adam``, ``adamw`` (weight decay 0.01) or ``rmsprop``."""
    batch_size: int
    """Examples (or sequences) per update."""
    n_updates: int
    """The run's budget in optimizer updates (``total_steps`` for the policy)."""
    start_lr: float
    """The learning rate the user starts from; every method starts here."""
    start_regime: str
    """How the user's start compares with the usual rate for the optimizer:
    ``"too low"``, ``"typical"`` or ``"too high"`` (documentation, not used by methods)."""
    val_every: int
    """Validation cadence in updates; the final update is always validated."""
    width: int = 64
    """Hidden width of the model."""
    seq_len: int = 32
    """Characters per sequence (``chars`` data only)."""

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise unknown_name_error("split", self.split, SPLITS)
        if self.optimizer not in OPTIMIZERS:
            raise unknown_name_error("optimizer", self.optimizer, OPTIMIZERS)
        if self.start_regime not in START_REGIMES:
            raise unknown_name_error("start regime", self.start_regime, START_REGIMES)
        for field in ("batch_size", "n_updates", "val_every", "width", "seq_len"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"TaskSpec.{field} must be a positive int, got {field}={value!r}")
        if not self.start_lr > 0:
            raise ConfigError(f"TaskSpec.start_lr must be > 0, got start_lr={self.start_lr!r}")
        if self.val_every > self.n_updates:
            raise ConfigError(
                f"TaskSpec.val_every={self.val_every} exceeds n_updates={self.n_updates}: "
                "validate at least once per run (lower val_every)"
            )

    def with_budget(self, n_updates: int) -> TaskSpec:
        """The same task with another budget (validation cadence scaled along)."""
        val_every = max(1, round(self.val_every * n_updates / self.n_updates))
        return dataclasses.replace(self, n_updates=n_updates, val_every=min(val_every, n_updates))


# Budgets: the four tabular runs are realistic (2,000 updates, hundreds of epochs,
# so overfitting matters); the sequence models are the costly ones on one CPU
# thread and get shorter budgets.
TEST_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("wine_mlp_rmsprop", "test", "wine", "mlp", "rmsprop",
             batch_size=16, n_updates=2000, start_lr=1e-2, start_regime="too high", val_every=100),
    TaskSpec("breast_cancer_resmlp_sgd_momentum", "test", "breast_cancer", "resmlp", "sgd_momentum",
             batch_size=32, n_updates=2000, start_lr=1e-3, start_regime="too low", val_every=100),
    TaskSpec("diabetes_resmlp_adam", "test", "diabetes", "resmlp", "adam",
             batch_size=32, n_updates=2000, start_lr=1e-2, start_regime="too high", val_every=100),
    TaskSpec("iris_resmlp_adamw", "test", "iris", "resmlp", "adamw",
             batch_size=16, n_updates=2000, start_lr=1e-4, start_regime="too low", val_every=100),
    TaskSpec("chars_transformer_adamw", "test", "chars", "transformer", "adamw",
             batch_size=8, n_updates=600, start_lr=1e-3, start_regime="typical", val_every=30,
             width=32, seq_len=16),
    TaskSpec("chars_gru_adam", "test", "chars", "gru", "adam",
             batch_size=8, n_updates=400, start_lr=3e-2, start_regime="too high", val_every=20,
             width=32, seq_len=16),
    TaskSpec("chars_cnn1d_sgd_momentum", "test", "chars", "cnn1d", "sgd_momentum",
             batch_size=8, n_updates=600, start_lr=0.05, start_regime="typical", val_every=30,
             width=32, seq_len=16),
    TaskSpec("chars_lstm_rmsprop", "test", "chars", "lstm", "rmsprop",
             batch_size=8, n_updates=400, start_lr=1e-4, start_regime="too low", val_every=20,
             width=32, seq_len=16),
)  # fmt: skip

# Validation differs from test in data *and* in (model, optimizer) pairs, so that a
# choice made here cannot fit the test tasks (issue 26): scikit-learn's digits and its
# seeded generators (moons, a 4-class classification, Friedman #1 regression) and the
# standard library's docstrings, none of which a test task reads; ten tasks, every
# optimizer, every start regime.
VALIDATION_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("classification_mlp_adam", "validation", "classification", "mlp", "adam",
             batch_size=32, n_updates=1000, start_lr=3e-4, start_regime="typical", val_every=50),
    TaskSpec("digits_mlp_sgd_momentum", "validation", "digits", "mlp", "sgd_momentum",
             batch_size=32, n_updates=1000, start_lr=0.05, start_regime="typical", val_every=50),
    TaskSpec("moons_mlp_adamw", "validation", "moons", "mlp", "adamw",
             batch_size=16, n_updates=800, start_lr=3e-2, start_regime="too high", val_every=40),
    TaskSpec("friedman_mlp_sgd_momentum", "validation", "friedman", "mlp", "sgd_momentum",
             batch_size=32, n_updates=1500, start_lr=1e-4, start_regime="too low", val_every=75),
    TaskSpec("friedman_resmlp_rmsprop", "validation", "friedman", "resmlp", "rmsprop",
             batch_size=32, n_updates=1500, start_lr=1e-2, start_regime="too high", val_every=75),
    TaskSpec("digits_rows_lstm_adam", "validation", "digits_rows", "lstm", "adam",
             batch_size=32, n_updates=600, start_lr=1e-3, start_regime="typical", val_every=30,
             width=32),
    TaskSpec("digits_rows_gru_rmsprop", "validation", "digits_rows", "gru", "rmsprop",
             batch_size=32, n_updates=600, start_lr=1e-4, start_regime="too low", val_every=30,
             width=32),
    TaskSpec("docs_transformer_sgd_momentum", "validation", "docs", "transformer", "sgd_momentum",
             batch_size=8, n_updates=600, start_lr=0.05, start_regime="typical", val_every=30,
             width=32, seq_len=16),
    TaskSpec("docs_cnn1d_adam", "validation", "docs", "cnn1d", "adam",
             batch_size=8, n_updates=600, start_lr=1e-4, start_regime="too low", val_every=30,
             width=32, seq_len=16),
    TaskSpec("docs_gru_adamw", "validation", "docs", "gru", "adamw",
             batch_size=8, n_updates=400, start_lr=3e-2, start_regime="too high", val_every=20,
             width=32, seq_len=16),
)  # fmt: skip


def tasks_for(split: str, names: tuple[str, ...] | list[str] | None = None) -> list[TaskSpec]:
    """The tasks of ``split``, or the named ones of it (a test task is never
    returned for ``"validation"``, and the reverse).

    Raises:
        ConfigError: an unknown split, or a name not in that split (the message
            lists the split's names and the closest match).
    """
    if split not in SPLITS:
        raise unknown_name_error("split", split, SPLITS)
    pool = {t.name: t for t in (TEST_TASKS if split == "test" else VALIDATION_TASKS)}
    if not names:
        return list(pool.values())
    chosen = []
    for name in names:
        if name not in pool:
            other = "validation" if split == "test" else "test"
            other_names = {t.name for t in (VALIDATION_TASKS if split == "test" else TEST_TASKS)}
            if name in other_names:
                raise ConfigError(
                    f"task {name!r} belongs to the {other!r} split, not {split!r}: "
                    f"pass --split {other} to run it"
                )
            raise unknown_name_error(f"{split} task", name, pool)
        chosen.append(pool[name])
    return chosen
