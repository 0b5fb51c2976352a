"""Readiness: is the database reachable, is a rule set loaded, and how Redis is doing (never fatal)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from app.persistence.config_cache import ConfigCache
from app.rules.live import LiveRules


@dataclass(frozen=True)
class Readiness:
    """What /readyz reports."""

    ready: bool
    database: str
    rule_set_version: str | None
    last_reload_error: str | None
    redis: str


def readiness(*, session_factory: sessionmaker[Any], rules: LiveRules, cache: ConfigCache) -> Readiness:
    """Check each dependency once; only the database and the rule set decide readiness."""
    try:
        with session_factory() as session:
            session.execute(text("SELECT 1"))
        database = "ok"
    except SQLAlchemyError as exc:
        database = f"unreachable ({type(exc).__name__})"
    try:
        version: str | None = rules.engine.version
    except Exception:  # a rule set that cannot be read counts as not loaded
        version = None
    health = getattr(cache, "health", None)
    redis_state = health() if callable(health) else "not configured (in-process cache)"
    return Readiness(ready=database == "ok" and version is not None, database=database, rule_set_version=version,
                     last_reload_error=rules.last_reload_error, redis=redis_state)
