"""The rule sets this process found clean, by the digest of the files they were read from.

A set's verdict (lint, contract, regression cases: app/rules/lifecycle/gate.py) is a function of its files alone,
so a second LiveRules in one process (an app built again, a worker warming up on the set the pointer then names)
takes the set without linting it and running its cases again.
"""

from __future__ import annotations

import threading
from pathlib import Path

from app.rules.language.model import RuleSet
from app.rules.lifecycle import last_good
from app.rules.lifecycle.gate import load_clean
from app.rules.tools.cases import RequestLoader

CLEAN_SETS_KEPT = 8


class CleanSets:
    """A few sets found clean, the oldest dropped first. A set is kept only when its files still have the digest
    read before the load: an edit landing meanwhile leaves nothing kept under a digest it does not match."""

    def __init__(self, kept: int = CLEAN_SETS_KEPT) -> None:
        self._kept = kept
        self._sets: dict[str, RuleSet] = {}
        self._lock = threading.Lock()

    def load(self, rules_dir: Path, digest: str, load_request: RequestLoader) -> RuleSet:
        """The set of rules_dir, whose files had `digest` before this call, if it may go live (else RuleSetInvalid
        or CasesFailed, as load_clean raises)."""
        with self._lock:
            kept = self._sets.get(digest)
        if kept is not None:
            return kept
        rule_set = load_clean(rules_dir, load_request)
        if last_good.digest(rules_dir) == digest:
            with self._lock:
                if len(self._sets) >= self._kept:
                    self._sets.pop(next(iter(self._sets)))
                self._sets[digest] = rule_set
        return rule_set


clean_sets = CleanSets()  # the process's own: every LiveRules of the process shares it
