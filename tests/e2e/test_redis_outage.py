"""Redis down, frozen or holding a corrupt entry never fails a request, and the service uses Redis again by itself
once it is back (SPEC §6). Each test runs its own redis-server, so killing it disturbs nobody else.

A worker keeps its own copy of each (tenant, config version) it has read (app/persistence/config_cache.py
LayeredConfigCache) and asks Redis only for those it lacks. So the tests make workers need Redis: a config
change during the outage (every copy is then of an old version), a tenant no worker has read yet, an entry
corrupted before any worker read it.
"""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from app.settings import Settings
from tests.e2e.server import Answer, LiveServer, free_port, log_records, send
from tests.support import (
    DEMO,
    OTHER,
    READ_PATH,
    UPDATE_PATH,
    Credentials,
    body_of,
    permctl,
    require_servers,
    signed_headers,
)

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow]

KEY_PREFIX = "tps:tenant-config:"
SG_PATTERNS = ["account.*", "stock.*", "options.US", "trade.*"]  # sg_mexc's config in tests.support.FIXTURES
BREAKER_SECONDS = 2.0  # REDIS_BREAKER_SECONDS for the server: how long it leaves a failed Redis alone
EACH_BOUND = 2.0  # no request may take longer than this, Redis or not
FIRST_FIVE_BOUND = 5.0  # the five requests right after Redis goes away, together
RECOVERY_DEADLINE = 30.0
SUCCESS = {"code": 0, "message": "success", "data": {"failure_index": 0}}
# Permissions of ACC-2 the traffic flips in turn. options.US, trade.* and account.* are enabled by sg_mexc's
# config only, so a request that used a wrong config would be refused.
TYPES = ("stock.US", "options.US", "trade.fix", "account.deposit", "stock.HK", "trade.client")
OTHER_TYPES = ("stock.US", "stock.HK", "stock.SG")  # of OTHER-1 (hk_other: stock.*)


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        message = "the Redis outage tests need the redis-server binary"
        if require_servers():
            pytest.fail(message + " (REQUIRE_SERVERS=1: servers are mandatory here)")
        pytest.skip(message)
    return path


@dataclass
class PrivateRedis:
    """A redis-server of this test alone, without persistence, on a port of its own."""

    binary: str
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                assert self.process.poll() is None, f"redis-server exited:\n{self.log_path.read_text()}"
                try:
                    if client.ping():
                        return self
                except redis.ConnectionError:
                    assert time.monotonic() < deadline, f"redis-server did not answer within {timeout} s"
                    time.sleep(0.05)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL: no goodbye to its clients."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case a test froze it
            self.process.kill()
            self.process.wait(timeout=10)

    def config_keys(self, tenant: str = "") -> list[bytes]:
        with self.client() as client:
            return sorted(client.scan_iter(match=f"{KEY_PREFIX}{tenant}*", count=1000))


