"""The input space is sound: a point's verdict is the verdict of every input it stands for.

A point of tools/input_space/space.py is one request standing for many: one type for its class of types, one
value for every value no test tells apart from it (a tenant, an attribute value, a status, a moment of an
interval between window edges), one member of a group of related permissions for any other, and any value at
all for the facts no live clause reads for its type (`Point.free`). Lint and diff judge only the points, so
a point standing for an input that decide() judges otherwise would be a blind spot of the sign-off.

Here Hypothesis draws rule sets (random policies of every kind of test, enforcement, window and relation, as
tests/rules/runtime/test_memo.py makes them; the shipped sets; a set using every kind of test), points of their
spaces, and concrete members of each point: each value replaced by a random value of its class — the class
computed by this test from the values the rules test, not by the space — and every free fact randomised,
unrelated permissions stored open or closed and changed, the changes of related and unrelated permissions each
placed before or after the judged one, and for each count of the point as many random permissions it names
stored open as the point says (at the cap: that many or more), counted as SPEC §7b says: open after the
request, less what a change after the judged one opens (so an opening placed before the judged change counts
and one after it does not).
decide() must give the member's change the point's verdict (the rules that held, the deciding rule, warnings,
dryrun hits), with the memo on and off. Seeded (derandomised), so a failure reproduces.
"""

from __future__ import annotations

import bisect
import json
import random
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from app.rules.language.clauses import rule_clauses
from app.rules.language.loader import load_rule_set
from app.rules.language.model import (
    ACCOUNT_STATUSES,
    AccountTest,
    ChangeTest,
    RuleSet,
    TenantTest,
    pattern_names,
    value_matches,
)
from app.rules.runtime.decision import ChangeVerdict, Trace, decide
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.tools.input_space.space import MISSING, NOT_TEXT, InputSpace, Point
from tests.rules.language.test_parser_oracle import random_condition
from tests.rules.runtime.test_memo import MESSAGE, WINDOWS, window_yaml
from tests.rules.support import BROKER_POLICIES, rules_dir
from tests.rules.tools.test_input_space import EVERY_KIND
from tests.support import SHIPPED_RULES

RANDOM_SETS = 4  # random policy sets, each with its own seed (RANDOM_SETS_SLOW more in the slow run)
RANDOM_SETS_SLOW = 80
POLICIES = (2, 6)  # policies per random set (more read so many facts together that most partitions are set aside)
POINTS_PER_SET = 60  # points drawn from each space ...
MEMBERS_PER_POINT = 3  # ... and concrete members of each
# Values a member may take instead of its representative, kept only when no test tells them apart from it.
TEXT_POOL = ("x", "zz", "ZZ", "OPEN", "Open", "pending", "US", "HK", "stock", "trade", "t1", "t2", "t2x", "s9", "sx")
TENANT_POOL = (*TEXT_POOL, "other-tenant", "tenant-42", "s", "t")
COUNTED = 0.35  # of random policies, those that also bound a count
COUNTS = (
    {"count": {"permission": "options.*", "after": "open", "more_than": 1}},
    {"count": {"permission": "{product}.*", "after": "open", "more_than": 0}},
    {"count": {"permission": "*.{market}", "after": "open", "more_than": 2}},
    {"count": {"permission": "stock.S?", "after": "open", "more_than": 1}},
)
TRIES = 30  # placements of a member's other changes tried before the space's own
RESIDENCY_POOL = ("CN", "CA", "SG", "HK", "US", "DE", "SX", "ZZ", "XX")


