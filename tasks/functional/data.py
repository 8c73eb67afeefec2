"""Data sources of the functional families: only what installed packages ship, or generated.

Nothing here downloads. Every run draws its own split (and, for generated data,
its own data set) from its seed through the ``rng`` it is handed.

- Text (next-character prediction; a fixed printable-ASCII vocabulary of 96
  symbols, anything else becomes ``?``): ``stdlib_source`` (source files of a
  fixed set of Python standard-library modules), ``stdlib_docs`` (docstrings of
  a *disjoint* set of standard-library modules) and ``sklearn_descr``
  (scikit-learn's data-set descriptions). The text is whatever the installed
  Python and scikit-learn ship, so it can differ between their versions.
- Tables: scikit-learn's bundled ``wine``, ``iris``, ``breast_cancer``,
  ``diabetes`` (standardised with training statistics), and ``teacher``
  (inputs through a random tanh network: classification or regression).
- Images: scikit-learn's 8x8 ``digits``, generated ``bars`` (orientation of a
  line) and ``shapes`` (square, frame, cross, disk).

Task augmentation lives here: label noise (training labels only), input scale.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.resources
import importlib.util
import inspect
import warnings
from types import ModuleType

import numpy as np
import torch

from hpo_env.errors import ConfigError, unknown_name_error
from tasks.engine import SupervisedData

VOCAB = (*(chr(c) for c in range(32, 127)), "\n")
"""The 96 symbols of every text source (printable ASCII and newline)."""
UNKNOWN = "?"

SOURCE_MODULES = (
    "argparse", "bisect", "calendar", "configparser", "csv", "dataclasses", "difflib",
    "enum", "fractions", "gettext", "heapq", "json.decoder", "json.encoder", "pprint",
    "shlex", "statistics", "string", "textwrap",
)  # fmt: skip
"""Standard-library modules whose *source files* make ``stdlib_source``."""
DOC_MODULES = (
    "abc", "collections", "contextlib", "copy", "datetime", "decimal", "functools", "glob",
    "inspect", "itertools", "logging", "math", "operator", "os", "pathlib", "pickle",
    "random", "re", "shutil", "socket", "subprocess", "tarfile", "tempfile", "threading",
    "typing", "unittest", "zipfile",
)  # fmt: skip
"""Standard-library modules whose *docstrings* make ``stdlib_docs`` (none of `SOURCE_MODULES`)."""

TEXT_SOURCES = ("stdlib_source", "stdlib_docs", "sklearn_descr")
TABLE_SOURCES = ("teacher", "wine", "iris", "breast_cancer", "diabetes")
IMAGE_SOURCES = ("digits", "bars", "shapes")
VAL_FRACTION = 0.25
"""Share of a bundled table or of the digits held out for validation (per run)."""


def _ascii(text: str) -> str:
    allowed = set(VOCAB)
    return "".join(c if c in allowed else UNKNOWN for c in text)


def _module_source(name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return ""
    with open(spec.origin, encoding="utf-8") as handle:
        return handle.read()


def _module_docs(name: str) -> str:
    with warnings.catch_warnings():  # e.g. typing.io's deprecation, read by getdoc
        warnings.simplefilter("ignore", DeprecationWarning)
        return _docs_of(importlib.import_module(name))


def _docs_of(module: ModuleType) -> str:
    docs = [inspect.getdoc(module) or ""]
    for attr, obj in sorted(vars(module).items()):
        if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj) or inspect.isroutine(obj):
            docs.append(inspect.getdoc(obj) or "")
    return "\n\n".join(d for d in docs if d)


def corpus_text(source: str) -> str:
    """The raw text of the corpus ``source`` (one of `TEXT_SOURCES`)."""
    if source == "stdlib_source":
        return "\n".join(_module_source(m) for m in SOURCE_MODULES)
    if source == "stdlib_docs":
        return "\n\n".join(_module_docs(m) for m in DOC_MODULES)
    if source == "sklearn_descr":
        folder = importlib.resources.files("sklearn.datasets").joinpath("descr")
        entries = sorted(folder.iterdir(), key=lambda e: e.name)
        return "\n".join(e.read_text(encoding="utf-8") for e in entries if e.name.endswith(".rst"))
    raise unknown_name_error("text source", source, TEXT_SOURCES)


@functools.lru_cache(maxsize=len(TEXT_SOURCES))
def text_codes(source: str) -> torch.Tensor:
    """The corpus ``source`` as int64 codes into `VOCAB` (read once per process)."""
    index = {c: i for i, c in enumerate(VOCAB)}
    return torch.tensor([index[c] for c in _ascii(corpus_text(source))], dtype=torch.int64)


def _check_range(owner: str, name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{owner}.{name} must be in [{low}, {high}], got {name}={value!r}")


@dataclasses.dataclass(frozen=True)
class CharData:
    """Next-character prediction: windows of ``seq_len + 1`` characters of a text source,
    at a per-run offset, shuffled per run; the first ``n_val`` are validation."""

    source: str
    seq_len: int
    n_train: int
    n_val: int = 256
    loss: str = "cross_entropy"

    def __post_init__(self) -> None:
        if self.source not in TEXT_SOURCES:
            raise unknown_name_error("text source", self.source, TEXT_SOURCES)
        if min(self.seq_len, self.n_train, self.n_val) < 1:
            raise ConfigError(f"CharData sizes must be >= 1, got {self}")

    def max_windows(self) -> int:
        """Windows the corpus holds (``n_train + n_val`` may not exceed it)."""
        return (len(text_codes(self.source)) - self.seq_len - 1) // (self.seq_len + 1)

    def describe(self) -> str:
        return f"{self.source},T={self.seq_len},n={self.n_train}"

    def generate(self, rng: np.random.Generator) -> SupervisedData:
        codes = text_codes(self.source)
        t = self.seq_len + 1
        need = self.n_train + self.n_val
        if need > self.max_windows():
            raise ConfigError(
                f"{self.source} holds {self.max_windows()} windows of {t} characters, "
                f"{need=} requested: lower n_train or seq_len"
            )
        offset = int(rng.integers(t))
        n_windows = (len(codes) - offset) // t
        windows = codes[offset : offset + n_windows * t].view(n_windows, t)
        order = torch.from_numpy(rng.permutation(n_windows)[:need])
        val, train = windows[order[: self.n_val]], windows[order[self.n_val :]]
        return SupervisedData(train[:, :-1], train[:, 1:], val[:, :-1], val[:, 1:])


@functools.lru_cache(maxsize=8)
def _sklearn_table(name: str) -> tuple[np.ndarray, np.ndarray, bool]:
    from sklearn import datasets

    loaders = {
        "wine": (datasets.load_wine, True),
        "iris": (datasets.load_iris, True),
        "breast_cancer": (datasets.load_breast_cancer, True),
        "diabetes": (datasets.load_diabetes, False),
    }
    loader, classification = loaders[name]
    bunch = loader()
    return np.asarray(bunch.data, np.float64), np.asarray(bunch.target), classification


TABLE_SHAPES = {"wine": (13, 3), "iris": (4, 3), "breast_cancer": (30, 2), "diabetes": (10, 1)}
"""(inputs, outputs) of the bundled tables (outputs: classes, or 1 for regression)."""


def _noisy_labels(
    y: np.ndarray, n_classes: int, noise: float, rng: np.random.Generator
) -> np.ndarray:
    flip = rng.random(len(y)) < noise
    return np.where(flip, rng.integers(n_classes, size=len(y)), y)


@dataclasses.dataclass(frozen=True)
class TableData:
    """A table: a bundled scikit-learn one split per run, or a generated ``teacher`` one."""

    source: str
    n_features: int = 8
    """Inputs of a ``teacher`` table (bundled tables have their own)."""
    n_outputs: int = 3
    """Classes (>= 2) or 1 for regression of a ``teacher`` table."""
    n_samples: int = 1024
    """Rows of a ``teacher`` table (train + validation)."""
    label_noise: float = 0.0
    """Fraction of *training* labels replaced by uniform random classes."""
    input_scale: float = 1.0
    """Inputs are multiplied by it after standardisation."""

    def __post_init__(self) -> None:
        if self.source not in TABLE_SOURCES:
            raise unknown_name_error("table source", self.source, TABLE_SOURCES)
        _check_range("TableData", "label_noise", self.label_noise, 0.0, 0.5)
        _check_range("TableData", "input_scale", self.input_scale, 1e-3, 1e3)
        if self.source == "teacher" and (
            self.n_features < 1 or self.n_outputs < 1 or self.n_samples < 8
        ):
            raise ConfigError(
                f"a teacher table needs n_features, n_outputs >= 1, n_samples >= 8, got {self}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """(inputs, outputs)."""
        return TABLE_SHAPES.get(self.source, (self.n_features, self.n_outputs))

    @property
    def loss(self) -> str:
        return "mse" if self.shape[1] == 1 else "cross_entropy"

    @property
    def n_val(self) -> int:
        return max(1, round(VAL_FRACTION * self._n_rows))

    @property
    def _n_rows(self) -> int:
        if self.source == "teacher":
            return self.n_samples
        return len(_sklearn_table(self.source)[0])

    @property
    def n_train(self) -> int:
        return self._n_rows - self.n_val

    def describe(self) -> str:
        extra = (
            f",d={self.n_features},o={self.n_outputs},n={self.n_samples}"
            if self.source == "teacher"
            else ""
        )
        return f"{self.source}{extra},noise={self.label_noise:.2f},xs={self.input_scale:.2g}"

    def _teacher(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        d, o, n = self.n_features, self.n_outputs, self.n_samples
        x = rng.standard_normal((n, d))
        hidden = np.tanh(x @ rng.standard_normal((d, 32)) / np.sqrt(d))
        scores = hidden @ rng.standard_normal((32, max(o, 1))) / np.sqrt(32)
        if o == 1:
            return x, scores[:, 0] + 0.1 * rng.standard_normal(n)
        return x, scores.argmax(1)

    def generate(self, rng: np.random.Generator) -> SupervisedData:
        if self.source == "teacher":
            x, y = self._teacher(rng)
        else:
            x, y, _ = _sklearn_table(self.source)
        order = rng.permutation(len(x))
        val, train = order[: self.n_val], order[self.n_val :]
        mean, std = x[train].mean(0), x[train].std(0) + 1e-8
        x = (x - mean) / std * self.input_scale
        if self.loss == "mse":
            y = (y - y[train].mean()) / y[train].std()
            y_train = torch.tensor(y[train], dtype=torch.float32).unsqueeze(-1)
            y_val = torch.tensor(y[val], dtype=torch.float32).unsqueeze(-1)
        else:
            n_classes = self.shape[1]
            y_train = torch.tensor(
                _noisy_labels(y[train], n_classes, self.label_noise, rng), dtype=torch.int64
            )
            y_val = torch.tensor(y[val], dtype=torch.int64)
        xt = torch.tensor(x, dtype=torch.float32)
        return SupervisedData(xt[train], y_train, xt[val], y_val)


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data.reshape(-1, 8, 8) / 16.0, bunch.target


IMAGE_CLASSES = {"digits": 10, "bars": 6, "shapes": 4}
"""Classes of each image source."""


def _bars(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A line through a random point at one of 6 orientations, plus noise."""
    labels = rng.integers(6, size=n)
    angles = labels * np.pi / 6 + rng.normal(0, 0.08, n)
    centre = rng.uniform(size * 0.3, size * 0.7, (n, 2))
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    dist = np.abs(
        (xx[None] - centre[:, 0, None, None]) * np.sin(angles)[:, None, None]
        - (yy[None] - centre[:, 1, None, None]) * np.cos(angles)[:, None, None]
    )
    images = np.exp(-(dist**2) / 0.8) + 0.3 * rng.standard_normal((n, size, size))
    return images, labels


