"""Two hosts (two gunicorn servers, two workers each) behind one balancer share one PostgreSQL database and one
Redis: replay refusal, tenant config changes and idempotency keys hold across hosts (SPEC §3.4, §4, §6, §8)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.rules.language.loader import load_rule_set
from app.settings import Settings
from tests.conftest import need_server
from tests.e2e.server import Answer, LiveServer, log_records, send
from tests.support import READ_PATH, UPDATE_PATH, body_of, permctl, require_servers, signed_headers

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

SG_PATTERNS = ("account.*", "stock.*", "options.US", "trade.*")  # sg_mexc's config in tests.support.FIXTURES
SUCCESS = {"code": 0, "message": "success", "data": {"failure_index": 0}}
MAX_PROBES = 200  # requests per host while waiting for both of its workers to have served one
BURST = 4  # requests in flight at once while probing

_sequence = itertools.count(1)


def stamp() -> str:
    """A fresh X-Timestamp: now, with a decimal part unique in this module so no two signatures collide."""
    return f"{int(time.time())}.{next(_sequence):06d}"


def trace() -> str:
    return f"two-hosts-{next(_sequence)}"


def post(server: LiveServer, body: bytes, *, headers: dict[str, str] | None = None) -> tuple[Answer, dict[str, str]]:
    """A freshly signed POST of body to server: its answer and the exact headers sent."""
    sent = signed_headers("POST", UPDATE_PATH, body, timestamp=stamp())
    sent["X-Trace-Id"] = trace()
    sent.update(headers or {})
    return send(server.url, "POST", UPDATE_PATH, body, sent), sent


def read(server: LiveServer, account_no: str) -> Answer:
    query = f"account_no={account_no}"
    headers = signed_headers("GET", READ_PATH, query=query)
    headers["X-Trace-Id"] = trace()
    answer = send(server.url, "GET", f"{READ_PATH}?{query}", None, headers)
    assert (answer.status, answer.envelope["code"]) == (200, 0), answer
    return answer


def listed(server: LiveServer, account_no: str) -> list[tuple[str, str]]:
    """(permission_type, status) of every permission GET lists, in the order listed."""
    return [
        (p["permission_type"], p["permission_status"]) for p in read(server, account_no).envelope["data"]["permissions"]
    ]


def pid_of(server: LiveServer, trace_id: str) -> int:
    """The worker that logged the request carrying trace_id."""
    pids = {r["pid"] for r in log_records(server.log_path) if r.get("trace_id") == trace_id and "pid" in r}
    assert len(pids) == 1, (trace_id, pids)
    return pids.pop()


def audit_count(settings: Settings) -> int:
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM permission_audit")).scalar_one())
    finally:
        engine.dispose()


def assert_refused(answer: Answer, status: int, code: int, rule_id: str | None = None, failure_index: int = 0) -> None:
    assert (answer.status, answer.envelope["code"], answer.envelope["data"]["failure_index"]) == (
        status,
        code,
        failure_index,
    ), answer
    if rule_id is not None:
        assert answer.envelope["data"]["rule_id"] == rule_id, answer


@pytest.fixture
def shared(seeded: Settings) -> Settings:
    """The seeded settings, which must be PostgreSQL and Redis: two hosts cannot share SQLite or a process."""
    need_server("TEST_DATABASE_URL", "two-host")
    need_server("TEST_REDIS_URL", "two-host")
    if make_url(seeded.database_url).get_backend_name() != "postgresql":
        message = f"two-host test needs a PostgreSQL TEST_DATABASE_URL, not {make_url(seeded.database_url)!r}"
        if require_servers():
            pytest.fail(message)
        pytest.skip(message)
    assert seeded.redis_url
    return seeded


@pytest.fixture
def hosts(shared: Settings, tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Host A and host B: each its own gunicorn (-w 2), port and instance directory; one database, one Redis."""
    servers = [
        LiveServer(
            settings=shared.with_overrides(instance_dir=tmp_path / f"host-{name}"),
            log_path=tmp_path / f"host-{name}.log",
            workers=2,
        )
        for name in ("a", "b")
    ]
    assert servers[0].port != servers[1].port
    started: list[LiveServer] = []
    try:
        for server in servers:
            started.append(server.start())
        yield servers[0], servers[1]
    finally:
        for server in started:
            server.stop()


