"""The message a caller gets for a rule that held for a change, naming the place."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from app.rules.language.model import Rule
from app.rules.runtime.facts import MAX_SHOWN_VALUE, shown_value


def _short(value: object) -> object:
    if isinstance(value, str) and len(value) > MAX_SHOWN_VALUE:
        return value[:MAX_SHOWN_VALUE] + "…"
    return value


class _Values(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""  # a placeholder with nothing to show (e.g. {market} of account.trade) shows nothing


def message_for(rule: Rule, index: int, change: Mapping[str, Any], values: Mapping[str, Any]) -> str:
    """`changes[N].field 'value': <the rule's message, its placeholders filled>`."""
    detail = string.Formatter().vformat(rule.message, (), _Values({k: _short(v) for k, v in values.items()}))
    return f"changes[{index}].{rule.field}{shown_value(change, rule.field)}: {detail}"
