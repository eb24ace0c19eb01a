"""Fixtures shared by the local and e2e layers."""

from __future__ import annotations

from typing import Iterator

import pytest
from clihelpers import Cli, short_cli


@pytest.fixture
def cli() -> Iterator[Cli]:
    """A CLI with its own short private dirs (the ssh ControlMaster socket lives there)."""
    with short_cli() as private:
        yield private
