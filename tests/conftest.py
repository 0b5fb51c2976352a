"""Fixtures: a real, Alembic-made database per test (SQLite, or PostgreSQL when TEST_DATABASE_URL says so),
real Redis when TEST_REDIS_URL is set, the app, a signing client, and the CLI runner."""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from app import create_app
from app.http.wiring import container_of
from app.persistence.config_cache import make_config_cache
from app.persistence.db import make_engine, make_session_factory
from app.persistence.migrate import upgrade
from app.rules.language.loader import load_rule_set
from app.rules.language.model import RuleSet
from app.rules.lifecycle.last_good import digest
from app.schemas.fixtures import parse_fixtures
from app.service.fixtures import load_fixtures
from app.settings import Settings
from tests.rules.lifecycle.publishing import Publishing
from tests.support import (
    DEMO,
    FIXTURES,
    READ_PATH,
    SHIPPED_RULES,
    SLOW_RUN,
    UPDATE_PATH,
    UPSERT_PATH,
    Credentials,
    require_servers,
    signed_headers,
)

TABLES = (
    "account_audit",
    "account_attributes",
    "permission_audit",
    "decisions",
    "rule_set_publications",
    "rule_set_reviews",
    "rule_set_proposals",
    "rule_set_files",
    "rule_set_versions",
    "approval_policy_changes",
    "console_users",
    "console_audit",
    "account_permissions",
    "accounts",
    "tenant_configs",
    "credentials",
    "revoked_app_keys",
    "accepted_signatures",
    "idempotency_keys",
    "tenants",
)


def _server_url(name: str) -> str | None:
    url = os.environ.get(name) or None
    if url is not None and name == "TEST_REDIS_URL":
        return worker_redis_url(url)
    return url


def worker_redis_url(url: str) -> str:
    """The Redis database of this pytest-xdist worker: the URL's database number plus the worker's.

    Each test flushes the project's keys when it starts; workers sharing one database would flush each other's.
    (PostgreSQL needs nothing of the kind: each worker's session makes its own database.)
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0) if parts.path.strip("/").isdigit() or not parts.path.strip("/") else 0
    return urlunsplit(parts._replace(path=f"/{base + int(worker[2:])}"))


def need_server(variable: str, what: str) -> str:
    """The URL in variable, or skip (fail under REQUIRE_SERVERS=1) when it is unset."""
    url = _server_url(variable)
    if url is None:
        message = f"{what} test needs {variable}"
        if require_servers():
            pytest.fail(message + " (REQUIRE_SERVERS=1: servers are mandatory here)")
        pytest.skip(message)
    return url


def postgres_only(database_url: str) -> str:
    """database_url, which must be PostgreSQL: skip without TEST_DATABASE_URL (fail under REQUIRE_SERVERS=1)."""
    need_server("TEST_DATABASE_URL", "PostgreSQL")
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.fail(f"TEST_DATABASE_URL is set but this test's database is not PostgreSQL: {database_url}")
    return database_url


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this session, migrated by Alembic; None when not configured."""
    admin_url = _server_url("TEST_DATABASE_URL")
    if admin_url is None or make_url(admin_url).get_backend_name() != "postgresql":
        yield None
        return
    url = make_url(admin_url).set(drivername="postgresql+psycopg")
    name = f"tps_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(database_url)
        yield database_url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file migrated once by Alembic; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "template.sqlite"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def database_url(postgres_database: str | None, sqlite_template: Path, tmp_path: Path) -> Iterator[str]:
    """This test's own empty database: PostgreSQL when configured (tables emptied), else an SQLite copy."""
    if postgres_database is not None:
        engine = create_engine(postgres_database)
        with engine.begin() as conn:
            conn.execute(text("SET session_replication_role = replica"))
            conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        engine.dispose()
        yield postgres_database
        return
    path = tmp_path / "permissions.sqlite"
    shutil.copy(sqlite_template, path)
    yield f"sqlite:///{path}"


@pytest.fixture
def redis_url() -> Iterator[str | None]:
    """TEST_REDIS_URL with this project's keys flushed, or None (in-process cache)."""
    url = _server_url("TEST_REDIS_URL")
    if url is None:
        yield None
        return
    import redis

    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match="tps:*"):
        client.delete(key)
    yield url
    client.close()


@pytest.fixture
def settings(database_url: str, redis_url: str | None, tmp_path: Path) -> Settings:
    """Settings pointing at this test's database and Redis."""
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        rules_dir=SHIPPED_RULES,
        instance_dir=tmp_path / "instance",
        tenant_config_ttl_seconds=30.0,
    )


@pytest.fixture
def seeded(settings: Settings) -> Settings:
    """The test fixtures (tenants, credentials, configs, accounts) loaded into this test's database."""
    seed(settings, FIXTURES)
    return settings


@functools.lru_cache(maxsize=16)
def _rule_set(rules_dir: Path, files_digest: str) -> RuleSet:
    """A rules directory read once per content (most tests seed against the same shipped set)."""
    return load_rule_set(rules_dir)


def seed(settings: Settings, document: dict[str, Any]) -> None:
    """Load a fixtures document into the database of settings."""
    rule_set = _rule_set(settings.rules_dir, digest(settings.rules_dir))
    engine = make_engine(settings, request_path=False)
    try:
        load_fixtures(
            parse_fixtures(document),
            unit_of_work=_units(make_session_factory(engine)),
            cache=make_config_cache(settings.redis_url, settings.tenant_config_ttl_seconds),
            catalog=rule_set.catalog,
            rule_set_version=rule_set.version,
            attributes=rule_set.attributes,
        )
    finally:
        engine.dispose()


