"""A batch of upserts beside other writers of its accounts (issue 18 #2). An account another writer created after
the batch looked it up is met by the insert and planned again in the same transaction, as the update it now is.
What that cannot settle rolls the attempt back: it is planned again from what is stored then and retried with
back-off, and an account still contended after the last back-off is refused as busy while the rest of the batch
is written, each upsert counted once. The races are made on the real database, between the batch's lookup and
its insert."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, text

from app.errors import AccountBusy
from app.persistence.accounts import AccountKey
from app.persistence.db import make_engine, make_session_factory
from app.persistence.unit_of_work import UnitOfWork
from app.rules.language.loader import load_rule_set
from app.service import accounts as account_service
from app.service.account_import import Line, import_accounts
from app.service.accounts import AccountService, UpsertResult
from app.settings import Settings
from tests.cli.runner import snapshot
from tests.conftest import postgres_only
from tests.service.test_accounts import outcomes, upsert

ATTEMPTS = account_service._BATCH_ATTEMPTS
MARGIN = {"account_type": "margin"}


def create_elsewhere(engine: Engine, account_no: str) -> None:
    """Another writer (its own connection, committed) creates the account, active with account_type cash."""
    with engine.begin() as conn:
        account_id = conn.execute(
            text(
                "INSERT INTO accounts (tenant_id, origin_id, status, created_at) "
                "VALUES ('sg_mexc', :a, 'active', :at) RETURNING id"
            ),
            {"a": account_no, "at": datetime.now(UTC).replace(tzinfo=None)},
        ).scalar_one()
        conn.execute(text("INSERT INTO account_attributes VALUES (:id, 'account_type', 'cash')"), {"id": account_id})


class Attempts:
    """The unit-of-work factory of the service under test, one unit of work per attempt: `before` (attempt number)
    runs before the attempt's transaction begins, `during` (attempt number, unit of work) inside it, to do what
    another writer does then."""

    def __init__(self, settings: Settings, *, before: Any = None, during: Any = None) -> None:
        self.engine = make_engine(settings, request_path=False)  # as permctl accounts import
        self.factory = make_session_factory(self.engine)
        self.before = before or (lambda attempt: None)
        self.during = during or (lambda attempt, uow: None)
        self.made = 0

    def __call__(self) -> UnitOfWork:
        self.made += 1
        self.before(self.made)  # on SQLite nobody else writes once an attempt holds the write lock
        uow = _Hooked(self.factory, write=True)
        uow.attempt, uow.during = self.made, self.during
        return uow


class _Hooked(UnitOfWork):
    attempt: int
    during: Any

    def __enter__(self) -> UnitOfWork:
        uow = super().__enter__()
        self.during(self.attempt, uow)
        return uow


def hide_from_lookup(uow: UnitOfWork, hidden: set[AccountKey], *, lookups: int | None = None) -> None:
    """The first `lookups` lookups (None: all) do not see these accounts, as lookups made just before another
    writer created them (all: as if every lookup came too early, which only a contended account can make)."""
    lookup = uow.accounts.get_many
    made = [0]

    def blind(keys: Any, lock: bool) -> Any:
        made[0] += 1
        found = lookup(keys, lock=lock)
        if lookups is not None and made[0] > lookups:
            return found
        return {key: record for key, record in found.items() if key not in hidden}

    uow.accounts.get_many = blind  # type: ignore[method-assign]


@pytest.fixture
def rule_set(seeded: Settings) -> Any:
    return load_rule_set(seeded.rules_dir)


def service_over(attempts: Attempts, rule_set: Any, slept: list[float]) -> AccountService:
    return AccountService(unit_of_work=attempts, rule_set=lambda: rule_set, sleep=slept.append)


@pytest.fixture
def other_writer(seeded: Settings) -> Iterator[Engine]:
    engine = make_engine(seeded, request_path=False)
    yield engine
    engine.dispose()


def test_an_account_created_after_the_lookup_is_planned_again_in_the_same_transaction(
    seeded: Settings, rule_set: Any, other_writer: Engine
) -> None:
    """RACE-1 is created by another writer after the batch's lookup: the insert leaves it out, the batch locks and
    reads it and plans its upserts again as updates of what that writer stored. One attempt, no back-off."""
    create_elsewhere(other_writer, "RACE-1")
    attempts, slept, contended = (
        Attempts(seeded, during=lambda _, uow: hide_from_lookup(uow, {("sg_mexc", "RACE-1")}, lookups=1)),
        [],
        [],
    )
    service = service_over(attempts, rule_set, slept)
    try:
        results = service.upsert_batch(
            [upsert("NEW-1"), upsert("RACE-1", attributes=MARGIN), upsert("RACE-1", "deregistered"), upsert("NEW-2")],
            rolled_back=contended.append,
        )
    finally:
        attempts.engine.dispose()
    assert outcomes(results) == ["created", "updated", "updated", "created"]
    assert [r.replanned for r in results if isinstance(r, UpsertResult)] == [False, True, True, False]
    assert (attempts.made, contended, slept) == (1, [], [])
    rows = snapshot(seeded.database_url)
    race_1 = [r for r in rows["account_audit"] if r[4] == "RACE-1"]
    assert [(r[5], r[6]) for r in race_1] == [("active", "active"), ("active", "deregistered")]  # no creation
    assert "cash" in str(race_1[0]) and "margin" in str(race_1[1])
    assert [r[3] for r in rows["accounts"] if r[2] == "RACE-1"] == ["deregistered"]


def test_a_contended_batch_is_replanned_and_a_line_still_contended_is_refused_busy(
    seeded: Settings, rule_set: Any, other_writer: Engine
) -> None:
    """Attempt 1 meets RACE-1 and HOT, neither of which it can read (its lookups never see them): it is rolled
    back. Attempt 2 finds RACE-1 and plans it as the update it now is, but every attempt still fails to read HOT;
    after the last back-off HOT's two lines are refused busy and the attempt after writes the rest."""

    def before(attempt: int) -> None:
        if attempt == 1:
            create_elsewhere(other_writer, "RACE-1")
            create_elsewhere(other_writer, "HOT")

    def during(attempt: int, uow: UnitOfWork) -> None:
        if attempt <= ATTEMPTS:
            hide_from_lookup(uow, {("sg_mexc", "HOT")} | ({("sg_mexc", "RACE-1")} if attempt == 1 else set()))

    attempts, slept, contended = Attempts(seeded, before=before, during=during), [], []
    service = service_over(attempts, rule_set, slept)
    batch = [
        upsert("NEW-1"),
        upsert("RACE-1", attributes=MARGIN),
        upsert("HOT", attributes=MARGIN),
        upsert("ACC-1", attributes=MARGIN),
        upsert("HOT", "deregistered"),
        upsert("NEW-2"),
    ]
    try:
        results = service.upsert_batch(batch, rolled_back=contended.append)
    finally:
        attempts.engine.dispose()
    assert outcomes(results) == ["created", "updated", "409003", "updated", "409003", "created"]
    assert all(isinstance(results[i], AccountBusy) and results[i].message == "busy, retry" for i in (2, 4))
    assert attempts.made == ATTEMPTS + 1 and contended == [2] + [1] * (ATTEMPTS - 1)
    assert len(slept) == ATTEMPTS - 1  # a back-off between attempts, none once the busy lines are left out
    for n, delay in enumerate(slept):  # doubling, half of it random
        ceiling = min(account_service._BACKOFF_MOST, account_service._BACKOFF_FIRST * 2**n)
        assert ceiling / 2 <= delay <= ceiling

    rows = snapshot(seeded.database_url)
    race_1 = [r for r in rows["account_audit"] if r[4] == "RACE-1"]
    assert [(r[5], r[6]) for r in race_1] == [("active", "active")]  # one row: the update it was re-planned as
    assert "cash" in str(race_1[0]) and "margin" in str(race_1[0])
    assert [r for r in rows["account_audit"] if r[4] == "HOT"] == []  # refused: the other writer's as it was
    assert [r[3] for r in rows["accounts"] if r[2] in ("HOT", "NEW-1", "NEW-2")].count("active") == 3


