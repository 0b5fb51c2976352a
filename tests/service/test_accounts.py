"""AccountService (issue 10) below HTTP: batches through one validation and one audit, an account named twice in
a batch, tenants that do not exist, the creation race, and a write that fails half-way (nothing persists)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from app.errors import AccountDeregistered, InvalidRequest, WriteFailed
from app.persistence.db import make_engine, make_session_factory
from app.persistence.unit_of_work import UnitOfWork
from app.rules.language.loader import load_rule_set
from app.service.accounts import AccountService, AccountUpsert, InvalidAccount, Outcome, UpsertResult
from app.service.model import Caller
from app.settings import Settings
from tests.cli.runner import snapshot
from tests.conftest import postgres_only

SG = Caller("sg_mexc", "demo-key")
FAULT = "tps_test_account_audit_fault"


class AccountAuditFault:
    """A test-only trigger that refuses the account audit row of one account number: the failure comes after
    the account and its attributes were written in the same transaction."""

    def __init__(self, engine: Engine, account_no: str) -> None:
        self.engine = engine
        self.account_no = account_no
        self.postgres = engine.dialect.name == "postgresql"

    def arm(self) -> None:
        self.disarm()
        with self.engine.begin() as conn:
            if self.postgres:
                conn.execute(
                    text(
                        f"CREATE FUNCTION {FAULT}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                        f"BEGIN RAISE EXCEPTION 'injected write failure'; END $$"
                    )
                )
                conn.execute(
                    text(
                        f"CREATE TRIGGER {FAULT} BEFORE INSERT ON account_audit FOR EACH ROW "
                        f"WHEN (NEW.account_no = '{self.account_no}') EXECUTE FUNCTION {FAULT}()"
                    )
                )
            else:
                conn.execute(
                    text(
                        f"CREATE TRIGGER {FAULT} BEFORE INSERT ON account_audit "
                        f"WHEN NEW.account_no = '{self.account_no}' "
                        f"BEGIN SELECT RAISE(ABORT, 'injected write failure'); END"
                    )
                )

    def disarm(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(f"DROP TRIGGER IF EXISTS {FAULT}" + (" ON account_audit" if self.postgres else "")))
            if self.postgres:
                conn.execute(text(f"DROP FUNCTION IF EXISTS {FAULT}()"))


@pytest.fixture
def service(seeded: Settings) -> Iterator[AccountService]:
    engine = make_engine(seeded, request_path=False)
    factory = make_session_factory(engine)
    rule_set = load_rule_set(seeded.rules_dir)
    yield AccountService(unit_of_work=lambda: UnitOfWork(factory, write=True), rule_set=lambda: rule_set)
    engine.dispose()


def upsert(account_no: str, status: str = "active", attributes: dict[str, str] | None = None, **kw: Any) -> Any:
    caller = kw.pop("caller", SG)
    return AccountUpsert(caller, account_no, status, attributes, kw.pop("trace_id", f"t-{account_no}"))


def outcomes(results: list[Any]) -> list[str]:
    return [r.outcome.value if isinstance(r, UpsertResult) else f"{int(r.code)}" for r in results]


def test_a_batch_applies_what_it_can_and_refuses_the_rest(service: AccountService, seeded: Settings) -> None:
    results = service.upsert_batch(
        [
            upsert("B-1", attributes={"account_type": "cash"}),
            upsert("B-2", attributes={"colour": "red"}),
            upsert("ACC-GONE"),
            upsert("ACC-1", attributes={"residency": "SG"}),
            upsert("ACC-2"),
            upsert("B-3", caller=Caller("nobody", "permctl")),
            upsert("B-1", "deregistered"),  # named twice: sees the first
            upsert("B-1", attributes={"account_type": "margin"}),  # now deregistered
        ]
    )
    assert outcomes(results) == ["created", "400001", "409001", "updated", "unchanged", "400001", "updated", "409001"]
    assert isinstance(results[1], InvalidAccount) and results[1].field == ("attributes", "colour")
    assert isinstance(results[2], AccountDeregistered)
    assert isinstance(results[5], InvalidRequest) and "tenant 'nobody': no such tenant" in results[5].message
    final = results[6]
    assert isinstance(final, UpsertResult) and (final.status, dict(final.attributes)) == (
        "deregistered",
        {"account_type": "cash"},
    )
    rows = snapshot(seeded.database_url)
    b1 = [r for r in rows["account_audit"] if r[4] == "B-1"]
    assert [(r[5], r[6]) for r in b1] == [("None", "active"), ("active", "deregistered")]
    assert sorted(r[1:] for r in rows["account_attributes"]) == [("account_type", "cash"), ("residency", "SG")]
    assert [r[3] for r in rows["accounts"] if r[2] == "B-1"] == ["deregistered"]


def test_a_batch_whose_write_fails_leaves_nothing(service: AccountService, seeded: Settings) -> None:
    engine = create_engine(seeded.database_url)
    fault = AccountAuditFault(engine, "B-FAIL")
    before = snapshot(seeded.database_url)
    fault.arm()
    try:
        with pytest.raises(WriteFailed):
            service.upsert_batch([upsert("B-OK", attributes={"account_type": "cash"}), upsert("B-FAIL")])
        with pytest.raises(WriteFailed):
            service.upsert(
                caller=SG, account_no="B-FAIL", status="active", attributes={"residency": "SG"}, trace_id="t"
            )
    finally:
        fault.disarm()
        engine.dispose()
    assert snapshot(seeded.database_url) == before


class _BlindLookup(UnitOfWork):
    """A unit of work whose account lookup finds nothing, as a lookup made just before another writer's insert."""

    def __enter__(self) -> UnitOfWork:
        uow = super().__enter__()
        uow.accounts.get_many = lambda keys, lock: {}  # type: ignore[method-assign]
        return uow


