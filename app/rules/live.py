"""The rule set a running service uses, and swapping in a new one only when it loads clean.

A reload is asked for with `permctl rules reload`, which moves a counter in the database. Each worker
looks at that counter at most every `check_seconds` (on the way into a request) and reloads its own
RULES_DIR when it has moved, so one command reaches every worker on every host. Every set that loads clean
is kept as this host's last good snapshot; a worker that starts while RULES_DIR is broken runs that snapshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from app.rules import snapshot
from app.rules.engine import DurableRulesEngine
from app.rules.lint import load_clean
from app.rules.loader import RuleSetInvalid, rule_set_version

log = structlog.get_logger("app.rules")


class LiveRules:
    """Holds the live engine; reload() compiles rules_dir and keeps the last good set on failure."""

    def __init__(
        self,
        rules_dir: Path,
        *,
        instance_dir: Path | None = None,
        reload_generation: Callable[[], int] | None = None,
        check_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules_dir = Path(rules_dir)
        self._instance_dir = instance_dir
        self._lock = threading.Lock()
        self.last_reload_error: str | None = None
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

    def _start(self) -> DurableRulesEngine:
        try:
            engine = DurableRulesEngine(load_clean(self.rules_dir))
        except RuleSetInvalid as exc:
            kept = snapshot.snapshot_path(self._instance_dir) if self._instance_dir else None
            if kept is None or not kept.is_dir():
                raise
            engine = DurableRulesEngine(load_clean(kept))
            self.last_reload_error = str(exc)
            log.error(
                "rules_invalid_serving_last_good",
                rule_set_version=engine.version,
                problems=[str(p) for p in exc.problems],
            )
            return engine
        self._keep(engine)
        return engine

    def _keep(self, engine: DurableRulesEngine) -> None:
        if self._instance_dir is None:
            return
        kept = snapshot.snapshot_path(self._instance_dir)
        try:
            if not kept.is_dir() or rule_set_version(kept) != engine.version:
                snapshot.save(self.rules_dir, self._instance_dir)
        except OSError as exc:  # another worker may be replacing it at the same moment; either copy is good
            log.warning("rules_snapshot_not_saved", error=str(exc))

    def reload(self) -> bool:
        """Load rules_dir again; swap it in when clean, else keep serving the old set."""
        with self._lock:
            try:
                engine = DurableRulesEngine(load_clean(self.rules_dir))
            except RuleSetInvalid as exc:
                self.last_reload_error = str(exc)
                log.error(
                    "rules_reload_failed",
                    rule_set_version=self._engine.version,
                    problems=[str(p) for p in exc.problems],
                )
                return False
            old = self._engine.version
            self._engine = engine
            self.last_reload_error = None
            self._keep(engine)
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
        # rules; reloading when the directory no longer matches what is loaded covers that gap.
        if first_look and rule_set_version(self.rules_dir) == self._engine.version:
            return
        log.info("rules_reload_requested", generation=generation)
        self.reload()
