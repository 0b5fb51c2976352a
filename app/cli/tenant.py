"""permctl tenant: show and change a tenant's SaaS config."""

from __future__ import annotations

import json

import click
from sqlalchemy.exc import SQLAlchemyError

from app.cli.context import config_cache, database_error, rule_set, session_factory, settings
from app.errors import DomainError
from app.service import tenants


@click.group()
def tenant() -> None:
    """Tenant SaaS config commands.

    \b
    Example:
      permctl tenant show sg_mexc
    """


@tenant.command()
@click.argument("tenant_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(tenant_id: str, as_json: bool) -> None:
    """Show a tenant's config patterns and the catalog values they enable.

    \b
    Example:
      permctl tenant show sg_mexc
    """
    s = settings()
    try:
        view = tenants.show(session_factory(s), rule_set(s).catalog, tenant_id)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    except SQLAlchemyError as exc:
        raise database_error(exc) from exc
    if as_json:
        click.echo(json.dumps({"tenant": view.tenant_id, "config_version": view.config_version,
                               "patterns": view.patterns, "enabled": list(view.enabled)}))
        return
    click.echo(f"tenant {view.tenant_id} (config version {view.config_version})")
    shown = ", ".join(view.patterns) if view.patterns is not None else "(no config: nothing enabled)"
    click.echo(f"patterns: {shown}")
    click.echo(f"enabled ({len(view.enabled)}): " + " ".join(view.enabled))


@tenant.command("set-config")
@click.argument("tenant_id")
@click.argument("patterns", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Only show what the change would enable and disable.")
def set_config(tenant_id: str, patterns: tuple[str, ...], dry_run: bool) -> None:
    """Replace a tenant's SaaS config with PATTERNS (globs over the catalog) and invalidate caches.

    Shows the catalog values the change enables and disables before it applies it.

    \b
    Example:
      permctl tenant set-config sg_mexc 'account.*' 'stock.*' options.US 'trade.*' --dry-run
    """
    s = settings()
    catalog = rule_set(s).catalog
    factory = session_factory(s)
    try:
        tenants.validate_patterns(patterns)
        before = tenants.show(factory, catalog, tenant_id).enabled
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    except SQLAlchemyError as exc:
        raise database_error(exc) from exc
    after = catalog.expand(patterns)
    added = [v for v in after if v not in before]
    removed = [v for v in before if v not in after]
    click.echo(f"tenant {tenant_id}: {len(before)} -> {len(after)} values enabled")
    click.echo("enables: " + (" ".join(added) or "(nothing new)"))
    click.echo("disables: " + (" ".join(removed) or "(nothing)"))
    for pattern in patterns:
        if not catalog.expand((pattern,)):
            click.echo(f"warning: pattern {pattern!r} matches no catalog value", err=True)
    if dry_run:
        click.echo("dry run: nothing changed")
        return
    try:
        tenants.set_config(factory, config_cache(s), tenant_id, patterns)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    except SQLAlchemyError as exc:
        raise database_error(exc) from exc
    click.echo("applied")


@tenant.command("revoke-key")
@click.argument("app_key")
def revoke_key(app_key: str) -> None:
    """Revoke one app key (its requests are refused from now on); the tenant's other keys keep working.

    \b
    Example (rotating a secret without downtime):
      permctl load new-credential.yaml     # the tenant now has the old and the new key
      # ... move every caller to the new key ...
      permctl tenant revoke-key old-app-key
    """
    s = settings()
    try:
        tenant_id = tenants.revoke_key(session_factory(s), app_key)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    except SQLAlchemyError as exc:
        raise database_error(exc) from exc
    click.echo(f"revoked app key {app_key} of tenant {tenant_id}")
