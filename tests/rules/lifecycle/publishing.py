"""A test's database as workers read it: store versions, move the live pointer, and build workers' live rules on
the real port (app.container.published_rules over RuleVersions), as the container wires them.

The pointer is moved through the repositories directly, as an INSERT would (no check of who or whether): the
worker's own checks are what these tests are about. The `publishing` fixture (tests/conftest.py) gives one.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import sessionmaker

from app.container import published_rules, units_of_work
from app.rules.language.version import version_of
from app.rules.lifecycle.live import LiveRules
from app.rules.lifecycle.published import Publication, PublishedRules
from app.rules.lifecycle.stored import version_id
from app.schemas.permissions import load_update_request
from app.settings import Settings


class Publishing:
    """Versions and publications on one test database, and workers that follow them."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Any]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.units = units_of_work(sessions)

    def publish(
        self, files: Mapping[str, bytes], *, kind: str = "break_glass", reason: str | None = "an outage"
    ) -> str:
        """Store the files as a version (unless stored) and move the live pointer to it; the version id."""
        version = version_id(files)
        with self.units(write=True) as uow:
            uow.rule_versions.add(version, version_of(files), files, at=datetime.now(UTC), by="alice")
            if uow.console_users.get("ann") is None:  # a break-glass is an approver's: ann is one
                uow.console_users.add("ann", "approver", "not a hash: nobody logs in here", datetime.now(UTC))
            live = uow.publications.latest()
            uow.publications.append(
                version,
                kind,
                at=datetime.now(UTC),
                by="ann",
                after=None if live is None else live.id,
                approval_id=None,
                reason=reason,
            )
            uow.commit()
        return version

    def port(self, instance_dir: Path) -> PublishedRules:
        """The publications as a worker on a host with instance_dir reads them."""
        settings = self.settings.with_overrides(instance_dir=instance_dir)
        return published_rules(self.sessions, settings, load_request=load_update_request)

    def worker(
        self,
        instance_dir: Path | None = None,
        *,
        rules_dir: Path | None = None,
        published: PublishedRules | None = None,
        check_seconds: float = 60,
        background: bool = False,
    ) -> LiveRules:
        """A worker's live rules on a host with instance_dir (the test's by default), adopting rules_dir (the
        settings') while nothing is published. Without background, the pointer is read by poll() and on the first
        refresh()."""
        instance = instance_dir or self.settings.instance_dir
        return LiveRules(
            rules_dir or self.settings.rules_dir,
            load_request=load_update_request,
            instance_dir=instance,
            published=published or self.port(instance),
            check_seconds=check_seconds,
            background=background,
        )


class CountingPort:
    """The real port, counting how often each of its reads is called (what a request or the watch asked)."""

    def __init__(self, port: PublishedRules) -> None:
        self.port = port
        self.calls: dict[str, int] = {}
        self._counted = threading.Condition()

    def _count(self, name: str) -> None:
        with self._counted:
            self.calls[name] = self.calls.get(name, 0) + 1
            self._counted.notify_all()

    def wait_for(self, name: str, count: int, timeout: float) -> bool:
        """Whether `name` was called `count` times within timeout seconds (another thread's calls count)."""
        with self._counted:
            return self._counted.wait_for(lambda: self.calls.get(name, 0) >= count, timeout=timeout)

    def latest(self) -> Publication | None:
        self._count("latest")
        return self.port.latest()

    def files(self, version: str) -> Mapping[str, bytes]:
        self._count("files")
        return self.port.files(version)

    def refusal(self, publication: Publication) -> str | None:
        self._count("refusal")
        return self.port.refusal(publication)

    def before(self, publication: Publication) -> Sequence[Publication]:
        self._count("before")
        return self.port.before(publication)

    def adopt(self, files: Mapping[str, bytes]) -> Publication:
        self._count("adopt")
        return self.port.adopt(files)