def test_a_post_accepted_by_one_host_is_a_replay_on_the_other(hosts: tuple[LiveServer, LiveServer], shared: Settings):
    a, b = hosts
    before = audit_count(shared)
    for first, second, permission_type in ((a, b, "stock.US"), (b, a, "stock.HK")):
        body = body_of("ACC-2", (permission_type, "open"))
        accepted, headers = post(first, body)
        assert (accepted.status, accepted.envelope) == (200, SUCCESS), accepted

        again = send(second.url, "POST", UPDATE_PATH, body, dict(headers))  # the same bytes and headers
        assert_refused(again, 401, 401001)
        assert "replay" in again.envelope["message"].lower(), again

    assert audit_count(shared) == before + 2  # the replays wrote nothing
    for server in hosts:
        statuses = dict(listed(server, "ACC-2"))
        assert statuses["stock.US"] == statuses["stock.HK"] == "open"


def requests_until_both_workers(server: LiveServer, make_request) -> list[Answer]:  # type: ignore[no-untyped-def]
    """Call make_request() (one request to server, returning its answer) until both workers of server have
    served one; the answers, in order."""
    answers: list[Answer] = []
    pids: set[int] = set()
    # Several requests in flight at once: a sync worker busy with one leaves the next to its sibling, so both
    # workers are reached even though the one that just answered tends to win the next accept() (its sibling
    # is asleep in select()); a request takes a few milliseconds, so two in flight were not always enough.
    with ThreadPoolExecutor(max_workers=BURST) as pool:
        while len(pids) < 2:
            assert len(answers) < MAX_PROBES, f"{MAX_PROBES} requests to {server.url} were all served by {pids}"
            burst = [pool.submit(make_request) for _ in range(BURST)]
            for future in burst:
                answer = future.result(timeout=60)
                answers.append(answer)
                pids.add(pid_of(server, answer.trace_id))
    return answers


def test_a_tenant_config_change_is_honoured_by_both_hosts_at_once(
    hosts: tuple[LiveServer, LiveServer], shared: Settings
):
    a, b = hosts
    catalog = load_rule_set(shared.rules_dir).catalog
    everything, stocks = catalog.expand(SG_PATTERNS), catalog.expand(("stock.*",))
    env = {"DATABASE_URL": shared.database_url, "REDIS_URL": shared.redis_url or ""}
    state = {"account.trade": "close", "stock.SG": "close"}  # ACC-2 as the requests below leave it

    # Every worker of both hosts has read (and cached) the full config; account.trade opens on A.
    for server in hosts:
        for answer in requests_until_both_workers(server, lambda s=server: read(s, "ACC-2")):
            assert [p["permission_type"] for p in answer.envelope["data"]["permissions"]] == list(everything)
    opened, _ = post(a, body_of("ACC-2", ("account.trade", "open")))
    assert (opened.status, opened.envelope) == (200, SUCCESS), opened
    state["account.trade"] = "open"

    done = permctl("tenant", "set-config", "sg_mexc", "stock.*", env=env)
    assert done.returncode == 0, done.stderr
    assert "account.trade" in done.stdout  # listed among what it disables

    # The very next request on each host, and then on each of its workers, sees the new config.
    flips = itertools.cycle(("close", "open"))
    for server in (b, a):

        def refused_change(s: LiveServer = server) -> Answer:
            answer, _ = post(s, body_of("ACC-2", ("stock.SG", "open"), ("account.trade", next(flips))))
            assert_refused(answer, 400, 400101, "type-enabled-for-tenant", failure_index=1)
            return answer

        requests_until_both_workers(server, refused_change)
        answer, _ = post(server, body_of("ACC-2", ("account.trade", "close")))
        assert_refused(answer, 400, 400101, "type-enabled-for-tenant")
        assert "not enabled for this tenant" in answer.envelope["message"], answer
        for listing in requests_until_both_workers(server, lambda s=server: read(s, "ACC-2")):
            assert listing.envelope["data"]["permissions"] and [
                p["permission_type"] for p in listing.envelope["data"]["permissions"]
            ] == list(stocks), listing
    # What the config still enables works on both hosts; the hidden account.trade kept its state.
    for server, status in ((a, "open"), (b, "close")):
        answer, _ = post(server, body_of("ACC-2", ("stock.SG", status)))
        assert (answer.status, answer.envelope) == (200, SUCCESS), answer
        state["stock.SG"] = status
        for other in hosts:
            assert listed(other, "ACC-2") == [(t, state.get(t, "close")) for t in stocks]

    done = permctl("tenant", "set-config", "sg_mexc", *SG_PATTERNS, env=env)
    assert done.returncode == 0, done.stderr

    for server in (a, b):
        assert listed(server, "ACC-2") == [(t, state.get(t, "close")) for t in everything]
    # account.trade is usable again on both hosts, from the state it was left in (open).
    for server, status in ((b, "close"), (a, "open"), (b, "close")):
        answer, _ = post(server, body_of("ACC-2", ("account.trade", status)))
        assert (answer.status, answer.envelope) == (200, SUCCESS), answer
        state["account.trade"] = status
    for server in hosts:
        for listing in requests_until_both_workers(server, lambda s=server: read(s, "ACC-2")):
            assert [
                (p["permission_type"], p["permission_status"]) for p in listing.envelope["data"]["permissions"]
            ] == [(t, state.get(t, "close")) for t in everything], listing


