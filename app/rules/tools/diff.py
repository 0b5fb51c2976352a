"""The semantic difference of two rule sets over the input space both can see (input_space/space.py): every
input whose verdict, message, warnings or dryrun hits change, grouped by the old and the new deciding rule,
with a compact description of each group. The plan before an apply, independent of recorded traffic."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.rules.language.model import Rule, RuleSet
from app.rules.runtime.decision import ChangeVerdict
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

    return RuleSetDiff(old.version, new.version, len(space.points), sorted(groups.values(), key=rank), space)


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


def _shown_related(point: Point) -> list[str]:
    """The related permissions' states, a part shared with the judged type written as its placeholder."""
    head, _, tail = point.permission_type.partition(".")
    found = []
    for permission, before, after in point.related:
        other_head, _, other_tail = permission.partition(".")
        if other_tail == tail:
            permission = f"{other_head}.<same {'market' if other_head != head else 'name'}>"
        elif other_head == head:
            permission = f"<same product>.{other_tail}"
        found.append(f"{permission} {before}->{after}")
    return found or ["none open"]


def _values(points: list[Point], axis: str, read: Callable[[Point], object], domain: list[str] | None = None) -> str:
    """The values of one axis in a group: 'any' when some point leaves it free or all values appear."""
    applicable = [p for p in points if p.is_text] if axis in ("current", "named", "enabled") else points
    if not applicable:
        return ""
    if any(axis in p.free for p in applicable):
        return "any"
    seen = list(dict.fromkeys(str(read(p)) for p in applicable))
    if domain is not None and set(domain) <= set(seen):
        return "any"
    return ", ".join(seen)


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


def _attribute_reader(name: str) -> Callable[[Point], object]:
    return lambda point: dict(point.attributes).get(name, "(absent)")


def describe(group: Group, space: InputSpace) -> dict[str, Any]:
    """A compact description of a group's inputs: each fact and the values it takes there."""
    points = group.points
    types = _types(points, space)
    facts: dict[str, Any] = {
        "inputs": sum(space.weight(p) for p in points),
        "permission_types": types,
        "permission_status": _values(points, "status", lambda p: p.permission_status, list(space.statuses)),
        "current_status": _values(points, "current", lambda p: p.current_status, ["close", "open"]),
        "named_earlier": _values(points, "named", lambda p: "yes" if p.named_earlier else "no", ["yes", "no"]),
        "enabled_for_tenant": _values(points, "enabled", lambda p: "yes" if p.enabled else "no", ["yes", "no"]),
        "account_status": _values(points, "account_status", lambda p: p.account_status),
        "tenant": _values(points, "tenant", lambda p: p.tenant),
        "time": _values(points, "time", lambda p: _interval(space, p.interval)),
    }
    for name in space.attributes:
        facts[f"attributes.{name}"] = _values(points, f"a_{name}", _attribute_reader(name))
    if any("related" not in p.free for p in points if p.is_text):
        related = list(dict.fromkeys(s for p in points if "related" not in p.free for s in _shown_related(p)))
        facts["related"] = related
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
                "examples": [example(p, result.space) for p in g.points[:EXAMPLES]],
            }
            for g in result.groups
        ],
    }


HEADINGS = {
    "verdict": "verdict changes (old -> new deciding rule)",
    "message": "message changes (same rule and code, different text)",
    "warning": "warning changes (old -> new warn rule; '-' is none)",
    "dryrun": "dryrun changes (old -> new dryrun rule; '-' is none)",
}


def report_lines(result: RuleSetDiff) -> list[str]:
    """The text report: a heading per kind of difference, a line per group and its description."""
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
    return lines