class _Judged:
    """One rule set's engine, its space and what the rules test, for drawing members."""

    def __init__(self, rule_set: RuleSet) -> None:
        self.rule_set = rule_set
        self.engine = DurableRulesEngine(rule_set)
        self.space = InputSpace((rule_set,), set_aside=True)  # as lint judges it: a partition too large left out
        atoms = [atom for rule in rule_set.rules for clause in rule_clauses(rule) for _, atom in clause]
        self.tenant_values = [v for a in atoms if isinstance(a, TenantTest) for v in a.match.values]
        self.attribute_values: dict[str, list[str | bool]] = {}
        for atom in atoms:
            if isinstance(atom, AccountTest) and atom.field != "status":
                self.attribute_values.setdefault(atom.field, []).extend(atom.match.values)
        self.status_values = [
            v for a in atoms if isinstance(a, ChangeTest) and a.field == "permission_status" for v in a.match.values
        ]
        self.edges = sorted(
            {
                moment.timestamp()
                for rule in rule_set.rules
                if rule.window is not None
                for moment in (rule.window.start, rule.window.end)
                if moment is not None
            }
        )
        # Per type, the groups of other permissions its live relations name (in the same order for every type
        # of a class: ordered by which relations name them).
        self.groups = {value: self.space._related(value, self.space._facts[value])[1] for value in self.space.values}

    def verdict(self, decision_input: DecisionInput, index: int, *, use_memo: bool) -> ChangeVerdict:
        trace = Trace()
        decide(self.engine, decision_input, use_memo=use_memo, tracer=trace)
        return trace.verdicts[index]


def _signature(value: Any, tested: list[str | bool]) -> tuple[bool, ...]:
    """What the tests of one fact tell of a value: whether each value they name matches it."""
    return (value is None, *(value is not None and value_matches(value, spec) for spec in tested))


def _same_class(rng: random.Random, representative: Any, pool: tuple[Any, ...], tested: list[str | bool]) -> Any:
    """A random value of the pool no test tells apart from the representative (the representative if none)."""
    wanted = _signature(representative, tested)
    found = [v for v in pool if _signature(v, tested) == wanted]
    return rng.choice(found) if found else representative


def _moment(rng: random.Random, judged: _Judged, representative: datetime, free: bool) -> datetime:
    """A random moment in the representative's interval between window edges (any moment, when free)."""
    low = (judged.edges[0] if judged.edges else representative.timestamp()) - 3 * 365 * 86400
    high = (judged.edges[-1] if judged.edges else representative.timestamp()) + 3 * 365 * 86400
    interval = bisect.bisect_right(judged.edges, representative.timestamp())
    for _ in range(50):
        candidate = rng.uniform(low, high)
        if free or bisect.bisect_right(judged.edges, candidate) == interval:
            return datetime.fromtimestamp(candidate, UTC)
    return (
        representative if not judged.edges or interval == 0 else datetime.fromtimestamp(judged.edges[interval - 1], UTC)
    )


def _attributes(rng: random.Random, judged: _Judged, point: Point) -> dict[str, str]:
    shown = dict(point.attributes)
    attributes: dict[str, str] = {}
    for declaration in judged.rule_set.attributes:
        name = declaration.name
        pool: tuple[Any, ...] = (None, *(declaration.values or RESIDENCY_POOL))
        pool = tuple(v for v in pool if v is None or declaration.allows(v))
        if f"a_{name}" in point.free:
            value = rng.choice(pool)
        else:
            value = _same_class(rng, shown.get(name), pool, judged.attribute_values.get(name, []))
        if value is not None:
            attributes[name] = value
    return attributes


