"""permctl serve: run the API under gunicorn with the packaged settings (optionally with the demo data)."""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

import click

from app.settings import Settings, SettingsError, bind_address

DEMO_DATABASE = "demo.sqlite"
DEMO_APPROVER, DEMO_AUTHOR = "demo-approver", "demo-author"
DEMO_BODY = {"account_no": "L6VQEU00121996", "changes": [{"permission_type": "stock.US", "permission_status": "open"}]}


def _how_to_call(url: str) -> str:
    permctl = shlex.quote(str(Path(sys.executable).with_name("permctl")))
    return "\n".join(
        [
            f"Serving the trade-permission API at {url} (demo tenant sg_mexc).",
            "",
            "SDK variables (for permctl call and the longbridge SDK):",
            f"  export LONGBRIDGE_APP_KEY=demo-key LONGBRIDGE_APP_SECRET=demo-secret "
            f"LONGBRIDGE_ACCESS_TOKEN=demo-token LONGBRIDGE_HTTP_URL={url}",
            "",
            "Open stock.US on the demo account, then read it back:",
            f"  {permctl} call POST /v1/whaleapi/account/update_account_trade_permission "
            f"--data {shlex.quote(json.dumps(DEMO_BODY, separators=(',', ':')))}",
            f"  {permctl} call GET '/v1/whaleapi/account/get_account_trade_permission?account_no=L6VQEU00121996'",
            "",
        ]
    )


def _settings(bind: str | None, workers: int | None) -> Settings:
    """Settings from the environment, --bind and --workers winning over BIND and WEB_CONCURRENCY (a wrong
    variable that an option replaces is not read at all); a wrong one is one line naming it."""
    environ = dict(os.environ)
    if bind is not None:
        try:
            environ["BIND"] = bind_address(bind)
        except ValueError as exc:
            raise click.BadParameter(f"{bind!r} {exc}", param_hint="--bind") from None
    if workers is not None:
        environ["WEB_CONCURRENCY"] = str(workers)
    try:
        return Settings.from_env(environ)
    except SettingsError as exc:
        if exc.variable == "BIND":  # named as an option is: the operator may have meant either
            raise click.BadParameter(str(exc).removeprefix("BIND: "), param_hint="BIND") from None
        raise click.ClickException(str(exc)) from None


def _url(bind: str) -> str:
    if bind.startswith("unix:"):
        return bind
    host, _, port = bind.rpartition(":")
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '[::]') else host}:{port}"


def _prepare_demo(environ: dict[str, str], s: Settings) -> str:
    """Migrate the demo's own SQLite database, adopt the rule set, load the demo fixtures, make the demo's console
    users; point the server at it. What to print about publishing rule sets."""
    from app.cli.context import config_cache, read_yaml, rule_set, unit_of_work
    from app.container import upgrade_schema as upgrade
    from app.defaults import demo_fixtures
    from app.schemas.fixtures import parse_fixtures
    from app.service.fixtures import load_fixtures
    from app.settings import sqlite_url

    if not s.database_url.startswith("sqlite"):
        raise click.ClickException(
            "--demo uses its own SQLite database and never loads demo credentials elsewhere: "
            "unset DATABASE_URL (it names a non-SQLite database)"
        )
    s = s.with_overrides(database_url=sqlite_url(s.instance_dir / DEMO_DATABASE), redis_url=None)
    rules = rule_set(s)
    upgrade(s.database_url)
    document = read_yaml(demo_fixtures())
    uow, cache = unit_of_work(s), config_cache(s)
    load_fixtures(
        parse_fixtures(document),
        unit_of_work=uow,
        cache=cache,
        catalog=rules.catalog,
        rule_set_version=rules.version,
        attributes=rules.attributes,
    )
    environ["DATABASE_URL"] = s.database_url
    environ.pop("REDIS_URL", None)
    click.echo(f"demo database: {s.database_url.removeprefix('sqlite:///')}", err=True)
    from app.cli.publication import adopt_running_set

    click.echo(adopt_running_set(s, by="permctl serve --demo"), err=True)
    return _demo_publishing(s)


