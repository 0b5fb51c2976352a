"""A worker restarted while the live pointer names a broken version serves the last good one, and /readyz says so
(SPEC §7d; issue 21, acceptance 3).

The broken publication is written through the repositories, as someone with SQL access would; the host's snapshot
is removed before the restart, so the new worker finds the last good version by walking back the publications.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.persistence.db import make_engine, make_session_factory
from app.persistence.models import RecordedDecision
from app.persistence.unit_of_work import UnitOfWork
from app.rules.language.loader import read_tree
from app.rules.language.version import version_of
from app.rules.lifecycle import last_good
from app.rules.lifecycle.stored import version_id
from app.settings import Settings
from tests.e2e.server import LiveServer, call, send
from tests.support import FAILING_CASE, FREEZE, FREEZE_REFUSING_CLOSES, UPDATE_PATH, body_of, permctl

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WITH_OTC = ("account.*", "stock.*", "options.US", "trade.*", "otc.*")


def readyz(server: LiveServer) -> dict[str, Any]:
    answer = send(server.url, "GET", "/readyz", None, {})
    assert (answer.status, answer.envelope["code"]) == (200, 0), answer  # ready: a good set serves
    return answer.envelope["data"]


def publish(settings: Settings, files: dict[str, bytes]) -> tuple[int, str]:
    """Store files and move the live pointer to them, break-glass by approver ann, without any other check:
    (publication, version)."""
    engine = make_engine(settings, request_path=False)
    try:
        with UnitOfWork(make_session_factory(engine), write=True) as uow:
            version, now = version_id(files), datetime.now(UTC)
            uow.rule_versions.add(version, version_of(files), files, at=now, by="ann")
            if uow.console_users.get("ann") is None:  # a break-glass is an approver's: ann is one
                uow.console_users.add("ann", "approver", "not a hash: nobody logs in here", now)
            live = uow.publications.latest()
            record = uow.publications.append(
                version, "break_glass", at=now, by="ann", after=None if live is None else live.id, reason="sql"
            )
            uow.commit()
        return record.id, version
    finally:
        engine.dispose()


def recorded_versions(settings: Settings) -> list[str | None]:
    engine = make_engine(settings, request_path=False)
    try:
        with engine.connect() as conn:
            query = select(RecordedDecision.published_version).order_by(RecordedDecision.id)
            return list(conn.scalars(query))
    finally:
        engine.dispose()


_nonces = iter(range(10_000))


def otc(server: LiveServer, status: str) -> tuple[int, int, str | None]:
    """Move ACC-2's otc.DE to status; the answer's HTTP status, code and rule id."""
    code, body, _ = call(server, "POST", UPDATE_PATH, body_of("ACC-2", ("otc.DE", status), nonce=next(_nonces)))
    return code, body["code"], body["data"].get("rule_id")


def workers(server: LiveServer) -> set[int]:
    assert server.process is not None
    pid = server.process.pid
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def restart_workers(server: LiveServer) -> None:
    before = workers(server)
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait for gunicorn to boot replacements (a condition, not a guess)
        now = workers(server)
        if len(now) == len(before) and not now & before:
            return
        time.sleep(0.05)
    raise AssertionError(f"workers were not replaced:\n{server.logs()}")


def test_a_worker_restarted_while_the_pointer_names_a_broken_version_serves_the_last_good_one(
    seeded: Settings, tmp_path: Path
):
    env = {"DATABASE_URL": seeded.database_url, "RULES_DIR": str(seeded.rules_dir)}
    if seeded.redis_url:
        env["REDIS_URL"] = seeded.redis_url
    configured = permctl("tenant", "set-config", "sg_mexc", *WITH_OTC, env=env)
    assert configured.returncode == 0, configured.stderr
    shipped = read_tree(seeded.rules_dir)
    server = LiveServer(
        settings=seeded, log_path=tmp_path / "gunicorn.log", workers=1, extra_env={"RULES_RELOAD_CHECK_SECONDS": "0"}
    ).start()
    try:
        adopted = version_id(shipped)
        assert (readyz(server)["published_version"], readyz(server)["live_version"]) == (adopted, adopted)
        assert otc(server, "open") == (200, 0, None)

        good, frozen = publish(seeded, {**shipped, "policies.yaml": FREEZE.encode()})
        assert readyz(server)["published_version"] == frozen  # the pointer is read on every request here

        broken_id, broken = publish(seeded, {**shipped, "policies.yaml": FREEZE_REFUSING_CLOSES.encode()})
        running = readyz(server)
        assert (running["published_version"], running["live_version"]) == (frozen, broken)

        shutil.rmtree(last_good.snapshot_path(seeded.instance_dir))  # the walk back must find it in the database
        restart_workers(server)

        data = readyz(server)
        assert (data["published_version"], data["live_version"]) == (frozen, broken)
        assert data["failing_cases"] == [FAILING_CASE]
        error = data["last_reload_error"]
        assert error.startswith(f"publication {broken_id} (version {broken[:12]}) is not run: it may not go live: ")
        assert error.endswith(f"running publication {good} (version {frozen[:12]})")
        assert otc(server, "close") == (200, 0, None)  # the close the broken set would refuse
        assert otc(server, "open") == (400, 400106, "otc-freeze")  # the frozen set judges
        assert "rules_publication_refused" in server.logs()
    finally:
        server.stop()
    assert recorded_versions(seeded) == [adopted, frozen, frozen]  # the version that judged each