def test_an_import_counts_each_line_once_and_reports_busy_lines_in_order(
    seeded: Settings, rule_set: Any, other_writer: Engine
) -> None:
    """Through import_accounts: batches of three, the second of which meets HOT on every attempt."""

    def before(attempt: int) -> None:
        if attempt == 2:  # the second batch's first attempt
            create_elsewhere(other_writer, "HOT")

    def during(attempt: int, uow: UnitOfWork) -> None:
        if 2 <= attempt <= ATTEMPTS + 1:
            hide_from_lookup(uow, {("sg_mexc", "HOT")})

    attempts, slept = Attempts(seeded, before=before, during=during), []
    service = service_over(attempts, rule_set, slept)
    lines = [
        Line(1, 0, upsert("L-1")),
        Line(2, 0, refusal="line is not valid JSON"),
        Line(3, 0, upsert("L-3", attributes={"colour": "red"})),
        Line(4, 0, upsert("HOT")),
        Line(5, 0, upsert("L-5")),
        Line(6, 0, upsert("ACC-2", attributes=MARGIN)),
        Line(7, 0, upsert("L-1")),
    ]
    printed: list[int] = []
    try:
        report = import_accounts(iter(lines), service, batch_size=3, refused=lambda n, _: printed.append(n))
    finally:
        attempts.engine.dispose()
    assert (report.created, report.updated, report.unchanged, report.refused, report.busy) == (2, 1, 1, 3, 1)
    assert report.lines == len(lines) and (report.retried, report.replanned) == (ATTEMPTS, 0)
    assert printed == [2, 3, 4] and report.refusals[2] == (4, "busy, retry")