def _demo_publishing(s: Settings) -> str:
    """The demo publishes without four eyes: on a database with no console users, make a demo approver and a
    demo author (random passwords, printed once, here) and set the approval policy off as the approver, as an
    approver's act is recorded; what to run to propose and publish a set."""
    import secrets

    from app.cli.acting import origin
    from app.cli.context import request_loader, unit_of_work
    from app.container import console_users, rule_versions

    uow = unit_of_work(s)
    users = console_users(uow)
    env = f"DATABASE_URL={shlex.quote(s.database_url)}"
    permctl = shlex.quote(str(Path(sys.executable).with_name("permctl")))
    lines = ["", "Rule sets: the demo publishes without a second approver (approval policy off)."]
    if users.all():
        with tempfile.TemporaryDirectory() as scratch:
            policy = rule_versions(uow, load_request=request_loader(), versions_dir=Path(scratch)).approval_policy()
        lines.append(
            f"  console users exist already (their passwords were printed when they were made); approval policy: "
            f"{policy}"
        )
    else:
        passwords = {name: secrets.token_urlsafe(12) for name in (DEMO_APPROVER, DEMO_AUTHOR)}
        approver = users.add(DEMO_APPROVER, "approver", passwords[DEMO_APPROVER], actor=None, origin=origin())
        users.add(DEMO_AUTHOR, "author", passwords[DEMO_AUTHOR], actor=approver, origin=origin())
        with tempfile.TemporaryDirectory() as scratch:
            versions = rule_versions(uow, load_request=request_loader(), versions_dir=Path(scratch))
            versions.set_approval_policy("off", actor=approver, origin=origin())
        lines += [
            f"  console users (passwords shown this once): {DEMO_APPROVER} {passwords[DEMO_APPROVER]}, "
            f"{DEMO_AUTHOR} {passwords[DEMO_AUTHOR]}",
        ]
    lines += [
        "  Propose a set (the last line printed is its version), then publish it; workers take it within seconds:",
        f"    {env} {permctl} rules export --out my-rules    # the live set, to edit",
        f"    {env} {permctl} rules propose my-rules --as {DEMO_AUTHOR}",
        f"    {env} {permctl} rules publish VERSION --as {DEMO_AUTHOR}",
        "",
    ]
    return "\n".join(lines)


@click.command()
@click.option("--bind", "-b", metavar="HOST:PORT", help="Where to listen [default: $BIND, else 127.0.0.1:8000].")
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(min=1),
    metavar="N",
    help="Worker processes [default: $WEB_CONCURRENCY, else 2].",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Serve the demo: its own SQLite database under instance/, migrated, with the demo data loaded, and rule "
    "sets published without a second approver (demo console users; approval policy off).",
)
def serve(bind: str | None, workers: int | None, demo: bool) -> None:
    """Serve the API with gunicorn (sync workers: the rules engine is not thread-safe).

    Runs `gunicorn -c python:app.gunicorn_conf app.wsgi:app` from this directory: the settings come from the
    environment (DATABASE_URL, REDIS_URL, RULES_DIR, ...), and a wrong one stops it with one line.

    \b
    Example:
      permctl serve --demo          # SQLite under instance/, demo tenant and accounts
      DATABASE_URL=postgresql://postgres@127.0.0.1/test REDIS_URL=redis://127.0.0.1:6379/0 \\
        permctl serve --bind 0.0.0.0:8000 --workers 4
    """
    s = _settings(bind, workers)  # a wrong setting stops here with one line, before gunicorn starts
    address, count = s.bind, s.web_concurrency
    # gunicorn parses WEB_CONCURRENCY itself, before any config, and a non-number is a traceback there; its
    # config reads both variables through Settings: each gets the value checked here (an option, or the
    # variable once checked), which --bind and --workers repeat anyway.
    environ = dict(os.environ, BIND=address, WEB_CONCURRENCY=str(count))
    if demo:
        publishing = _prepare_demo(environ, s)
        click.echo(_how_to_call(_url(address)) + publishing)
    else:
        click.echo(
            f"Serving the trade-permission API at {_url(address)} with {count} workers; "
            f"GET /readyz says when it is ready."
        )
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:app.gunicorn_conf",
        "--bind",
        address,
        "--workers",
        str(count),
        "app.wsgi:app",
    ]
    sys.stdout.flush()
    os.execve(sys.executable, args, environ)
