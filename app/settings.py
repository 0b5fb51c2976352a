"""Settings, built once from the environment and passed down explicitly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_database_url() -> str:
    return f"sqlite:///{PROJECT_ROOT / 'instance' / 'permissions.db'}"


@dataclass(frozen=True)
class Settings:
    """Every setting the service reads; nothing else looks at os.environ."""

    database_url: str = field(default_factory=_default_database_url)
    redis_url: str | None = None
    rules_dir: Path = PROJECT_ROOT / "rules"
    instance_dir: Path = PROJECT_ROOT / "instance"
    signature_window_seconds: int = 300
    tenant_config_ttl_seconds: float = 30.0
    max_body_bytes: int = 64 * 1024
    sqlite_busy_timeout_seconds: float = 30.0
    database_connect_timeout_seconds: float = 2.0
    log_level: str = "INFO"
    rules_reload_check_seconds: float = 2.0
    idempotency_wait_seconds: float = 5.0
    redis_breaker_seconds: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the documented environment variables, falling back to defaults."""
        env = os.environ if environ is None else environ
        base = cls()
        return replace(
            base,
            database_url=env.get("DATABASE_URL") or base.database_url,
            redis_url=env.get("REDIS_URL") or None,
            rules_dir=Path(env["RULES_DIR"]) if env.get("RULES_DIR") else base.rules_dir,
            instance_dir=Path(env["INSTANCE_DIR"]) if env.get("INSTANCE_DIR") else base.instance_dir,
            signature_window_seconds=int(env.get("SIGNATURE_WINDOW_SECONDS", base.signature_window_seconds)),
            tenant_config_ttl_seconds=float(
                env.get("TENANT_CONFIG_TTL_SECONDS", base.tenant_config_ttl_seconds)
            ),
            log_level=env.get("LOG_LEVEL", base.log_level).upper(),
            redis_breaker_seconds=float(env.get("REDIS_BREAKER_SECONDS", base.redis_breaker_seconds)),
            idempotency_wait_seconds=float(env.get("IDEMPOTENCY_WAIT_SECONDS", base.idempotency_wait_seconds)),
            rules_reload_check_seconds=float(
                env.get("RULES_RELOAD_CHECK_SECONDS", base.rules_reload_check_seconds)
            ),
        )

    def with_overrides(self, **changes: object) -> Settings:
        """Return a copy with some settings replaced (used by tests and the CLI)."""
        return replace(self, **changes)  # type: ignore[arg-type]


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
