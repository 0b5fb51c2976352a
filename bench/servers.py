"""What the benchmark runs against: a throwaway database, its seed data, and gunicorn processes."""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from app.persistence.config_cache import make_config_cache
from app.persistence.db import make_engine, make_session_factory
from app.persistence.migrate import upgrade
from app.persistence.models import Account
from app.rules.language.model import RuleSet
from app.schemas.fixtures import parse_fixtures
from app.service.fixtures import load_fixtures
from app.settings import Settings
from bench.paths import PROJECT_ROOT

APP_KEY = "bench-key"
APP_SECRET = "bench-secret"
ACCESS_TOKEN = "bench-token"
OUR_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "RULES_DIR",
    "INSTANCE_DIR",
    "PROMETHEUS_MULTIPROC_DIR",
    "WEB_CONCURRENCY",
    "BENCH_",
)


def free_port() -> int:
    """A TCP port on the loopback nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Database:
    """A fresh, migrated database: a throwaway PostgreSQL database, or an SQLite file in a temporary folder."""

    def __init__(self, admin_url: str | None, workdir: Path) -> None:
        self._admin_url = admin_url
        self._name: str | None = None
        if admin_url is None:
            self.url = f"sqlite:///{workdir / 'bench.sqlite'}"
            self.kind = "SQLite"
        else:
            base = make_url(admin_url)
            if base.drivername == "postgresql":
                base = base.set(drivername="postgresql+psycopg")
            self._name = f"tps_bench_{secrets.token_hex(6)}"
            with create_engine(base, isolation_level="AUTOCOMMIT").connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self._name}"'))
            self.url = base.set(database=self._name).render_as_string(hide_password=False)
            self.kind = "PostgreSQL"
        upgrade(self.url)

    def drop(self) -> None:
        """Drop the throwaway PostgreSQL database (the SQLite file goes with its folder)."""
        if self._admin_url is None or self._name is None:
            return
        base = make_url(self._admin_url)
        if base.drivername == "postgresql":
            base = base.set(drivername="postgresql+psycopg")
        engine = create_engine(base, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)'))
        engine.dispose()
        self._name = None


class Seed:
    """The benchmark's tenant (its config enables the whole catalog) and a supply of fresh accounts."""

    def __init__(self, settings: Settings, rule_set: RuleSet) -> None:
        self.tenant = f"bench_{secrets.token_hex(4)}"  # unique: the Redis cache may be shared with others
        self._engine = make_engine(settings, request_path=False)
        tenant = {
            "id": self.tenant,
            "credentials": [{"app_key": APP_KEY, "app_secret": APP_SECRET, "access_token": ACCESS_TOKEN}],
            "saas_config": {"enabled": ["*"]},
        }
        load_fixtures(
            parse_fixtures({"tenants": [tenant]}),
            unit_of_work=_units(make_session_factory(self._engine)),
            cache=make_config_cache(settings.redis_url, settings.tenant_config_ttl_seconds),
            catalog=rule_set.catalog,
            rule_set_version=rule_set.version,
        )
        self._next = 0
        self._lock = threading.Lock()  # the soaks of both rule sets run side by side

    def accounts(self, count: int) -> list[str]:
        """`count` new active accounts with no permission set (every permission starts close)."""
        with self._lock:
            numbers = [f"BENCH{self._next + i:07d}" for i in range(count)]
            self._next += count
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            conn.execute(
                insert(Account),
                [{"tenant_id": self.tenant, "origin_id": n, "status": "active", "created_at": now} for n in numbers],
            )
        return numbers

    def close(self) -> None:
        self._engine.dispose()


@dataclass
class Gunicorn:
    """`gunicorn -w N -k sync` serving a WSGI app from the project root, in a child process."""

    app: str
    workers: int
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> Gunicorn:
        """Start gunicorn without waiting (see ready())."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(OUR_VARIABLES)}
        env.update(self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    str(self.workers),
                    "--worker-class",
                    "sync",
                    "--graceful-timeout",
                    "5",
                    self.app,
                ],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def ready(self, timeout: float = 180.0) -> Gunicorn:  # a loaded 2-core machine boots 7 workers slowly
        """Return once every worker answers HTTP."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn {self.app} exited with {self.process.returncode}:\n{self.logs()}")
            if len(self.worker_pids()) == self.workers and self._answers():
                # Workers import the app after forking: let each of them answer once before measuring.
                for _ in range(self.workers * 4):
                    self._answers()
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn {self.app} did not answer within {timeout} s:\n{self.logs()}")

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            conn.close()

    def worker_pids(self) -> list[int]:
        """The pids of the master's worker processes."""
        if self.process is None:
            return []
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return []
        return [int(c) for c in children]

    def worker_rss_kib(self) -> list[int]:
        """Resident set size of each worker, KiB."""
        sizes = []
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]))
        return sizes

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def service_env(settings: Settings) -> dict[str, str]:
    """The environment the service reads its settings from."""
    env = {
        "DATABASE_URL": settings.database_url,
        "RULES_DIR": str(settings.rules_dir),
        "INSTANCE_DIR": str(settings.instance_dir),
    }
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    return env


def bare_env(database_url: str, tenant: str, catalog: tuple[str, ...]) -> dict[str, str]:
    """The environment of the bare baseline."""
    return {"DATABASE_URL": database_url, "BENCH_TENANT": tenant, "BENCH_CATALOG": ",".join(catalog)}


class Workdir:
    """A temporary folder for the database file, instance folder and server logs."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="tps-bench-"))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def describe_machine() -> dict[str, Any]:
    """nproc, CPU model, Python version, load average."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": sys.version.split()[0],
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?",
    }


def _units(sessions):  # type: ignore[no-untyped-def]
    """The unit-of-work factory the services take, over these sessions."""
    from app.persistence.unit_of_work import UnitOfWork

    return lambda **kw: UnitOfWork(sessions, **kw)
