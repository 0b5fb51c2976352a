"""permctl serve as operators run it: the packaged gunicorn settings, BIND / WEB_CONCURRENCY, and a demo that
only ever writes to its own SQLite file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.persistence.migrate import upgrade
from tests.e2e.server import free_port, send
from tests.support import DEMO, READ_PATH, UPDATE_PATH, body_of, permctl, signed_headers

pytestmark = pytest.mark.e2e


def _environment(extra: dict[str, str]) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            (
                "DATABASE_URL",
                "REDIS_URL",
                "RULES_DIR",
                "INSTANCE_DIR",
                "BIND",
                "WEB_CONCURRENCY",
                "PROMETHEUS_MULTIPROC_DIR",
            )
        )
    }
    base.update(extra)
    return base


@contextmanager
def serving(args: list[str], cwd: Path, env: dict[str, str], port: int) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`permctl serve ARGS` until /healthz answers on port; yields the process and what it printed first."""
    out = cwd / "serve.out"
    with out.open("w") as sink:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("permctl")), "serve", *args],
            cwd=cwd,
            env=_environment(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"permctl serve exited {process.returncode}:\n{out.read_text()}"
            assert time.monotonic() < deadline, f"nothing answered on {port}:\n{out.read_text()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        yield process, out.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


def _workers(master: int, expected: int) -> int:
    """How many worker processes the gunicorn master has (waiting a bounded time for late ones to fork)."""
    deadline = time.monotonic() + 20
    while True:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if len(children) >= expected or time.monotonic() > deadline:
            return len(children)
        time.sleep(0.1)


def test_demo_serves_its_own_sqlite_database_and_the_printed_call_works(tmp_path: Path):
    port = free_port()
    elsewhere = tmp_path / "production.sqlite"
    with serving(
        ["--demo", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        tmp_path,
        {"DATABASE_URL": f"sqlite:///{elsewhere}"},
        port,
    ) as (_, printed):
        assert "Serving the trade-permission API at http://127.0.0.1:" in printed
        assert f"LONGBRIDGE_HTTP_URL=http://127.0.0.1:{port}" in printed
        body = body_of("L6VQEU00121996", ("stock.US", "open"))
        answer = send(
            f"http://127.0.0.1:{port}", "POST", UPDATE_PATH, body, signed_headers("POST", UPDATE_PATH, body, creds=DEMO)
        )
        assert (answer.status, answer.envelope["code"]) == (200, 0)
    assert (tmp_path / "instance" / "demo.sqlite").is_file()
    assert not elsewhere.exists(), "the demo must never write its credentials into DATABASE_URL"


def test_demo_refuses_a_non_sqlite_database_url(tmp_path: Path):
    result = permctl("serve", "--demo", env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test"}, cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: --demo uses its own SQLite database and never loads demo credentials elsewhere: unset DATABASE_URL "
        "(it names a non-SQLite database)"
    ]
    assert not (tmp_path / "instance").exists()


def test_serve_honours_bind_and_web_concurrency_and_prints_no_demo_banner(tmp_path: Path):
    database = tmp_path / "service.sqlite"
    upgrade(f"sqlite:///{database}")
    port = free_port()
    env = {"DATABASE_URL": f"sqlite:///{database}", "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "3"}
    with serving([], tmp_path, env, port) as (process, printed):
        assert _workers(process.pid, 3) == 3
        assert printed.splitlines()[0] == (
            f"Serving the trade-permission API at http://127.0.0.1:{port} with 3 "
            "workers; GET /readyz says when it is ready."
        )
        assert "demo" not in printed.lower()
        query = "account_no=nobody"
        answer = send(
            f"http://127.0.0.1:{port}",
            "GET",
            f"{READ_PATH}?{query}",
            None,
            signed_headers("GET", READ_PATH, query=query),
        )
        assert (answer.status, answer.envelope["code"]) == (401, 401001)  # served; the demo key is not loaded


def test_command_line_options_win_over_the_environment(tmp_path: Path):
    database = tmp_path / "service.sqlite"
    upgrade(f"sqlite:///{database}")
    port = free_port()
    env = {"DATABASE_URL": f"sqlite:///{database}", "BIND": "127.0.0.1:1", "WEB_CONCURRENCY": "5"}
    with serving(["--bind", f"127.0.0.1:{port}", "-w", "1"], tmp_path, env, port) as (process, _):
        assert _workers(process.pid, 1) == 1


def test_workers_option_wins_over_a_web_concurrency_gunicorn_could_not_read(tmp_path: Path):
    """gunicorn parses WEB_CONCURRENCY before any config: `two` was a traceback there (issue 18 #7)."""
    database = tmp_path / "service.sqlite"
    upgrade(f"sqlite:///{database}")
    port = free_port()
    env = {"DATABASE_URL": f"sqlite:///{database}", "WEB_CONCURRENCY": "two"}
    with serving(["--bind", f"127.0.0.1:{port}", "--workers", "1"], tmp_path, env, port) as (process, _):
        assert _workers(process.pid, 1) == 1
    assert "Traceback" not in (tmp_path / "serve.out").read_text()


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--bind", "localhost"], {}, "Invalid value for --bind: 'localhost' is not HOST:PORT"),
        ([], {"BIND": "127.0.0.1:99999"}, "Invalid value for BIND: '127.0.0.1:99999' is not HOST:PORT"),
        ([], {"WEB_CONCURRENCY": "many"}, "WEB_CONCURRENCY: 'many' is not a whole number of at least 1"),
        (["--workers", "0"], {}, "Invalid value for '--workers' / '-w'"),
        ([], {"LOG_LEVEL": "bogus"}, "LOG_LEVEL: 'bogus' is not a log level"),
    ],
)
def test_wrong_options_and_settings_are_one_line(tmp_path: Path, args: list[str], env: dict[str, str], says: str):
    result = permctl("serve", *args, env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert says in result.stderr and "Traceback" not in result.stderr


def test_help_shows_the_options_it_takes():
    out = permctl("serve", "--help").stdout
    assert "--bind HOST:PORT" in out and "-w, --workers N" in out and "--demo" in out
    assert "-w 4" not in out
