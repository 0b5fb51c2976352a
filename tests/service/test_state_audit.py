"""The state audit's service (SPEC §7c): every active account read from one consistent snapshot in batches,
judged against the holding policies, deregistered accounts counted; it writes nothing. Runs on SQLite, and on
PostgreSQL with TEST_DATABASE_URL."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from app.container import snapshots
from app.persistence.db import make_engine, make_session_factory
from app.rules.language.loader import load_rule_set
from app.rules.tools.audit_state.report import StateAudit
from app.service.state_audit import UnknownTenant, audit_state
from app.settings import Settings
from tests.cli.runner import snapshot
from tests.conftest import seed
from tests.rules.support import BROKER_POLICIES

JUDGED_AT = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
ENABLED_SG = ["account.*", "stock.*", "options.*", "shortsell.*", "otc.*", "stockgrey.*"]


def _account(account_no: str, tenant: str, account_type: str, *opened: str, status: str = "active") -> dict[str, Any]:
    return {
        "account_no": account_no,
        "tenant": tenant,
        "status": status,
        "attributes": {"account_type": account_type},
        "permissions": dict.fromkeys(opened, "open"),
    }


# Every section of the report: deny violations, a warn and a dryrun hit, a freeze (applies_to: opening) that binds
# no holder, a permission the tenant no longer enables, and (written by hand, as no API accepts it) permissions
# outside the catalog; a deregistered account that would be in breach is only counted.
STATES: dict[str, Any] = {
    "tenants": [
        {
            "id": "sg_mexc",
            "credentials": [{"app_key": "sg-key", "app_secret": "sg-secret", "access_token": "sg-token"}],
            "saas_config": {"enabled": ENABLED_SG},
        },
        {
            "id": "hk_other",
            "credentials": [{"app_key": "hk-key", "app_secret": "hk-secret", "access_token": "hk-token"}],
            "saas_config": {"enabled": ["stock.*"]},
        },
    ],
    "accounts": [
        _account("CASH-1", "sg_mexc", "cash", "shortsell.US", "stock.US", "otc.US"),
        _account("CASH-2", "sg_mexc", "cash", "shortsell.HK"),
        _account("MARGIN-1", "sg_mexc", "margin", "shortsell.US", "account.withdraw", "stockgrey.US"),
        _account("OPT-1", "sg_mexc", "margin", "options.HK"),
        _account("SAME-AS-CASH-1", "sg_mexc", "cash", "shortsell.US", "stock.US", "otc.US"),
        _account("HK-1", "hk_other", "cash", "stock.HK", "options.HK"),
        _account("GONE", "sg_mexc", "cash", "shortsell.US", status="deregistered"),
    ],
}
OUTSIDE = ("=1+2", "flag.options")  # stored by hand on HK-1: a formula and a value no catalog has


def seed_states(settings: Settings) -> Settings:
    """settings on the broker policies, with STATES loaded and OUTSIDE stored on HK-1."""
    broker = dataclasses.replace(settings, rules_dir=BROKER_POLICIES)
    seed(broker, STATES)
    engine = create_engine(broker.database_url)
    with engine.begin() as conn:
        account_id = conn.execute(text("SELECT id FROM accounts WHERE origin_id = 'HK-1'")).scalar_one()
        for permission_type in OUTSIDE:
            conn.execute(
                text("INSERT INTO account_permissions VALUES (:a, :p, 'open', :at)"),
                {"a": account_id, "p": permission_type, "at": JUDGED_AT.replace(tzinfo=None)},
            )
    engine.dispose()
    return broker


@pytest.fixture
def states(settings: Settings) -> Settings:
    return seed_states(settings)


@pytest.fixture
def sessions(states: Settings) -> Iterator[Any]:
    engine = make_engine(states, request_path=False)
    yield make_session_factory(engine)
    engine.dispose()


def _audit(sessions: Any, **kw: Any) -> StateAudit:
    return audit_state(snapshot=snapshots(sessions), rule_set=load_rule_set(BROKER_POLICIES), judged_at=JUDGED_AT, **kw)


def _rows(found: list[Any]) -> list[tuple[str, ...]]:
    return [tuple(f.as_json().values())[:4] for f in sorted(found)]


def test_every_active_account_is_judged_and_each_section_filled(sessions: Any) -> None:
    audit = _audit(sessions, batch_size=2)  # four batches: the pages join up
    assert (audit.accounts_checked, audit.accounts_skipped) == (6, 1)
    assert _rows(audit.violations) == [
        ("sg_mexc", "CASH-1", "shortsell.US", "shortsell-margin-only"),
        ("sg_mexc", "CASH-2", "shortsell.HK", "shortsell-margin-only"),
        ("sg_mexc", "OPT-1", "options.HK", "options-need-stock"),
        ("sg_mexc", "SAME-AS-CASH-1", "shortsell.US", "shortsell-margin-only"),
    ]
    assert [(h.account_no, h.permission_type, h.rule_id, h.enforcement) for h in sorted(audit.hits)] == [
        ("CASH-1", "otc.US", "otc-open-warning", "warn"),
        ("MARGIN-1", "stockgrey.US", "stockgrey-dryrun", "dryrun"),
        ("SAME-AS-CASH-1", "otc.US", "otc-open-warning", "warn"),
    ]
    assert [(p.account_no, p.permission_type) for p in sorted(audit.outside_catalog)] == [
        ("HK-1", "=1+2"),
        ("HK-1", "flag.options"),
    ]
    assert [(p.tenant, p.account_no, p.permission_type) for p in audit.not_enabled] == [
        ("hk_other", "HK-1", "options.HK")
    ]
    assert audit.denied


def test_tenant_limits_the_audit_to_its_accounts(sessions: Any) -> None:
    audit = _audit(sessions, tenant_id="hk_other")
    assert (audit.accounts_checked, audit.accounts_skipped, audit.violations) == (1, 0, [])
    with pytest.raises(UnknownTenant, match="no tenant 'nope'"):
        _audit(sessions, tenant_id="nope")


class _WriteMidway:
    """A progress that commits a new account in breach, and deregisters one, after the first batch."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.batches = 0

    def start(self, total: int) -> None:
        self.total = total

    def advance(self, accounts: int) -> None:
        self.batches += 1
        if self.batches > 1:
            return
        engine = create_engine(self.database_url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE accounts SET status = 'deregistered' WHERE origin_id = 'SAME-AS-CASH-1'"))
            conn.execute(
                text(
                    "INSERT INTO accounts (tenant_id, origin_id, status, created_at) "
                    "VALUES ('sg_mexc', 'LATE', 'active', :at)"
                ),
                {"at": JUDGED_AT.replace(tzinfo=None)},
            )
        engine.dispose()


def test_one_consistent_snapshot_writes_committed_meanwhile_are_not_seen(states: Settings, sessions: Any) -> None:
    midway = _WriteMidway(states.database_url)
    audit = _audit(sessions, batch_size=2, progress=midway)
    assert midway.total == 6 and midway.batches == 3
    assert (audit.accounts_checked, audit.accounts_skipped) == (6, 1)  # as they stood when the audit began
    assert "SAME-AS-CASH-1" in {v.account_no for v in audit.violations}
    assert "LATE" not in {v.account_no for v in audit.violations}


def test_the_audit_writes_nothing(states: Settings, sessions: Any) -> None:
    statements: list[str] = []
    engine = sessions.kw["bind"]

    from sqlalchemy import event

    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    before = snapshot(states.database_url)
    _audit(sessions, batch_size=2)
    assert snapshot(states.database_url) == before
    assert statements and all(s == "BEGIN" or s.lstrip().upper().startswith("SELECT") for s in statements), statements


@pytest.mark.postgres
def test_the_audit_runs_where_postgresql_refuses_every_write(states: Settings) -> None:
    """With default_transaction_read_only on for the database, any write would fail: the audit still runs."""
    from sqlalchemy.engine import make_url

    from tests.conftest import postgres_only

    url = make_url(postgres_only(states.database_url)).set(drivername="postgresql+psycopg")
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    database = url.database
    with admin.connect() as conn:  # opened before: its own session stays writable
        conn.execute(text(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on'))
        try:
            engine = make_engine(states, request_path=False)
            try:
                with engine.connect() as probe, pytest.raises(Exception, match="read-only transaction"):
                    probe.execute(text("UPDATE tenants SET config_version = config_version + 1"))
                before = snapshot(states.database_url)
                audit = _audit(make_session_factory(engine))
            finally:
                engine.dispose()
        finally:
            conn.execute(text(f'ALTER DATABASE "{database}" RESET default_transaction_read_only'))
    admin.dispose()
    assert audit.accounts_checked == 6 and snapshot(states.database_url) == before