@dataclass
class Traffic:
    """Accepted changes of one account, one permission type after another, each predicted and timed."""

    server: LiveServer
    account_no: str = "ACC-2"
    creds: Credentials = DEMO
    types: tuple[str, ...] = TYPES
    state: dict[str, str] = field(default_factory=dict)
    sent: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    durations: list[float] = field(default_factory=list)

    def change(self) -> Answer:
        """One change, which must succeed within EACH_BOUND; the answer."""
        n = next(self.sent)
        permission_type = self.types[(n - 1) % len(self.types)]
        wanted = "close" if self.state.get(permission_type, "close") == "open" else "open"
        body = body_of(self.account_no, (permission_type, wanted))
        headers = signed_headers("POST", UPDATE_PATH, body, creds=self.creds, timestamp=f"{int(time.time())}.{n:06d}")
        headers["X-Trace-Id"] = f"redis-outage-{self.account_no}-{n}"
        started = time.monotonic()
        answer = send(self.server.url, "POST", UPDATE_PATH, body, headers, timeout=30)
        took = time.monotonic() - started
        self.durations.append(took)
        assert (answer.status, answer.envelope) == (200, SUCCESS), (permission_type, wanted, answer)
        assert took < EACH_BOUND, f"request {n} ({permission_type} → {wanted}) took {took:.2f} s"
        self.state[permission_type] = wanted
        return answer

    def until_both_workers(self, limit: int = 60) -> None:
        """Changes until both gunicorn workers have served one (so each holds a Redis connection)."""
        pids: set[int] = set()
        query = f"account_no={self.account_no}"
        with ThreadPoolExecutor(max_workers=3) as pool:
            for n in range(limit):
                # Reads in flight beside each change: a busy sync worker leaves the next to its sibling.
                readings = []
                for m in range(3):
                    headers = signed_headers("GET", READ_PATH, query=query, creds=self.creds)
                    headers["X-Trace-Id"] = f"redis-outage-probe-{self.account_no}-{n}-{m}"
                    readings.append(
                        pool.submit(send, self.server.url, "GET", f"{READ_PATH}?{query}", None, headers, 30)
                    )
                answer = self.change()
                probes = [reading.result(timeout=60) for reading in readings]
                assert all(probe.status == 200 for probe in probes), probes
                traces = {answer.trace_id, *(probe.trace_id for probe in probes)}
                pids |= {
                    r["pid"] for r in log_records(self.server.log_path) if r.get("trace_id") in traces and "pid" in r
                }
                if len(pids) == 2:
                    return
        raise AssertionError(f"{limit} requests were all served by {pids}")

    def for_at_least(self, seconds: float) -> None:
        """Changes back to back for `seconds` (the traffic itself is the clock)."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.change()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(redis_server_binary(), tmp_path / "redis.log").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def service(seeded: Settings, private_redis: PrivateRedis, tmp_path: Path) -> Iterator[LiveServer]:
    """gunicorn -w 2 on this test's database, with the private Redis as its cache."""
    server = LiveServer(
        settings=seeded.with_overrides(redis_url=private_redis.url),
        log_path=tmp_path / "gunicorn.log",
        extra_env={"REDIS_BREAKER_SECONDS": str(BREAKER_SECONDS)},
    ).start()
    try:
        yield server
    finally:
        server.stop()


def move_config_version(service: LiveServer, tenant: str, patterns: list[str]) -> None:
    """`permctl tenant set-config` with the same patterns: a new config version, so every worker's copy is stale."""
    env = {"DATABASE_URL": service.settings.database_url, "REDIS_URL": service.settings.redis_url or ""}
    done = permctl("tenant", "set-config", tenant, *patterns, env=env)
    assert done.returncode == 0, done.stderr


def config_key(service: LiveServer, tenant: str) -> str:
    """The Redis key of the tenant's current config version."""
    engine = create_engine(service.settings.database_url)
    try:
        with engine.connect() as conn:
            version = conn.execute(text("SELECT config_version FROM tenants WHERE id = :t"), {"t": tenant}).scalar()
    finally:
        engine.dispose()
    return f"{KEY_PREFIX}{tenant}:{version}"


def wait_for_cache_use(traffic: Traffic, private_redis: PrivateRedis, tenant: str) -> float:
    """Send traffic's changes until a config key of tenant is in Redis again; the seconds that took."""
    started = time.monotonic()
    while not private_redis.config_keys(f"{tenant}:"):
        assert time.monotonic() - started < RECOVERY_DEADLINE, (
            f"Redis is back but the service has not cached a tenant config there after {RECOVERY_DEADLINE} s"
        )
        traffic.change()
    return time.monotonic() - started


def test_requests_succeed_while_redis_is_killed_and_the_cache_is_used_again_after(
    service: LiveServer, private_redis: PrivateRedis
):
    traffic = Traffic(service)
    traffic.until_both_workers()
    assert private_redis.config_keys("sg_mexc:"), "with Redis up the tenant config is cached there"

    private_redis.kill()
    move_config_version(service, "sg_mexc", SG_PATTERNS)  # every worker must now look the config up, Redis gone
    first_five = time.monotonic()
    for _ in range(5):
        traffic.change()
    first_five = time.monotonic() - first_five
    assert first_five < FIRST_FIVE_BOUND, f"the 5 requests right after the kill took {first_five:.2f} s"
    traffic.until_both_workers()  # both workers have found the new version's config without Redis
    traffic.for_at_least(2.5 * BREAKER_SECONDS)

    private_redis.start()  # the same port, empty
    assert not private_redis.config_keys()
    # hk_other's config: no worker has a copy, so the first worker to need it asks Redis and shares it there.
    took = wait_for_cache_use(Traffic(service, "OTHER-1", OTHER, OTHER_TYPES), private_redis, "hk_other")
    keys = private_redis.config_keys("hk_other:")
    assert len(keys) == 1, keys
    with private_redis.client() as client:
        assert json.loads(client.get(keys[0])) == ["stock.*"]
    print(
        f"\n{len(traffic.durations)} changes, slowest {max(traffic.durations):.3f} s; the 5 after the kill "
        f"took {first_five:.3f} s; the cache was used again {took:.2f} s after Redis came back"
    )


