"""Guard the SQL a request costs (issues 5 and 13): statements and commits. A change here is a performance change.

Runs on whichever database the suite runs on (SQLite, or PostgreSQL with TEST_DATABASE_URL): the counts are the
same on both.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event

from app import create_app
from tests.conftest import Api
from tests.support import UPDATE_PATH, body_of, signed_headers

# Steady state: the credential and the tenant config cached, no reload check due. BEGIN, COMMIT and ROLLBACK are
# not statements here; commits are counted apart (each is a WAL flush on PostgreSQL). Since issue 13 the
# signature is recorded in the request's own transaction, checking the cached credential as it goes, so there
# is no credentials SELECT and no commit of its own: one commit per request, rejected or accepted.
ACCEPTED = 7  # signature, account (locked), attributes, permissions, decision, upsert, audit
REJECTED_BY_RULES = 5  # signature, account (locked), attributes, permissions, decision
ACCOUNT_NOT_FOUND = 2  # signature, account
REPLAY = 2  # signature (not inserted), signature (found: a replay, not a changed credential)
READ = 3  # account, attributes, permissions


@dataclass
class Counted:
    """What the database was asked since the last clear()."""

    statements: list[str] = field(default_factory=list)
    commits: int = 0

    def clear(self) -> None:
        self.statements.clear()
        self.commits = 0


@pytest.fixture
def counted(seeded) -> Iterator[tuple[Api, Counted]]:
    app = create_app(seeded.with_overrides(rules_reload_check_seconds=3600.0))
    engine = app.extensions["permission_service"].engine
    seen = Counted()

    def statement(_conn: Any, _cursor: Any, text: str, *_args: Any) -> None:
        if not text.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            seen.statements.append(text)

    def commit(conn: Any) -> None:
        if conn.get_isolation_level() != "AUTOCOMMIT":  # an autocommit "commit" sends nothing
            seen.commits += 1

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    api = Api(app.test_client())
    api.update(body_of("ACC-2", ("stock.JP", "open")), timestamp=f"{int(time.time())}.9")  # warm the caches
    yield api, seen
    engine.dispose()


@pytest.mark.parametrize(
    ("body", "code", "expected"),
    [
        (body_of("ACC-2", ("stock.US", "open")), 0, ACCEPTED),
        (
            body_of("ACC-2", *[(t, "open") for t in ("stock.US", "stock.HK", "stock.SG", "stock.UK", "stock.DE")]),
            0,
            ACCEPTED,
        ),
        (body_of("ACC-2", ("stock.US", "open"), ("flag.options", "open")), 400101, REJECTED_BY_RULES),
        (body_of("NOBODY", ("stock.US", "open")), 404001, ACCOUNT_NOT_FOUND),
    ],
    ids=["one-change", "five-changes", "rejected", "unknown-account"],
)
def test_statements_and_commits_per_request(counted, body: bytes, code: int, expected: int) -> None:
    api, seen = counted
    seen.clear()
    response = api.update(body, timestamp=f"{int(time.time())}.1")
    assert response.get_json()["code"] == code
    assert len(seen.statements) == expected, "\n".join(seen.statements)
    assert seen.commits == 1  # the signature, the decision record and the writes (if any) together


def test_a_replay_costs_two_statements_and_commits_nothing(counted) -> None:
    api, seen = counted
    body = body_of("ACC-2", ("stock.US", "open"))
    headers = signed_headers("POST", UPDATE_PATH, body, timestamp=f"{int(time.time())}.2")
    assert api.client.post(UPDATE_PATH, data=body, headers=headers).get_json()["code"] == 0
    seen.clear()
    answer = api.client.post(UPDATE_PATH, data=body, headers=headers).get_json()
    assert answer["code"] == 401001 and "replay" in answer["message"]
    assert (len(seen.statements), seen.commits) == (REPLAY, 0), "\n".join(seen.statements)


def test_a_read_reads_and_commits_nothing(counted) -> None:
    api, seen = counted
    seen.clear()
    assert api.read("ACC-2").get_json()["code"] == 0
    assert (len(seen.statements), seen.commits) == (READ, 0), "\n".join(seen.statements)
