"""permctl deploy: what the package ships for running it, printed for the host (nginx's config)."""

from __future__ import annotations

import click

from app.cli.context import settings


@click.group()
def deploy() -> None:
    """Print what a host needs beside `permctl serve` (from the installed package; no checkout needed)."""


@deploy.command("nginx-config")
@click.option(
    "--listen",
    metavar="ADDR",
    default="80",
    show_default=True,
    help="What nginx listens on: a port or ADDRESS:PORT.",
)
@click.option(
    "--upstream",
    metavar="ADDR",
    help="gunicorn's address, HOST:PORT or unix:/PATH [default: $BIND, else 127.0.0.1:8000].",
)
@click.option(
    "--prefix",
    metavar="DIR",
    default="/var/lib/nginx/tps",
    show_default=True,
    help="An existing directory for nginx's logs and temporary files.",
)
def nginx_config(listen: str, upstream: str | None, prefix: str) -> None:
    """Print the whole nginx.conf to put in front of gunicorn (docs/deploy.md).

    nginx reads each request whole before gunicorn sees it, answers what it refuses itself in the
    envelope with an X-Trace-Id header, and its limits are below gunicorn's.

    \b
    Example:
      permctl deploy nginx-config --listen 80 --upstream 127.0.0.1:8000 > /etc/nginx/nginx.conf
      nginx -t && systemctl reload nginx
    """
    from app.deploy import nginx

    try:
        config = nginx.render(listen=listen, upstream=upstream or settings().bind, prefix=prefix)
    except nginx.InvalidValue as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(config, nl=False)