def test_an_idempotency_key_used_on_one_host_is_honoured_on_the_other(
    hosts: tuple[LiveServer, LiveServer], shared: Settings
):
    a, b = hosts
    key = {"Idempotency-Key": "two-hosts-order-1"}
    body = body_of("ACC-2", ("options.US", "open"), ("trade.fix", "open"))

    first, first_headers = post(a, body, headers=key)
    assert (first.status, first.envelope) == (200, SUCCESS), first
    assert "Idempotency-Replayed" not in first.headers, first
    audited = audit_count(shared)
    listing = read(b, "ACC-2").envelope["data"]

    repeat, repeat_headers = post(b, body, headers=key)  # the same request, signed afresh
    assert repeat_headers["X-Api-Signature"] != first_headers["X-Api-Signature"]
    assert (repeat.status, repeat.envelope) == (first.status, first.envelope), repeat
    assert repeat.headers.get("Idempotency-Replayed") == "true", repeat
    assert audit_count(shared) == audited
    assert read(a, "ACC-2").envelope["data"] == listing  # statuses and updated_at untouched

    for server in (b, a):
        other, _ = post(server, body_of("ACC-2", ("options.US", "close")), headers=key)
        assert_refused(other, 422, 400105)
        assert "Idempotency-Replayed" not in other.headers, other
    assert audit_count(shared) == audited
    assert read(b, "ACC-2").envelope["data"] == listing
    statuses = dict(listed(a, "ACC-2"))
    assert statuses["options.US"] == statuses["trade.fix"] == "open"


def both_at_once(*calls):  # type: ignore[no-untyped-def]
    """Run each call (no arguments, returns an answer) on its own thread, released together; their answers."""
    barrier = threading.Barrier(len(calls))

    def released(call):  # type: ignore[no-untyped-def]
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [future.result(timeout=60) for future in [pool.submit(released, call) for call in calls]]


def is_replay_refusal(answer: Answer) -> bool:
    return (answer.status, answer.envelope["code"]) == (401, 401001) and "replay" in answer.envelope["message"]


