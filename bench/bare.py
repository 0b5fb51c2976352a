"""The bare baseline: a minimal WSGI app doing the service's SQL work for an update, and nothing else.

No framework, no authentication, no rules engine, no ORM: the raw driver (psycopg 3 or sqlite3), one
connection per worker process, and for each request exactly the essential statements of the service's write
transaction, in the service's schema:

1. lock the account row (``SELECT ... FOR UPDATE`` on PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite),
2. read its permissions,
3. check the changes in plain Python (catalog membership, status, duplicates, state change),
4. upsert the permission rows in one statement and insert the audit rows in one statement, commit;
   a rejected batch rolls back after step 3.

Run as ``gunicorn bench.bare:app`` with DATABASE_URL, BENCH_TENANT (the tenant whose accounts it serves) and
BENCH_CATALOG (comma-separated catalog values) in the environment. It is the practical limit of this machine
for the same request under the same server and database.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from bench.scenarios import UPDATE_PATH

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
RULE_SET_VERSION = "bare"
TRACE_ID = "bare"
APP_KEY = "bare"

LOCK_PG = (
    "SELECT a.id, a.status, t.config_version FROM accounts a JOIN tenants t ON t.id = a.tenant_id "
    "WHERE a.tenant_id = %s AND a.origin_id = %s FOR UPDATE OF a"
)
LOCK_SQLITE = (
    "SELECT a.id, a.status, t.config_version FROM accounts a JOIN tenants t ON t.id = a.tenant_id "
    "WHERE a.tenant_id = ? AND a.origin_id = ?"
)
READ = "SELECT permission_type, status FROM account_permissions WHERE account_id = {p}"
UPSERT = (
    "INSERT INTO account_permissions (account_id, permission_type, status, updated_at) VALUES {values} "
    "ON CONFLICT (account_id, permission_type) DO UPDATE SET status = excluded.status, "
    "updated_at = excluded.updated_at"
)
AUDIT = (
    "INSERT INTO permission_audit (trace_id, tenant_id, app_key, account_no, permission_type, status_before, "
    "status_after, rule_set_version, created_at) VALUES {values}"
)


class Refused(Exception):
    """A request the baseline answers with an error envelope."""

    def __init__(self, http_status: int, code: int, failure_index: int = 0) -> None:
        super().__init__(code)
        self.http_status = http_status
        self.code = code
        self.failure_index = failure_index


class Store(Protocol):
    def update(self, account_no: str, changes: list[Any]) -> None: ...


def _check(changes: list[Any], enabled: frozenset[str], current: dict[str, str]) -> list[tuple[str, str, str]]:
    """(type, before, after) per change, or Refused at the first bad change."""
    applied: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for index, change in enumerate(changes):
        kind = change.get("permission_type") if isinstance(change, dict) else None
        status = change.get("permission_status") if isinstance(change, dict) else None
        if not isinstance(kind, str) or kind not in enabled:
            raise Refused(400, 400101, index)
        if status not in ("open", "close"):
            raise Refused(400, 400102, index)
        if kind in seen:
            raise Refused(400, 400104, index)
        before = current.get(kind, "close")
        if before == status:
            raise Refused(400, 400103, index)
        seen.add(kind)
        applied.append((kind, before, status))
    return applied


class PostgresStore:
    """The SQL work on PostgreSQL through psycopg 3, one connection per worker."""

    def __init__(self, url: str, tenant: str, enabled: frozenset[str]) -> None:
        import psycopg

        self._connect = lambda: psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        self._conn: Any = None
        self._tenant = tenant
        self._enabled = enabled

    def update(self, account_no: str, changes: list[Any]) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        conn = self._conn
        try:
            row = conn.execute(LOCK_PG, (self._tenant, account_no)).fetchone()
            if row is None:
                raise Refused(404, 404001)
            account_id, status, _config_version = row
            if status != "active":
                raise Refused(409, 409001)
            current = dict(conn.execute(READ.format(p="%s"), (account_id,)).fetchall())
            applied = _check(changes, self._enabled, current)
            now = datetime.now(UTC)
            marks = ", ".join(["(%s, %s, %s, %s)"] * len(applied))
            conn.execute(
                UPSERT.format(values=marks), [v for kind, _, after in applied for v in (account_id, kind, after, now)]
            )
            marks = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(applied))
            conn.execute(
                AUDIT.format(values=marks),
                [
                    v
                    for kind, before, after in applied
                    for v in (TRACE_ID, self._tenant, APP_KEY, account_no, kind, before, after, RULE_SET_VERSION, now)
                ],
            )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise


class SqliteStore:
    """The SQL work on SQLite through sqlite3, one connection per worker, BEGIN IMMEDIATE as the lock."""

    def __init__(self, path: str, tenant: str, enabled: frozenset[str]) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._tenant = tenant
        self._enabled = enabled

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=30.0, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._conn = conn
        return self._conn

    def update(self, account_no: str, changes: list[Any]) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(LOCK_SQLITE, (self._tenant, account_no)).fetchone()
            if row is None:
                raise Refused(404, 404001)
            account_id, status, _config_version = row
            if status != "active":
                raise Refused(409, 409001)
            current = dict(conn.execute(READ.format(p="?"), (account_id,)).fetchall())
            applied = _check(changes, self._enabled, current)
            now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's SQLite DATETIME format
            conn.execute(
                UPSERT.format(values=", ".join(["(?, ?, ?, ?)"] * len(applied))),
                [v for kind, _, after in applied for v in (account_id, kind, after, now)],
            )
            conn.execute(
                AUDIT.format(values=", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(applied))),
                [
                    v
                    for kind, before, after in applied
                    for v in (TRACE_ID, self._tenant, APP_KEY, account_no, kind, before, after, RULE_SET_VERSION, now)
                ],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def make_store(environ: dict[str, str]) -> Store:
    """The store for DATABASE_URL (read once, at start-up)."""
    url = environ["DATABASE_URL"]
    tenant = environ["BENCH_TENANT"]
    enabled = frozenset(environ["BENCH_CATALOG"].split(","))
    if url.startswith("sqlite"):
        return SqliteStore(unquote(urlsplit(url).path[1:]), tenant, enabled)
    return PostgresStore(url, tenant, enabled)


def _answer(start_response: StartResponse, http_status: int, code: int, failure_index: int) -> Iterable[bytes]:
    body = json.dumps(
        {"code": code, "message": "success" if code == 0 else "refused", "data": {"failure_index": failure_index}},
        separators=(",", ":"),
    ).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict"}.get(http_status, "Error")
    start_response(
        f"{http_status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def make_app(store: Store) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI callable around a store."""

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != UPDATE_PATH:
            return _answer(start_response, 404, 404000, 0)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            payload = json.loads(environ["wsgi.input"].read(length))
            account_no, changes = payload["account_no"], payload["changes"]
            if not isinstance(account_no, str) or not isinstance(changes, list) or not 1 <= len(changes) <= 100:
                raise Refused(400, 400001)
            store.update(account_no, changes)
        except Refused as refused:
            return _answer(start_response, refused.http_status, refused.code, refused.failure_index)
        except (ValueError, KeyError, TypeError):
            return _answer(start_response, 400, 400001, 0)
        return _answer(start_response, 200, 0, 0)

    return application


class _StoreFromEnvironment:
    """Builds the real store from the environment on first use (in the worker, after gunicorn forks)."""

    def __init__(self) -> None:
        self._store: Store | None = None

    def update(self, account_no: str, changes: list[Any]) -> None:
        if self._store is None:
            self._store = make_store(dict(os.environ))
        self._store.update(account_no, changes)


app = make_app(_StoreFromEnvironment())
