"""A rule set that lints but fails a regression case never goes live (issue 12, acceptance 5), end to end:
permctl rules reload refuses it, running workers told to reload refuse it and keep deciding with the last
good set, /readyz names the failing case, a worker restarted meanwhile runs the last good snapshot, and the
fixed set is then taken."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from app.rules.language.loader import rule_set_version
from app.settings import Settings
from tests.e2e.server import LiveServer, call, send
from tests.e2e.test_rules_lifecycle import ask_workers_to_reload, audit_versions, reload
from tests.support import FAILING_CASE, FREEZE, FREEZE_REFUSING_CLOSES, UPDATE_PATH, body_of, copy_rules, permctl

pytestmark = pytest.mark.e2e

WITH_OTC = ("account.*", "stock.*", "options.US", "trade.*", "otc.*")


@pytest.fixture
def editable(seeded: Settings, tmp_path: Path) -> Any:
    """gunicorn -w 2 on a copy of rules/ the test edits, sg_mexc enabled for OTC; reloads checked on every request."""
    rules = copy_rules(tmp_path)
    settings = seeded.with_overrides(rules_dir=rules)
    env = {"DATABASE_URL": settings.database_url, "RULES_DIR": str(rules)}
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    configured = permctl("tenant", "set-config", "sg_mexc", *WITH_OTC, env=env)
    assert configured.returncode == 0, configured.stderr
    server = LiveServer(
        settings=settings, log_path=tmp_path / "gunicorn.log", extra_env={"RULES_RELOAD_CHECK_SECONDS": "0"}
    ).start()
    yield server
    server.stop()


def readyz(server: LiveServer) -> dict[str, Any]:
    answer = send(server.url, "GET", "/readyz", None, {})
    assert (answer.status, answer.envelope["code"]) == (200, 0), answer  # still ready: the last good set serves
    return answer.envelope["data"]


_nonces = iter(range(10_000))


def otc(server: LiveServer, status: str) -> tuple[int, int, str | None]:
    """Move ACC-2's otc.DE to status; the answer's HTTP status, code and rule id."""
    code, body, _ = call(server, "POST", UPDATE_PATH, body_of("ACC-2", ("otc.DE", status), nonce=next(_nonces)))
    return code, body["code"], body["data"].get("rule_id")


def _workers(server: LiveServer) -> set[int]:
    assert server.process is not None
    pid = server.process.pid
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def _restart_workers(server: LiveServer) -> None:
    before = _workers(server)
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait for gunicorn to boot replacements (a condition, not a guess)
        now = _workers(server)
        if len(now) == len(before) and not now & before:
            return
        time.sleep(0.05)
    raise AssertionError(f"workers were not replaced:\n{server.logs()}")


def test_a_set_failing_a_case_is_refused_everywhere_and_the_fix_is_taken(editable: LiveServer):
    rules = editable.settings.rules_dir
    good = rule_set_version(rules)
    assert otc(editable, "open") == (200, 0, None)
    (rules / "policies.yaml").write_text(FREEZE_REFUSING_CLOSES, encoding="utf-8")

    refused = reload(editable)
    assert refused.returncode == 1
    assert f"{FAILING_CASE}: case fails" in refused.stderr and "reload not requested" in refused.stderr

    ask_workers_to_reload(editable)  # another host asks: these workers must refuse it themselves
    for _ in range(4):  # enough readiness checks to reach both workers; each honours the request first
        data = readyz(editable)
        assert data["rule_set_version"] == good
        assert data["failing_cases"] == [FAILING_CASE]
        assert f"{FAILING_CASE}: case fails: expected success" in data["last_reload_error"]
    assert otc(editable, "close") == (200, 0, None)  # the close the refused set would deny
    assert "rules_reload_failed" in editable.logs()

    _restart_workers(editable)  # a worker starting now runs this host's last good snapshot
    for _ in range(4):
        data = readyz(editable)
        assert (data["rule_set_version"], data["failing_cases"]) == (good, [FAILING_CASE])
    assert otc(editable, "open") == (200, 0, None)
    assert otc(editable, "close") == (200, 0, None)
    assert "rules_invalid_serving_last_good" in editable.logs()
    assert set(audit_versions(editable, "ACC-2")) == {good}

    (rules / "policies.yaml").write_text(FREEZE, encoding="utf-8")  # the fix: only opening is frozen
    fixed = rule_set_version(rules)
    taken = reload(editable)
    assert taken.returncode == 0, taken.stderr
    for _ in range(4):
        data = readyz(editable)
        assert (data["rule_set_version"], data["failing_cases"], data["last_reload_error"]) == (fixed, [], None)
    assert otc(editable, "open") == (400, 400106, "otc-freeze")


def test_the_service_refuses_to_start_when_a_case_fails(seeded: Settings, tmp_path: Path):
    rules = copy_rules(tmp_path)
    (rules / "policies.yaml").write_text(FREEZE_REFUSING_CLOSES, encoding="utf-8")
    server = LiveServer(settings=seeded.with_overrides(rules_dir=rules), log_path=tmp_path / "gunicorn.log")
    with pytest.raises(RuntimeError, match="gunicorn exited"):
        server.start()
    logs = server.logs()
    assert "refusing to start: the rules fail their regression cases" in logs
    assert f"cases/catalog.yaml:38:1: {FAILING_CASE}: case fails" in logs
