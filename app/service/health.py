"""Readiness: is the database reachable and migrated, is a rule set loaded, how is Redis (never fatal)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.errors import StorageError

if TYPE_CHECKING:  # injected: the service never imports the database library
    from app.persistence.config_cache import ConfigCache
    from app.persistence.unit_of_work import UnitOfWork
    from app.rules.lifecycle.live import LiveRules


@dataclass(frozen=True)
class Readiness:
    """What /readyz reports."""

    ready: bool
    database: str
    schema_revision: str | None
    code_revision: str
    rule_set_version: str | None
    published_version: str | None  # the stored version the worker runs (SPEC §7d)
    live_version: str | None  # the stored version the live pointer names; another than published_version: see why
    last_reload_error: str | None
    failing_cases: tuple[str, ...]  # the regression cases that refused the last reload, by name
    redis: str


def _database_state(unit_of_work: Callable[[], UnitOfWork], head: str) -> tuple[str, str | None]:
    try:
        with unit_of_work() as uow:
            revision = uow.schema.revision()
            missing = uow.schema.missing_tables() if revision == head else []
    except StorageError as exc:
        return f"unreachable ({exc.kind})", None
    if revision != head:
        shown = revision or "none (never migrated)"
        return f"schema at revision {shown}, the code needs {head}: run permctl db upgrade", revision
    if missing:  # at the head, yet a table was dropped or restored without: every call would fail
        return f"schema at revision {revision} but missing table(s) {', '.join(missing)}: restore them", revision
    return "ok", revision


def readiness(*, unit_of_work: Callable[[], UnitOfWork], rules: LiveRules, cache: ConfigCache, head: str) -> Readiness:
    """Check each dependency once; only the database (reachable, at `head`) and the rule set decide readiness. A
    worker that runs another version than the live pointer names (it may not run) is ready, and says why."""
    database, revision = _database_state(unit_of_work, head)
    try:
        version: str | None = rules.refresh().version
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
        published_version=rules.published_version if version is not None else None,
        live_version=rules.live_version,
        last_reload_error=rules.last_reload_error,
        failing_cases=rules.failing_cases,
        redis=redis_state,
    )
