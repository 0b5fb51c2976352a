"""Replaying recorded decisions under stored rule-set versions (SPEC §7d: `impact` can replay a decision under the
exact version it was recorded with).

A decision names the stored version its worker ran (`published_version`); one recorded before versions were stored
names only its rule-set version, the hash of what decides, and any stored version with that rule-set version
decides it alike. A decision whose version is not stored cannot be replayed: it is counted and listed as such,
never replayed under another set. Each stored version is written out once (RuleVersions.directory) and loaded
once per run; the replay itself is the impact tool's (app/rules/tools/impact/replay.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from app.errors import UnknownVersion
from app.rules.language.loader import load_rule_set
from app.rules.language.model import RuleSet
from app.rules.language.source import RuleSetInvalid
from app.rules.lifecycle.stored import shown
from app.rules.tools.impact.replay import ImpactReport, Recorded, Under, impact_as_recorded


class StoredVersions(Protocol):
    """What replaying needs of the stored versions (app/service/publication.py RuleVersions)."""

    def directory(self, version: str) -> Path: ...

    def deciding_as(self, rule_set_version: str) -> str | None: ...


class StoredRuleSets:
    """The rule sets of stored versions, each loaded once, and the version each recorded decision was made under."""

    def __init__(self, versions: StoredVersions) -> None:
        self._versions = versions
        self._loaded: dict[str, RuleSet | str] = {}
        self._deciding_as: dict[str, str | None] = {}

    def rule_set(self, version: str) -> RuleSet | str:
        """The stored version's rule set, or why it cannot be had (not stored, or its files do not load)."""
        found = self._loaded.get(version)
        if found is None:
            found = self._loaded[version] = self._load(version)
        return found

    def _load(self, version: str) -> RuleSet | str:
        try:
            return load_rule_set(self._versions.directory(version))
        except UnknownVersion:
            return f"its version {shown(version)} is not stored"
        except RuleSetInvalid as exc:
            return f"its version {shown(version)} does not load ({len(exc.problems)} problem(s))"

    def recorded_under(self, decision: Recorded) -> Under | str:
        """The stored version the decision was recorded with and its rule set, or why it cannot be replayed."""
        version = decision.published_version
        if version is None:
            wanted = decision.rule_set_version
            if wanted not in self._deciding_as:
                self._deciding_as[wanted] = self._versions.deciding_as(wanted)
            version = self._deciding_as[wanted]
            if version is None:
                return f"no stored version decides as rule-set version {wanted}"
        found = self.rule_set(version)
        if isinstance(found, str):
            return found
        if found.version != decision.rule_set_version:  # a stored version's files name what decides: never so
            return (
                f"its version {shown(version)} decides as rule-set version {found.version}, not as recorded "
                f"({decision.rule_set_version})"
            )
        return Under(version, found)


def replay_as_recorded(
    versions: StoredVersions, decisions: Iterable[Recorded], *, limit: int | None = None, seed: int | None = None
) -> ImpactReport:
    """Every decision replayed under the stored version it was recorded with (app/rules/tools/impact/replay.py
    impact_as_recorded); those whose version is not stored are counted and listed as not replayable."""
    stored = StoredRuleSets(versions)
    return impact_as_recorded(decisions, stored.recorded_under, limit=limit, seed=seed)
