"""The CLI names the transfer splits without importing the suite (fast ``--help``)."""

from agents.benchmark.transfer.suite import SPLITS
from agents.cli import transfer


def test_cli_splits_are_the_suites():
    assert tuple(transfer.SPLITS) == tuple(SPLITS)
