"""What a worker reads of the published rule-set versions (SPEC §7d).

The rules do not import the database: the live rules read the publications through the PublishedRules port,
which the container implements on the publication service (the watch thread of app/rules/lifecycle/watch.py reads
it every interval).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

VERSIONS_DIR = "rule-versions"  # under INSTANCE_DIR: each version's files, in a directory named by its id


@dataclass(frozen=True)
class Publication:
    """A publication of a stored version: the live pointer is the one with the highest id."""

    id: int
    version: str  # the version id: the digest of every file of the set (app/rules/lifecycle/stored.py)


class PublishedRules(Protocol):
    """The publications as a worker reads them (app/service/published_rules.py implements it)."""

    def latest(self) -> Publication | None:
        """The live pointer: the publication with the highest id; None while nothing was ever published."""
        ...

    def files(self, version: str) -> Mapping[str, bytes]:
        """The files of a stored version, by relative posix path."""
        ...

    def refusal(self, publication: Publication) -> str | None:
        """Why the publication may not run (not authorized); None when it may."""
        ...

    def before(self, publication: Publication) -> Sequence[Publication]:
        """The publications made before this one, newest first."""
        ...

    def adopt(self, files: Mapping[str, bytes]) -> Publication:
        """Publish these files as the first publication (kind adopted) when nothing is published yet; the live
        pointer afterwards (another worker's adoption, or a publication, when one came first)."""
        ...
