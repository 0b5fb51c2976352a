"""A decision as the caller's answer: the envelope's code, message and data (failure_index, rule_id, warnings),
and the dryrun hits the caller never sees.

answer_of() is the one place a Decision becomes an answer: the service (and through it the HTTP body), the
regression cases, impact's replay and explain all read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from app.errors import ChangeRejected, Code
from app.rules.runtime.decision import Decision, Hit


def code_name(code: int) -> str:
    """The name of an envelope code (the number itself for a code this version does not know)."""
    return Code(code).name if code in Code._value2member_map_ else str(code)


@dataclass(frozen=True)
class Answer:
    """What the caller is told for a decision, and the policies that held on the way to it.

    warnings holds every warn policy that held before the answer (all of them are recorded); the caller reads
    them in data.warnings only when the request is accepted. A hit's message is rendered when first asked."""

    code: int
    message: str
    failure_index: int = 0
    rule_id: str | None = None
    warnings: tuple[Hit, ...] = ()
    dryruns: tuple[Hit, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.code == Code.SUCCESS

    @property
    def code_name(self) -> str:
        return code_name(self.code)

    @property
    def warned_by(self) -> tuple[str, ...]:
        """Every warn policy that held, by rule id, in order (what the decision record keeps)."""
        return tuple(h.rule.id for h in self.warnings)

    @property
    def dryrun_by(self) -> tuple[str, ...]:
        """Every dryrun policy that held, by rule id, in order: recorded, never shown to the caller."""
        return tuple(h.rule.id for h in self.dryruns)

    @cached_property
    def data(self) -> Mapping[str, Any]:
        """The envelope's data: failure_index and rule_id of a refusal; failure_index and, when a warn policy held,
        warnings of an accepted request (SPEC §3, §7a)."""
        if not self.accepted:
            return {"failure_index": self.failure_index, "rule_id": self.rule_id}
        data: dict[str, Any] = {"failure_index": 0}
        if self.warnings:
            data["warnings"] = [w.as_warning() for w in self.warnings]
        return data

    def refusal(self) -> ChangeRejected | None:
        """The error the service raises for a refused request (None when it is accepted)."""
        if self.accepted or self.rule_id is None:
            return None
        return ChangeRejected(Code(self.code), self.message, failure_index=self.failure_index, rule_id=self.rule_id)


def answer_of(decision: Decision) -> Answer:
    """The answer the service gives for a decision: success, or the first denial's outcome at its change."""
    hit = decision.denial
    if hit is None:
        return Answer(int(Code.SUCCESS), "success", warnings=decision.warnings, dryruns=decision.dryruns)
    return Answer(int(Code[hit.rule.outcome]), hit.message, hit.index, hit.rule.id, decision.warnings, decision.dryruns)
