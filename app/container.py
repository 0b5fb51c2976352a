"""Builds the service's parts from Settings once per process; no Flask here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from app.persistence.config_cache import ConfigCache, make_config_cache
from app.persistence.db import make_engine, make_session_factory
from app.persistence.unit_of_work import UnitOfWork
from app.rules.lifecycle.live import LiveRules
from app.service.accounts import AccountService
from app.service.authentication import Authenticator
from app.service.idempotency import IdempotencyKeys
from app.service.permissions import PermissionService
from app.service.tenant_config import EnabledPermissions
from app.settings import Settings


def _reload_generation(session_factory: sessionmaker[Any]) -> int:
    with UnitOfWork(session_factory) as uow:
        return uow.rules_reloads.generation()


@dataclass
class Container:
    """Everything a request needs, wired together."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Any]
    rules: LiveRules
    config_cache: ConfigCache
    authenticator: Authenticator
    permissions: PermissionService
    unit_of_work: Callable[..., UnitOfWork]
    accounts: AccountService

    @classmethod
    def build(cls, settings: Settings) -> Container:
        """Wire the parts; the database is not contacted here."""
        engine = make_engine(settings, request_path=True)
        session_factory = make_session_factory(engine)
        rules = LiveRules(
            settings.rules_dir,
            instance_dir=settings.instance_dir,
            reload_generation=lambda: _reload_generation(session_factory),
            check_seconds=settings.rules_reload_check_seconds,
        )
        keys = IdempotencyKeys(wait_seconds=settings.idempotency_wait_seconds)
        cache = make_config_cache(
            settings.redis_url,
            settings.tenant_config_ttl_seconds,
            settings.redis_breaker_seconds,
            settings.redis_key_prefix,
        )

        def unit_of_work(*, write: bool = False, autocommit: bool = False) -> UnitOfWork:
            return UnitOfWork(session_factory, write=write, autocommit=autocommit)

        return cls(
            settings=settings,
            engine=engine,
            session_factory=session_factory,
            rules=rules,
            config_cache=cache,
            authenticator=Authenticator(unit_of_work=unit_of_work, window_seconds=settings.signature_window_seconds),
            permissions=PermissionService(
                unit_of_work=unit_of_work,
                rules=rules,
                enabled=EnabledPermissions(cache),
                keys=keys,
            ),
            unit_of_work=unit_of_work,
            accounts=AccountService(
                unit_of_work=lambda: UnitOfWork(session_factory, write=True),
                rule_set=lambda: rules.engine.rule_set,
                keys=keys,
            ),
        )
