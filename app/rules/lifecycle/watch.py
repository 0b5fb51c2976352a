"""The watch of the live pointer: a daemon thread of each worker process that reads the latest publication every
interval, so a request takes a moved pointer without a database round trip of its own (SPEC §7d).

Sightings is what the thread calls: one query while the pointer stays; when it moved, whether the publication may
run (through the PublishedRules port) and its files written under INSTANCE_DIR/rule-versions/
(app/rules/lifecycle/stored.py), so the request thread that takes it only compiles. Nothing here touches the rules
engine: durable_rules is compiled and run in request threads only.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import structlog

from app.rules.lifecycle.published import Publication, PublishedRules
from app.rules.lifecycle.stored import materialize, version_id

log = structlog.get_logger("app.rules")

STOP_WAIT_SECONDS = 5.0  # how long stopping the watch waits for a read in flight


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


class PointerWatch:
    """The live pointer as last read, kept fresh by a daemon thread of this process that reads it every interval.
    The thread only reads (and writes a publication's files to disk: it never touches the rules engine), starts on
    first use in each process (a worker forked from a process that ran one starts its own), ends with the process,
    and ends when the watch is garbage. poll() reads now: what the thread does, for tests and the first look."""

    def __init__(self, sightings: Sightings, interval: float) -> None:
        self.sightings = sightings
        self.interval = interval
        self.latest: Sighting | None = None  # None: not read yet, or never successfully
        self.failure: str | None = None  # why the last read failed; None when it succeeded
        self._pid: int | None = None  # the process whose thread runs
        self._stopped: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def poll(self) -> Sighting | None:
        """Read now; what was read, or what was read last when it cannot be read."""
        try:
            self.latest = self.sightings()
        except Exception as exc:  # the database may be down; the next poll will try again
            self.failure = type(exc).__name__  # its text may name the database's host: /readyz is public
            log.warning("rules_reload_check_failed", error=type(exc).__name__)
        else:
            self.failure = None
        return self.latest

    def start(self) -> None:
        """Run the reading thread in this process, unless it already does."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._stopped = threading.Event()  # a new one: a forked child must not wait on its parent's
            thread = threading.Thread(
                target=_keep_reading,
                args=(weakref.ref(self), self._stopped, self.interval),
                name="rules-reload-watch",
                daemon=True,
            )
            thread.start()
            self._thread, self._pid = thread, os.getpid()

    @property
    def running(self) -> bool:
        """Whether this process runs the reading thread."""
        return self._pid == os.getpid() and self._stopped is not None and not self._stopped.is_set()

    @property
    def thread(self) -> threading.Thread | None:
        """The reading thread started last (it may have ended since)."""
        return self._thread

    def stop(self) -> None:
        """End this process's reading thread, after the read it may be doing (it waits between reads)."""
        if self._stopped is not None:
            self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=STOP_WAIT_SECONDS)
        self._pid = None


def _keep_reading(watch: weakref.ref[PointerWatch], stopped: threading.Event, interval: float) -> None:
    while not stopped.wait(interval):
        current = watch()
        if current is None:
            return
        current.poll()
        del current  # hold no reference while waiting: the watch may become garbage meanwhile
