"""The semantic difference of two rule sets over the input space both can see (input_space/space.py): every
input whose verdict, message, warnings or dryrun hits change, grouped by the old and the new deciding rule,
with a compact description of each group. The plan before an apply, independent of recorded traffic."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from app.rules.language.clauses import atoms
from app.rules.language.model import ACCOUNT_STATUSES, PermissionTest, Rule, RuleSet
from app.rules.runtime.decision import ChangeVerdict
from app.rules.runtime.facts import change_records
from app.rules.tools import declared
from app.rules.tools.declared import DeclarationChanges, declaration_changes
from app.rules.tools.input_space.space import MISSING, NOT_TEXT, InputSpace, Point

PASS = "pass"
SUCCESS = "SUCCESS"
SHOWN_TYPES = 12  # permission types listed per group before "and N more"
SHOWN_RELATED = 6
EXAMPLES = 3


@dataclass(frozen=True)
class Side:
    """What one rule set answers for a change: the deciding rule (or pass) and its code."""

    rule_id: str
    code: str

    def __str__(self) -> str:
        return PASS if self.rule_id == PASS else f"{self.rule_id} ({self.code})"


def _side(verdict: ChangeVerdict) -> Side:
    denial = verdict.denial
    return Side(PASS, SUCCESS) if denial is None else Side(denial.id, denial.outcome)


@dataclass
class Group:
    """The inputs one kind of difference holds (kind: verdict, message, warning or dryrun)."""

    kind: str
    old: str
    new: str
    points: list[Point] = field(default_factory=list)


@dataclass
class RuleSetDiff:
    """Every difference between two rule sets over their input space."""

    old_version: str
    new_version: str
    compared: int
    groups: list[Group]
    space: InputSpace
    declarations: DeclarationChanges = field(default_factory=DeclarationChanges)

    @property
    def differs(self) -> bool:
        return bool(self.groups)

    def count(self, kind: str) -> int:
        """Distinct inputs with a difference of this kind."""
        return sum(self.space.weight(p) for g in self.groups if g.kind == kind for p in g.points)


def _ids(rules: tuple[Rule, ...]) -> tuple[str, ...]:
    return tuple(rule.id for rule in rules)


def _template(rule: Rule) -> tuple[str, str]:
    return rule.field, rule.message


def _rule(rule_set: RuleSet, rule_id: str) -> Rule | None:
    return next((r for r in rule_set.rules if r.id == rule_id), None)


def diff(old: RuleSet, new: RuleSet) -> RuleSetDiff:
    """Judge every point of the joint input space with both sets and group what differs."""
    space = InputSpace((old, new))
    groups: dict[tuple[str, str, str], Group] = {}

    def add(kind: str, before: str, after: str, point: Point) -> None:
        key = (kind, before, after)
        groups.setdefault(key, Group(kind, before, after)).points.append(point)

    for point in space.points:
        was, now = space.verdicts(point)
        old_side, new_side = _side(was), _side(now)
        if old_side != new_side:
            add("verdict", str(old_side), str(new_side), point)
        elif was.denial is not None and now.denial is not None and _template(was.denial) != _template(now.denial):
            add("message", str(old_side), str(new_side), point)
        for kind, before, after in (
            ("warning", _ids(was.warnings), _ids(now.warnings)),
            ("dryrun", _ids(was.dryruns), _ids(now.dryruns)),
        ):
            for rule_id in dict.fromkeys((*before, *after)):
                if rule_id not in after:
                    add(kind, rule_id, "-", point)
                elif rule_id not in before:
                    add(kind, "-", rule_id, point)
                else:
                    old_rule, new_rule = _rule(old, rule_id), _rule(new, rule_id)
                    if old_rule and new_rule and _template(old_rule) != _template(new_rule):
                        add("message", rule_id, rule_id, point)
    order = {rule.id: i for i, rule in enumerate(new.rules)}
    kinds = ("verdict", "message", "warning", "dryrun")

    def rank(group: Group) -> tuple[int, int, str]:
        deciding = group.new.split(" ")[0]
        return kinds.index(group.kind), order.get(deciding, len(order)), group.old

    return RuleSetDiff(
        old.version,
        new.version,
        len(space.points),
        sorted(groups.values(), key=rank),
        space,
        declaration_changes(old, new),
    )


def _types(points: list[Point], space: InputSpace) -> list[str]:
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
    for name, values in space.attributes.items():
        domain = tuple(ABSENT if v is None else v for v in values)
        found.append(
            (f"attributes.{name}", _Axis(f"a_{name}", _attribute_reader(name), _without_attribute(name), domain))
        )
    return found


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


ABSENT = "(absent)"


def _attribute_reader(name: str) -> Callable[[Point], str]:
    return lambda point: dict(point.attributes).get(name, ABSENT)


def describe(group: Group, space: InputSpace) -> dict[str, Any]:
    """A compact description of a group's inputs: the condition that sets them apart, i.e. each fact whose
    values the group restricts and those values (a fact the group covers whole is left out)."""
    points = group.points
    facts: dict[str, Any] = {
        "inputs": sum(space.weight(p) for p in points),
        "permission_types": _types(points, space),
    }
    for key, axis in _axes(space):
        facts[key] = ", ".join(_restricted(points, axis))
    if any("related" not in p.free for p in points if p.is_text):
        names: dict[tuple[str, str], str] = {}
        shown = (s for p in points if "related" not in p.free for s in _shown_related(p, space, names))
        facts["related"] = list(dict.fromkeys(shown))
    return {k: v for k, v in facts.items() if v not in ("", "any", [])}


def example(point: Point, space: InputSpace) -> dict[str, Any]:
    """One concrete request of a group, as `rules explain` or a case would take it."""
    decision_input, index = space.input_of(point)
    return {
        "tenant": decision_input.tenant_id,
        "tenant_config": list(decision_input.tenant_patterns),
        "account_status": decision_input.account_status,
        "attributes": dict(decision_input.attributes),
        "account": dict(decision_input.stored),
        "at": decision_input.at.isoformat(),
        "changes": list(decision_input.changes),
        "judged_change": index,
    }


def example_points(group: Group, space: InputSpace) -> list[Point]:
    """Up to EXAMPLES points of a group that differ in what sets the group apart (the type, the related
    permissions, the facts the group restricts), not in a fact the group covers whole."""
    restricted = [axis for _, axis in _axes(space) if _restricted(group.points, axis)]
    chosen: dict[tuple[Any, ...], Point] = {}
    for point in group.points:
        key = (point.permission_type, point.related, *(axis.read(point) for axis in restricted))
        chosen.setdefault(key, point)
        if len(chosen) == EXAMPLES:
            break
    return list(chosen.values())


def as_json(result: RuleSetDiff) -> dict[str, Any]:
    """Everything the text report shows, as one JSON object."""
    return {
        "old_version": result.old_version,
        "new_version": result.new_version,
        "inputs_compared": result.compared,
        "differs": result.differs,
        "counts": {kind: result.count(kind) for kind in ("verdict", "message", "warning", "dryrun")},
        "groups": [
            {
                "kind": g.kind,
                "old": g.old,
                "new": g.new,
                **describe(g, result.space),
                "examples": [example(p, result.space) for p in example_points(g, result.space)],
            }
            for g in result.groups
        ],
        **declared.as_json(result.declarations),
    }


HEADINGS = {
    "verdict": "verdict changes (old -> new deciding rule)",
    "message": "message changes (same rule and code, different text)",
    "warning": "warning changes (old -> new warn rule; '-' is none)",
    "dryrun": "dryrun changes (old -> new dryrun rule; '-' is none)",
}


def _field(value: object) -> str:
    if isinstance(value, str):
        return value
    return f"{json.dumps(value)} (not text)"


def example_line(example: dict[str, Any]) -> str:
    """One example request on a line: its changes (the judged one marked), what was open before, the tenant's
    config, the tenant, the account and the time."""
    changes = []
    for index, change in enumerate(example["changes"]):
        shown = " ".join(
            _field(change[k]) if k in change else f"(no {k})" for k in ("permission_type", "permission_status")
        )
        judged = " (judged)" if index == example["judged_change"] and len(example["changes"]) > 1 else ""
        changes.append(f"[{index}] {shown}{judged}")
    opened = [t for t, status in example["account"].items() if status == "open"]
    config = ", ".join(f"'{p}'" for p in example["tenant_config"]) or "none"
    attributes = "".join(f", {k}={v}" for k, v in example["attributes"].items())
    at = example["at"].replace("+00:00", "Z")
    return (
        f"{', '.join(changes)}; open before: {', '.join(opened) or 'none'}; config {config}; "
        f"tenant {example['tenant']}; account {example['account_status']}{attributes}; at {at}"
    )


def report_lines(result: RuleSetDiff) -> list[str]:
    """The text report: a heading per kind of difference, a line per group, the condition that sets it apart
    and up to three example requests (the change judged marked when there are several); then the catalog values
    and attribute declarations added, removed or changed."""
    lines: list[str] = []
    for kind, heading in HEADINGS.items():
        groups = [g for g in result.groups if g.kind == kind]
        if not groups:
            continue
        lines.append(f"{heading}: {result.count(kind)} input(s)")
        for group in groups:
            facts = describe(group, result.space)
            lines.append(f"  {group.old} -> {group.new}: {facts.pop('inputs')} input(s)")
            types = facts.pop("permission_types")
            more = f" and {len(types) - SHOWN_TYPES} more" if len(types) > SHOWN_TYPES else ""
            lines.append(f"      types: {', '.join(types[:SHOWN_TYPES])}{more}")
            related = facts.pop("related", None)
            if facts:
                lines.append("      " + "; ".join(f"{k}: {v}" for k, v in facts.items()))
            if related:
                extra = f" and {len(related) - SHOWN_RELATED} more" if len(related) > SHOWN_RELATED else ""
                lines.append(f"      related: {', '.join(related[:SHOWN_RELATED])}{extra}")
            for point in example_points(group, result.space):
                lines.append(f"      e.g. {example_line(example(point, result.space))}")
    return lines + declared.report_lines(result.declarations)
