"""Where a request's time goes: ``.venv/bin/python -m bench.profile [--database-url URL] [--redis-url URL]``.

In one process, with pyinstrument (``.venv/bin/pip install pyinstrument``):

* the SQL statements of one accepted and one rejected request, counted at the driver;
* the service's WSGI app (no HTTP server: environs are built before profiling starts) serving 1-change accepted
  requests, then 10-change rejected ones: self time by component, the app functions with the most inclusive
  time, and the heaviest functions by self time;
* the rules adapter alone on 10-change requests, with its memo and through the engine, for the shipped rules and
  the broker policies (examples/broker-policies).

Add ``--html DIR`` to keep pyinstrument's HTML reports.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event
from werkzeug.test import EnvironBuilder

from app import create_app
from app.http.wiring import container_of
from app.rules.language.loader import load_rule_set
from app.rules.runtime.engine import DurableRulesEngine
from app.settings import Settings
from app.signature import sign, signature_header
from bench.corpus import corpus
from bench.paths import PROJECT_ROOT, RULE_SETS
from bench.scenarios import ONE, REJECTED, UPDATE_PATH, Scenario
from bench.servers import ACCESS_TOKEN, APP_KEY, APP_SECRET, Database, Seed, Workdir
from bench.traffic import served_values

BROKER = "broker-policies"

DRIVER_CALLS = frozenset(
    {"do_execute", "do_executemany", "do_execute_no_params", "do_commit", "do_rollback", "do_begin", "connect"}
)
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("/durable/", "durable_rules (engine)"),
    ("/sqlalchemy/", "SQLAlchemy (ORM/Core, excluding driver calls)"),
    ("/psycopg", "psycopg (driver, incl. waiting for PostgreSQL)"),
    ("/redis/", "redis client (incl. waiting for Redis)"),
    ("/werkzeug/", "Werkzeug"),
    ("/flask/", "Flask"),
    ("/structlog/", "structlog (logging)"),
    ("/logging/", "logging (stdlib)"),
    ("/prometheus_client/", "prometheus_client (metrics)"),
    ("/marshmallow/", "marshmallow (schemas)"),
)


def _component(frame: Any) -> str:
    path = frame.file_path or ""
    if path in ("", "<built-in>") and frame.parent is not None:
        return _component(frame.parent)  # C functions and pyinstrument's [self] frames count for their caller
    if frame.function in DRIVER_CALLS and "/sqlalchemy/engine/" in path:
        return "database driver calls (execute/commit: SQL round trips)"
    if path.startswith(str(PROJECT_ROOT / "app")):
        return "app/ (our code)"
    for marker, name in COMPONENTS:
        if marker in path:
            return name
    if "site-packages" in path:
        return "other libraries"
    return "Python stdlib (json, hmac, uuid, datetime, ...)"


def _key(frame: Any) -> str:
    if frame.is_synthetic and frame.parent is not None:
        return _key(frame.parent)
    return f"{frame.function} ({frame.file_path_short}:{frame.line_no})"


def _walk(frame: Any, ancestors: tuple[str, ...] = ()) -> Iterator[tuple[Any, tuple[str, ...]]]:
    """Every real frame (pyinstrument's synthetic [self] frames are already in their parent's self time)."""
    yield frame, ancestors
    key = _key(frame)
    for child in frame.children:
        if not child.is_synthetic:
            yield from _walk(child, (*ancestors, key))


def summarise(session: Any, title: str, *, per: int, unit: str) -> str:
    """Self time by component, inclusive time of app/ functions, and top self-time functions."""
    root = session.root_frame()
    total = root.time if root is not None else 0.0
    if root is None or total <= 0:
        return f"{title}: no samples"
    by_component: dict[str, float] = defaultdict(float)
    by_self: dict[str, float] = defaultdict(float)
    inclusive: dict[str, float] = defaultdict(float)
    for frame, ancestors in _walk(root):
        by_component[_component(frame)] += frame.total_self_time
        key = _key(frame)
        by_self[key] += frame.total_self_time
        if (frame.file_path or "").startswith(str(PROJECT_ROOT / "app")) and key not in ancestors:
            inclusive[key] += frame.time
    ms = total * 1000 / per
    lines = [
        f"### {title}: {ms:.3f} ms per {unit} ({per:,} {unit}s profiled)",
        "",
        "| component (self time) | share | ms per " + unit + " |",
        "|---|---:|---:|",
    ]
    for name, seconds in sorted(by_component.items(), key=lambda kv: -kv[1]):
        if seconds / total >= 0.005:
            lines.append(f"| {name} | {seconds / total:.1%} | {seconds * 1000 / per:.3f} |")
    lines += ["", "| app/ function (inclusive time) | share |", "|---|---:|"]
    for name, seconds in sorted(inclusive.items(), key=lambda kv: -kv[1])[:14]:
        lines.append(f"| `{name}` | {seconds / total:.1%} |")
    lines += ["", "| heaviest functions (self time) | share |", "|---|---:|"]
    for name, seconds in sorted(by_self.items(), key=lambda kv: -kv[1])[:12]:
        lines.append(f"| `{name}` | {seconds / total:.1%} |")
    return "\n".join(lines)


def _environs(account: str, scenario: Scenario, values: Sequence[str], count: int) -> list[dict[str, Any]]:
    environs = []
    for i in range(count):
        status = "open" if i % 2 == 0 else "close"
        body = json.dumps(
            {"account_no": account, "changes": scenario.changes(values, status)}, separators=(",", ":")
        ).encode()
        timestamp = f"{time.time():.6f}{i % 10}"  # distinct even when built within one microsecond
        signature = sign(
            app_secret=APP_SECRET,
            method="POST",
            path=UPDATE_PATH,
            query="",
            access_token=ACCESS_TOKEN,
            app_key=APP_KEY,
            timestamp=timestamp,
            body=body,
        )
        headers = {
            "X-Api-Key": APP_KEY,
            "Authorization": ACCESS_TOKEN,
            "X-Timestamp": timestamp,
            "X-Api-Signature": signature_header(signature),
        }
        environs.append(
            EnvironBuilder(
                path=UPDATE_PATH,
                method="POST",
                data=body,
                headers=list(headers.items()),
                content_type="application/json; charset=utf-8",
            ).get_environ()
        )
    return environs


def _serve(app: Any, environs: Sequence[dict[str, Any]], expect: int) -> None:
    status: list[str] = []

    def start_response(s: str, _headers: Any, _exc: Any = None) -> Callable[[bytes], None]:
        status.append(s)
        return lambda _data: None

    for environ in environs:
        status.clear()
        b"".join(app.wsgi_app(environ, start_response))
        if not status[0].startswith(str(expect)):
            raise AssertionError(f"expected HTTP {expect}, got {status[0]}")


def count_statements(app: Any, environs: Sequence[dict[str, Any]], expect: int) -> list[str]:
    """The SQL statements the service sends for each of environs (the last request's list is returned)."""
    engine = container_of(app).engine
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split())[:110])

    def committed(conn: Any) -> None:
        autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        seen.append("-- (autocommit: no COMMIT sent)" if autocommit else "COMMIT")

    pre_ping = bool(getattr(engine.pool, "_pre_ping", False))
    psycopg_driver = engine.dialect.driver == "psycopg"
    counting: list[Any] = []

    class Counting(psycopg.Cursor[Any]):
        """On psycopg every statement is a cursor's, SQLAlchemy's and the ones the hot path hands the driver."""

        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            if str(query) != "COMMIT":  # the pipelined COMMIT: counted by the commit event
                record(None, None, str(query))
            return super().execute(query, *args, **kwargs)

        def executemany(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            record(None, None, str(query))
            return super().executemany(query, *args, **kwargs)

    def checked_out(dbapi_connection: Any, *_args: Any) -> None:
        seen.append(f"-- pool checkout{' (pool_pre_ping: one more round trip, SELECT 1)' if pre_ping else ''}")
        if psycopg_driver:
            dbapi_connection.cursor_factory = Counting
            counting.append(dbapi_connection)

    if not psycopg_driver:
        event.listen(engine, "before_cursor_execute", record)
    event.listen(engine, "commit", committed)
    event.listen(engine.pool, "checkout", checked_out)
    try:
        for environ in environs:
            seen.clear()
            _serve(app, [environ], expect)
    finally:
        for dbapi_connection in counting:
            dbapi_connection.cursor_factory = psycopg.Cursor
        if not psycopg_driver:
            event.remove(engine, "before_cursor_execute", record)
        event.remove(engine, "commit", committed)
        event.remove(engine.pool, "checkout", checked_out)
    return list(seen)


def main(argv: Sequence[str] | None = None) -> int:
    from pyinstrument import Profiler

    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--redis-url", help="Redis URL (default: in-process cache)")
    parser.add_argument("--requests", type=int, default=1500, help="requests profiled per kind")
    parser.add_argument("--html", type=Path, help="also write pyinstrument HTML reports into this folder")
    parser.add_argument(
        "--rules", choices=sorted(RULE_SETS), default=BROKER, help=f"the rule set the service runs (default {BROKER})"
    )
    args = parser.parse_args(argv)
    workdir = Workdir()
    database = Database(args.database_url, workdir.path)
    out = io.StringIO()
    try:
        settings = Settings(
            database_url=database.url,
            redis_url=args.redis_url,
            rules_dir=RULE_SETS[args.rules],
            instance_dir=workdir.path / "instance",
            log_level="INFO",
        )
        rule_set = load_rule_set(settings.rules_dir)
        values = served_values(rule_set, at=datetime.now(UTC))
        seed = Seed(settings, rule_set)
        app = create_app(settings)
        accepted_account, rejected_account = seed.accounts(2)
        _serve(app, _environs(accepted_account, ONE, values, 20), 200)  # warm: pools, caches, memo
        _serve(app, _environs(rejected_account, REJECTED, values, 20), 400)

        kind = f"{database.kind} + {'Redis' if args.redis_url else 'in-process cache'}, {args.rules} rules"
        print(f"## Profile of the service path ({kind})\n", file=out)
        for label, account, scenario, expect in (
            ("accepted 1-change", accepted_account, ONE, 200),
            ("rejected 10-change", rejected_account, REJECTED, 400),
        ):
            statements = count_statements(app, _environs(account, scenario, values, 4), expect)
            sql = [s for s in statements if s != "COMMIT" and not s.startswith(("BEGIN", "--"))]
            checkouts = sum(1 for s in statements if s.startswith("-- pool checkout"))
            print(
                f"SQL per {label} request: {len(sql)} statements (BEGIN/COMMIT not counted), "
                f"{statements.count('COMMIT')} commits, {checkouts} connection checkouts",
                file=out,
            )
            for s in statements:
                print(f"    {s}", file=out)
        print("", file=out)

        for title, account, scenario, expect in (
            ("WSGI app, 1-change accepted requests", accepted_account, ONE, 200),
            ("WSGI app, 10-change rejected requests", rejected_account, REJECTED, 400),
        ):
            environs = _environs(account, scenario, values, args.requests)
            profiler = Profiler(interval=0.0002)
            profiler.start()
            _serve(app, environs, expect)
            session = profiler.stop()
            print(summarise(session, title, per=len(environs), unit="request") + "\n", file=out)
            if args.html:
                args.html.mkdir(parents=True, exist_ok=True)
                (args.html / f"{title.split(',')[1].strip().replace(' ', '-')}.html").write_text(profiler.output_html())

        for name, rules_dir in RULE_SETS.items():
            profiled = load_rule_set(rules_dir)
            engine = DurableRulesEngine(profiled)
            requests = corpus(profiled, per_size={10: 200})[10]
            for title, use_memo in (
                (f"adapter, {name} rules, 10-change requests (memo warm)", True),
                (f"adapter, {name} rules, 10-change requests through durable_rules (memo bypassed)", False),
            ):
                for r in requests:
                    engine.evaluate(r, use_memo=use_memo)
                profiler = Profiler(interval=0.0001)
                profiler.start()
                for _ in range(5):
                    for r in requests:
                        engine.evaluate(r, use_memo=use_memo)
                session = profiler.stop()
                print(summarise(session, title, per=5 * len(requests) * 10, unit="change") + "\n", file=out)
        container_of(app).engine.dispose()
        seed.close()
    finally:
        database.drop()
        workdir.remove()
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
