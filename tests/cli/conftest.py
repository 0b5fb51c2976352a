"""Fixtures of the permctl tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.publishing import Desk


@pytest.fixture
def desk(database_url: str, tmp_path: Path) -> Desk:
    """A desk on this test's database."""
    return Desk(database_url, tmp_path).set_up()
