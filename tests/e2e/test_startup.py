"""Starting the server as operators do: wrong settings stop it with one line, /readyz is honest about the
schema, and /metrics is summed over workers however gunicorn is started, leaving nothing behind."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.metrics_dir import directory_for
from app.persistence.migrate import head_revision, upgrade
from app.settings import Settings
from tests.e2e.server import LiveServer, call, log_records, send
from tests.support import SHIPPED_RULES, UPDATE_PATH, body_of, copy_rules

pytestmark = pytest.mark.e2e


def _refused(server: LiveServer) -> str:
    with pytest.raises(RuntimeError, match="gunicorn exited"):
        server.start(timeout=120)  # a loaded machine can take long to fail a worker's boot
    return server.logs()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SIGNATURE_WINDOW_SECONDS", "abc"), ("REDIS_URL", "notredis"), ("LOG_LEVEL", "bogus")],
)
def test_a_wrong_setting_stops_gunicorn_with_one_line(settings: Settings, tmp_path: Path, variable: str, value: str):
    server = LiveServer(settings=settings, log_path=tmp_path / "gunicorn.log", extra_env={variable: value})
    logs = _refused(server)
    assert re.search(rf"^refusing to start: {variable}: '{value}' .+$", logs, re.MULTILINE), logs
    assert "Traceback" not in logs


def test_a_bare_gunicorn_worker_also_refuses_a_wrong_setting_with_one_line(settings: Settings, tmp_path: Path):
    server = LiveServer(
        settings=settings,
        log_path=tmp_path / "gunicorn.log",
        packaged_config=False,
        extra_env={"REDIS_URL": "notredis"},
        # One worker: when two fail to boot at once, gunicorn's master (not this service) can print its own
        # HaltServer traceback as the second worker's SIGCHLD lands inside its halt (seen on a loaded machine).
        workers=1,
    )
    logs = _refused(server)
    assert "refusing to start: REDIS_URL: 'notredis' is not a Redis URL" in logs
    assert "Traceback" not in logs


def _metrics_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("tps-metrics-*"))


def test_a_failed_start_leaves_no_metrics_directory(settings: Settings, tmp_path: Path):
    before = _metrics_dirs()
    rules = copy_rules(tmp_path)
    (rules / "validation.yaml").write_text("rules: [", encoding="utf-8")
    server = LiveServer(settings=settings.with_overrides(rules_dir=rules), log_path=tmp_path / "gunicorn.log")
    logs = _refused(server)
    assert "the rules do not lint clean" in logs
    assert server.process is not None
    assert not directory_for(server.process.pid).exists()
    left = {p for p in _metrics_dirs() - before if not (p.name[12:].isdigit() and _alive(int(p.name[12:])))}
    assert not left, f"left behind: {left}"


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _requests_by_code(text: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in text.splitlines():
        found = re.match(r'^tps_requests_total\{.*code="(\d+)".*\} ([0-9.e+]+)$', line)
        if found and "update_account_trade_permission" in line:
            counts[found.group(1)] = counts.get(found.group(1), 0) + float(found.group(2))
    return counts


def test_bare_gunicorn_sums_metrics_over_workers_and_removes_them_on_exit(seeded: Settings, tmp_path: Path):
    """No config, so none of our code runs in the master: the last worker out removes the directory."""
    first = LiveServer(settings=seeded, log_path=tmp_path / "first.log", packaged_config=False).start()
    try:
        sent = 0
        served_by: set[int] = set()
        with ThreadPoolExecutor(max_workers=4) as pool:
            while len(served_by) < 2 and sent < 400:  # a quiet machine may let one worker take every accept
                codes = list(
                    pool.map(
                        lambda n: call(first, "POST", UPDATE_PATH, body_of("ACC-2", ("flag.x", "open"), nonce=n))[1][
                            "code"
                        ],
                        range(sent, sent + 20),
                    )
                )
                assert codes == [400101] * 20
                sent += 20
                served_by = {r["pid"] for r in log_records(first.log_path) if r.get("event") == "decision"}
        assert len(served_by) == 2, "both workers should have served"
        with urllib.request.urlopen(first.url + "/metrics", timeout=10) as response:
            assert _requests_by_code(response.read().decode()) == {"400101": float(sent)}
        assert first.process is not None
        kept = directory_for(first.process.pid)
        assert kept.is_dir()
    finally:
        first.stop()  # the master exits after its workers
    assert not kept.exists(), "the bare server's metrics directory outlived it"


def test_a_start_sweeps_the_directory_of_a_server_killed_outright(seeded: Settings, tmp_path: Path):
    finished = subprocess.Popen(["true"])
    finished.wait()  # its pid runs nothing now: the directory of a made-up server that was killed
    stale = directory_for(finished.pid)
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"")
    server = LiveServer(settings=seeded, log_path=tmp_path / "gunicorn.log", packaged_config=False).start()
    try:
        send(server.url, "GET", "/healthz", None, {})
        assert not stale.exists(), "a dead server's metrics directory is removed by the next start"
    finally:
        server.stop()


def test_packaged_settings_remove_the_metrics_directory_on_exit(seeded: Settings, tmp_path: Path):
    server = LiveServer(settings=seeded, log_path=tmp_path / "gunicorn.log").start()
    assert server.process is not None
    kept = directory_for(server.process.pid)
    assert kept.is_dir()
    server.stop()
    assert not kept.exists()


def _readyz(server: LiveServer) -> tuple[int, dict]:
    answer = send(server.url, "GET", "/readyz", None, {})
    return answer.status, answer.envelope


@pytest.mark.parametrize("revision", [None, pytest.param("0002", marks=pytest.mark.slow)])  # 0002: slow run
def test_readyz_is_not_ready_while_the_schema_is_behind(tmp_path: Path, revision: str | None):
    database = tmp_path / "behind.sqlite"
    if revision is None:
        database.touch()  # reachable, never migrated
    else:
        upgrade(f"sqlite:///{database}", revision)
    settings = Settings(
        database_url=f"sqlite:///{database}", rules_dir=SHIPPED_RULES, instance_dir=tmp_path / "instance"
    )
    server = LiveServer(settings=settings, log_path=tmp_path / "gunicorn.log").start()
    try:
        status, envelope = _readyz(server)
        assert (status, envelope["code"]) == (503, 503001)
        data = envelope["data"]
        assert (data["schema_revision"], data["code_revision"]) == (revision, head_revision())
        assert f"the code needs {head_revision()}" in data["database"]
        assert ("none (never migrated)" if revision is None else f"revision {revision}") in data["database"]
        if revision is None:  # every call fails, and the log says which table is missing
            status, envelope, _ = call(server, "POST", UPDATE_PATH, body_of("ACC-1", ("stock.US", "open")))
            assert (status, envelope["code"]) == (503, 503001)
            unusable = [r for r in log_records(server.log_path) if r.get("event") == "database_unusable"]
            assert unusable, json.dumps(list(log_records(server.log_path)))[-2000:]
            assert re.fullmatch(
                r"table '\w+' is missing: the schema is not migrated \(run permctl db upgrade\)", unusable[0]["detail"]
            )
        upgrade(settings.database_url)
        assert _readyz(server)[0] == 200  # migrated while running: ready without a restart
    finally:
        server.stop()
