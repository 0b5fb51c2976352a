"""permctl console: the console users (viewers, authors, approvers) who propose, review and publish rule sets."""

from __future__ import annotations

import click

from app.cli.acting import AS_OPTION, acting_as, console_users, origin, read_secret

ROLE_CHOICE = click.Choice(["viewer", "author", "approver"])


@click.group()
def console() -> None:
    """Console users: add, change roles, disable, list (SPEC §10).

    Roles are cumulative: a viewer reads; an author also proposes and publishes; an approver also approves,
    rejects, publishes break-glass and sets the approval policy. While no active approver exists anyone with
    access to the database may add users (that is how the first approver is made); from then on every change
    is an approver's act (--as NAME), and one that adds, promotes, demotes or disables an approver needs an
    approver other than that user. Every change, and every wrong password, is in the console audit.

    \b
    Example:
      printf '%s\\n' "$PASSWORD" | permctl console add-user ann --role approver
      printf '%s\\n%s\\n' "$NEW" "$ANNS" | permctl console add-user carol --role author --as ann
    """


@console.command("add-user")
@click.argument("name")
@click.option("--role", type=ROLE_CHOICE, required=True, help="viewer, author or approver.")
@AS_OPTION
def add_user(name: str, role: str, as_name: str | None) -> None:
    """Add a console user. The new password (12 to 256 characters) is the first line of standard input, or is
    asked twice on a terminal; with --as, that user's password is asked next (or is the next line)."""
    from app.service.console_users import check_name

    check_name(name)
    password = read_secret(f"Password for {name}: ", confirm=True)
    users = console_users()
    actor = acting_as(as_name, users) if as_name is not None else None
    added = users.add(name, role, password, actor=actor, origin=origin())
    by = actor.name if actor is not None else "nobody (no approver exists yet)"
    click.echo(f"added {added.name} as {_article(added.role)}, by {by}")


@console.command("set-role")
@click.argument("name")
@click.argument("role", type=ROLE_CHOICE)
@AS_OPTION
def set_role(name: str, role: str, as_name: str | None) -> None:
    """Give a user another role (--as an approver; another approver when the change touches an approver)."""
    users = console_users()
    actor = acting_as(as_name, users) if as_name is not None else None
    changed = users.set_role(name, role, actor=actor, origin=origin())
    click.echo(f"{changed.name} is {_article(changed.role)} now")


@console.command("disable-user")
@click.argument("name")
@AS_OPTION
def disable_user(name: str, as_name: str | None) -> None:
    """Disable a user for good: they can no longer act (the last active approver cannot be disabled)."""
    users = console_users()
    actor = acting_as(as_name, users) if as_name is not None else None
    disabled = users.disable(name, actor=actor, origin=origin())
    click.echo(f"{disabled.name} is disabled")


@console.command("users")
@click.option("--json", "as_json", is_flag=True, help='Print [{"name", "role", "active"}, ...].')
def users_command(as_json: bool) -> None:
    """List the console users: name, role, active or disabled."""
    import json

    everyone = console_users().all()
    if as_json:
        click.echo(json.dumps([{"name": u.name, "role": u.role, "active": not u.disabled} for u in everyone]))
        return
    if not everyone:
        click.echo("no console users yet: `permctl console add-user NAME --role approver` makes the first approver")
        return
    width = max(len("name"), *(len(u.name) for u in everyone))
    click.echo(f"{'name':<{width}}  {'role':<8}  active")
    for user in everyone:
        click.echo(f"{user.name:<{width}}  {user.role:<8}  {'no' if user.disabled else 'yes'}")


def _article(role: str) -> str:
    return ("an " if role[0] in "aeiou" else "a ") + role
