"""The semantic difference of two rule sets over the input space both can see (input_space/space.py): every
input whose verdict, message, warnings or dryrun hits change, grouped by the old and the new deciding rule,
with a compact description of each group. The plan before an apply, independent of recorded traffic."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from app.rules.language.model import Rule, RuleSet
from app.rules.runtime.decision import ChangeVerdict
from app.rules.tools import declared, group_facts
from app.rules.tools.declared import DeclarationChanges, declaration_changes
from app.rules.tools.input_space.space import InputSpace, Point

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


def describe(group: Group, space: InputSpace) -> dict[str, Any]:
    """A compact description of a group's inputs: the condition that sets them apart, i.e. each fact whose
    values the group restricts and those values (a fact the group covers whole is left out)."""
    return group_facts.describe(group.points, space)


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
    """Up to EXAMPLES points of a group that differ in what sets the group apart."""
    return group_facts.distinct(group.points, space, EXAMPLES)


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
