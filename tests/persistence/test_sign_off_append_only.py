"""The sign-off trail is append-only, enforced by the database itself (SPEC §7d; migration 0008): versions and
their files, proposals, reviews, publications, the approval policy's changes and the console audit.

Rows are written by the real services (a proposal, a review, a publication, a policy change, a user added), then
changed, removed or replaced with plain SQL on a connection of our own: the database refuses, and every row
stays as it was. On SQLite, INSERT OR REPLACE (which deletes without firing DELETE triggers) is refused too.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from app.container import units_of_work
from app.persistence.db import make_engine, make_session_factory
from app.rules.language.loader import read_tree
from app.schemas.permissions import load_update_request
from app.service.console_users import ConsoleUsers
from app.service.publication import RuleVersions
from app.settings import Settings
from tests.support import SHIPPED_RULES

PASSWORD = "a long enough password"
TABLES = {
    "rule_set_versions": "version",
    "rule_set_files": "path",
    "rule_set_publications": "published_by",
    "rule_set_proposals": "proposed_by",
    "rule_set_reviews": "reviewer",
    "approval_policy_changes": "changed_by",
    "console_audit": "actor",
}


@pytest.fixture
def trail(database_url: str, tmp_path: Path) -> Iterator[Engine]:
    """A row in every table of the trail, written by the services; an engine of our own."""
    service_engine = make_engine(Settings(database_url=database_url, instance_dir=tmp_path), request_path=False)
    uow = units_of_work(make_session_factory(service_engine))
    users = ConsoleUsers(uow)
    versions = RuleVersions(uow, load_request=load_update_request, versions_dir=tmp_path / "versions")
    ann = users.add("ann", "approver", PASSWORD, actor=None, origin="test")
    bob = users.add("bob", "approver", PASSWORD, actor=ann, origin="test")
    versions.adopt(read_tree(SHIPPED_RULES), by="upgrade", origin="test")
    files = read_tree(SHIPPED_RULES)
    files["README.md"] += b"\nedited\n"
    proposal, _ = versions.propose(files, author=ann, report={}, clean=True, origin="test")
    versions.review(proposal.version, reviewer=bob, approve=True, comment=None, origin="test")
    versions.publish(proposal.version, actor=ann, origin="test")
    versions.set_approval_policy("required", actor=bob, origin="test")
    service_engine.dispose()
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def snapshot(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {table: sorted(map(tuple, conn.execute(text(f"SELECT * FROM {table}")))) for table in TABLES}


def refused(engine: Engine, statement: str) -> None:
    before = snapshot(engine)
    assert all(before.values()), before  # every table holds a row to tamper with
    with pytest.raises(DBAPIError) as raised, engine.begin() as conn:
        conn.execute(text(statement))
    assert "append-only" in str(raised.value.orig), raised.value.orig
    assert snapshot(engine) == before


@pytest.mark.parametrize("table", sorted(TABLES))
def test_update_and_delete_are_refused(trail: Engine, table: str) -> None:
    refused(trail, f"UPDATE {table} SET {TABLES[table]} = {TABLES[table]}")
    refused(trail, f"DELETE FROM {table}")


KEYS = {table: "id" for table in TABLES} | {
    "rule_set_versions": "version",
    "rule_set_files": "version, path",
    "rule_set_proposals": "version",
}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_an_existing_row_cannot_be_replaced(trail: Engine, table: str) -> None:
    """SQLite's INSERT OR REPLACE deletes the old row without a DELETE trigger; PostgreSQL's upsert updates it."""
    if trail.dialect.name == "postgresql":
        column = TABLES[table]
        statement = (
            f"INSERT INTO {table} SELECT * FROM {table} "
            f"ON CONFLICT ({KEYS[table]}) DO UPDATE SET {column} = EXCLUDED.{column}"
        )
    else:
        statement = f"INSERT OR REPLACE INTO {table} SELECT * FROM {table}"
    refused(trail, statement)


def test_a_publication_forged_over_an_existing_one_is_refused(trail: Engine) -> None:
    """The attack the trigger is for: rewrite publication 2 as a break-glass by someone else."""
    at = datetime.now(UTC).isoformat(sep=" ")
    if trail.dialect.name == "postgresql":
        statement = (
            "INSERT INTO rule_set_publications (id, version, kind, published_at, published_by, reason) "
            f"SELECT 2, version, 'break_glass', '{at}', 'mallory', 'x' FROM rule_set_publications WHERE id = 2 "
            "ON CONFLICT (id) DO UPDATE SET published_by = 'mallory'"
        )
    else:
        statement = (
            "INSERT OR REPLACE INTO rule_set_publications (id, version, kind, published_at, published_by, reason) "
            f"SELECT 2, version, 'break_glass', '{at}', 'mallory', 'x' FROM rule_set_publications WHERE id = 2"
        )
    refused(trail, statement)
