"""Settings, built once from the environment, validated there, and passed down explicitly."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from app.defaults import shipped_rules_dir

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DATABASE_BACKENDS = ("sqlite", "postgresql")
REDIS_SCHEMES = ("redis", "rediss", "unix")
REDIS_KEY_PREFIX = re.compile(r"^[!-~]{1,64}$")  # printable ASCII, no spaces
DEFAULT_BIND = "127.0.0.1:8000"
# A request-path bound must end a wait before nginx (proxy_read_timeout 25 s) and gunicorn (timeout 30 s) do,
# or the caller gets their answer instead of the envelope; 0 would mean "no bound" to the database.
REQUEST_BOUND_MAX = 20.0

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is wrong; the message names the variable and says what it must be."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


def default_instance_dir() -> Path:
    """Writable state goes under the working directory's instance/, never into the package."""
    return Path.cwd() / "instance"


def default_rules_dir() -> Path:
    """`./rules` when the working directory has one (a rules repository, a checkout), else the shipped set."""
    local = Path.cwd() / "rules"
    return local if local.is_dir() else shipped_rules_dir()


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of an SQLite file."""
    return f"sqlite:///{path}"


@dataclass(frozen=True)
class Settings:
    """Every setting the service reads; nothing else looks at os.environ."""

    database_url: str = ""  # empty: an SQLite file under instance_dir
    redis_url: str | None = None
    redis_key_prefix: str = "tps:"
    rules_dir: Path = field(default_factory=default_rules_dir)
    instance_dir: Path = field(default_factory=default_instance_dir)
    signature_window_seconds: int = 300
    tenant_config_ttl_seconds: float = 30.0
    max_body_bytes: int = 64 * 1024
    sqlite_busy_timeout_seconds: float = 30.0
    database_connect_timeout_seconds: float = 2.0
    log_level: str = "INFO"
    rules_reload_check_seconds: float = 2.0
    idempotency_wait_seconds: float = 5.0
    redis_breaker_seconds: float = 5.0
    # The request path's bounds (SPEC §8): a request that waits longer for a lock (another request's account
    # row; on SQLite the database write lock) answers 409003, one whose statement runs longer 503001, both well
    # before gunicorn kills the worker (30 s) or nginx gives up on it (25 s). Maintenance commands keep their own.
    database_lock_timeout_seconds: float = 3.0
    database_statement_timeout_seconds: float = 10.0
    # gunicorn's (app/gunicorn_conf.py, permctl serve): where it listens and how many workers it runs.
    bind: str = DEFAULT_BIND
    web_concurrency: int = 2
    # prometheus_client's multiprocess directory (app/metrics_dir.py sets it in gunicorn's master): metrics are
    # summed over every worker when it is set.
    metrics_dir: Path | None = None

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", sqlite_url(self.instance_dir / "permissions.db"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the documented environment variables; a wrong one raises SettingsError."""
        env = _Environment(os.environ if environ is None else environ)
        instance_dir = env.get("INSTANCE_DIR", _directory(may_be_missing=True), default_instance_dir())
        return cls(
            database_url=env.get("DATABASE_URL", _database_url, sqlite_url(instance_dir / "permissions.db")),
            redis_url=env.get("REDIS_URL", _redis_url, None),
            redis_key_prefix=env.get("REDIS_KEY_PREFIX", _redis_key_prefix, cls.redis_key_prefix),
            rules_dir=env.get("RULES_DIR", _directory(may_be_missing=False), default_rules_dir()),
            instance_dir=instance_dir,
            signature_window_seconds=env.get("SIGNATURE_WINDOW_SECONDS", _whole(1), 300),
            tenant_config_ttl_seconds=env.get("TENANT_CONFIG_TTL_SECONDS", _real(0), 30.0),
            log_level=env.get("LOG_LEVEL", _log_level, "INFO"),
            rules_reload_check_seconds=env.get("RULES_RELOAD_CHECK_SECONDS", _real(0), 2.0),
            idempotency_wait_seconds=env.get("IDEMPOTENCY_WAIT_SECONDS", _real(0), 5.0),
            redis_breaker_seconds=env.get("REDIS_BREAKER_SECONDS", _real(0), 5.0),
            database_lock_timeout_seconds=env.get("DATABASE_LOCK_TIMEOUT_SECONDS", _bound(REQUEST_BOUND_MAX), 3.0),
            database_statement_timeout_seconds=env.get(
                "DATABASE_STATEMENT_TIMEOUT_SECONDS", _bound(REQUEST_BOUND_MAX), 10.0
            ),
            bind=env.get("BIND", bind_address, DEFAULT_BIND),
            web_concurrency=env.get("WEB_CONCURRENCY", _whole_of_at_least_1, 2),
            metrics_dir=env.get("PROMETHEUS_MULTIPROC_DIR", _directory(may_be_missing=True), None),
        )

    def with_overrides(self, **changes: object) -> Settings:
        """Return a copy with some settings replaced (used by tests and the CLI)."""
        return replace(self, **changes)  # type: ignore[arg-type]


