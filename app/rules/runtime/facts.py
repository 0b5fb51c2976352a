"""The facts the engine is given for one request (see rules/README.md and app/rules/runtime/compiler.py).

The adapter supplies facts; the engine decides which rules hold. Nothing here tests a rule's condition: it
describes the request, the account and the time as the rules may read them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.rules.language.clauses import CountPattern, count_key
from app.rules.language.model import MISSING, NOT_TEXT, TEXT, Catalog, pattern_names
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
    changes: tuple[dict[str, Any], ...],
    *,
    catalog: Catalog,
    enabled: frozenset[str],
    stored: Mapping[str, str],
    counts: tuple[CountPattern, ...] = (),
) -> list[dict[str, Any]]:
    """One record per change, in order: raw fields, their kinds, the type's parts, what is known of it, and per
    count pattern the change's count (`count_k`, see count_facts)."""
    first_named: dict[str, int] = {}
    records = []
    for index, change in enumerate(changes):
        permission_type = change.get("permission_type")
        earlier = first_named.setdefault(permission_type, index) if isinstance(permission_type, str) else index
        records.append(_record(index, change, earlier, catalog=catalog, enabled=enabled, stored=stored))
    if counts:
        for record, found in zip(
            records, count_facts(changes, catalog=catalog, enabled=enabled, stored=stored, patterns=counts), strict=True
        ):
            record.update({count_key(k): n for k, n in enumerate(found)})
    return records


def _applies(change: Any, named: set[str], *, catalog: Catalog, enabled: frozenset[str]) -> str | None:
    """The type a change sets in the statuses after the request (SPEC §7a), or None: a type sent as text, named
    for the first time, in the catalog, enabled for the tenant, with status open or close."""
    if not isinstance(change, Mapping):
        return None
    permission_type, status = change.get("permission_type"), change.get("permission_status")
    if not isinstance(permission_type, str) or permission_type in named:
        return None
    named.add(permission_type)
    if permission_type in catalog and permission_type in enabled and status in ("open", "close"):
        return permission_type
    return None


def count_facts(
    changes: tuple[dict[str, Any], ...],
    *,
    catalog: Catalog,
    enabled: frozenset[str],
    stored: Mapping[str, str],
    patterns: tuple[CountPattern, ...],
) -> list[tuple[int, ...]]:
    """Per change i, per count pattern (head, tail): the number of catalog permissions the pattern names
    (placeholders bound from change i) that are open after the request, not counting those a later change
    opens, when change i itself opens a permission the pattern names; 0 otherwise (a close, a type named
    before, outside the catalog or not enabled, a type the pattern does not name or whose placeholder it cannot
    bind).

    "After the request" is after_request: the stored statuses overridden by every change whose type and status
    are valid, wherever it stands in the request. "A later change opens" is a valid change j > i that opens a
    permission closed before the request (re-opening one already open opens nothing). So a close counts
    wherever it stands; with 2 open and 2 more opened, the first opened counts 3 and the second 4; with 3 open,
    opening one and closing another is accepted in either order."""
    parts = {value: list(catalog.parts(value).values()) for value in catalog.values}
    parts = {value: found for value, found in parts.items() if len(found) == 2}
    named: set[str] = set()
    applied = [_applies(change, named, catalog=catalog, enabled=enabled) for change in changes]
    after = dict(stored)
    for change, value in zip(changes, applied, strict=True):
        if value is not None:
            after[value] = change["permission_status"]
    open_after = [value for value in parts if after.get(value) == "open"]
    opened_later: set[str] = set()  # permissions closed before the request that a change after i opens
    found: list[tuple[int, ...]] = []
    for change, value in zip(reversed(changes), reversed(applied), strict=True):
        opens = value is not None and change["permission_status"] == "open"
        if not opens or value not in parts:
            found.append((0,) * len(patterns))
        else:
            seen = [other for other in open_after if other not in opened_later]
            found.append(tuple(_count(pattern, value, seen, parts, catalog) for pattern in patterns))
        if value is not None and opens and stored.get(value) != "open":
            opened_later.add(value)
    found.reverse()
    return found


def _count(pattern: CountPattern, value: str, seen: list[str], parts: Mapping[str, list[str]], catalog: Catalog) -> int:
    """How many of the permissions seen open the pattern names, bound from the opened value; 0 when the pattern
    does not name the value itself."""
    head_spec, tail_spec = pattern
    record = catalog.parts(value)
    head, tail = parts[value]
    if not pattern_names(head_spec, tail_spec, head, tail, record):
        return 0
    return sum(1 for other in seen if pattern_names(head_spec, tail_spec, parts[other][0], parts[other][1], record))


def open_for_count(
    changes: tuple[dict[str, Any], ...],
    index: int,
    *,
    catalog: Catalog,
    enabled: frozenset[str],
    stored: Mapping[str, str],
) -> frozenset[str]:
    """The catalog permissions the counts of changes[index] see open (count_facts, for one change and every
    permission): open after the request, less those a change after it opens from closed."""
    named: set[str] = set()
    after = dict(stored)
    later: set[str] = set()
    for position, change in enumerate(changes):
        applied = _applies(change, named, catalog=catalog, enabled=enabled)
        if applied is None:
            continue
        after[applied] = change["permission_status"]
        if position > index and after[applied] == "open" and stored.get(applied) != "open":
            later.add(applied)
    return frozenset(v for v, status in after.items() if status == "open" and v in catalog and v not in later)


def change_record(
    changes: tuple[dict[str, Any], ...],
    index: int,
    *,
    catalog: Catalog,
    enabled: frozenset[str],
    stored: Mapping[str, str],
    counts: tuple[CountPattern, ...] = (),
) -> dict[str, Any]:
    """The record change_records builds for changes[index], without building the others (the counts of a
    change read the whole request: count_facts)."""
    change = changes[index]
    permission_type = change.get("permission_type")
    earlier = index
    if isinstance(permission_type, str):
        earlier = next(
            i
            for i, c in enumerate(changes)
            if isinstance(c.get("permission_type"), str) and c["permission_type"] == permission_type
        )
    record = _record(index, change, earlier, catalog=catalog, enabled=enabled, stored=stored)
    if counts:
        found = count_facts(changes, catalog=catalog, enabled=enabled, stored=stored, patterns=counts)
        record.update({count_key(k): n for k, n in enumerate(found[index])})
    return record


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
        applied = _applies(change, named, catalog=catalog, enabled=enabled)
        if applied is not None:
            after[applied] = change["permission_status"]
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
