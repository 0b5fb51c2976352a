"""What a worker reads of the published rule-set versions (SPEC §7d), and the watch's look at them.

The rules do not import the database: the live rules read the publications through the PublishedRules port,
which the container implements on the publication service. The watch thread calls Sightings every interval: it
reads the latest publication and, only when that moved, asks whether the publication may run and writes its files
under INSTANCE_DIR/rule-versions/ (app/rules/lifecycle/stored.py), so the request thread that takes it only
compiles. It never touches the rules engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from app.rules.lifecycle.stored import materialize, version_id

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


@dataclass(frozen=True)
class Sighting:
    """The live pointer as the watch last read it: whether it may run and, when it may, its files on disk."""

    publication: Publication | None  # None: nothing is published yet
    refusal: str | None = None  # why it may not run (not authorized, or its stored files are damaged)
    path: Path | None = None  # the version's files, materialized; None when refused


class Sightings:
    """Reads the live pointer for the watch: one query while it stays, the refusal check and the files when it
    moves. A read that fails raises, and the next one tries again (nothing is remembered half-read)."""

    def __init__(self, published: PublishedRules, root: Path) -> None:
        self.published = published
        self.root = Path(root)
        self._last: Sighting | None = None

    def __call__(self) -> Sighting:
        latest = self.published.latest()
        last = self._last
        if last is not None and last.publication == latest:
            return last  # the same object: the request thread compares by identity
        sighting = Sighting(None) if latest is None else self.look(latest)
        self._last = sighting
        return sighting

    def look(self, publication: Publication) -> Sighting:
        """Whether the publication may run and, when it may, its files on disk."""
        refusal = self.published.refusal(publication)
        if refusal is not None:
            return Sighting(publication, refusal)
        files = self.published.files(publication.version)
        if version_id(files) != publication.version:  # rows edited in the database: not what was published
            return Sighting(publication, "its stored files are not those of the version (they were changed)")
        try:
            path = materialize(files, self.root)
        except ValueError as exc:  # UnsafeTree: a path outside the version's directory, or too many bytes
            return Sighting(publication, f"its stored files cannot be written out: {exc}")
        return Sighting(publication, None, path)
