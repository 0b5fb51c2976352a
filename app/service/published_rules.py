"""The publications as a worker's live rules read them (app/rules/lifecycle/published.py), on RuleVersions.

The live rules know a publication by its id and version; whether it may run depends on its kind, approval and
reason, which this adapter keeps from the reads that found it, so asking costs no second read of the
publication. A worker adopts the set it runs while nothing is published, in its own name: `worker <host> pid
<pid>`.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping, Sequence

from app.rules.lifecycle.published import Publication
from app.service import publication as publications
from app.service.publication import RuleVersions

_KEPT = 64  # publications kept for their refusal check: the pointer and a walk back (50 at a time)


def worker_name() -> str:
    """Who a worker acts as when it adopts the set it runs (and where from)."""
    return f"worker {socket.gethostname()} pid {os.getpid()}"


class PublishedRuleSets:
    """PublishedRules on the publication service."""

    def __init__(self, versions: RuleVersions) -> None:
        self._versions = versions
        self._seen: dict[int, publications.Publication] = {}
        self._lock = threading.Lock()  # the watch thread and a request's first look both read

    def _keep(self, found: publications.Publication) -> Publication:
        with self._lock:
            self._seen.pop(found.id, None)
            self._seen[found.id] = found  # the newest read last: the oldest read goes first
            while len(self._seen) > _KEPT:
                self._seen.pop(next(iter(self._seen)))
        return Publication(found.id, found.version)

    def latest(self) -> Publication | None:
        found = self._versions.live()
        return None if found is None else self._keep(found)

    def files(self, version: str) -> Mapping[str, bytes]:
        return self._versions.files(version)

    def refusal(self, publication: Publication) -> str | None:
        with self._lock:
            found = self._seen.get(publication.id)
        if found is None or found.version != publication.version:
            return f"publication {publication.id} was not read as the live pointer or before it"
        return self._versions.refusal(found)

    def before(self, publication: Publication) -> Sequence[Publication]:
        return [self._keep(found) for found in self._versions.publications_before(publication.id)]

    def adopt(self, files: Mapping[str, bytes]) -> Publication:
        name = worker_name()
        adopted = self._versions.adopt(files, by=name, origin=name)
        if adopted is not None:
            return self._keep(adopted)
        latest = self.latest()  # another worker adopted, or someone published, first
        if latest is None:
            raise RuntimeError("nothing is published, yet adopting the rule set that runs found a publication")
        return latest
