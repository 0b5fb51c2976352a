"""Semantic lint over the whole input space (tools/input_space/space.py): rules that never fire, conditions that never
hold, a catch-all, and policies that refuse a close. Exact: every point of the space is judged, partition by
partition (per permission type); a partition too large to judge is an error at the rules that make it large
(tools/input_space/partitions.py), and every other partition is still judged, so nothing else goes unreported."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field, replace

from app.rules.language.model import Rule, RuleSet
from app.rules.language.source import Problem
from app.rules.tools.input_space.partitions import LargePartition
from app.rules.tools.input_space.space import InputSpace, Point

REMEMBERED_SETS = 16
MAX_NAMED = 3  # earlier rules named in a "never fires" problem before "and N more"


_REMEMBERED: dict[RuleSet, list[Problem]] = {}
_REMEMBERED_LOCK = threading.Lock()


@dataclass
class _Seen:
    """What the space showed about one rule."""

    holds: int = 0  # points where its condition holds
    fires: int = 0  # ... and no earlier rule refuses first
    reaches: int = 0  # points no earlier rule refuses
    decided_by: dict[str, None] = field(default_factory=dict)  # earlier denying rules where it held, in order
    closes_refused: dict[str, None] = field(default_factory=dict)  # catalog values whose close it refuses


def _problem(rule: Rule, text: str, severity: str = "error") -> Problem:
    return Problem(rule.source, rule.line, rule.column, rule.id, text, severity)


def _listed(names: list[str], limit: int) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _observe(space: InputSpace, rule_set: RuleSet) -> dict[str, _Seen]:
    seen = {rule.id: _Seen() for rule in rule_set.rules}
    order = {rule.id: position for position, rule in enumerate(rule_set.rules)}
    stops = [0] * (len(order) + 1)
    for point in space.points:
        (verdict,) = space.verdicts(point)
        denial = verdict.denial.id if verdict.denial is not None else None
        stop = order[denial] if denial is not None else len(order)
        stops[stop] += 1
        for rule_id in verdict.held:
            found = seen[rule_id]
            found.holds += 1
            if order[rule_id] <= stop:
                found.fires += 1
                if rule_id == denial and _is_close(point, rule_set):
                    found.closes_refused.update(dict.fromkeys(space.members[point.permission_type]))
            elif denial is not None:
                found.decided_by[denial] = None
    reaching = len(space.points)
    for rule in rule_set.rules:  # the points no earlier rule refuses
        seen[rule.id].reaches = reaching
        reaching -= stops[order[rule.id]]
    return seen


def _shadows(found: _Seen, order: list[str], catch_all: list[str], policy: bool, policies: set[str]) -> str:
    """The earlier rules to name: a catch-all if one decides, else (for a policy) the earlier policies, since
    every policy also matches changes the validations refuse; else every rule that decides first."""
    by = [r for r in order if r in found.decided_by]
    named = [r for r in by if r in catch_all] or ([r for r in by if r in policies] if policy else []) or by
    return _listed(named, MAX_NAMED)


def _is_close(point: Point, rule_set: RuleSet) -> bool:
    return point.permission_status == "close" and point.permission_type in rule_set.catalog


def semantic_problems(rule_set: RuleSet) -> list[Problem]:
    """Every rule that cannot hold or cannot fire, a catch-all, and each deny policy that refuses a close
    (remembered per rule set: a reload or a case run lints the same set again)."""
    key = rule_set  # frozen: equal sets (rules, their places, catalog, attributes) have equal problems
    with _REMEMBERED_LOCK:
        found = _REMEMBERED.get(key)
    if found is None:
        found = _analyse(rule_set)
        with _REMEMBERED_LOCK:
            if len(_REMEMBERED) >= REMEMBERED_SETS:
                _REMEMBERED.pop(next(iter(_REMEMBERED)))
            _REMEMBERED[key] = found
    return list(found)


def _analyse(rule_set: RuleSet) -> list[Problem]:
    """The problems of every rule. A catch-all hides every later rule behind it; so that one lint run still
    shows what else is wrong, the rules are then judged again with the catch-all set aside, and what that
    shows is added (a rule after it may then be named twice: hidden by the catch-all, and by another rule)."""
    problems, catch_all = _findings(rule_set)
    aside: set[str] = set()
    while catch_all:
        aside |= set(catch_all)
        rules = tuple(r for r in rule_set.rules if r.id not in aside)
        # A set of its own for the engine, which compiles one ruleset per version.
        rest = replace(rule_set, rules=rules, version=f"{rule_set.version}-without-{len(aside)}")
        later, catch_all = _findings(rest)
        problems += [p for p in later if p not in problems]
    return problems


def _too_large(partitions: tuple[LargePartition, ...]) -> list[Problem]:
    """One error per rule that makes a partition too large to judge, at the rule, naming what it reads; a rule
    blamed for several partitions (stock.HK's and stock.JP's, say) is named once, with all their types."""
    blamed: dict[str, list[LargePartition]] = {}
    for partition in partitions:
        for cause in partition.causes:
            blamed.setdefault(cause.rule.id, []).append(partition)
    problems = []
    for rule_id, found in blamed.items():
        largest = max(found, key=lambda partition: partition.size)
        cause = next(c for c in largest.causes if c.rule.id == rule_id)
        merged = replace(largest, members=tuple(v for partition in found for v in partition.members))
        problems.append(_problem(cause.rule, merged.reason(cause)))
    return problems


def _findings(rule_set: RuleSet) -> tuple[list[Problem], list[str]]:
    """The problems of each rule of rule_set, and its catch-alls. A rule live in a partition set aside may hold
    or fire there: it is not said never to, and no rule is called a catch-all while a partition is unjudged."""
    space = InputSpace((rule_set,), set_aside=True)
    seen = _observe(space, rule_set)
    unjudged = {rule_id for partition in space.set_aside for rule_id in partition.live}
    problems = _too_large(space.set_aside)
    catch_all: list[str] = []
    policies = {rule.id for rule in rule_set.rules if rule.is_policy}
    order = [rule.id for rule in rule_set.rules]
    for position, rule in enumerate(rule_set.rules):
        found = seen[rule.id]
        later = len(order) - position - 1
        if rule.id in unjudged and found.fires == 0:
            pass  # it may hold and fire in the partition set aside
        elif found.holds == 0:
            problems.append(_problem(rule, "condition can never hold: no change, account, tenant or time matches it"))
        elif found.fires == 0:
            earlier = _shadows(found, order, catch_all, rule.id in policies, policies)
            problems.append(_problem(rule, f"never fires: every change it matches is refused first by {earlier}"))
        elif found.fires == found.reaches and rule.enforcement == "deny" and not space.set_aside:
            catch_all.append(rule.id)
            hint = f"; the {later} rule(s) after it can never fire" if later else ""
            problems.append(_problem(rule, f"matches every change that reaches it: it refuses every request{hint}"))
        if rule.is_policy and rule.enforcement == "deny" and found.closes_refused:
            values = list(found.closes_refused)
            more = f" (and {len(values) - 1} other type(s))" if len(values) > 1 else ""
            problems.append(
                _problem(
                    rule,
                    f"this rule refuses closing {values[0]}{more}: refusing a reduction of risk is rarely intended",
                    "warning",
                )
            )
    return problems, catch_all


def problems_by_rule(problems: list[Problem]) -> dict[str, list[Problem]]:
    """The problems grouped by rule id (for tests and reports)."""
    grouped: dict[str, list[Problem]] = defaultdict(list)
    for problem in problems:
        grouped[problem.rule_id].append(problem)
    return dict(grouped)
