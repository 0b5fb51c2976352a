"""What the inputs of one group of `rules diff` have in common: their permission types (a whole product as a
glob), the facts the group restricts and the values they take there (a fact the group takes every value of is
left out), the related permissions named as the rules name them, and a few points that differ in those."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from app.rules.language.clauses import atoms
from app.rules.language.model import ACCOUNT_STATUSES, PermissionTest
from app.rules.runtime.facts import change_records
from app.rules.tools.input_space.space import MISSING, NOT_TEXT, InputSpace, Point

ABSENT = "(absent)"


def types(points: list[Point], space: InputSpace) -> list[str]:
    """The permission types of a group, a whole product or group of the catalog written as a glob."""
    values = list(dict.fromkeys(v for p in points for v in space.members[p.permission_type]))
    taken = set(values)
    shown: list[str] = []
    done: set[str] = set()
    catalog = [v for v in space.values if v not in (MISSING, NOT_TEXT) and "." in v]
    for value in values:
        if value in done:
            continue
        head = value.partition(".")[0] if "." in value else None
        family = [v for v in catalog if head is not None and v.partition(".")[0] == head]
        if head is not None and len(family) > 1 and all(v in taken for v in family):
            shown.append(f"{head}.* ({len(family)})")
            done.update(family)
        else:
            shown.append(value)
            done.add(value)
    return shown


def _relation_name(point: Point, other: str, space: InputSpace) -> str:
    """How the rules name a related permission for the judged type: through the relation that names it, a
    part bound from the change shown as its placeholder (`stock.<same market>`), a literal or glob part as
    written (`account.withdraw`, `options.*`); the permission itself when no relation of either set names it."""
    for rule_set in space.rule_sets:
        if other not in rule_set.catalog:
            continue
        head, tail = list(rule_set.catalog.parts(other).values())
        change = {"permission_type": point.permission_type, "permission_status": "open"}
        record = change_records((change,), catalog=rule_set.catalog, enabled=frozenset(), stored={})[0]
        for rule in rule_set.rules:
            for test in atoms(rule.condition):
                if isinstance(test, PermissionTest) and test.names(head, tail, record):
                    return ".".join(f"<same {s[1:-1]}>" if s.startswith("{") else s for s in (test.head, test.tail))
    return other


def _shown_related(point: Point, space: InputSpace, names: dict[tuple[str, str], str]) -> list[str]:
    """The related permissions' states, each named as the relation that reads it names it."""
    found = []
    for permission, before, after in point.related:
        key = (point.permission_type, permission)
        if key not in names:
            names[key] = _relation_name(point, permission, space)
        found.append(f"{names[key]} {before}->{after}")
    return found or ["none open"]


@dataclass(frozen=True)
class _Axis:
    """One fact of a group's inputs: how to read it, how to leave it out of a point, the values it can take."""

    name: str  # as in Point.free
    read: Callable[[Point], str]
    without: Callable[[Point], Hashable]
    domain: tuple[str, ...]
    text_only: bool = False  # a fact of a type sent as text only


def _restricted(points: list[Point], axis: _Axis) -> list[str]:
    """The values an axis takes in a group, or nothing when the group does not restrict it: every point that
    reads it has, for each value of its domain, a twin in the group differing only there (or leaves it free)."""
    applicable = [p for p in points if p.is_text] if axis.text_only else points
    bound = [p for p in applicable if axis.name not in p.free]
    if not bound:
        return []
    seen: dict[Hashable, set[str]] = {}
    for point in bound:
        seen.setdefault(axis.without(point), set()).add(axis.read(point))
    domain = set(axis.domain)
    if all(domain <= values for values in seen.values()):
        return []
    return list(dict.fromkeys(axis.read(p) for p in bound))


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _without_attribute(name: str) -> Callable[[Point], Hashable]:
    return lambda p: replace(p, attributes=tuple(a for a in p.attributes if a[0] != name))


