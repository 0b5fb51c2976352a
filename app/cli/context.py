"""What CLI commands share: settings from the environment, their parts from app/container.py, one-line errors.

Nothing heavy is imported at module level (see app/cli/__init__.py): each helper imports what it needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from app.cli.errors import database_error
from app.settings import Settings, SettingsError

if TYPE_CHECKING:
    from app.container import UnitsOfWork
    from app.rules.language.model import RuleSet
    from app.rules.tools.cases import RequestLoader

_SETTINGS = "app.settings"  # where a command keeps the settings it read

__all__ = [
    "config_cache",
    "database_error",
    "no_driver",
    "read_yaml",
    "request_loader",
    "rule_set",
    "session_factory",
    "settings",
]


def settings() -> Settings:
    """Settings from the environment, read once per command; a wrong one is a one-line error naming the
    variable."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and isinstance(ctx.meta.get(_SETTINGS), Settings):
        return ctx.meta[_SETTINGS]
    try:
        built = Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if ctx is not None:
        ctx.meta[_SETTINGS] = built  # shared by every context of the command
    return built


def no_driver(exc: ImportError) -> str:
    """The one line for a DATABASE_URL whose database has no driver here."""
    return f"DATABASE_URL: no driver for this database ({exc.name} is not installed; use postgresql:// or sqlite://)"


def session_factory(s: Settings):  # type: ignore[no-untyped-def]
    """A session factory for the configured database; its engine is disposed when the command ends."""
    from app.container import maintenance_sessions

    try:
        engine, factory = maintenance_sessions(s)  # maintenance: its own bounds (SPEC §8)
    except ImportError as exc:  # e.g. mysql://: a database this service has no driver for
        raise click.ClickException(no_driver(exc)) from exc
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(engine.dispose)
    return factory


def unit_of_work(s: Settings, factory: Any = None) -> UnitsOfWork:
    """What the services take: a unit of work on the configured database (or on `factory`'s sessions)."""
    from app.container import units_of_work

    return units_of_work(factory if factory is not None else session_factory(s))


def config_cache(s: Settings):  # type: ignore[no-untyped-def]
    """The tenant-config cache the service uses, so changes can invalidate it."""
    from app.container import config_cache as make_config_cache

    try:
        return make_config_cache(s)
    except ValueError as exc:  # redis-py refuses a URL that is not redis://, rediss:// or unix://
        raise click.ClickException(f"REDIS_URL: {exc}") from exc


def rule_set(s: Settings, rules_dir: Path | None = None) -> RuleSet:
    """The rule set if the service would run it (lints clean, every case passes), or a clean exit listing why."""
    from app.rules.language.loader import RuleSetInvalid
    from app.rules.lifecycle.gate import CasesFailed, load_clean

    directory = rules_dir or s.rules_dir
    if not directory.is_dir():
        raise click.ClickException(f"RULES_DIR {directory}: no such directory")
    try:
        return load_clean(directory, request_loader())
    except CasesFailed as exc:
        raise click.ClickException(f"the rules fail their regression cases:\n{exc}") from exc
    except RuleSetInvalid as exc:
        raise click.ClickException(f"the rules do not lint clean:\n{exc}") from exc


def request_loader() -> RequestLoader:
    """The API's loader of an update request, which the regression cases read their requests with: a case that
    expects INVALID_REQUEST gets the message a caller gets (the rules import no API schema)."""
    from app.schemas.permissions import load_update_request

    return load_update_request


def read_yaml(path: Path) -> Any:
    """A YAML file as plain data, or a one-line error."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise click.ClickException(f"{path}: no such file") from exc
    except (YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()
        raise click.ClickException(f"{path}: not valid YAML: {' '.join(first[:2])}") from exc
