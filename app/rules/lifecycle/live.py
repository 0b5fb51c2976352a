"""The rule set a running service uses, and swapping in a new one only when it may go live.

A reload is asked for with `permctl rules reload`, which moves a counter in the database. Each worker process
reads that counter in a daemon thread every `check_seconds` (the first time on its first request, then away
from requests), and each request starts with refresh(): it compares the generation read last with the one it
took, and reloads the worker's own RULES_DIR when it has moved, so one command reaches every worker on every
host within `check_seconds` and a request costs no database round trip for it. `check_seconds` 0 reads the
counter on every request instead (tests that reload and judge at once). A set goes live only when it
lints clean and every regression case under cases/ passes (app/rules/lifecycle/gate.py); otherwise the worker
keeps the set it runs and says why (last_reload_error, and the failing cases by name, in /readyz). Every set
that goes live is kept as this host's last good snapshot; a worker that starts while RULES_DIR is broken, or
fails its cases, runs that snapshot.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import structlog

from app.rules.language.loader import RuleSetInvalid
from app.rules.language.model import RuleSet
from app.rules.lifecycle import last_good
from app.rules.lifecycle.gate import CasesFailed, load_clean
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.tools.cases import RequestLoader

log = structlog.get_logger("app.rules")

_CLEAN_SETS_KEPT = 8
STOP_WAIT_SECONDS = 5.0  # how long stopping the reload watch waits for a read in flight


class _CleanSets:
    """The rule sets this process found clean, by the digest of the files they were read from.

    A set's verdict (lint, regression cases) is a function of its files alone, so a second LiveRules in one
    process (an app built again, a reload of an unchanged directory) takes the set without linting it and
    running its cases again. A set is kept only when the files still have the digest read before the load:
    an edit landing meanwhile leaves nothing kept under a digest it does not match.
    """

    def __init__(self) -> None:
        self._sets: dict[str, RuleSet] = {}
        self._lock = threading.Lock()

    def load(self, rules_dir: Path, digest: str, load_request: RequestLoader) -> RuleSet:
        with self._lock:
            kept = self._sets.get(digest)
        if kept is not None:
            return kept
        rule_set = load_clean(rules_dir, load_request)
        if last_good.digest(rules_dir) == digest:
            with self._lock:
                if len(self._sets) >= _CLEAN_SETS_KEPT:
                    self._sets.pop(next(iter(self._sets)))
                self._sets[digest] = rule_set
        return rule_set


_clean_sets = _CleanSets()


class GenerationWatch:
    """The reload counter as last read, kept fresh by a daemon thread of this process that reads it every
    interval. The thread only reads the counter (it never touches the rules engine), starts on first use in each
    process (a worker forked from a process that ran one starts its own), ends with the process, and ends when
    the watch is garbage. poll() reads the counter now: what the thread does, for tests and the first look."""

    def __init__(self, read: Callable[[], int], interval: float) -> None:
        self._read = read
        self.interval = interval
        self.latest: int | None = None  # None: not read yet, or never successfully
        self._pid: int | None = None  # the process whose thread runs
        self._stopped: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        """Read the counter now; the generation, or the last one read when it cannot be read."""
        try:
            self.latest = self._read()
        except Exception as exc:  # the database may be down; the next poll will try again
            log.warning("rules_reload_check_failed", error=type(exc).__name__)
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

    def stop(self) -> None:
        """End this process's reading thread, after the read it may be doing (it waits between reads)."""
        if self._stopped is not None:
            self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=STOP_WAIT_SECONDS)
        self._pid = None


def _keep_reading(watch: weakref.ref[GenerationWatch], stopped: threading.Event, interval: float) -> None:
    while not stopped.wait(interval):
        current = watch()
        if current is None:
            return
        current.poll()
        del current  # hold no reference while waiting: the watch may become garbage meanwhile


