"""Turn the changes of a request into the facts the rules test (see rules/README.md)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from app.rules.model import Catalog

MISSING = "missing"
TEXT = "text"
OTHER = "not_text"
MAX_SHOWN_VALUE = 80


def _engine_text(value: str) -> str:
    # The engine rejects lone surrogates and reads NUL as the end of a string: hand it a lossless escape.
    return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _kind(change: Mapping[str, Any], name: str) -> str:
    if name not in change:
        return MISSING
    return TEXT if isinstance(change[name], str) else OTHER


def change_facts(
    changes: Sequence[Mapping[str, Any]],
    *,
    catalog: Catalog,
    enabled: frozenset[str],
    current: Mapping[str, str],
) -> list[dict[str, Any]]:
    """One fact record per change, in order; `current` maps permission_type to its stored status."""
    records: list[dict[str, Any]] = []
    first_named: dict[str, int] = {}
    for index, change in enumerate(changes):
        record: dict[str, Any] = {"index": index}
        for name in ("permission_type", "permission_status"):
            kind = _kind(change, name)
            record[f"{name}__kind"] = kind
            if kind == TEXT:
                record[name] = _engine_text(change[name])
        if record["permission_type__kind"] == TEXT:
            permission_type = change["permission_type"]
            record["in_catalog"] = permission_type in catalog
            record["enabled_for_tenant"] = permission_type in enabled
            record["current_status"] = current.get(permission_type, "close")
            earlier = first_named.setdefault(permission_type, index)
            record["named_earlier"] = earlier != index
            record["earlier_index"] = earlier
        else:
            record["named_earlier"] = False
        records.append(record)
    return records


def shown_value(change: Mapping[str, Any], name: str) -> str:
    """The offending value as it appears in a message: quoted text, JSON otherwise, cut to size."""
    if name not in change:
        return ""
    value = change[name]
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) > MAX_SHOWN_VALUE:
        text = text[:MAX_SHOWN_VALUE] + "…"
    return f" '{text}'" if isinstance(value, str) else f" {text}"