def member(rng: random.Random, judged: _Judged, point: Point) -> tuple[DecisionInput, int]:
    """A random concrete request the point stands for, and the index of its judged change."""
    space, catalog = judged.space, judged.rule_set.catalog
    representative, _ = space.input_of(point)
    permission_type = rng.choice(space.members[point.permission_type])
    free = point.free
    status = point.permission_status
    if status not in (MISSING, NOT_TEXT, "open", "close"):
        status = _same_class(rng, status, TEXT_POOL, judged.status_values)
    first: list[dict[str, Any]] = []  # the judged type's earlier mention
    stored: dict[str, str] = {}
    patterns: list[str] = []
    text = permission_type not in (MISSING, NOT_TEXT)
    groups = judged.groups[permission_type]  # the member's own: stock.{market} names stock.HK for options.HK
    related = [other for group in groups for other in group]
    if text:
        current = rng.choice(("open", "close")) if "current" in free else point.current_status
        stored[permission_type] = current
        enabled = rng.random() < 0.5 if "enabled" in free else point.enabled
        if enabled:
            patterns.append(permission_type)
        named = rng.random() < 0.3 if "named" in free else point.named_earlier
        if named:
            earlier = rng.choice(("open", "close")) if "named" in free else point.earlier_status
            first.append({"permission_type": permission_type, "permission_status": earlier})
    judged_change = Point(permission_type, status).change()
    # The changes of other permissions, each placed before or after the judged change (a count sees an opening
    # before it, not one after it; a relation reads the statuses after the request wherever a change stands).
    others: list[dict[str, Any]] = []
    changing: list[dict[str, Any]] = []  # those of unrelated permissions a count of the point names
    # Related permissions in the point's states, each shown by a random member of the member's same group.
    taken: set[str] = set()
    shown = judged.groups[point.permission_type]
    for other, before, after in point.related:
        group = groups[next(i for i, g in enumerate(shown) if other in g)]
        choice = rng.choice([m for m in group if m not in taken])
        taken.add(choice)
        stored[choice] = before
        if after != before:
            patterns.append(choice)
            others.append({"permission_type": choice, "permission_status": after})
    # Permissions no live relation names for this type: any state, before or after the request; stored open
    # only where no count of the point names them (those show the point's counts below).
    counted = _counted_by(judged, point, permission_type)
    for other in catalog.values:
        if other == permission_type or other in taken or (other in related and "related" not in free):
            continue
        roll = rng.random()
        if roll < 0.15 and not counted(other):
            stored[other] = "open"
        if 0.1 < roll < 0.2:
            patterns.append(other)
            change = {"permission_type": other, "permission_status": rng.choice(("open", "close"))}
            (changing if counted(other) else others).append(change)
    # A random placement that can show the point's counts: the changes of permissions a count names may make
    # them unreachable (a close of one the count needs), so later tries leave those out, and the last places
    # every other change after the judged one, as the space does. Some try shows them for every point.
    for attempt in range(TRIES):
        placed = [*others, *(changing if attempt < TRIES // 2 else ())]
        before = [c for c in placed if attempt < TRIES - 1 and rng.random() < 0.5]
        changes = [*first, *before, judged_change, *(c for c in placed if c not in before)]
        index = len(first) + len(before)
        shows = _show_counts(
            rng, judged, point, permission_type, dict(stored), changes, index, patterns, {*taken, *related}
        )
        if shows is not None:
            stored = shows
            break
    else:
        raise AssertionError(f"no request of {permission_type} shows the counts of {point}")
    tenant = representative.tenant_id
    tenant = (
        rng.choice(TENANT_POOL) if "tenant" in free else _same_class(rng, tenant, TENANT_POOL, judged.tenant_values)
    )
    account_status = rng.choice(ACCOUNT_STATUSES) if "account_status" in free else point.account_status
    decision_input = DecisionInput(
        tenant_id=tenant,
        tenant_patterns=tuple(patterns),
        changes=tuple(changes),
        stored=stored,
        account_status=account_status,
        attributes=_attributes(rng, judged, point),
        at=_moment(rng, judged, representative.at, "time" in free),
    )
    return decision_input, index


def _counted_by(judged: _Judged, point: Point, permission_type: str) -> Any:
    """Whether a catalog permission is named by one of the point's counts (bound from the member's type)."""
    catalog = judged.rule_set.catalog
    record = catalog.parts(permission_type) if permission_type not in (MISSING, NOT_TEXT) else {}

    def counted(other: str) -> bool:
        parts = list(catalog.parts(other).values())
        return len(parts) == 2 and any(
            pattern_names(head, tail, parts[0], parts[1], record) for head, tail, _ in point.counted
        )

    return counted


def _seen_open(
    judged: _Judged, changes: list[dict[str, Any]], index: int, stored: dict[str, str], patterns: list[str]
) -> set[str]:
    """What the counts of changes[index] see open, written out from SPEC §7b: the statuses after the request
    (each valid change, a type's first mention), less what a change after index opens from closed."""
    catalog = judged.rule_set.catalog
    after, later, named = dict(stored), set(), set()
    for position, change in enumerate(changes):
        kind, status = change.get("permission_type"), change.get("permission_status")
        if not isinstance(kind, str) or kind in named:
            continue
        named.add(kind)
        if kind in catalog and any(fnmatchcase(kind, p) for p in patterns) and status in ("open", "close"):
            after[kind] = status
            if position > index and status == "open" and stored.get(kind) != "open":
                later.add(kind)
    return {t for t, s in after.items() if s == "open" and t not in later}


def _others_open(judged: _Judged, permission_type: str, pattern: tuple[str, str], seen: set[str]) -> list[str]:
    catalog = judged.rule_set.catalog
    record = catalog.parts(permission_type)
    found = []
    for other in seen:
        parts = list(catalog.parts(other).values())
        shown = other != permission_type and other in catalog and len(parts) == 2
        if shown and pattern_names(*pattern, parts[0], parts[1], record):
            found.append(other)
    return found


def _show_counts(
    rng: random.Random,
    judged: _Judged,
    point: Point,
    permission_type: str,
    stored: dict[str, str],
    changes: list[dict[str, Any]],
    index: int,
    patterns: list[str],
    exclude: set[str],
) -> dict[str, str] | None:
    """The stored statuses with random permissions each count of the point names stored open, as many as it
    says (at its cap: that many or more), the other counts' permissions and the changes of the request
    included: the member shows every count of the point. None when no choice of them shows the counts."""
    catalog = judged.rule_set.catalog
    caps = judged.space.count_caps
    if not point.counted:
        return stored
    for _ in range(50):  # a random choice that shows every count; overlapping counts may take a few tries
        trial = dict(stored)
        for head, tail, n in point.counted:
            record = catalog.parts(permission_type)
            free = [
                other
                for other in catalog.values
                if other != permission_type
                and other not in exclude
                and other not in trial
                and len(catalog.parts(other)) == 2
                and pattern_names(head, tail, *list(catalog.parts(other).values()), record)
            ]
            seen = _seen_open(judged, changes, index, trial, patterns)
            need = n - len(_others_open(judged, permission_type, (head, tail), seen))
            if n >= caps[(head, tail)] and free:
                need = rng.randint(max(need, 0), max(need, len(free)))
            for other in rng.sample(free, min(max(need, 0), len(free))):
                trial[other] = "open"
        seen = _seen_open(judged, changes, index, trial, patterns)
        shown = [
            min(len(_others_open(judged, permission_type, (head, tail), seen)), caps[(head, tail)])
            for head, tail, _ in point.counted
        ]
        if shown == [n for _, _, n in point.counted]:
            return trial
    return None


def _comparable(verdict: ChangeVerdict) -> tuple[Any, ...]:
    """The verdict by rule ids: the rules that held, the deciding rule, the warnings, the dryrun hits."""
    denial = verdict.denial.id if verdict.denial is not None else None
    return (verdict.held, denial, *(tuple(r.id for r in rules) for rules in (verdict.warnings, verdict.dryruns)))


def assert_points_stand_for_their_members(judged: _Judged, seed: int) -> int:
    rng = random.Random(seed)
    points = judged.space.points
    checked = 0
    for point in rng.sample(points, min(POINTS_PER_SET, len(points))):
        representative, index = judged.space.input_of(point)
        expected = _comparable(judged.verdict(representative, index, use_memo=False))
        for n in range(MEMBERS_PER_POINT):
            concrete, concrete_index = member(rng, judged, point)
            use_memo = n % 2 == 0
            found = _comparable(judged.verdict(concrete, concrete_index, use_memo=use_memo))
            assert found == expected, (point, concrete, use_memo)
            checked += 1
    return checked


def random_policies(rng: random.Random, target: Path) -> RuleSet:
    """A few random policies over every kind of test (tests/rules/language/test_parser_oracle.py's atoms: type,
    parts, status, kinds, same_as, catalog and tenant flags, named earlier, current status, attributes,
    tenants, relations before and after), a third of them with a count (COUNTS, negated or not), with random
    enforcement and, for some, a window."""
    text = "policies:\n"
    for n in range(rng.randint(*POLICIES)):
        condition = random_condition(rng, 3)
        if rng.random() < COUNTED:  # with a count, negated or not
            count = rng.choice(COUNTS)
            condition = {"all": [count if rng.random() < 0.7 else {"not": count}, condition]}
        text += f"  - id: random-{n}\n    description: random\n    when: {json.dumps(condition)}\n"
        text += f"    message: {json.dumps(MESSAGE)}\n    enforcement: {rng.choice(('deny', 'warn', 'dryrun'))}\n"
        if rng.random() < 0.4:
            text += window_yaml(*rng.choice(WINDOWS))
    return load_rule_set(rules_dir(target, text))


_SETS: dict[Any, _Judged] = {}


def _judged(key: Any, make: Any) -> _Judged:
    if key not in _SETS:
        _SETS[key] = _Judged(make())
    return _SETS[key]


def _random_set_stands_for_its_members(tmp_path_factory: pytest.TempPathFactory, seed: int) -> None:
    judged = _Judged(random_policies(random.Random(seed), tmp_path_factory.mktemp("random-set")))
    assume(judged.space.points)  # every partition too large to judge: nothing to stand for
    assert assert_points_stand_for_their_members(judged, seed) > 0


RANDOM = settings(
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # a failure names its seed; shrinking a rule set takes too long
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@settings(RANDOM, max_examples=RANDOM_SETS)
@given(seed=st.integers(min_value=0, max_value=2**31))
def test_a_point_stands_for_every_member_of_random_policy_sets(tmp_path_factory, seed):
    _random_set_stands_for_its_members(tmp_path_factory, seed)


@pytest.mark.slow
@settings(RANDOM, max_examples=RANDOM_SETS_SLOW)
@given(seed=st.integers(min_value=2**31, max_value=2**32))
def test_a_point_stands_for_every_member_of_many_more_random_policy_sets(tmp_path_factory, seed):
    _random_set_stands_for_its_members(tmp_path_factory, seed)


@pytest.mark.parametrize("which", ["shipped", "broker-policies", "every-kind"])
@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=0, max_value=2**31))
def test_a_point_stands_for_every_member_of_the_shipped_sets(tmp_path_factory, which, seed):
    def make() -> RuleSet:
        if which == "every-kind":
            return load_rule_set(rules_dir(tmp_path_factory.mktemp("every-kind"), EVERY_KIND))
        return load_rule_set(SHIPPED_RULES if which == "shipped" else BROKER_POLICIES)

    judged = _judged(which, make)
    expected = min(POINTS_PER_SET, len(judged.space.points)) * MEMBERS_PER_POINT
    assert assert_points_stand_for_their_members(judged, seed) == expected


def test_a_member_differs_from_its_point_where_it_may():
    """The members drawn are not the point itself: types, tenants, attributes, times and free facts vary."""
    judged = _judged("broker-policies", lambda: load_rule_set(BROKER_POLICIES))
    rng = random.Random(5)
    differs = {"type": 0, "tenant": 0, "attributes": 0, "at": 0, "changes": 0}
    for point in judged.space.points[:400]:
        representative, _ = judged.space.input_of(point)
        concrete, _ = member(rng, judged, point)
        differs["type"] += concrete.changes != representative.changes
        differs["tenant"] += concrete.tenant_id != representative.tenant_id
        differs["attributes"] += dict(concrete.attributes) != dict(representative.attributes)
        differs["at"] += concrete.at != representative.at
        differs["changes"] += len(concrete.changes) != len(representative.changes)
    assert all(count > 20 for count in differs.values()), differs
