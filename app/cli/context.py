"""What CLI commands share: settings from the environment and one-line errors."""

from __future__ import annotations

from pathlib import Path

import click
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from sqlalchemy.exc import SQLAlchemyError

from app.persistence.config_cache import make_config_cache
from app.persistence.db import make_engine, make_session_factory
from app.rules.lint import load_clean
from app.rules.loader import RuleSetInvalid
from app.rules.model import RuleSet
from app.settings import Settings, SettingsError


def settings() -> Settings:
    """Settings from the environment; a wrong one is a one-line error naming the variable."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def session_factory(s: Settings):  # type: ignore[no-untyped-def]
    """A session factory for the configured database."""
    return make_session_factory(make_engine(s))


def config_cache(s: Settings):  # type: ignore[no-untyped-def]
    """The tenant-config cache the service uses, so changes can invalidate it."""
    return make_config_cache(s.redis_url, s.tenant_config_ttl_seconds, s.redis_breaker_seconds, s.redis_key_prefix)


def rule_set(s: Settings, rules_dir: Path | None = None) -> RuleSet:
    """The rule set if it lints clean (cases included), or a clean exit listing its problems."""
    try:
        return load_clean(rules_dir or s.rules_dir)
    except RuleSetInvalid as exc:
        raise click.ClickException(f"the rules do not lint clean:\n{exc}") from exc


def read_yaml(path: Path) -> object:
    """A YAML file as plain data, or a one-line error."""
    try:
        return YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise click.ClickException(f"{path}: no such file") from exc
    except (YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()
        raise click.ClickException(f"{path}: not valid YAML: {' '.join(first[:2])}") from exc


def database_error(exc: SQLAlchemyError) -> click.ClickException:
    """A one-line error for a database failure."""
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()
    return click.ClickException(f"database error: {reason[0] if reason else type(exc).__name__}")
