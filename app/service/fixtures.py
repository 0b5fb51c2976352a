"""Load a fixtures document (SPEC §9) idempotently: loading it twice changes nothing the second time."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from app.errors import DomainError
from app.persistence.config_cache import ConfigCache
from app.persistence.models import Account, Credential, Tenant, TenantConfig
from app.persistence.unit_of_work import UnitOfWork
from app.rules.model import Catalog
from app.service.tenants import validate_patterns
from app.signature import token_digest

FIXTURE_TRACE_ID = "fixture-load"
FIXTURE_APP_KEY = "permctl"


class InvalidFixtures(DomainError):
    """The fixtures document does not have the §9 shape."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidFixtures(message)


def load_fixtures(
    document: Any, *, session_factory: sessionmaker[Any], cache: ConfigCache, catalog: Catalog,
    rule_set_version: str,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Upsert tenants, credentials, configs, accounts and permissions; returns counts of what it saw."""
    _require(isinstance(document, dict), "fixtures must be a mapping with 'tenants' and/or 'accounts'")
    tenants = document.get("tenants") or []
    accounts = document.get("accounts") or []
    _require(isinstance(tenants, list) and isinstance(accounts, list), "'tenants' and 'accounts' are lists")
    now = datetime.now(UTC)
    changed_configs: list[str] = []
    with UnitOfWork(session_factory, write=True) as uow:
        session = uow.session
        for i, tenant in enumerate(tenants):
            _require(isinstance(tenant, dict) and isinstance(tenant.get("id"), str) and tenant["id"],
                     f"tenants[{i}] needs an id")
            tenant_id = tenant["id"]
            if session.get(Tenant, tenant_id) is None:
                session.add(Tenant(id=tenant_id, config_version=0, created_at=now))
                session.flush()
            for j, cred in enumerate(tenant.get("credentials") or []):
                _require(isinstance(cred, dict) and all(isinstance(cred.get(k), str) and cred[k]
                                                        for k in ("app_key", "app_secret", "access_token")),
                         f"tenants[{i}].credentials[{j}] needs app_key, app_secret and access_token")
                stored = session.get(Credential, cred["app_key"])
                if stored is None:
                    session.add(Credential(app_key=cred["app_key"], tenant_id=tenant_id, app_secret=cred["app_secret"],
                                           access_token_sha256=token_digest(cred["access_token"]), created_at=now))
                else:
                    stored.tenant_id = tenant_id
                    stored.app_secret = cred["app_secret"]
                    stored.access_token_sha256 = token_digest(cred["access_token"])
            saas = tenant.get("saas_config")
            if saas is not None:
                _require(isinstance(saas, dict) and isinstance(saas.get("enabled"), list),
                         f"tenants[{i}].saas_config needs an 'enabled' list")
                patterns = json.dumps(list(validate_patterns(saas["enabled"])))
                stored = session.get(TenantConfig, tenant_id)
                if stored is None or stored.enabled_patterns != patterns:
                    session.merge(TenantConfig(tenant_id=tenant_id, enabled_patterns=patterns, updated_at=now))
                    session.execute(update(Tenant).where(Tenant.id == tenant_id)
                                    .values(config_version=Tenant.config_version + 1))
                    changed_configs.append(tenant_id)
        for i, item in enumerate(accounts):
            _require(isinstance(item, dict) and all(isinstance(item.get(k), str) and item[k]
                                                    for k in ("account_no", "tenant")),
                     f"accounts[{i}] needs account_no and tenant")
            status = item.get("status", "active")
            _require(status in ("active", "deregistered"), f"accounts[{i}].status is active or deregistered")
            _require(session.get(Tenant, item["tenant"]) is not None, f"accounts[{i}]: no tenant '{item['tenant']}'")
            account = session.scalar(select(Account).where(Account.tenant_id == item["tenant"],
                                                           Account.origin_id == item["account_no"]))
            if account is None:
                account = Account(tenant_id=item["tenant"], origin_id=item["account_no"], status=status,
                                  created_at=now)
                session.add(account)
                session.flush()
            elif account.status != status:
                account.status = status
            permissions = item.get("permissions") or {}
            _require(isinstance(permissions, dict), f"accounts[{i}].permissions is a mapping")
            if progress is not None:
                progress(1)
            current = uow.permissions.of(account.id)
            wanted = []
            for permission_type, wanted_status in permissions.items():
                place = f"accounts[{i}].permissions.{permission_type}"
                _require(permission_type in catalog, f"{place}: not in the catalog")
                _require(wanted_status in ("open", "close"), f"{place}: is open or close")
                before = current[permission_type].status if permission_type in current else "close"
                if before != wanted_status:  # a never-set permission asked to be close stays never set
                    wanted.append((permission_type, wanted_status, before))
            uow.permissions.set_many(account.id, [(t, s) for t, s, _ in wanted], now)
            uow.audit.append(
                {"trace_id": FIXTURE_TRACE_ID, "tenant_id": item["tenant"], "app_key": FIXTURE_APP_KEY,
                 "account_no": item["account_no"], "permission_type": t, "status_before": before,
                 "status_after": s, "rule_set_version": rule_set_version, "created_at": now}
                for t, s, before in wanted
            )
        uow.commit()
    for tenant_id in changed_configs:
        cache.invalidate(tenant_id)
    return {"tenants": len(tenants), "accounts": len(accounts)}



