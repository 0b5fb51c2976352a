"""Readiness: is the database reachable and migrated, is a rule set loaded, how is Redis (never fatal)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from app.persistence.config_cache import ConfigCache
from app.persistence.schema import schema_revision
from app.rules.live import LiveRules


@dataclass(frozen=True)
class Readiness:
    """What /readyz reports."""

    ready: bool
    database: str
    schema_revision: str | None
    code_revision: str
    rule_set_version: str | None
    last_reload_error: str | None
    redis: str


def _database_state(session_factory: sessionmaker[Any], head: str) -> tuple[str, str | None]:
    try:
        with session_factory() as session:
            revision = schema_revision(session)
    except SQLAlchemyError as exc:
        return f"unreachable ({type(exc).__name__})", None
    if revision != head:
        shown = revision or "none (never migrated)"
        return f"schema at revision {shown}, the code needs {head}: run permctl db upgrade", revision
    return "ok", revision


def readiness(*, session_factory: sessionmaker[Any], rules: LiveRules, cache: ConfigCache, head: str) -> Readiness:
    """Check each dependency once; only the database (reachable, at `head`) and the rule set decide readiness."""
    database, revision = _database_state(session_factory, head)
    try:
        version: str | None = rules.engine.version
    except Exception:  # a rule set that cannot be read counts as not loaded
        version = None
    health = getattr(cache, "health", None)
    redis_state = health() if callable(health) else "not configured (in-process cache)"
    return Readiness(
        ready=database == "ok" and version is not None,
        database=database,
        schema_revision=revision,
        code_revision=head,
        rule_set_version=version,
        last_reload_error=rules.last_reload_error,
        redis=redis_state,
    )
