"""The oracle: a plain-Python evaluator of the same RuleSet, written from SPEC §3.2/§7a, not from the adapter.

It reads a DecisionInput as the service builds it and works out everything itself: each change's facts (kinds,
parts, catalog, tenant, duplicates, stored status), the statuses the account would have after the request, the
account's attributes and the time. Each rule's condition (and window) is turned into a Python closure once, at
construction. It shares no code with app/rules/runtime/facts.py, compiler.py or engine.py, so agreeing with the adapter
on a corpus checks the facts the adapter builds, their compilation and durable_rules' joins together.

Conditions are evaluated in three-valued logic: a relation whose placeholder the change cannot bind (e.g.
`stock.{market}` for account.trade) is unknown, and a rule holds only when its condition is true. That is the
language's rule that a placeholder binds only for a change that has the field, under `not` as well.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from app.rules.language.model import (
    AccountTest,
    All,
    AnyOf,
    Catalog,
    ChangeTest,
    Condition,
    CountTest,
    Match,
    Not,
    PermissionTest,
    Rule,
    RuleSet,
    TenantTest,
    Window,
)
from app.rules.runtime.decision_input import DecisionInput

Facts = dict[str, Any]
Truth = bool | None  # None: unknown (a placeholder with nothing to bind)
Test = Callable[[Facts, "Request"], Truth]
Held = tuple[frozenset[str], ...]
_ABSENT = object()


class Request:
    """What every change of one request shares: the context and the statuses before and after."""

    __slots__ = ("account", "after", "at", "before", "tenant")

    def __init__(self, decision_input: DecisionInput, after: dict[str, str]) -> None:
        self.tenant = decision_input.tenant_id
        self.account = {"status": decision_input.account_status, **decision_input.attributes}
        self.at = decision_input.at
        self.before = decision_input.stored
        self.after = after


def _kind(change: Mapping[str, Any], name: str) -> str:
    if name not in change:
        return "missing"
    return "text" if isinstance(change[name], str) else "not_text"


def change_facts(decision_input: DecisionInput, catalog: Catalog, enabled: frozenset[str]) -> list[Facts]:
    """The facts SPEC §7a names for each change, from the request as sent."""
    out: list[Facts] = []
    seen: set[str] = set()
    for change in decision_input.changes:
        facts: Facts = {f"{name}__kind": _kind(change, name) for name in ("permission_type", "permission_status")}
        if facts["permission_status__kind"] == "text":
            facts["permission_status"] = change["permission_status"]
        facts["named_earlier"] = False
        permission_type = change.get("permission_type")
        if isinstance(permission_type, str):
            facts["permission_type"] = permission_type
            facts.update(catalog.parts(permission_type))
            facts["in_catalog"] = permission_type in catalog
            facts["enabled_for_tenant"] = permission_type in enabled
            facts["current_status"] = decision_input.stored.get(permission_type, "close")
            facts["named_earlier"] = permission_type in seen
            seen.add(permission_type)
            valid = permission_type in catalog and permission_type in enabled
            if valid and not facts["named_earlier"] and change.get("permission_status") in ("open", "close"):
                facts["applied__"] = permission_type  # this change moves the permission in the state after
        out.append(facts)
    # What a count leaves out (SPEC §7b): the permissions, closed before the request, that a later change opens.
    later: set[str] = set()
    for facts in reversed(out):
        facts["opened_later__"] = frozenset(later)
        applied = facts.get("applied__")
        opens = applied is not None and facts.get("permission_status") == "open"
        if opens and decision_input.stored.get(applied) != "open":
            later.add(applied)
    return out


def after_request(decision_input: DecisionInput, catalog: Catalog, enabled: frozenset[str]) -> dict[str, str]:
    """Stored statuses overridden by each change whose type and status are valid; a type's first mention counts."""
    after = dict(decision_input.stored)
    mentioned: set[str] = set()
    for change in decision_input.changes:
        permission_type, status = change.get("permission_type"), change.get("permission_status")
        if not isinstance(permission_type, str) or permission_type in mentioned:
            continue
        mentioned.add(permission_type)
        if permission_type in catalog and permission_type in enabled and status in ("open", "close"):
            after[permission_type] = status
    return after


def _matches(value: Any, match: Match, facts: Facts) -> bool:
    if value is _ABSENT:
        return False
    if match.same_as is not None:
        other = facts.get(match.same_as, _ABSENT)
        return other is not _ABSENT and value == other
    for wanted in match.values:
        if isinstance(wanted, bool):
            if value is wanted:
                return True
        elif isinstance(value, str) and (
            value == wanted or (("*" in wanted or "?" in wanted) and fnmatchcase(value, wanted))
        ):
            return True
    return False


def _part(spec: str) -> Callable[[str, Facts], Truth]:
    """A test of a permission's head or tail: a placeholder bound from the change, or a literal or glob."""
    if spec.startswith("{"):
        bound = spec[1:-1]
        return lambda part, facts: None if bound not in facts else part == facts[bound]
    if "*" in spec or "?" in spec:
        return lambda part, _facts: fnmatchcase(part, spec)
    return lambda part, _facts: part == spec