@pytest.mark.postgres
def test_accounts_created_by_another_connection_between_lookup_and_insert(
    seeded: Settings, rule_set: Any, other_writer: Engine
) -> None:
    """PostgreSQL, where writers of different accounts run side by side: after the batch's lookup another
    connection creates two of its accounts and commits, before the batch's insert. The insert leaves them out;
    the batch locks and reads them and updates them, in the one attempt; the rest it creates."""
    postgres_only(seeded.database_url)
    numbers = [f"PG-{i}" for i in range(6)]

    def during(attempt: int, uow: UnitOfWork) -> None:
        create = uow.accounts.create_many

        def create_after_another(accounts: Any, at: Any) -> Any:
            if attempt == 1:
                create_elsewhere(other_writer, "PG-2")  # between this attempt's lookup and its insert
                create_elsewhere(other_writer, "PG-4")
            return create(accounts, at)

        uow.accounts.create_many = create_after_another  # type: ignore[method-assign]

    attempts, slept, contended = Attempts(seeded, during=during), [], []
    service = service_over(attempts, rule_set, slept)
    try:
        results = service.upsert_batch([upsert(n, attributes=MARGIN) for n in numbers], rolled_back=contended.append)
    finally:
        attempts.engine.dispose()
    assert outcomes(results) == ["created", "created", "updated", "created", "updated", "created"]
    assert [isinstance(r, UpsertResult) and r.replanned for r in results] == [False, False, True, False, True, False]
    assert (attempts.made, contended, slept) == (1, [], [])
    rows = snapshot(seeded.database_url)
    ids = {r[2]: r[0] for r in rows["accounts"] if r[2].startswith("PG-")}
    assert sorted(ids) == numbers
    assert {(r[0], r[1], r[2]) for r in rows["account_attributes"] if r[0] in ids.values()} == {
        (ids[n], "account_type", "margin") for n in numbers
    }
    audit = {r[4]: (r[5], r[6]) for r in rows["account_audit"] if r[4].startswith("PG-")}
    assert audit == {n: ("active" if n in ("PG-2", "PG-4") else "None", "active") for n in numbers}