@pytest.fixture
def db(seeded: Settings) -> Iterator[Engine]:
    """An engine on this test's database, for looking at rows directly."""
    engine = create_engine(seeded.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def publishing(settings: Settings) -> Iterator[Publishing]:
    """This test's database as workers read the published rule sets: store and publish versions, build workers'
    live rules on the real port (tests/rules/lifecycle/publishing.py)."""
    engine = make_engine(settings, request_path=False)
    yield Publishing(settings, make_session_factory(engine))
    engine.dispose()


class Api:
    """A Flask test client that signs every request like the SDK."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def update(
        self,
        body: bytes,
        *,
        creds: Credentials = DEMO,
        headers: dict[str, str] | None = None,
        timestamp: str | None = None,
    ) -> Any:
        """POST a raw body to the update endpoint, signed (at `timestamp` when given)."""
        sent = signed_headers("POST", UPDATE_PATH, body, creds=creds, timestamp=timestamp)
        sent.update(headers or {})
        return self.client.post(UPDATE_PATH, data=body, headers=sent)

    def upsert(
        self, body: bytes | dict[str, Any], *, creds: Credentials = DEMO, headers: dict[str, str] | None = None
    ) -> Any:
        """POST an account (a dict is sent as compact JSON) to the upsert endpoint, signed afresh."""
        raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        sent = signed_headers("POST", UPSERT_PATH, raw, creds=creds, timestamp=f"{time.time():.6f}")
        sent.update(headers or {})
        return self.client.post(UPSERT_PATH, data=raw, headers=sent)

    def read(self, account_no: str, *, creds: Credentials = DEMO) -> Any:
        """GET the account's permissions, signed."""
        query = f"account_no={account_no}"
        return self.client.get(
            f"{READ_PATH}?{query}", headers=signed_headers("GET", READ_PATH, query=query, creds=creds)
        )

    def statuses(self, account_no: str, *, creds: Credentials = DEMO) -> dict[str, str]:
        """permission_type → status, as GET reports it."""
        response = self.read(account_no, creds=creds)
        assert response.status_code == 200, response.get_json()
        return {p["permission_type"]: p["permission_status"] for p in response.get_json()["data"]["permissions"]}


@pytest.fixture
def app(seeded: Settings) -> Iterator[Any]:
    """The application on this test's seeded database."""
    application = create_app(seeded)
    yield application
    container_of(application).engine.dispose()


@pytest.fixture
def api(app: Any) -> Api:
    """A signing test client."""
    return Api(app.test_client())


@pytest.fixture
def live_server(seeded: Settings, tmp_path: Path) -> Iterator[Any]:
    """gunicorn -w 2 serving this test's seeded database (and Redis when configured)."""
    from tests.e2e.server import LiveServer

    server = LiveServer(settings=seeded, log_path=tmp_path / "gunicorn.log").start()
    yield server
    server.stop()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow", action="store_true", help="also run the slow endurance, soak, fault and packaging tests (CI does)"
    )


def pytest_configure(config: pytest.Config) -> None:
    """Say whether this is the slow run before test modules are imported: a property test may generate more
    examples there (SLOW_RUN)."""
    os.environ[SLOW_RUN] = "1" if config.getoption("--slow") else ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without --slow, slow tests are deselected (not skipped): the everyday run stays within minutes."""
    if config.getoption("--slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


def pytest_report_header(config: pytest.Config) -> str:
    included = config.getoption("--slow")
    return "slow tests: " + ("included (--slow)" if included else "deselected (add --slow to run them)")


SERVERS = (  # what a skip's reason says it needed, and how to provide it
    ("PostgreSQL", ("PostgreSQL", "TEST_DATABASE_URL"), "set TEST_DATABASE_URL"),
    ("Redis", ("Redis", "TEST_REDIS_URL"), "set TEST_REDIS_URL"),
    ("nginx", ("nginx",), "apt-get install nginx"),
)


def servers_missed(reasons: list[str]) -> str | None:
    """One line: how many tests did not run for want of PostgreSQL, Redis or nginx, or None when none."""
    counts = dict.fromkeys((name for name, _, _ in SERVERS), 0)
    for reason in reasons:
        for name, words, _ in SERVERS:
            if any(word in reason for word in words):
                counts[name] += 1
                break
    missed = [f"{counts[name]} needed {name} ({how})" for name, _, how in SERVERS if counts[name]]
    return f"not run here: {', '.join(missed)}" if missed else None


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Name, in one line, the tests a missing server kept from running: a green run says what it did not try."""
    reasons = []
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        reasons.append(str(longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else longrepr))
    line = servers_missed(reasons)
    if line:
        terminalreporter.write_line(line, yellow=True, bold=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI no test may pass by skipping: any skip fails the run."""
    if not (os.environ.get("CI") or require_servers()):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        if reporter:
            reporter.write_line(f"CI: {len(skipped)} test(s) skipped; skipping is a failure here", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _units(sessions):  # type: ignore[no-untyped-def]
    """The unit-of-work factory the services take, over these sessions."""
    from app.persistence.unit_of_work import UnitOfWork

    return lambda **kw: UnitOfWork(sessions, **kw)