class Oracle:
    """Per change, every rule whose condition held; and the decision SPEC §3.2 step 4 makes of it."""

    def __init__(self, rule_set: RuleSet) -> None:
        self.rule_set = rule_set
        self._parts = {t: tuple(rule_set.catalog.parts(t).values()) for t in rule_set.catalog.values}
        self._rules = tuple((rule.id, self._rule_test(rule)) for rule in rule_set.rules)
        self._enabled: dict[tuple[str, ...], frozenset[str]] = {}  # per tenant config, as any implementation keeps

    def held(self, decision_input: DecisionInput) -> Held:
        """Per change, in order, the ids of every rule whose condition (and window) holds."""
        catalog = self.rule_set.catalog
        patterns = decision_input.tenant_patterns
        enabled = self._enabled.get(patterns)
        if enabled is None:
            enabled = self._enabled.setdefault(patterns, frozenset(catalog.expand(patterns)))
        request = Request(decision_input, after_request(decision_input, catalog, enabled))
        return tuple(
            frozenset(rule_id for rule_id, test in self._rules if test(facts, request) is True)
            for facts in change_facts(decision_input, catalog, enabled)
        )

    def decision(
        self, held: Held
    ) -> tuple[tuple[int, str] | None, tuple[tuple[int, str], ...], tuple[tuple[int, str], ...]]:
        """(first denial as (index, rule id), warnings, dryrun hits) before it, in change then file order."""
        warnings: list[tuple[int, str]] = []
        dryruns: list[tuple[int, str]] = []
        for index, rules_held in enumerate(held):
            for rule in self.rule_set.rules:
                if rule.id not in rules_held:
                    continue
                if rule.enforcement == "warn":
                    warnings.append((index, rule.id))
                elif rule.enforcement == "dryrun":
                    dryruns.append((index, rule.id))
                else:
                    return (index, rule.id), tuple(warnings), tuple(dryruns)
        return None, tuple(warnings), tuple(dryruns)

    def _rule_test(self, rule: Rule) -> Test:
        condition = self._test(rule.condition)
        if rule.window is None:
            return condition
        in_window = self._window(rule.window)
        return lambda facts, request: condition(facts, request) if in_window(request.at) else False

    @staticmethod
    def _window(window: Window) -> Callable[[datetime], bool]:
        start, end = window.start, window.end
        return lambda at: (start is None or start <= at) and (end is None or at < end)

    def _test(self, condition: Condition) -> Test:
        if isinstance(condition, All | AnyOf):
            parts = tuple(self._test(p) for p in condition.parts)
            return _all(parts) if isinstance(condition, All) else _any(parts)
        if isinstance(condition, Not):
            inner = self._test(condition.part)
            return lambda facts, request: None if (t := inner(facts, request)) is None else not t
        if isinstance(condition, ChangeTest):
            name, match = condition.field, condition.match
            if match.kind is not None:
                key, kind = f"{name}__kind", match.kind
                return lambda facts, _request: facts[key] == kind
            return lambda facts, _request: _matches(facts.get(name, _ABSENT), match, facts)
        if isinstance(condition, AccountTest):
            name, match = condition.field, condition.match
            return lambda _facts, request: _matches(request.account.get(name, _ABSENT), match, {})
        if isinstance(condition, TenantTest):
            match = condition.match
            return lambda _facts, request: _matches(request.tenant, match, {})
        if isinstance(condition, CountTest):
            return self._count(condition)
        return self._relation(condition)

    def _count(self, test: CountTest) -> Test:
        """Whether this change opens a permission the pattern names and more than the bound of those it names are
        open after the request, leaving out those a later change opens (SPEC §7b): the change that would exceed
        the bound is refused, a close never is."""
        head, tail = _part(test.head), _part(test.tail)
        parts = {value: found for value, found in self._parts.items() if len(found) == 2}

        def named(permission_type: str, facts: Facts) -> bool:
            first, second = parts[permission_type]
            return bool(head(first, facts)) and bool(tail(second, facts))

        def count(facts: Facts, request: Request) -> Truth:
            opened = facts.get("applied__")
            if opened is None or facts.get("permission_status") != "open" or opened not in parts:
                return False
            if not named(opened, facts):
                return False
            later = facts["opened_later__"]
            n = sum(
                1
                for permission_type, status in request.after.items()
                if status == "open"
                and permission_type in parts
                and permission_type not in later
                and named(permission_type, facts)
            )
            return n > test.more_than

        return count

    def _relation(self, test: PermissionTest) -> Test:
        """Whether some permission of the account, named by the template, is open (or none is: close)."""
        head, tail = _part(test.head), _part(test.tail)
        parts = self._parts
        wants_open = test.status == "open"

        def relation(facts: Facts, request: Request) -> Truth:
            statuses = request.before if test.state == "before" else request.after
            for permission_type, status in statuses.items():
                if status != "open" or permission_type not in parts:
                    continue
                first, second = parts[permission_type]
                h, t = head(first, facts), tail(second, facts)
                if h is None or t is None:
                    return None
                if h and t:
                    return wants_open
            if head("", facts) is None or tail("", facts) is None:
                return None  # nothing open to compare with, but the placeholder is unbound all the same
            return not wants_open

        return relation


def _all(parts: tuple[Test, ...]) -> Test:
    def every(facts: Facts, request: Request) -> Truth:
        unknown = False
        for part in parts:
            truth = part(facts, request)
            if truth is False:
                return False
            unknown = unknown or truth is None
        return None if unknown else True

    return every


def _any(parts: tuple[Test, ...]) -> Test:
    def some(facts: Facts, request: Request) -> Truth:
        unknown = False
        for part in parts:
            truth = part(facts, request)
            if truth is True:
                return True
            unknown = unknown or truth is None
        return None if unknown else False

    return some
