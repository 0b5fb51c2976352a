"""permctl tenant: show and change a tenant's SaaS config; revoke an app key."""

from __future__ import annotations

import json

import click

from app.cli.context import config_cache, rule_set, settings, unit_of_work


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
    from app.service import tenants

    s = settings()
    view = tenants.show(unit_of_work(s), rule_set(s).catalog, tenant_id)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "tenant": view.tenant_id,
                    "config_version": view.config_version,
                    "patterns": view.patterns,
                    "enabled": list(view.enabled),
                }
            )
        )
        return
    click.echo(f"tenant {view.tenant_id} (config version {view.config_version})")
    shown = ", ".join(view.patterns) if view.patterns is not None else "(no config: nothing enabled)"
    click.echo(f"patterns: {shown}")
    click.echo(f"enabled ({len(view.enabled)}): " + " ".join(view.enabled))


@tenant.command("set-config")
@click.argument("tenant_id")
@click.argument("patterns", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Only show what the change would enable and disable.")
@click.option(
    "--allow-unmatched",
    is_flag=True,
    help="Accept patterns that match no catalog value yet (e.g. for a value the catalog will add).",
)
def set_config(tenant_id: str, patterns: tuple[str, ...], dry_run: bool, allow_unmatched: bool) -> None:
    """Replace a tenant's SaaS config with PATTERNS (globs over the catalog) and invalidate caches.

    Shows the catalog values the change enables and disables before it applies it. A pattern that is not
    a glob (e.g. 'stock.[') is refused; so is one that matches no catalog value (a typo such as 'stock.us'
    would silently disable what it meant to keep), unless --allow-unmatched.

    \b
    Example:
      permctl tenant set-config sg_mexc 'account.*' 'stock.*' options.US 'trade.*' --dry-run
    """
    from app.service import tenants

    tenants.validate_patterns(patterns)
    s = settings()
    catalog = rule_set(s).catalog
    unmatched = [pattern for pattern in patterns if not catalog.expand((pattern,))]
    if unmatched and not allow_unmatched:
        raise click.ClickException(
            f"pattern {unmatched[0]!r} matches no catalog value (check its spelling and case; "
            "--allow-unmatched to keep it anyway)"
        )
    factory, cache = unit_of_work(s), config_cache(s)
    before = tenants.show(factory, catalog, tenant_id).enabled
    after = catalog.expand(patterns)
    added = [v for v in after if v not in before]
    removed = [v for v in before if v not in after]
    click.echo(f"tenant {tenant_id}: {len(before)} -> {len(after)} values enabled")
    click.echo("enables: " + (" ".join(added) or "(nothing new)"))
    click.echo("disables: " + (" ".join(removed) or "(nothing)"))
    for pattern in unmatched:
        click.echo(f"warning: pattern {pattern!r} matches no catalog value", err=True)
    if dry_run:
        click.echo("dry run: nothing changed")
        return
    tenants.set_config(factory, cache, tenant_id, patterns)
    click.echo("applied")


@tenant.command("revoke-key")
@click.argument("app_key")
def revoke_key(app_key: str) -> None:
    """Revoke one app key for good (its requests are refused from now on); the tenant's other keys keep working.

    The credential is deleted and its key remembered as revoked: a later `permctl load` of a file that
    still lists it does not bring it back (it says so). Revoking a revoked key again changes nothing.
    To let the caller in again, give it a new app key.

    \b
    Example (rotating a secret without downtime):
      permctl load new-credential.yaml     # the tenant now has the old and the new key
      # ... move every caller to the new key ...
      permctl tenant revoke-key old-app-key
    """
    from app.service import tenants
    from app.service.model import iso_utc

    revoked = tenants.revoke_key(unit_of_work(settings()), app_key)
    r = revoked.revocation
    if revoked.already:
        click.echo(f"app key {app_key} of tenant {r.tenant_id} was already revoked at {iso_utc(r.revoked_at)}")
    else:
        click.echo(f"revoked app key {app_key} of tenant {r.tenant_id}")
