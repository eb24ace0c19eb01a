"""Fixtures shared by the local and e2e layers."""

from __future__ import annotations

from typing import Iterator

import bed_owner
import pytest
from clihelpers import Cli, short_cli


@pytest.fixture
def cli() -> Iterator[Cli]:
    """A CLI with its own short private dirs (the ssh ControlMaster socket lives there)."""
    with short_cli() as private:
        yield private


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The test bed goes down with the run that brought it up (after every worker under -n)."""
    bed_owner.release_if_mine()
