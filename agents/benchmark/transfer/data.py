"""Bundled, offline data for the transfer tasks: scikit-learn tables, digit rows, characters.

Nothing here downloads anything. Every split is drawn from the run's seed, so
the same seed gives the same train/validation split on every machine.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources

import numpy as np
import torch
from torch import Tensor

from hpo_env.errors import unknown_name_error

VAL_FRACTION = 0.25
"""Share of a tabular data set held out for validation."""
MAX_VAL_SEQUENCES = 256
"""Validation sequences of a character corpus (caps the cost of an evaluation)."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Tensors of one seeded split.

    ``kind`` says which loss applies: ``"classification"`` (cross-entropy over
    ``n_outputs`` classes), ``"regression"`` (mean squared error on a
    standardised target) or ``"language"`` (next-character cross-entropy at
    every position; ``x`` and ``y`` are [N, T] integer tensors).
    """

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    kind: str
    n_inputs: int
    n_outputs: int


def _sklearn_table(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    from sklearn import datasets

    loaders = {
        "wine": (datasets.load_wine, "classification"),
        "breast_cancer": (datasets.load_breast_cancer, "classification"),
        "iris": (datasets.load_iris, "classification"),
        "diabetes": (datasets.load_diabetes, "regression"),
        "digits": (datasets.load_digits, "classification"),
        "digits_rows": (datasets.load_digits, "classification"),
    }
    # scikit-learn's generators with a fixed random_state: the same table everywhere,
    # data that no test task and no training family uses (validation only).
    generated = {
        "moons": (lambda: datasets.make_moons(800, noise=0.3, random_state=0), "classification"),
        "classification": (
            lambda: datasets.make_classification(
                1000, n_features=20, n_informative=8, n_classes=4, flip_y=0.05, random_state=0
            ),
            "classification",
        ),
        "friedman": (
            lambda: datasets.make_friedman1(800, n_features=10, noise=1.0, random_state=0),
            "regression",
        ),
    }
    if name in generated:
        make, kind = generated[name]
        x, y = make()
        return np.asarray(x, dtype=np.float64), np.asarray(y), kind
    if name not in loaders:
        raise unknown_name_error("data set", name, [*loaders, *generated, *CORPORA])
    loader, kind = loaders[name]
    bunch = loader()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target), kind


def _split_indices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(VAL_FRACTION * n))
    return order[n_val:], order[:n_val]


def load_table(name: str, seed: int) -> Dataset:
    """A scikit-learn table, split by ``seed``, standardised with training statistics.

    ``digits_rows`` keeps the 8x8 images as sequences of 8 rows of 8 pixels
    (for a recurrent net reading one row per time step).
    """
    x, y, kind = _sklearn_table(name)
    train, val = _split_indices(len(x), seed)
    if name == "digits_rows":
        x = (x / 16.0).reshape(-1, 8, 8)
    else:
        mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-8
        x = (x - mean) / std
    if kind == "regression":
        y = (y - y[train].mean()) / y[train].std()
        y_tensor = torch.tensor(y, dtype=torch.float32).unsqueeze(-1)
        n_outputs = 1
    else:
        y_tensor = torch.tensor(y, dtype=torch.long)
        n_outputs = int(y.max()) + 1
    x_tensor = torch.tensor(x, dtype=torch.float32)
    return Dataset(
        x_tensor[train], y_tensor[train], x_tensor[val], y_tensor[val],
        kind, int(x.shape[-1]), n_outputs,
    )  # fmt: skip


def _printable_ascii(text: str) -> str:
    """``text`` with anything but printable ASCII and newlines replaced by ``?``."""
    return "".join(c if (32 <= ord(c) < 127 or c == "\n") else "?" for c in text)


@functools.lru_cache(maxsize=1)
def character_corpus() -> str:
    """scikit-learn's data set descriptions (``sklearn/datasets/descr/*.rst``), joined
    in name order, reduced to printable ASCII (anything else becomes ``?``)."""
    folder = importlib.resources.files("sklearn.datasets").joinpath("descr")
    parts = [
        entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".rst")
    ]
    text = "\n".join(parts)
    return _printable_ascii(text)


@functools.lru_cache(maxsize=1)
def docstring_corpus() -> str:
    """Docstrings of a fixed set of Python standard-library modules (the text the
    `tasks.functional` families' validation role reads; no test task reads it)."""
    from tasks.functional.data import corpus_text

    text = corpus_text("stdlib_docs")
    return _printable_ascii(text)


CORPORA = {"chars": character_corpus, "docs": docstring_corpus}
"""Character corpora by data name: scikit-learn's descriptions (test) and stdlib
docstrings (validation)."""


def load_chars(seq_len: int, seed: int, corpus: str = "chars") -> Dataset:
    """Next-character prediction on a corpus of `CORPORA`: non-overlapping windows of
    ``seq_len + 1`` characters, shuffled by ``seed``; up to `MAX_VAL_SEQUENCES` held out."""
    text = CORPORA[corpus]()
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    codes = torch.tensor([index[c] for c in text], dtype=torch.long)
    n_windows = (len(codes) - 1) // (seq_len + 1)
    windows = codes[: n_windows * (seq_len + 1)].view(n_windows, seq_len + 1)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(n_windows))
    n_val = min(MAX_VAL_SEQUENCES, max(1, int(VAL_FRACTION * n_windows)))
    val, train = windows[order[:n_val]], windows[order[n_val:]]
    return Dataset(
        train[:, :-1], train[:, 1:], val[:, :-1], val[:, 1:], "language", len(vocab), len(vocab)
    )


def load_dataset(name: str, seed: int, seq_len: int = 32) -> Dataset:
    """The data set ``name`` (a table, ``digits_rows`` or a corpus of `CORPORA`) split by ``seed``."""
    if name in CORPORA:
        return load_chars(seq_len, seed, corpus=name)
    return load_table(name, seed)