class LiveRules:
    """Holds the live engine; reload() takes rules_dir when it may go live and keeps the last good set if not;
    refresh(), at the start of a request, reloads when a reload was asked for since the last look."""

    def __init__(
        self,
        rules_dir: Path,
        *,
        load_request: RequestLoader,  # the API's request loader, for the regression cases (gate.py)
        instance_dir: Path | None = None,
        reload_generation: Callable[[], int] | None = None,
        check_seconds: float = 2.0,
        background: bool = True,
    ) -> None:
        """reload_generation reads the reload counter (None: reload only when asked to, by reload()). With
        background False no thread is started: the counter is read by poll() and on the first refresh()."""
        self.rules_dir = Path(rules_dir)
        self._load_request = load_request
        self._instance_dir = instance_dir
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self.last_reload_error: str | None = None
        self.failing_cases: tuple[str, ...] = ()  # the regression cases that refused the last set, by name
        self._loaded_from: str | None = None  # digest of the rules_dir files the live set came from; None: snapshot
        self._engine = self._start()
        self._check_seconds = check_seconds
        self._background = background and check_seconds > 0
        self._watch = None if reload_generation is None else GenerationWatch(reload_generation, check_seconds)
        self._first_look_done = False
        self._seen_generation: int | None = None  # read on the first request: nothing connects at start

    @property
    def engine(self) -> DurableRulesEngine:
        """The engine of the live rule set (refresh() is what takes a new one)."""
        return self._engine

    def refresh(self) -> DurableRulesEngine:
        """The step at the start of a request: reload when the reload counter moved since the last look, and
        the engine to judge the request with. Reads nothing from the database after the first look (unless
        check_seconds is 0): the counter was read by the watch thread. A request that finds another thread
        reloading takes the engine that is live meanwhile."""
        watch = self._watch
        if watch is None:
            return self._engine
        if self._check_seconds <= 0 or not self._first_look_done:
            self._first_look_done = True
            watch.poll()
        if self._background:
            watch.start()
        generation = watch.latest
        if generation is None or generation == self._seen_generation:
            return self._engine
        if self._refreshing.acquire(blocking=False):
            try:
                self._take(generation)
            finally:
                self._refreshing.release()
        return self._engine

    def poll(self) -> None:
        """Read the reload counter now, as the watch thread does every check_seconds."""
        if self._watch is not None:
            self._watch.poll()

    def close(self) -> None:
        """Stop reading the reload counter in this process."""
        if self._watch is not None:
            self._watch.stop()

    def _load(self) -> tuple[DurableRulesEngine, str]:
        """rules_dir as an engine if it may go live, and the digest of its files (read first: an edit landing
        while loading can only make the digest older than what runs, which costs one more reload, never less)."""
        digest = last_good.digest(self.rules_dir)
        return DurableRulesEngine(_clean_sets.load(self.rules_dir, digest, self._load_request)), digest

    def _refused(self, exc: RuleSetInvalid) -> None:
        self.last_reload_error = str(exc)
        self.failing_cases = exc.failing_cases if isinstance(exc, CasesFailed) else ()

    def _start(self) -> DurableRulesEngine:
        try:
            engine, digest = self._load()
        except RuleSetInvalid as exc:
            kept = last_good.snapshot_path(self._instance_dir) if self._instance_dir else None
            if kept is None or not kept.is_dir():
                raise
            engine = DurableRulesEngine(load_clean(kept, self._load_request))
            self._refused(exc)
            log.error(
                "rules_invalid_serving_last_good",
                rule_set_version=engine.version,
                problems=[str(p) for p in exc.problems],
                failing_cases=list(self.failing_cases),
            )
            return engine
        self._loaded_from = digest
        self._keep(digest)
        return engine

    def _keep(self, digest: str) -> None:
        """Make the snapshot the files just taken, unless it already is."""
        if self._instance_dir is None:
            return
        kept = last_good.snapshot_path(self._instance_dir)
        try:
            if kept.is_dir() and last_good.digest(kept) == digest:
                return
            if not last_good.save(self.rules_dir, self._instance_dir, expected=digest):
                log.warning("rules_snapshot_not_saved", error="rules changed while they were loaded")
        except OSError as exc:  # another worker may be replacing it at the same moment; either copy is good
            log.warning("rules_snapshot_not_saved", error=str(exc))

    def reload(self) -> bool:
        """Load rules_dir again; swap it in when it may go live, else keep serving the old set."""
        with self._lock:
            try:
                engine, digest = self._load()
            except RuleSetInvalid as exc:
                self._refused(exc)
                log.error(
                    "rules_reload_failed",
                    rule_set_version=self._engine.version,
                    problems=[str(p) for p in exc.problems],
                    failing_cases=list(self.failing_cases),
                )
                return False
            old = self._engine.version
            # The engine replaced frees its compiled ruleset once the last request using it has ended.
            self._engine = engine
            self._loaded_from = digest
            self.last_reload_error = None
            self.failing_cases = ()
            self._keep(digest)
            log.info("rules_reloaded", old_rule_set_version=old, rule_set_version=engine.version)
            return True

    def _take(self, generation: int) -> None:
        if generation == self._seen_generation:
            return  # another thread took it meanwhile
        first_look = self._seen_generation is None
        self._seen_generation = generation
        # On the first look we cannot tell whether a reload was asked for after this worker loaded its
        # rules; reloading when the directory's files are no longer those it loaded covers that gap.
        if first_look and self._loaded_from is not None and last_good.digest(self.rules_dir) == self._loaded_from:
            return
        log.info("rules_reload_requested", generation=generation)
        self.reload()
