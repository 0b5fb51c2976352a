"""A running service whose rule set an author edits in RULES_DIR and takes live by the four-eyes flow (propose,
another approver approves, publish), and ways to see that every worker serves what was published."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.persistence.db import make_engine
from app.persistence.models import PermissionAudit
from app.settings import Settings
from tests.cli.publishing import PASSWORDS, Desk
from tests.cli.runner import ok
from tests.e2e.server import LiveServer, a_worker_held, send
from tests.support import BARE, UPDATE_PATH, body_of, copy_rules, permctl, signed_headers

CHECK_SECONDS = "0.2"  # how often a worker's watch thread reads the live pointer (2 s in production)
SERVE_WITHIN = 20.0  # seconds a published version may take to reach every worker (generous for a loaded CI box)


@dataclass
class Editable:
    """gunicorn -w 2 on this test's database, the shipped set adopted as publication 1 from a copy in RULES_DIR
    that the test edits; approvers ann and bob and author carol at the desk."""

    server: LiveServer
    desk: Desk

    @property
    def rules(self) -> Path:
        return self.desk.rules_dir

    def go_live(self) -> str:
        """Propose RULES_DIR as carol, approve as ann, publish as carol: the version published."""
        version = self.desk.propose(self.rules)
        ok(self.desk.acting("ann", "rules", "approve", version[:8]))
        ok(self.desk.acting("carol", "rules", "publish", version[:8]))
        return version

    def propose_broken(self) -> tuple[str, Any]:
        """Propose RULES_DIR (which does not load clean) as carol: (version, the run), stored though refused."""
        proposed = self.desk.acting("carol", "rules", "propose", str(self.rules))
        assert proposed.returncode == 1 and "Traceback" not in proposed.stderr, proposed
        return proposed.stdout.splitlines()[-1], proposed

    def publish_by_script(self, version: str, *extra: str, as_name: str = "ann") -> Any:
        """`permctl rules publish VERSION --as NAME ...` by the installed script, the password on its stdin."""
        env = {"DATABASE_URL": self.desk.database_url, "RULES_DIR": str(self.rules)}
        return permctl("rules", "publish", version, *extra, "--as", as_name, env=env, input=PASSWORDS[as_name] + "\n")

    def readyz(self) -> dict[str, Any]:
        return readyz(self.server)

    def on_every_worker(self, served: Callable[[dict[str, Any]], bool], *, at_once: bool = False) -> None:
        on_every_worker(self.server, served, at_once=at_once)


def start_editable(seeded: Settings, tmp_path: Path) -> Editable:
    """The desk set up (which adopts the copy as publication 1), then gunicorn on it."""
    rules = copy_rules(tmp_path)
    desk = Desk(seeded.database_url, tmp_path, rules_dir=rules).set_up()
    server = LiveServer(
        settings=seeded.with_overrides(rules_dir=rules),
        log_path=tmp_path / "gunicorn.log",
        extra_env={"RULES_RELOAD_CHECK_SECONDS": CHECK_SECONDS},
    ).start()
    return Editable(server, desk)


def editable_fixture(seeded: Settings, tmp_path: Path) -> Iterator[Editable]:
    editable = start_editable(seeded, tmp_path)
    try:
        yield editable
    finally:
        editable.server.stop()


def readyz(server: LiveServer) -> dict[str, Any]:
    answer = send(server.url, "GET", "/readyz", None, {})
    assert (answer.status, answer.envelope["code"]) == (200, 0), answer  # ready: a good set serves
    return answer.envelope["data"]


def _until(server: LiveServer, served: Callable[[dict[str, Any]], bool], at_once: bool) -> None:
    deadline = time.monotonic() + (0 if at_once else SERVE_WITHIN)
    while True:
        data = readyz(server)
        if served(data):
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"/readyz said {data} after {SERVE_WITHIN} s (or at once)\n{server.logs()[-4000:]}")
        time.sleep(0.05)  # the next look; the condition is what ends the wait


def _holder() -> tuple[bytes, dict[str, str]]:
    body = body_of("BARE-1", ("stock.HK", "open"))  # an account of its own: the tests' audit trails stay theirs
    return body, signed_headers("POST", UPDATE_PATH, body, creds=BARE)


def on_every_worker(server: LiveServer, served: Callable[[dict[str, Any]], bool], *, at_once: bool = False) -> None:
    """Wait until /readyz of each of the two workers satisfies served (at_once: its first answer must), worker by
    worker: with one worker held by a request whose last byte is not sent, every other request reaches the other
    one; holding that one too and then releasing the first sends the next requests to the first."""
    assert server.workers == 2, "on_every_worker steers two workers"
    with a_worker_held(server.url, UPDATE_PATH, *_holder()) as first:
        _until(server, served, at_once)  # the worker not held
        with a_worker_held(server.url, UPDATE_PATH, *_holder()) as second:  # that one is taken now
            first()
            _until(server, served, at_once)  # the worker held first, the only one free
            second()


def audit_versions(settings: Settings, account_no: str) -> list[str]:
    """The rule-set version recorded with each decision on account_no, oldest first."""
    engine = make_engine(settings, request_path=False)
    try:
        with engine.connect() as conn:
            return list(
                conn.scalars(
                    select(PermissionAudit.rule_set_version)
                    .where(PermissionAudit.account_no == account_no)
                    .order_by(PermissionAudit.id)
                )
            )
    finally:
        engine.dispose()
