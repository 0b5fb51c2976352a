"""The database unreachable (SPEC §3.3 SERVICE_UNAVAILABLE): gunicorn still starts, every request that needs
the database answers 503001 quickly, and once the database is back the same workers serve again."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.persistence.migrate import upgrade
from app.settings import Settings
from tests.conftest import seed
from tests.e2e.server import Answer, LiveServer, free_port, send
from tests.support import FIXTURES, READ_PATH, SHIPPED_RULES, UPDATE_PATH, body_of, require_servers, signed_headers

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FAST = 2.0  # seconds: an unreachable database is reported, not waited on


def timed(url: str, method: str, target: str, body: bytes | None, headers: dict[str, str]) -> tuple[Answer, float]:
    started = time.monotonic()
    answer = send(url, method, target, body, headers, timeout=30)
    return answer, time.monotonic() - started


def post_update(url: str, *changes: tuple[str, str]) -> tuple[Answer, float]:
    body = body_of("ACC-2", *changes, nonce=uuid.uuid4().hex)  # never a replay of an earlier POST
    return timed(url, "POST", UPDATE_PATH, body, signed_headers("POST", UPDATE_PATH, body))


def get_read(url: str) -> tuple[Answer, float]:
    query = "account_no=ACC-2"
    return timed(url, "GET", f"{READ_PATH}?{query}", None, signed_headers("GET", READ_PATH, query=query))


def assert_unavailable(answer: Answer, took: float, *, update: bool) -> None:
    assert answer.status == 503, answer
    assert answer.envelope["code"] == 503001, answer
    assert answer.envelope["message"], answer
    if update:
        assert answer.envelope["data"] == {"failure_index": 0}, answer
    assert answer.trace_id, answer
    assert "Traceback" not in str(answer.envelope), answer
    assert took < FAST, f"503 took {took:.2f} s"


def worker_pids(master: int) -> set[int]:
    """The gunicorn master's children."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


# --- (a) nothing listening at all -------------------------------------------------------------------------


def test_service_starts_and_answers_503_when_the_database_port_is_closed(tmp_path):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    settings = Settings(database_url=url, rules_dir=SHIPPED_RULES, instance_dir=tmp_path / "instance")
    server = LiveServer(settings=settings, log_path=tmp_path / "gunicorn.log").start()
    try:
        for _ in range(4):  # more than one request per worker, pooled state included
            answer, took = post_update(server.url, ("stock.US", "open"))
            assert_unavailable(answer, took, update=True)
            answer, took = get_read(server.url)
            assert_unavailable(answer, took, update=False)

        started = time.monotonic()
        missing = send(server.url, "GET", "/no/such/route", None, {})
        assert (missing.status, missing.envelope["code"]) == (404, 404000), missing
        assert time.monotonic() - started < FAST

        assert server.process is not None and server.process.poll() is None, server.logs()
        assert "Traceback" not in server.logs()
    finally:
        server.stop()


# --- (b) a real PostgreSQL that stops and comes back ------------------------------------------------------


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    message = "no PostgreSQL server binaries (initdb, pg_ctl) on this machine"
    if require_servers():
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class PrivatePostgres:
    """A PostgreSQL instance of this test's own (never the machine's shared cluster)."""

    bin_dir: Path
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, (command, done.stdout, done.stderr, self.server_log())

    def server_log(self) -> str:
        log = self.data_dir.parent / "server.log"
        return log.read_text(errors="replace")[-4000:] if log.exists() else ""

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data_dir), "--auth=trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-l",
            str(self.data_dir.parent / "server.log"),
            "-w",
            "-t",
            "30",
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop")

    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    bin_dir = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="tps-pg-", dir="/tmp"))  # short: the socket path must fit
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    os.chmod(root, 0o700)
    instance = PrivatePostgres(bin_dir, root / "data", free_port())
    try:
        instance.init()
        instance.start()
        yield instance
    finally:
        try:
            if instance.running():
                instance.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.mark.postgres
def test_postgres_stopped_and_restarted_under_a_running_service(private_postgres, tmp_path):
    settings = Settings(database_url=private_postgres.url, rules_dir=SHIPPED_RULES, instance_dir=tmp_path / "instance")
    upgrade(settings.database_url)
    seed(settings, FIXTURES)
    server = LiveServer(settings=settings, log_path=tmp_path / "gunicorn.log").start()
    try:
        assert server.process is not None
        master = server.process.pid
        answer, _ = post_update(server.url, ("stock.US", "open"))
        assert (answer.status, answer.envelope["code"]) == (200, 0), answer
        answer, _ = get_read(server.url)
        assert answer.status == 200, answer
        # Both workers forked (the LiveServer answers as soon as one serves): these pids must survive the outage.
        deadline = time.monotonic() + 30
        while len(worker_pids(master)) != server.workers and time.monotonic() < deadline:
            get_read(server.url)
        workers = worker_pids(master)
        assert len(workers) == server.workers, workers

        private_postgres.stop()
        slowest = 0.0
        for _ in range(4):
            answer, took = post_update(server.url, ("stock.US", "close"))
            assert_unavailable(answer, took, update=True)
            slowest = max(slowest, took)
            answer, took = get_read(server.url)
            assert_unavailable(answer, took, update=False)
            slowest = max(slowest, took)

        private_postgres.start()
        back = time.monotonic()
        attempts: list[Answer] = []
        while time.monotonic() - back < 10:
            answer, _ = get_read(server.url)
            attempts.append(answer)
            if answer.status == 200:
                break
            assert (answer.status, answer.envelope["code"]) == (503, 503001), answer  # not yet: still 503
            time.sleep(0.1)  # poll interval
        assert attempts[-1].status == 200, attempts
        print(
            f"\nslowest 503 while down: {slowest:.3f} s; first 200 after restart: attempt {len(attempts)}, "
            f"{time.monotonic() - back:.2f} s"
        )
        assert {p["permission_type"]: p["permission_status"] for p in attempts[-1].envelope["data"]["permissions"]}[
            "stock.US"
        ] == "open"  # the update sent while the database was down changed nothing
        # Every request after that succeeds, whichever worker takes it.
        for i in range(4):
            answer, _ = post_update(server.url, ("stock.SG", "open" if i % 2 == 0 else "close"))
            assert (answer.status, answer.envelope["code"]) == (200, 0), answer
            answer, _ = get_read(server.url)
            assert answer.status == 200, answer
        answer, _ = post_update(server.url, ("stock.US", "close"))
        assert (answer.status, answer.envelope["code"]) == (200, 0), answer

        # No restart: the same master and the same workers throughout.
        assert server.process.poll() is None, server.logs()
        assert server.process.pid == master
        assert worker_pids(master) == workers, (workers, server.logs()[-3000:])
        assert "Traceback" not in server.logs()
    finally:
        server.stop()