def test_an_account_created_concurrently_is_found_on_the_next_attempt(seeded: Settings) -> None:
    """The lookup finds no account, another writer has created it, the insert meets it: the upsert runs again."""
    engine = make_engine(seeded, request_path=False)
    factory = make_session_factory(engine)
    rule_set = load_rule_set(seeded.rules_dir)
    attempts: list[UnitOfWork] = []

    def racing() -> UnitOfWork:
        if not attempts:
            with engine.begin() as conn:  # the other writer
                account_id = conn.execute(
                    text(
                        "INSERT INTO accounts (tenant_id, origin_id, status, created_at) "
                        "VALUES ('sg_mexc', 'RACE-1', 'active', :at) RETURNING id"
                    ),
                    {"at": datetime.now(UTC).replace(tzinfo=None)},
                ).scalar_one()
                conn.execute(
                    text("INSERT INTO account_attributes VALUES (:id, 'account_type', 'cash')"), {"id": account_id}
                )
        attempts.append((_BlindLookup if not attempts else UnitOfWork)(factory, write=True))
        return attempts[-1]

    service = AccountService(unit_of_work=racing, rule_set=lambda: rule_set)
    try:
        result = service.upsert(
            caller=SG, account_no="RACE-1", status="active", attributes={"account_type": "margin"}, trace_id="t"
        )
    finally:
        engine.dispose()
    assert len(attempts) == 2
    assert (result.outcome, dict(result.attributes)) == (Outcome.UPDATED, {"account_type": "margin"})
    rows = snapshot(seeded.database_url)
    assert [r[3] for r in rows["accounts"] if r[2] == "RACE-1"] == ["active"]
    audit = [r for r in rows["account_audit"] if r[4] == "RACE-1"]
    assert len(audit) == 1 and audit[0][5] == "active"  # the first attempt's creation was rolled back


@pytest.mark.postgres
def test_an_import_lets_postgresql_see_the_tables_grow(service: AccountService, seeded: Settings) -> None:
    """Without fresh statistics PostgreSQL looks each batch's accounts up by tenant alone, reading every account
    of the tenant per batch (a first load of 50,000 took 75-80 s instead of 27): the import ANALYZEs the tables
    as they grow, which pg_class.reltuples shows (TRUNCATE left it at -1, 'never analyzed')."""
    from app.service.account_import import Line, import_accounts

    postgres_only(seeded.database_url)
    engine = create_engine(seeded.database_url)
    try:
        with engine.connect() as conn:
            before = conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'accounts'")).scalar_one()
        lines = (Line(i + 1, 0, upsert(f"GROW-{i}", attributes={"account_type": "cash"})) for i in range(2_500))
        report = import_accounts(lines, service, batch_size=500)
        assert report.created == 2_500
        with engine.connect() as conn:
            after = conn.execute(
                text("SELECT relname, reltuples FROM pg_class WHERE relname IN ('accounts', 'account_attributes')")
            ).all()
    finally:
        engine.dispose()
    assert before < 1_000, before
    assert {name: tuples >= 2_000 for name, tuples in after} == {"accounts": True, "account_attributes": True}, after
