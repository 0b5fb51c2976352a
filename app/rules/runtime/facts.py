"""The facts the engine is given for one request (see rules/README.md and app/rules/runtime/compiler.py).

The adapter supplies facts; the engine decides which rules hold. Nothing here tests a rule's condition: it
describes the request, the account and the time as the rules may read them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.rules.language.model import MISSING, NOT_TEXT, TEXT, Catalog
from app.rules.runtime.compiler import CHANGE, CONTEXT, PERMISSION

MAX_SHOWN_VALUE = 80


def engine_text(value: str) -> str:
    """The engine rejects lone surrogates and reads NUL as the end of a string: hand it a lossless escape."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _kind(change: Mapping[str, Any], name: str) -> str:
    if name not in change:
        return MISSING
    return TEXT if isinstance(change[name], str) else NOT_TEXT


@dataclass(frozen=True)
class RequestFacts:
    """The context, the permissions open before or after, and one record per change (with its index)."""

    context: dict[str, Any]
    permissions: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    messages: list[dict[str, Any]]  # per change: what a message's placeholders show


def change_records(
    changes: tuple[dict[str, Any], ...], *, catalog: Catalog, enabled: frozenset[str], stored: Mapping[str, str]
) -> list[dict[str, Any]]:
    """One record per change, in order: raw fields, their kinds, the type's parts, and what is known of it."""
    first_named: dict[str, int] = {}
    records = []
    for index, change in enumerate(changes):
        permission_type = change.get("permission_type")
        earlier = first_named.setdefault(permission_type, index) if isinstance(permission_type, str) else index
        records.append(_record(index, change, earlier, catalog=catalog, enabled=enabled, stored=stored))
    return records


def change_record(
    changes: tuple[dict[str, Any], ...],
    index: int,
    *,
    catalog: Catalog,
    enabled: frozenset[str],
    stored: Mapping[str, str],
) -> dict[str, Any]:
    """The record change_records builds for changes[index], without building the others."""
    change = changes[index]
    permission_type = change.get("permission_type")
    earlier = index
    if isinstance(permission_type, str):
        earlier = next(
            i
            for i, c in enumerate(changes)
            if isinstance(c.get("permission_type"), str) and c["permission_type"] == permission_type
        )
    return _record(index, change, earlier, catalog=catalog, enabled=enabled, stored=stored)


def _record(
    index: int,
    change: Mapping[str, Any],
    earlier: int,
    *,
    catalog: Catalog,
    enabled: frozenset[str],
    stored: Mapping[str, str],
) -> dict[str, Any]:
    record: dict[str, Any] = {"t": CHANGE, "index": index}
    for name in ("permission_type", "permission_status"):
        kind = _kind(change, name)
        record[f"{name}__kind"] = kind
        if kind == TEXT:
            record[name] = engine_text(change[name])
    if record["permission_type__kind"] == TEXT:
        permission_type = change["permission_type"]
        record.update({k: engine_text(v) for k, v in catalog.parts(permission_type).items()})
        record["in_catalog"] = permission_type in catalog
        record["enabled_for_tenant"] = permission_type in enabled
        record["current_status"] = stored.get(permission_type, "close")
        record["named_earlier"] = earlier != index
        record["earlier_index"] = earlier
    else:
        record["named_earlier"] = False
    return record


def after_request(
    changes: tuple[dict[str, Any], ...], *, catalog: Catalog, enabled: frozenset[str], stored: Mapping[str, str]
) -> dict[str, str]:
    """The statuses the account would have if the request were accepted (SPEC §7a): stored statuses overridden
    by each change whose type and status are valid, a type named twice counting its first mention."""
    after = dict(stored)
    named: set[str] = set()
    for change in changes:
        permission_type, status = change.get("permission_type"), change.get("permission_status")
        if not isinstance(permission_type, str) or permission_type in named:
            continue
        named.add(permission_type)
        if permission_type in catalog and permission_type in enabled and status in ("open", "close"):
            after[permission_type] = status
    return after


def permission_records(catalog: Catalog, before: Mapping[str, str], after: Mapping[str, str]) -> list[dict[str, Any]]:
    """One record per catalog permission open before or after the request (all others are closed in both)."""
    records = []
    for permission_type in catalog.values:
        was, will = before.get(permission_type, "close"), after.get(permission_type, "close")
        if "open" in (was, will):
            parts = list(catalog.parts(permission_type).values())
            records.append(
                {
                    "t": PERMISSION,
                    "type": permission_type,
                    "head": parts[0],
                    "tail": parts[1],
                    "before": was,
                    "after": will,
                }
            )
    return records


def context_record(*, tenant_id: str, account_status: str, attributes: Mapping[str, str], now: float) -> dict[str, Any]:
    """The one context fact: the tenant, the account's status and attributes, and the time."""
    record: dict[str, Any] = {
        "t": CONTEXT,
        "tenant": engine_text(tenant_id),
        "account_status": account_status,
        "now": now,
    }
    record.update({f"a_{name}": engine_text(value) for name, value in attributes.items()})
    return record


def message_values(
    record: Mapping[str, Any], change: Mapping[str, Any], *, tenant_id: str, attributes: Mapping[str, str]
) -> dict[str, Any]:
    """What a message's placeholders show for one change."""
    values: dict[str, Any] = {k: v for k, v in record.items() if k != "t"}
    for name in ("permission_type", "permission_status"):
        if name in change and not isinstance(change[name], str):
            values[name] = json.dumps(change[name], ensure_ascii=False)
    values["tenant"] = tenant_id
    values.update(attributes)
    return values


def shown_value(change: Mapping[str, Any], name: str) -> str:
    """The offending value as it appears in a message: quoted text, JSON otherwise, cut to size."""
    if name not in change:
        return ""
    value = change[name]
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) > MAX_SHOWN_VALUE:
        text = text[:MAX_SHOWN_VALUE] + "…"
    return f" '{text}'" if isinstance(value, str) else f" {text}"
