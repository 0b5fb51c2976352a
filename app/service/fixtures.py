"""Load a fixtures document (SPEC §9) idempotently: loading it twice changes nothing the second time.

A revoked app key is never restored, whatever the document says; the report names it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from app.errors import DomainError
from app.persistence.repositories import CredentialRecord
from app.rules.language.attributes import NO_ATTRIBUTES, AttributeSet
from app.rules.language.model import Catalog
from app.service.accounts import AccountUpsert, InvalidAccount, UpsertResult, apply_upserts
from app.service.fixture_model import AccountFixture, Fixtures, InvalidFixtures, Problem, TenantFixture
from app.service.model import Caller
from app.signature import token_digest

if TYPE_CHECKING:  # injected: the service never imports the database library
    from app.persistence.config_cache import ConfigCache
    from app.persistence.unit_of_work import UnitOfWork

__all__ = ["InvalidFixtures", "LoadReport", "Tally", "load_fixtures"]

FIXTURE_TRACE_ID = "fixture-load"
FIXTURE_APP_KEY = "permctl"
KINDS = ("tenants", "credentials", "saas_configs", "accounts", "permissions")


@dataclass
class Tally:
    """How many things of one kind a load created, updated and found unchanged."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def add(self, outcome: str) -> None:
        """Count one outcome: created, updated or unchanged."""
        setattr(self, outcome, getattr(self, outcome) + 1)


@dataclass
class LoadReport:
    """A tally per kind (tenants, credentials, saas_configs, accounts, permissions), and what was not done."""

    tallies: dict[str, Tally] = field(default_factory=lambda: {kind: Tally() for kind in KINDS})
    not_restored: list[str] = field(default_factory=list)  # revoked app keys the document still lists
    warnings: list[Problem] = field(default_factory=list)

    def __getitem__(self, kind: str) -> Tally:
        return self.tallies[kind]


def _outcome(before: object, after: object) -> str:
    return "created" if before is None else ("unchanged" if before == after else "updated")


def _check_references(uow: UnitOfWork, fixtures: Fixtures, catalog: Catalog) -> None:
    """Every account's tenant exists (in the document or the database); every permission is in the catalog."""
    known = {tenant.id for tenant in fixtures.tenants}
    problems = []
    for i, account in enumerate(fixtures.accounts):
        if account.tenant not in known:
            if uow.tenants.config_version(account.tenant) is None:
                problems.append(
                    Problem(("accounts", i, "tenant"), f"no tenant '{account.tenant}' in this file or the database")
                )
            else:
                known.add(account.tenant)
        problems += [
            Problem(("accounts", i, "permissions", permission_type), "not in the catalog")
            for permission_type in account.permissions
            if permission_type not in catalog
        ]
    if problems:
        raise InvalidFixtures(problems)


def _load_tenant(
    uow: UnitOfWork, report: LoadReport, i: int, tenant: TenantFixture, catalog: Catalog, now: datetime
) -> bool:
    """Upsert one tenant, its credentials and config; True when its config changed."""
    if uow.tenants.config_version(tenant.id) is None:
        uow.tenants.add(tenant.id, now)
        report["tenants"].add("created")
    else:
        report["tenants"].add("unchanged")
    for j, credential in enumerate(tenant.credentials):
        if uow.credentials.revocation(credential.app_key) is not None:
            report.not_restored.append(credential.app_key)
            report.warnings.append(
                Problem(
                    ("tenants", i, "credentials", j, "app_key"),
                    f"app key {credential.app_key} is revoked; not restored",
                )
            )
            continue
        wanted = CredentialRecord(
            credential.app_key, tenant.id, credential.app_secret, token_digest(credential.access_token)
        )
        outcome = _outcome(uow.credentials.get(credential.app_key), wanted)
        if outcome != "unchanged":
            uow.credentials.put(wanted, now)
        report["credentials"].add(outcome)
    if tenant.saas_config is None:
        return False
    for j, pattern in enumerate(tenant.saas_config):
        if not catalog.expand((pattern,)):
            report.warnings.append(
                Problem(("tenants", i, "saas_config", "enabled", j), f"pattern '{pattern}' matches no catalog value")
            )
    outcome = _outcome(uow.tenant_configs.patterns(tenant.id), tenant.saas_config)
    report["saas_configs"].add(outcome)
    if outcome == "unchanged":
        return False
    uow.tenant_configs.replace(tenant.id, tenant.saas_config, now)
    uow.tenants.move_config_version(tenant.id)
    return True


