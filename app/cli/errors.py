"""One-line errors: the failures a command can meet, each turned into a ClickException.

Looked up in sys.modules, so this module imports nothing heavy: an exception of a library can only be
raised once that library has been imported by the command that failed.
"""

from __future__ import annotations

import re
import sys

import click

from app.errors import ConsoleError, DomainError, StorageError


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _instance_of(exc: BaseException, module: str, name: str) -> bool:
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and isinstance(exc, cls)


# SQLite's and PostgreSQL's words for a table that is not there: the schema was never migrated.
MISSING_TABLE = re.compile(r"no such table|relation \S+ does not exist")


def database_error(exc: BaseException) -> click.ClickException:
    """A one-line error for a database failure, with the fix when the schema is missing."""
    if isinstance(exc, StorageError) and exc.__cause__ is not None:
        exc = exc.__cause__  # the driver's own words
    reason = _first_line(str(getattr(exc, "orig", None) or exc)) or type(exc).__name__
    hint = "; run `permctl db upgrade` first" if MISSING_TABLE.search(reason) else ""
    return click.ClickException(f"database error: {reason}{hint}")


def one_line(exc: BaseException) -> click.ClickException | None:
    """The one-line form of a known failure, or None for anything else (a bug keeps its traceback)."""
    if isinstance(exc, ConsoleError):
        return click.ClickException(str(exc))  # a console user's act refused: one sentence, exit 1
    if isinstance(exc, DomainError):
        return click.ClickException(exc.message)
    if isinstance(exc, StorageError) or _instance_of(exc, "sqlalchemy.exc", "SQLAlchemyError"):
        return database_error(exc)
    if _instance_of(exc, "alembic.util.exc", "CommandError"):
        return click.ClickException(f"migration: {_first_line(str(exc))}")
    if _instance_of(exc, "app.rules.language.loader", "RuleSetInvalid"):
        return click.ClickException(f"the rules do not lint clean:\n{exc}")
    if isinstance(exc, OSError) and exc.filename is not None:
        return click.ClickException(f"{exc.filename}: {exc.strerror or _first_line(str(exc))}")
    return None


class Permctl(click.Group):
    """The top-level group: every known failure of a subcommand ends as one line, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        """Run the subcommand, turning known failures into one-line errors."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            error = one_line(exc)
            if error is None:
                raise
            raise error from exc
