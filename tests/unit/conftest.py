"""Shared test helpers: real recorded outputs from ``../shared/fixtures`` beside the repository."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

FIXTURES = Path(__file__).parents[3] / "shared" / "fixtures"


def read_fixture(name: str) -> str:
    """The recorded output, without its first ``# source:`` line (which names where it came from)."""
    source, _, text = (FIXTURES / name).read_text().partition("\n")
    assert source.startswith("# source:"), f"{name} has no '# source:' line"
    return text


@pytest.fixture(name="fixture")
def fixture_reader() -> Callable[[str], str]:
    """``fixture("slurm-sbatch-parsable.txt")`` in a test gives that recorded output."""
    return read_fixture


@pytest.fixture
def fixture_dir() -> Path:
    """For tests that check every scheduler fixture is read somewhere."""
    return FIXTURES
