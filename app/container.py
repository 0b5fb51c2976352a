"""Builds the service's parts from Settings: the server's once per process (Container), permctl's per command.

No Flask here. permctl starts fast (app/cli/__init__.py), so this module imports only what it names: each
function imports the parts it builds, and a command that never decides never loads the rules engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy import Engine
    from sqlalchemy.orm import sessionmaker

    from app.persistence.config_cache import ConfigCache
    from app.persistence.snapshot import ReadOnlySnapshot
    from app.persistence.unit_of_work import UnitOfWork
    from app.rules.language.model import RuleSet
    from app.rules.lifecycle.live import LiveRules
    from app.rules.runtime.engine import DurableRulesEngine
    from app.rules.tools.cases import RequestLoader
    from app.service.accounts import AccountService
    from app.service.authentication import Authenticator
    from app.service.console_users import ConsoleUsers
    from app.service.permissions import PermissionService
    from app.service.publication import RuleVersions
    from app.service.published_rules import PublishedRuleSets
    from app.settings import Settings

UnitsOfWork = Callable[..., "UnitOfWork"]  # what the services take: units_of_work(...)(write=..., autocommit=...)


def config_cache(settings: Settings) -> ConfigCache:
    """The tenant-config cache settings name: Redis, else in-process (the server's and permctl's)."""
    from app.persistence.config_cache import make_config_cache

    return make_config_cache(
        settings.redis_url,
        settings.tenant_config_ttl_seconds,
        settings.redis_breaker_seconds,
        settings.redis_key_prefix,
    )


def maintenance_sessions(settings: Settings) -> tuple[Engine, sessionmaker[Any]]:
    """permctl's engine on the configured database, with its own bounds (SPEC §8), and its session factory."""
    from app.persistence.db import make_engine, make_session_factory

    engine = make_engine(settings, request_path=False)
    return engine, make_session_factory(engine)


def rules_engine(rule_set: RuleSet) -> DurableRulesEngine:
    """An engine judging with rule_set, as the service's live set builds one (engines of one version share its
    compiled ruleset)."""
    from app.rules.runtime.engine import DurableRulesEngine

    return DurableRulesEngine(rule_set)


def units_of_work(session_factory: sessionmaker[Any]) -> UnitsOfWork:
    """Units of work on session_factory's database, as the services take them (write=, autocommit= of UnitOfWork)."""
    from app.persistence.unit_of_work import UnitOfWork

    def unit_of_work(*, write: bool = False, autocommit: bool = False) -> UnitOfWork:
        return UnitOfWork(session_factory, write=write, autocommit=autocommit)

    return unit_of_work


def snapshots(session_factory: sessionmaker[Any]) -> Callable[[], ReadOnlySnapshot]:
    """Read-only units of work over one consistent snapshot each, on session_factory's database (the state
    audit's)."""
    from app.persistence.snapshot import ReadOnlySnapshot

    return lambda: ReadOnlySnapshot(session_factory)


def console_users(unit_of_work: UnitsOfWork) -> ConsoleUsers:
    """The console users (viewers, authors, approvers) of unit_of_work's database."""
    from app.service.console_users import ConsoleUsers

    return ConsoleUsers(unit_of_work)


def rule_versions(unit_of_work: UnitsOfWork, *, load_request: RequestLoader, versions_dir: Path) -> RuleVersions:
    """The stored rule-set versions of unit_of_work's database: propose, review, publish (load_request: the API's
    request loader, which the go-live gate runs each case through; versions_dir: where versions are written out
    to be read)."""
    from app.service.publication import RuleVersions

    return RuleVersions(unit_of_work, load_request=load_request, versions_dir=versions_dir)


def nothing_published(settings: Settings) -> bool:
    """Whether the configured database says, read once with maintenance bounds, that no rule set is published yet
    (False when it cannot tell: unreachable, not migrated). gunicorn's master asks it before forking: nothing of
    the engine it makes is kept."""
    from app.persistence.db import make_engine, make_session_factory
    from app.persistence.unit_of_work import UnitOfWork

    engine = make_engine(settings, request_path=False)
    try:
        with UnitOfWork(make_session_factory(engine)) as uow:
            return uow.publications.latest() is None
    except Exception:  # cannot tell: the workers decide (they run what is published, or answer 503001)
        return False
    finally:
        engine.dispose()


def upgrade_schema(database_url: str, revision: str = "head") -> str | None:
    """Migrate the database at database_url forward to revision with the package's migrations; the revision it is
    at afterwards. Only forward: MigrationRefused otherwise (app/persistence/migrate.py says when)."""
    from app.persistence import migrate

    return migrate.upgrade(database_url, revision)


def schema_head() -> str:
    """The migration this code needs the database at."""
    from app.persistence.migrate import head_revision

    return head_revision()


def published_rules(
    session_factory: sessionmaker[Any], settings: Settings, *, load_request: RequestLoader
) -> PublishedRuleSets:
    """The publications as a worker's live rules read them, on session_factory's database (SPEC §7d)."""
    from app.rules.lifecycle.published import VERSIONS_DIR
    from app.service.published_rules import PublishedRuleSets

    versions_dir = settings.instance_dir / VERSIONS_DIR
    versions = rule_versions(units_of_work(session_factory), load_request=load_request, versions_dir=versions_dir)
    return PublishedRuleSets(versions)


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
    unit_of_work: UnitsOfWork
    accounts: AccountService
    schema_head: Callable[[], str]  # the migration the code needs (/readyz compares the database's with it)

    @classmethod
    def build(cls, settings: Settings, *, load_request: RequestLoader) -> Container:
        """Wire the parts; the database is not contacted here. load_request is the API's request loader, which the
        live rules' go-live gate runs each regression case through (the HTTP edge gives it)."""
        from sqlalchemy import event

        from app.persistence.db import make_engine, make_session_factory
        from app.persistence.unit_of_work import UnitOfWork
        from app.rules.lifecycle.live import LiveRules
        from app.service.accounts import AccountService
        from app.service.authentication import Authenticator
        from app.service.idempotency import IdempotencyKeys
        from app.service.permissions import PermissionService
        from app.service.tenant_config import EnabledPermissions

        engine = make_engine(settings, request_path=True)
        session_factory = make_session_factory(engine)
        rules = LiveRules(
            settings.rules_dir,
            load_request=load_request,
            instance_dir=settings.instance_dir,
            published=published_rules(session_factory, settings, load_request=load_request),
            check_seconds=settings.rules_reload_check_seconds,
        )
        # The watch of the live pointer reads through this engine: disposing of the engine ends the app's use of the
        # database, and the watch's with it (it would otherwise open a connection in the new pool).
        event.listen(engine, "engine_disposed", lambda _engine: rules.close())
        keys = IdempotencyKeys(wait_seconds=settings.idempotency_wait_seconds)
        cache = config_cache(settings)
        unit_of_work = units_of_work(session_factory)

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
                rule_set=lambda: rules.refresh().rule_set,
                keys=keys,
            ),
            schema_head=schema_head,
        )
