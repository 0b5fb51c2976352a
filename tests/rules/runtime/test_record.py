"""DecisionRecord: a decision to a row of the decisions table and back, through the real repository; the row's
format (columns, JSON text) is the one the service has always written."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine

from app.persistence.db import make_engine, make_session_factory
from app.persistence.unit_of_work import UnitOfWork
from app.rules.runtime.answer import answer_of
from app.rules.runtime.decision import decide
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.record import DecisionRecord
from app.settings import Settings
from tests.rules.runtime.test_answer import POLICIES
from tests.rules.support import ch, engine_for
from tests.support import body_of

AT = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings, request_path=True)
    yield engine
    engine.dispose()


def _columns(row: Any) -> dict[str, Any]:
    """A row's columns as plain values (read inside its session)."""
    names = ("id", *DecisionRecord(**_EMPTY).row())
    return {name: getattr(row, name) for name in names}


_EMPTY: dict[str, Any] = {
    "trace_id": "",
    "tenant_id": "",
    "account_no": "",
    "rule_set_version": "",
    "changes": (),
    "tenant_patterns": (),
    "account_state": {},
    "created_at": AT,
    "code": 0,
}


def _written_and_read(engine: Engine, record: DecisionRecord) -> list[SimpleNamespace]:
    """The record written through the repository, then read back as the ORM row and as the streamed one."""
    with UnitOfWork(make_session_factory(engine), write=True) as uow:
        uow.decisions.record(**record.row())
        uow.commit()
    with UnitOfWork(make_session_factory(engine)) as uow:
        (listed,) = uow.decisions.since(None)
        (streamed,) = list(uow.decisions.stream(None))
        return [SimpleNamespace(**_columns(listed)), SimpleNamespace(**_columns(streamed))]


def test_a_decision_goes_to_a_row_and_back_unchanged(engine, tmp_path):
    rules = engine_for(tmp_path, POLICIES)
    decision_input = DecisionInput.of(
        tenant_id="sg_mexc",
        patterns=["otc.*", "stock.*", "ipo.*"],
        changes=[ch("otc.SG", "open"), {**ch("ipo.JP", "open"), "note": "not for the rules"}],
        stored={"stock.US": "open"},
        account_status="active",
        attributes={"residency": "SG"},
        at=AT,
    )
    answer = answer_of(decide(rules, decision_input))
    record = DecisionRecord.of(
        decision_input, answer, trace_id="trace-1", account_no="ACC-1", rule_set_version=rules.version
    )
    assert (record.code, record.failure_index, record.rule_id) == (answer.code, 1, "deny-ipo")
    assert (record.warned_by, record.dryrun_by) == (("warn-otc",), ())
    for row in _written_and_read(engine, record):  # the ORM row and the streamed one
        back = DecisionRecord.of_row(row)
        assert back == dataclasses.replace(record, id=row.id)
        assert back.decision_input() == decision_input
        assert back.row() == {k: getattr(row, k) for k in record.row()}  # the same JSON text


def test_the_row_keeps_the_json_text_the_service_has_always_written():
    record = DecisionRecord(
        trace_id="t",
        tenant_id="t1",
        account_no="A",
        rule_set_version="v",
        changes=({"permission_type": "stock.US", "permission_status": "open"},),
        tenant_patterns=("*",),
        account_state={"stock.HK": "open"},
        created_at=AT,
        code=0,
        account_status="active",
        attributes={},
        warned_by=(),
        dryrun_by=("watch",),
    )
    row = record.row()
    assert row["changes"] == '[{"permission_type": "stock.US", "permission_status": "open"}]'
    assert (row["tenant_patterns"], row["account_state"], row["attributes"]) == ('["*"]', '{"stock.HK": "open"}', "{}")
    assert (row["warned_by"], row["dryrun_by"]) == ("[]", '["watch"]')
    assert "id" not in row


def test_an_old_row_without_status_attributes_or_hits_reads_as_an_active_account(engine):
    old = DecisionRecord(
        trace_id="old",
        tenant_id="t1",
        account_no="A",
        rule_set_version="v0",
        changes=({"permission_type": "stock.US", "permission_status": "open"},),
        tenant_patterns=("*",),
        account_state={},
        created_at=AT,
        code=0,
    )
    listed, _ = _written_and_read(engine, old)
    assert (listed.account_status, listed.attributes, listed.warned_by, listed.dryrun_by) == (None, None, None, None)
    back = DecisionRecord.of_row(listed)
    assert back == dataclasses.replace(old, id=listed.id)
    assert (back.decision_input().account_status, back.decision_input().attributes) == ("active", {})


def test_a_request_the_service_decided_reads_back_as_it_was_judged(api, db):
    assert api.update(body_of("ACC-2", ("stock.US", "open"))).get_json()["code"] == 0
    with UnitOfWork(make_session_factory(db)) as uow:
        (found,) = uow.decisions.since(None)
        row = SimpleNamespace(**_columns(found))
    record = DecisionRecord.of_row(row)
    assert record.changes == ({"permission_type": "stock.US", "permission_status": "open"},)
    assert (record.code, record.failure_index, record.rule_id, record.warned_by) == (0, 0, None, ())
    assert json.loads(row.account_state) == dict(record.account_state)
    assert record.row() == {k: getattr(row, k) for k in record.row()}
