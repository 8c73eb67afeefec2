"""One error family for what a user can fix (the `gymnasium.error` of this project).

It lives at the bottom layer so that `hpo_env`, `tasks` and `agents` all raise it.

`HpoRlError` is the base: the CLI reports it as one line and exit code 2,
while any other exception is a bug and keeps its traceback. Subclasses also
derive from the builtin a Python caller would expect (`ConfigError` is a
`ValueError`), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HpoRlError(Exception):
    """Base class of errors caused by the user's input, files or environment."""


class ConfigError(HpoRlError, ValueError):
    """A configuration value, name or combination that cannot work; the message says the fix."""


class ConfigTypeError(HpoRlError, TypeError):
    """A configuration value of the wrong type."""


class RunDirectoryError(HpoRlError, FileNotFoundError):
    """A run directory, checkpoint or output path that is missing or unusable."""


class MissingExtraError(HpoRlError, ImportError):
    """An optional dependency (an extra of the package) is not installed."""


def unknown_name_error(kind: str, name: str, valid: Iterable[str]) -> ConfigError:
    """``unknown {kind} {name!r}, expected one of [...]; did you mean ...?`` as a `ConfigError`."""
    valid = sorted(valid)
    return ConfigError(
        f"unknown {kind} {name!r}, expected one of {valid}{did_you_mean(name, valid)}"
    )


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest valid name, or ``""``."""
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