def test_one_signed_post_sent_to_both_hosts_at_once_is_accepted_exactly_once(
    hosts: tuple[LiveServer, LiveServer], shared: Settings
):
    """The signature is recorded in each request's own transaction: the two race on its unique key, and the loser
    waits for the winner's commit and is refused as a replay — whichever host and worker each lands on."""
    a, b = hosts
    before = audit_count(shared)
    rounds = 12
    for n in range(rounds):
        body = body_of("ACC-2", ("stock.US", "open" if n % 2 == 0 else "close"), nonce=n)
        headers = signed_headers("POST", UPDATE_PATH, body, timestamp=stamp())
        headers["X-Trace-Id"] = trace()
        answers = both_at_once(
            *(
                lambda s=server, sent=body, h=headers: send(s.url, "POST", UPDATE_PATH, sent, dict(h))
                for server in (a, b)
            )
        )
        accepted = [x for x in answers if (x.status, x.envelope) == (200, SUCCESS)]
        replays = [x for x in answers if is_replay_refusal(x)]
        assert (len(accepted), len(replays)) == (1, 1), answers
    assert audit_count(shared) == before + rounds  # one write per signed request, never two


def test_one_idempotency_key_sent_to_both_hosts_at_once_is_executed_once(
    hosts: tuple[LiveServer, LiveServer], shared: Settings
):
    a, b = hosts
    before = audit_count(shared)
    rounds = 6
    for n in range(rounds):
        key = {"Idempotency-Key": f"two-hosts-race-{n}"}
        status = "open" if n % 2 == 0 else "close"
        body = body_of("ACC-2", ("options.US", status), ("trade.fix", status))
        answers = [
            answer
            for answer, _ in both_at_once(
                *(lambda s=server, sent=body, k=key: post(s, sent, headers=k) for server in (a, b))
            )
        ]
        first = [x for x in answers if x.status == 200 and "Idempotency-Replayed" not in x.headers]
        repeats = [
            x
            for x in answers
            if (x.status == 200 and x.headers.get("Idempotency-Replayed") == "true")
            or (x.status, x.envelope["code"]) == (409, 409002)  # still in flight past the bound: retry later
        ]
        assert (len(first), len(repeats)) == (1, 1), answers
        assert first[0].envelope == SUCCESS, answers
    assert audit_count(shared) == before + 2 * rounds  # each key's two changes, written once
    statuses = dict(listed(b, "ACC-2"))
    assert statuses["options.US"] == statuses["trade.fix"] == "close"


def test_a_revoked_key_is_refused_by_every_worker_of_both_hosts_at_once(
    hosts: tuple[LiveServer, LiveServer], shared: Settings
):
    """Each worker caches credentials; revoke-key moves the tenant's credentials version, which the next request
    of every worker meets in its own transaction (the signature record for a POST, the account row for a read)."""
    a, b = hosts
    env = {"DATABASE_URL": shared.database_url, "REDIS_URL": shared.redis_url or ""}
    flips = itertools.cycle(("open", "close"))

    # Every worker of both hosts has authenticated demo-key (and so holds it in its cache), and accepted a POST.
    for server in hosts:
        requests_until_both_workers(server, lambda s=server: read(s, "ACC-2"))
    for server, status in ((a, "open"), (b, "close")):
        answer, _ = post(server, body_of("ACC-2", ("stock.HK", status)))
        assert (answer.status, answer.envelope) == (200, SUCCESS), answer

    done = permctl("tenant", "revoke-key", "demo-key", env=env)
    assert done.returncode == 0, done.stderr
    audited = audit_count(shared)

    def refused(answer: Answer) -> Answer:
        assert (answer.status, answer.envelope["code"]) == (401, 401001), answer
        assert "replay" not in answer.envelope["message"], answer
        return answer

    def refused_post(s: LiveServer) -> Answer:
        return refused(post(s, body_of("ACC-2", ("stock.HK", next(flips))))[0])

    def refused_read(s: LiveServer, account_no: str = "ACC-2") -> Answer:
        query = f"account_no={account_no}"
        headers = signed_headers("GET", READ_PATH, query=query)
        headers["X-Trace-Id"] = trace()
        return refused(send(s.url, "GET", f"{READ_PATH}?{query}", None, headers))

    for server in (b, a):
        requests_until_both_workers(server, lambda s=server: refused_post(s))
        requests_until_both_workers(server, lambda s=server: refused_read(s))
        refused_read(server, "NOBODY")  # not a 404: the key is refused before the account is looked for
    assert audit_count(shared) == audited
