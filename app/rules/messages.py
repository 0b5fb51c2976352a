"""Turn the engine's verdict into the error the caller sees, its message naming the place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.errors import ChangeRejected, Code
from app.rules.engine import Verdict
from app.rules.facts import MAX_SHOWN_VALUE, shown_value
from app.rules.model import MESSAGE_PLACEHOLDERS


def _short(value: object) -> object:
    if isinstance(value, str) and len(value) > MAX_SHOWN_VALUE:
        return value[:MAX_SHOWN_VALUE] + "…"
    return value


def rejection(verdict: Verdict, change: Mapping[str, Any]) -> ChangeRejected:
    """The ChangeRejected a failed verdict stands for, with its message naming the place."""
    rule, facts = verdict.rule, verdict.facts
    assert rule is not None
    detail = rule.message.format(**{name: _short(facts.get(name, "")) for name in MESSAGE_PLACEHOLDERS})
    place = f"changes[{verdict.index}].{rule.field}{shown_value(change, rule.field)}"
    return ChangeRejected(Code[rule.outcome], f"{place}: {detail}", failure_index=verdict.index, rule_id=rule.id)
