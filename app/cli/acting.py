"""What the commands that act as a console user share (SPEC §7d, §10): passwords read without an echo, the
user a command acts as (`--as NAME`), where the act came from, and the services they act through.

A password comes from the terminal (getpass: never echoed) or, when standard input is not a terminal (a
script, CI, a pipe), from the next line of standard input; it is never printed, logged or kept.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import TYPE_CHECKING

import click

from app.cli.context import settings, unit_of_work

if TYPE_CHECKING:
    from app.container import UnitsOfWork
    from app.service.console_users import ConsoleUsers, User
    from app.service.publication import RuleVersions

AS_OPTION = click.option(
    "--as",
    "as_name",
    metavar="NAME",
    default=None,
    help="Act as this console user: the password from the terminal, or the next line of standard input.",
)


def origin() -> str:
    """Where an act came from, for the console audit: `cli <os-user>@<host> pid <pid>`."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli {user}@{socket.gethostname()} pid {os.getpid()}"


def read_secret(prompt: str, *, confirm: bool = False) -> str:
    """A password: prompted on the terminal (twice with confirm), else the next line of standard input."""
    stdin = sys.stdin  # the one reader of standard input: a second wrapper would lose what the first buffered
    if stdin is None:
        raise click.ClickException(f"{prompt.rstrip(': ')}: there is no standard input")
    if stdin.isatty():
        import getpass

        first = getpass.getpass(prompt)
        if confirm and getpass.getpass("The same again: ") != first:
            raise click.ClickException("the two passwords differ; nothing was changed")
        return first
    line = stdin.readline()
    if not line:
        raise click.ClickException(f"{prompt.rstrip(': ')}: standard input has no more lines")
    return line.removesuffix("\n").removesuffix("\r")


_UNITS = "app.cli.acting.units"  # where a command keeps its units of work (one engine per command)


def units() -> UnitsOfWork:
    """Units of work on DATABASE_URL, made once per command."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and _UNITS in ctx.meta:
        made: UnitsOfWork = ctx.meta[_UNITS]
        return made
    made = unit_of_work(settings())
    if ctx is not None:
        ctx.meta[_UNITS] = made
    return made


def console_users() -> ConsoleUsers:
    """The console users of DATABASE_URL."""
    from app.container import console_users as make_console_users

    return make_console_users(units())


def acting_as(name: str, users: ConsoleUsers | None = None) -> User:
    """The user named by --as, once their password is given (WrongCredentials otherwise, audited)."""
    password = read_secret(f"Password of {name}: ")
    return (users or console_users()).authenticate(name, password, origin=origin())


def rule_versions() -> RuleVersions:
    """The stored rule-set versions of DATABASE_URL, written out (to be linted, tested, compared) into a
    directory of this command's own, removed when it ends."""
    import shutil
    import tempfile
    from pathlib import Path

    from app.cli.context import request_loader
    from app.container import rule_versions as make_rule_versions

    root = Path(tempfile.mkdtemp(prefix="permctl-versions-"))
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(lambda: shutil.rmtree(root, ignore_errors=True))
    return make_rule_versions(units(), load_request=request_loader(), versions_dir=root)
