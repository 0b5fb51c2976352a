"""The rule set a running service uses, and swapping in a new one only when it loads clean."""

from __future__ import annotations

import threading
from pathlib import Path

import structlog

from app.rules.engine import DurableRulesEngine
from app.rules.lint import load_clean
from app.rules.loader import RuleSetInvalid

log = structlog.get_logger("app.rules")


class LiveRules:
    """Holds the live engine; reload() compiles rules_dir and keeps the last good set on failure."""

    def __init__(self, rules_dir: Path) -> None:
        self.rules_dir = Path(rules_dir)
        self._lock = threading.Lock()
        self.last_reload_error: str | None = None
        self._engine = DurableRulesEngine(load_clean(self.rules_dir))

    @property
    def engine(self) -> DurableRulesEngine:
        """The engine of the live rule set."""
        return self._engine

    def reload(self) -> bool:
        """Load rules_dir again; swap it in when clean, else keep serving the old set."""
        with self._lock:
            try:
                engine = DurableRulesEngine(load_clean(self.rules_dir))
            except RuleSetInvalid as exc:
                self.last_reload_error = str(exc)
                log.error("rules_reload_failed", rule_set_version=self._engine.version,
                          problems=[str(p) for p in exc.problems])
                return False
            old = self._engine.version
            self._engine = engine
            self.last_reload_error = None
            log.info("rules_reloaded", old_rule_set_version=old, rule_set_version=engine.version)
            return True
