"""Fixtures shared by the local and e2e layers."""

from __future__ import annotations

from pathlib import Path

import pytest
from clihelpers import Cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)
