"""The rule set a running service uses, and swapping in a new one only when it may go live.

A reload is asked for with `permctl rules reload`, which moves a counter in the database. Each worker
looks at that counter at most every `check_seconds` (on the way into a request) and reloads its own
RULES_DIR when it has moved, so one command reaches every worker on every host. A set goes live only when it
lints clean and every regression case under cases/ passes (app/rules/lifecycle/gate.py); otherwise the worker
keeps the set it runs and says why (last_reload_error, and the failing cases by name, in /readyz). Every set
that goes live is kept as this host's last good snapshot; a worker that starts while RULES_DIR is broken, or
fails its cases, runs that snapshot.
"""

from __future__ import annotations

import threading
import time
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


class LiveRules:
    """Holds the live engine; reload() takes rules_dir when it may go live and keeps the last good set if not."""

    def __init__(
        self,
        rules_dir: Path,
        *,
        load_request: RequestLoader,  # the API's request loader, for the regression cases (gate.py)
        instance_dir: Path | None = None,
        reload_generation: Callable[[], int] | None = None,
        check_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules_dir = Path(rules_dir)
        self._load_request = load_request
        self._instance_dir = instance_dir
        self._lock = threading.Lock()
        self.last_reload_error: str | None = None
        self.failing_cases: tuple[str, ...] = ()  # the regression cases that refused the last set, by name
        self._loaded_from: str | None = None  # digest of the rules_dir files the live set came from; None: snapshot
        self._engine = self._start()
        self._generation = reload_generation
        self._check_seconds = check_seconds
        self._clock = clock
        self._next_check = 0.0
        self._seen_generation: int | None = None  # read on the first request: nothing connects at start

    @property
    def engine(self) -> DurableRulesEngine:
        """The engine of the live rule set (after honouring a pending reload request)."""
        self._maybe_reload()
        return self._engine

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
            self._engine = engine
            self._loaded_from = digest
            self.last_reload_error = None
            self.failing_cases = ()
            self._keep(digest)
            log.info("rules_reloaded", old_rule_set_version=old, rule_set_version=engine.version)
            return True

    def _read_generation(self) -> int | None:
        if self._generation is None:
            return None
        try:
            return self._generation()
        except Exception as exc:  # the database may be down; the next check will try again
            log.warning("rules_reload_check_failed", error=type(exc).__name__)
            return None

    def _maybe_reload(self) -> None:
        if self._generation is None or self._clock() < self._next_check:
            return
        self._next_check = self._clock() + self._check_seconds
        generation = self._read_generation()
        if generation is None or generation == self._seen_generation:
            return
        first_look = self._seen_generation is None
        self._seen_generation = generation
        # On the first look we cannot tell whether a reload was asked for after this worker loaded its
        # rules; reloading when the directory's files are no longer those it loaded covers that gap.
        if first_look and self._loaded_from is not None and last_good.digest(self.rules_dir) == self._loaded_from:
            return
        log.info("rules_reload_requested", generation=generation)
        self.reload()
