"""Fixtures for persistence tests: the service's own engine on this test's database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from app.persistence.db import make_engine
from app.settings import Settings


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """The engine the service would make for this test's database (pool, hooks and all)."""
    engine = make_engine(settings, request_path=True)
    yield engine
    engine.dispose()