def test_requests_succeed_while_redis_hangs(service: LiveServer, private_redis: PrivateRedis):
    """A frozen Redis (SIGSTOP) accepts connections and never answers: only timeouts tell."""
    traffic = Traffic(service)
    traffic.until_both_workers()

    private_redis.signal(signal.SIGSTOP)
    try:
        move_config_version(service, "sg_mexc", SG_PATTERNS)  # every worker must now look the config up
        first_five = time.monotonic()
        for _ in range(5):
            traffic.change()
        first_five = time.monotonic() - first_five
        assert first_five < FIRST_FIVE_BOUND, f"the 5 requests right after Redis hung took {first_five:.2f} s"
        traffic.until_both_workers()  # both workers have found the new version's config past the frozen Redis
        traffic.for_at_least(2.5 * BREAKER_SECONDS)
    finally:
        private_redis.signal(signal.SIGCONT)

    # Redis now also runs the commands that timed out while it hung, so only a key written after this proves the
    # service uses it again: hk_other's, which no request touched before.
    assert not private_redis.config_keys("hk_other:")
    took = wait_for_cache_use(Traffic(service, "OTHER-1", OTHER, OTHER_TYPES), private_redis, "hk_other")
    print(
        f"\n{len(traffic.durations)} changes, slowest {max(traffic.durations):.3f} s; the 5 after Redis hung "
        f"took {first_five:.3f} s; the cache was used again {took:.2f} s after Redis woke up"
    )


CORRUPT = {
    "not-utf8": b"\xff\xfe\xfd",
    "not-json": b"account.*, stock.*",
    "json-object": b'{"enabled": ["stock.*"]}',
    "json-string": b'"stock.*"',
    "list-of-numbers": b"[1, 2, 3]",
    "truncated": b'["account.*", "sto',
    "deeply-nested": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("value", list(CORRUPT.values()), ids=list(CORRUPT))
def test_a_corrupt_cache_entry_is_replaced_by_the_next_request(
    service: LiveServer, private_redis: PrivateRedis, value: bytes
):
    key = config_key(service, "sg_mexc")
    with private_redis.client() as client:
        client.set(key, value, ex=300)  # before any worker has read sg_mexc's config
        traffic = Traffic(service, types=("options.US", *TYPES[2:]))
        traffic.change()  # options.US: refused if the service believed the corrupt entry
        assert json.loads(client.get(key)) == SG_PATTERNS
        traffic.until_both_workers()  # the other worker too
        assert json.loads(client.get(key)) == SG_PATTERNS
    assert private_redis.config_keys("sg_mexc:") == [key.encode()]


def test_a_cache_entry_of_the_wrong_redis_type_is_replaced_by_the_next_request(
    service: LiveServer, private_redis: PrivateRedis
):
    """A hash where a string belongs: Redis answers WRONGTYPE. That is a bad entry, not a Redis outage."""
    key = config_key(service, "sg_mexc")
    with private_redis.client() as client:
        client.hset(key, mapping={"enabled": "stock.*"})  # before any worker has read sg_mexc's config
        Traffic(service, types=("options.US", *TYPES[2:])).change()  # refused if the hash were believed
        assert client.type(key) == b"string", client.type(key)
        assert json.loads(client.get(key)) == SG_PATTERNS
    # The rest of the cache keeps working: another tenant's config is cached as usual.
    Traffic(service, "OTHER-1", OTHER, OTHER_TYPES).change()
    assert private_redis.config_keys("hk_other:"), private_redis.config_keys()