def _load_accounts(
    uow: UnitOfWork,
    report: LoadReport,
    fixtures: Fixtures,
    attributes: AttributeSet,
    rule_set_version: str,
    now: datetime,
) -> list[int]:
    """Upsert every account (status and attributes) through the account service; their ids, in file order.

    Each refusal (an undeclared attribute, a value its declaration does not allow, a change to a deregistered
    account) is a problem at its place in the file, and nothing is loaded.
    """
    upserts = [
        AccountUpsert(Caller(a.tenant, FIXTURE_APP_KEY), a.account_no, a.status, a.attributes, FIXTURE_TRACE_ID)
        for a in fixtures.accounts
    ]
    results = apply_upserts(uow, upserts, attributes=attributes, rule_set_version=rule_set_version, clock=lambda: now)
    problems = [_problem(i, fixtures.accounts[i], r) for i, r in enumerate(results) if isinstance(r, DomainError)]
    if problems:
        raise InvalidFixtures(problems)
    ids = []
    for i, result in enumerate(results):
        assert isinstance(result, UpsertResult)
        report["accounts"].add(result.outcome.value)
        ids.append(result.account_id)
        for warning in result.warnings:  # a deprecated attribute: accepted, not stored
            report.warnings.append(Problem(("accounts", i, "attributes", warning.attribute), warning.message))
    return ids


def _problem(i: int, account: AccountFixture, refused: DomainError) -> Problem:
    if isinstance(refused, InvalidAccount):
        return Problem(("accounts", i, *refused.field), f"'{refused.value}': {refused.reason}")
    return Problem(("accounts", i, "status"), f"account '{account.account_no}' is deregistered: it cannot be changed")


def _load_permissions(
    uow: UnitOfWork, report: LoadReport, account: AccountFixture, account_id: int, rule_set_version: str, now: datetime
) -> None:
    """Set the account's permissions, auditing each change."""
    current = uow.permissions.of(account_id)
    wanted = []
    for permission_type, status in account.permissions.items():
        before = current[permission_type].status if permission_type in current else None
        if (before or "close") == status:  # a never-set permission asked to be close stays never set
            report["permissions"].add("unchanged")
            continue
        report["permissions"].add(_outcome(before, status))
        wanted.append((permission_type, status, before or "close"))
    uow.permissions.set_many(account_id, [(t, s) for t, s, _ in wanted], now)
    uow.audit.append(
        {
            "trace_id": FIXTURE_TRACE_ID,
            "tenant_id": account.tenant,
            "app_key": FIXTURE_APP_KEY,
            "account_no": account.account_no,
            "permission_type": t,
            "status_before": before,
            "status_after": s,
            "rule_set_version": rule_set_version,
            "created_at": now,
        }
        for t, s, before in wanted
    )


def load_fixtures(
    fixtures: Fixtures,
    *,
    unit_of_work: Callable[..., UnitOfWork],
    cache: ConfigCache,
    catalog: Catalog,
    rule_set_version: str,
    attributes: AttributeSet = NO_ATTRIBUTES,
    progress: Callable[[int], None] | None = None,
) -> LoadReport:
    """Upsert tenants, credentials, configs, accounts and permissions (all or nothing); report what changed.

    fixtures is a document as app/schemas/fixtures.py reads it (parse_fixtures, which raises InvalidFixtures for
    a mistake of shape); a reference the database or the catalog does not know raises InvalidFixtures with every
    problem found, and nothing is written. Accounts go through the account service (app/service/accounts.py):
    attributes must be declared (`attributes`, from rules/attributes.yaml), a deregistered account
    stays deregistered, and every change of status or attributes is in the account audit trail.
    """
    now = datetime.now(UTC)
    report = LoadReport()
    changed_configs = []
    with unit_of_work(write=True) as uow:
        _check_references(uow, fixtures, catalog)
        for i, tenant in enumerate(fixtures.tenants):
            if _load_tenant(uow, report, i, tenant, catalog, now):
                changed_configs.append(tenant.id)
        ids = _load_accounts(uow, report, fixtures, attributes, rule_set_version, now)
        for account, account_id in zip(fixtures.accounts, ids, strict=True):
            _load_permissions(uow, report, account, account_id, rule_set_version, now)
            if progress is not None:
                progress(1)
        uow.commit()
    for tenant_id in changed_configs:
        cache.invalidate(tenant_id)
    return report