class _Environment:
    """Reads one variable at a time, turning a bad value into a SettingsError naming it."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str, parse: Callable[[str], T], default: T) -> T:
        raw = self._environ.get(name, "")
        if raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError as exc:
            raise SettingsError(name, f"{raw!r} {exc}") from None


def _whole(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("is not a whole number") from None
        if value < minimum:
            raise ValueError(f"must be at least {minimum}")
        return value

    return parse


def _real(minimum: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("is not a number") from None
        if not math.isfinite(value) or value < minimum:
            raise ValueError(f"must be a number of at least {minimum:g}")
        return value

    return parse


def _bound(maximum: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("is not a number") from None
        if not math.isfinite(value) or not 0.001 <= value <= maximum:
            raise ValueError(f"must be a number of seconds from 0.001 to {maximum:g}")
        return value

    return parse


def bind_address(raw: str) -> str:
    """HOST:PORT (a port 1-65535) or unix:PATH, as gunicorn's bind takes it."""
    if raw.startswith("unix:"):
        return raw
    host, _, port = raw.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("is not HOST:PORT (e.g. 127.0.0.1:8000) or unix:PATH")
    return raw


def _whole_of_at_least_1(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError("is not a whole number of at least 1")
    return int(raw)


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"is not a log level (use one of {', '.join(LOG_LEVELS)})")
    return level


def _database_url(raw: str) -> str:
    backend = urlsplit(raw).scheme.split("+", 1)[0]
    if backend not in DATABASE_BACKENDS or "://" not in raw:
        raise ValueError("is not a database URL (sqlite:///PATH or postgresql://USER@HOST/DB)")
    if backend == "sqlite":
        _sqlite_directory_exists(raw)
    return raw


def _sqlite_directory_exists(raw: str) -> None:
    """An SQLite file named by the operator goes in a directory that is there: a typo must not create a tree.

    (Only the default file, under the instance directory, has its directory made for it.)
    """
    database = raw.split(":///", 1)[1].split("?", 1)[0] if ":///" in raw else ""
    if database in ("", ":memory:"):
        return
    directory = Path(database).expanduser().parent
    if not directory.is_dir():
        raise ValueError(f"names a file in {directory}, which is not a directory that exists")


def _redis_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in REDIS_SCHEMES or not (parts.netloc or parts.path):
        raise ValueError("is not a Redis URL (redis://HOST:PORT/DB, rediss://… or unix://PATH)")
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError("has a port that is not a number") from None
    return raw


def _redis_key_prefix(raw: str) -> str:
    if not REDIS_KEY_PREFIX.match(raw):
        raise ValueError("must be 1-64 printable characters without spaces")
    return raw


def _directory(*, may_be_missing: bool) -> Callable[[str], Path]:
    def parse(raw: str) -> Path:
        path = Path(raw).expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise ValueError("is not a directory")
        if not path.exists() and not may_be_missing:
            raise ValueError("does not exist")
        return path

    return parse


@dataclass(frozen=True)
class ClientSettings:
    """The official SDK's variables, used by `permctl call` to sign requests like the SDK does."""

    app_key: str
    app_secret: str
    access_token: str
    http_url: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientSettings:
        """Read LONGBRIDGE_* variables; a missing one raises KeyError naming it."""
        env = os.environ if environ is None else environ
        names = ("LONGBRIDGE_APP_KEY", "LONGBRIDGE_APP_SECRET", "LONGBRIDGE_ACCESS_TOKEN")
        missing = [n for n in names if not env.get(n)]
        if missing:
            raise KeyError(", ".join(missing))
        return cls(
            app_key=env["LONGBRIDGE_APP_KEY"],
            app_secret=env["LONGBRIDGE_APP_SECRET"],
            access_token=env["LONGBRIDGE_ACCESS_TOKEN"],
            http_url=env.get("LONGBRIDGE_HTTP_URL") or "http://127.0.0.1:8000",
        )