def _shapes(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A filled square, an empty frame, a cross or a disk of random size and place, plus noise."""
    labels = rng.integers(4, size=n)
    radius = rng.uniform(size * 0.15, size * 0.3, n)
    centre = rng.uniform(size * 0.35, size * 0.65, (n, 2))
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    dx = np.abs(xx[None] - centre[:, 0, None, None])
    dy = np.abs(yy[None] - centre[:, 1, None, None])
    r = radius[:, None, None]
    cheb = np.maximum(dx, dy)
    masks = np.stack(
        [
            cheb <= r,
            (cheb <= r) & (cheb >= r - 1.0),
            ((dx <= 0.7) | (dy <= 0.7)) & (cheb <= r),
            np.hypot(dx, dy) <= r,
        ]
    )
    images = masks[labels, np.arange(n)].astype(np.float64) + 0.3 * rng.standard_normal(
        (n, size, size)
    )
    return images, labels


@dataclasses.dataclass(frozen=True)
class ImageData:
    """One-channel images: the bundled 8x8 digits split per run, or generated ones."""

    source: str
    image_size: int = 8
    """Side of generated images (the digits are 8x8)."""
    n_samples: int = 1024
    """Images of a generated set (train + validation)."""
    label_noise: float = 0.0
    input_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.source not in IMAGE_SOURCES:
            raise unknown_name_error("image source", self.source, IMAGE_SOURCES)
        if self.source == "digits" and self.image_size != 8:
            raise ConfigError(f"the digits are 8x8 images, got image_size={self.image_size}")
        _check_range("ImageData", "label_noise", self.label_noise, 0.0, 0.5)
        _check_range("ImageData", "input_scale", self.input_scale, 1e-3, 1e3)

    loss = "cross_entropy"

    @property
    def n_classes(self) -> int:
        return IMAGE_CLASSES[self.source]

    @property
    def _n_rows(self) -> int:
        return 1797 if self.source == "digits" else self.n_samples

    @property
    def n_val(self) -> int:
        return max(1, round(VAL_FRACTION * self._n_rows))

    @property
    def n_train(self) -> int:
        return self._n_rows - self.n_val

    def describe(self) -> str:
        return (
            f"{self.source},s={self.image_size},n={self._n_rows},"
            f"noise={self.label_noise:.2f},xs={self.input_scale:.2g}"
        )

    def generate(self, rng: np.random.Generator) -> SupervisedData:
        if self.source == "digits":
            x, y = _digits()
        elif self.source == "bars":
            x, y = _bars(self.n_samples, self.image_size, rng)
        else:
            x, y = _shapes(self.n_samples, self.image_size, rng)
        order = rng.permutation(len(x))
        val, train = order[: self.n_val], order[self.n_val :]
        x = (x - x[train].mean()) / (x[train].std() + 1e-8) * self.input_scale
        xt = torch.tensor(x, dtype=torch.float32).unsqueeze(1)
        y_train = _noisy_labels(y[train], self.n_classes, self.label_noise, rng)
        return SupervisedData(
            xt[train],
            torch.tensor(y_train, dtype=torch.int64),
            xt[val],
            torch.tensor(y[val], dtype=torch.int64),
        )