def _axes(space: InputSpace) -> list[tuple[str, _Axis]]:
    """The facts a group description may state, each under its key in the description."""
    found = [
        (
            "permission_status",
            _Axis("status", lambda p: p.permission_status, lambda p: replace(p, permission_status=""), space.statuses),
        ),
        (
            "current_status",
            _Axis(
                "current", lambda p: p.current_status, lambda p: replace(p, current_status=""), ("close", "open"), True
            ),
        ),
        (
            "named_earlier",
            _Axis(
                "named",
                lambda p: _yes(p.named_earlier),
                lambda p: replace(p, named_earlier=False, earlier_status=""),
                ("yes", "no"),
                True,
            ),
        ),
        (
            "enabled_for_tenant",
            _Axis("enabled", lambda p: _yes(p.enabled), lambda p: replace(p, enabled=False), ("yes", "no"), True),
        ),
        (
            "account_status",
            _Axis(
                "account_status", lambda p: p.account_status, lambda p: replace(p, account_status=""), ACCOUNT_STATUSES
            ),
        ),
        ("tenant", _Axis("tenant", lambda p: p.tenant, lambda p: replace(p, tenant=""), space.tenants)),
        (
            "time",
            _Axis(
                "time",
                lambda p: _interval(space, p.interval),
                lambda p: replace(p, interval=-1),
                tuple(_interval(space, i) for i in range(len(space.moments))),
            ),
        ),
    ]
    found.append(
        (
            "count",
            _Axis("count", lambda p: _counted(space, p.counted), lambda p: replace(p, counted=()), _counts(space)),
        )
    )
    for name, values in space.attributes.items():
        domain = tuple(ABSENT if v is None else v for v in values)
        found.append(
            (f"attributes.{name}", _Axis(f"a_{name}", _attribute_reader(name), _without_attribute(name), domain))
        )
    return found


def _counted(space: InputSpace, counted: tuple[tuple[str, str, int], ...]) -> str:
    """How many other permissions each count names are open after the judged change (the cap: or more)."""
    parts = []
    for head, tail, n in counted:
        more = " or more" if n >= space.count_caps[(head, tail)] else ""
        parts.append(f"{n}{more} other {head}.{tail} open")
    return " and ".join(parts) or "none counted"


def _counts(space: InputSpace) -> tuple[str, ...]:
    """Every value the count axis takes: each number of others open, per count pattern of the space."""
    patterns = sorted(space.count_caps)
    ranges = [[(head, tail, n) for n in range(space.count_caps[(head, tail)] + 1)] for head, tail in patterns]
    return tuple(_counted(space, tuple(combination)) for combination in itertools.product(*ranges)) if ranges else ()


def _interval(space: InputSpace, index: int) -> str:
    moments = space.moments

    def shown(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%MZ")

    if len(moments) == 1:
        return "any time"
    if index == 0:
        return f"before {shown(moments[1])}"
    if index == len(moments) - 1:
        return f"from {shown(moments[index])}"
    return f"{shown(moments[index])} to {shown(moments[index + 1])}"


def _attribute_reader(name: str) -> Callable[[Point], str]:
    return lambda point: dict(point.attributes).get(name, ABSENT)


def describe(points: list[Point], space: InputSpace) -> dict[str, Any]:
    """The inputs, the permission types, each restricted fact with its values, and the related permissions."""
    facts: dict[str, Any] = {
        "inputs": sum(space.weight(p) for p in points),
        "permission_types": types(points, space),
    }
    for key, axis in _axes(space):
        facts[key] = ", ".join(_restricted(points, axis))
    if any("related" not in p.free for p in points if p.is_text):
        names: dict[tuple[str, str], str] = {}
        shown = (s for p in points if "related" not in p.free for s in _shown_related(p, space, names))
        facts["related"] = list(dict.fromkeys(shown))
    return {k: v for k, v in facts.items() if v not in ("", "any", [])}


def distinct(points: list[Point], space: InputSpace, count: int) -> list[Point]:
    """Up to `count` points that differ in the type, the related permissions or a fact the points restrict (not
    merely in a fact they take every value of)."""
    restricted = [axis for _, axis in _axes(space) if _restricted(points, axis)]
    chosen: dict[tuple[Any, ...], Point] = {}
    for point in points:
        key = (point.permission_type, point.related, *(axis.read(point) for axis in restricted))
        chosen.setdefault(key, point)
        if len(chosen) == count:
            break
    return list(chosen.values())
