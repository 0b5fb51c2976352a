"""The finite input space of one or more rule sets, and an exact judge of every point of it.

A point is one change being judged with everything a rule can read about it: the permission type (every
catalog value, representatives of values outside the catalog and of banned groups, missing, not text), the
requested status (open, close, other text, missing, not text), the current status, whether the type was named
earlier in the request, whether the tenant enables it, the account's status and declared attributes (each
value, a representative of "any other", or absent), the tenant, the time (each interval between window
bounds), the before/after states of the permissions the rules relate to it (`permission: stock.{market}`), and
per count a live clause bounds (`count: {permission: options.*, ...}`), how many OTHER permissions it names the
judged change's count sees: open after the request, less those a later change opens (app/rules/runtime/facts.py
count_facts), 0 … bound + 1 (the largest bound of that pattern; more reads as bound + 1), never the combinations
of which ones. Where a change stands matters to a count only for an opening (one before the judged change is
seen, one after it is not; a close is seen wherever it stands), and a relation not at all; so the count axis
with the related states says all a count reads. A count is realised by storing that many of the permissions it
names open, chosen among those no live relation names, and when those are too few by moving openings of related
permissions it names before the judged change (`input_of`); a count the related permissions already exceed, or
that too few permissions can show, is no point.

Only what some rule could read for a given type is enumerated: a clause whose type tests fail for that type
cannot hold, so what it reads is not enumerated for it (see `_reads`). The rest of a point takes a default
that no live clause reads, so every verdict of the space is the verdict of every input it stands for.

Types no rule can tell apart (the same verdict of every type test, the same shape of relations: stock.HK and
stock.US under most rule sets) form a class judged once by its first member (`members`). The space is
partitioned by these classes: each partition's size is the product of its axes, bounded on its own
(partitions.py PARTITION_POINTS) before any of its points is built, so one rule relating many permissions to
one type sets aside that type's partition only, named by the rules that make it large. Each point is
realised as a real request (`input_of`) and judged by the service's own decide() on the durable_rules engine,
whose tracer reports the judged change's verdict (`verdicts`). The space only chooses which requests to judge;
tests/rules/tools/test_input_space_soundness.py shows, over random rule sets and random members, that a point's
verdict is the verdict of every input it stands for.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.rules.language import model
from app.rules.language.allowed_values import example_of
from app.rules.language.attributes import AttributeDeclaration
from app.rules.language.clauses import (
    TYPE_FIELDS,
    Clause,
    CountPattern,
    Test,
    count_caps,
    count_may_apply,
    rule_set_clauses,
)
from app.rules.language.model import (
    ACCOUNT_STATUSES,
    ChangeTest,
    PermissionTest,
    RuleSet,
)
from app.rules.runtime.decision import ChangeVerdict, Trace, decide
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.runtime.facts import change_records, open_for_count
from app.rules.tools.input_space.partitions import (
    COUNT,
    PARTITION_POINTS,
    RELATED,
    TOO_LARGE,
    Axis,
    LargePartition,
    Reader,
    large_partition,
)

# The representatives of a field of each kind other than text (app/rules/language/model.py KINDS).
MISSING = f"<{model.MISSING}>"  # the field is left out of the change
NOT_TEXT = f"<{model.NOT_TEXT.replace('_', ' ')}>"  # a number stands for any non-text value: the rules read its kind
NOT_TEXT_VALUE = 1
OTHER_TENANT = "other-tenant"
OTHER_STATUS = "other"
OTHER_TYPE = "unknown"
DEFAULT_TIME = datetime(2026, 1, 1, tzinfo=UTC)
STATE_FIELDS = {
    "permission_status": "status",
    "current_status": "current",
    "named_earlier": "named",
    "enabled_for_tenant": "enabled",
}
AXES = ("current", "named", "enabled", "related", "count", "account_status", "tenant", "time")  # and a_NAME


class SpaceTooLarge(ValueError):
    """A permission type's partition of the space is too large to judge point by point (partitions.py names the
    rules that make it so); the message, one line, names the first such rule, where it is written, and why."""

    def __init__(self, partitions: tuple[LargePartition, ...]) -> None:
        self.partitions = partitions
        first = partitions[0]
        text = (
            f"{TOO_LARGE}: a change of {first.types} has {first.size:,} inputs to judge "
            f"(at most {PARTITION_POINTS:,} per permission type)"
        )
        for cause in first.causes:
            rule = cause.rule
            text += f"; {rule.source}:{rule.line}:{rule.column}: {rule.id} {cause.what}: {cause.fix}"
        super().__init__(text)


# Per rule, the alternatives of its condition (of one rule set), or those a permission type leaves alive.
_LiveClauses = tuple[Clause, ...]

# The (before, after) states a related permission can be in besides closed-closed (which no rule can see).
OPEN_STATES = (("close", "open"), ("open", "close"), ("open", "open"))


@dataclass(frozen=True)
class Point:
    """One judged change and what the rules can read about it (fields no live clause reads keep defaults)."""

    permission_type: str  # a value, or MISSING / NOT_TEXT
    permission_status: str
    current_status: str = "close"
    named_earlier: bool = False
    enabled: bool = False
    earlier_status: str = "open"  # when named earlier: the status of its first mention
    account_status: str = "active"
    attributes: tuple[tuple[str, str], ...] = ()  # absent attributes are left out
    tenant: str = OTHER_TENANT
    interval: int = 0  # index into InputSpace.moments
    related: tuple[tuple[str, str, str], ...] = ()  # (permission, before, after) of other related permissions
    # (head, tail, n) per count pattern: n other permissions it names open after the change (the cap: n or more)
    counted: tuple[tuple[str, str, int], ...] = ()
    free: frozenset[str] = frozenset()  # the AXES no live clause reads for this type: any value, same verdict

    @property
    def is_text(self) -> bool:
        return self.permission_type not in (MISSING, NOT_TEXT)

    def change(self) -> dict[str, Any]:
        """The judged change as a request carries it."""
        change: dict[str, Any] = {}
        for name, value in (("permission_type", self.permission_type), ("permission_status", self.permission_status)):
            if value == NOT_TEXT:
                change[name] = NOT_TEXT_VALUE
            elif value != MISSING:
                change[name] = value
        return change


def _crosses_type(test: Test) -> bool:
    """A same_as test comparing a part of the type with a state (e.g. permission_status same_as market)."""
    fields = test.change_fields
    return isinstance(test.atom, ChangeTest) and len(fields) == 2 and len(fields & TYPE_FIELDS) == 1


def _instance(value: str, declaration: AttributeDeclaration | None = None) -> str | None:
    """The value itself, or for a glob a value it matches; one the declaration allows (None if none is): a
    plain fill of the wildcards when it is allowed, else one the glob and the declaration's pattern both take
    (`HK*` against `[A-Z]{2}[0-9]{2}` is HK00)."""
    fills = ("x", "X", "A", "0") if "*" in value or "?" in value else ("",)
    for fill in fills:
        instance = value.replace("*", fill).replace("?", fill or "x")
        if declaration is None or declaration.allows(instance):
            return instance
    return None if declaration is None else example_of(declaration, value)


def _mentioned(tests: list[Test], fact: str, declaration: AttributeDeclaration | None = None) -> list[str]:
    """The text values tests compare a fact with (a change field or a context key; a glob as a value it
    matches), in first-seen order; with a declaration, only values it allows (a test of any other value can
    never hold)."""
    found: dict[str, None] = {}
    for test in tests:
        if test.compared == fact:
            for value in test.values:
                instance = _instance(value, declaration) if isinstance(value, str) else None
                if instance is not None:
                    found[instance] = None
    return list(found)


def _other(taken: list[str], allowed: Any = None, candidates: tuple[str, ...] = ("ZZ", "XX", "other", "zz")) -> str:
    """A value none of the tests name (and the declaration allows, when one can be found)."""
    for candidate in (*candidates, "Z", "0", "x-other"):
        if candidate not in taken and (allowed is None or allowed(candidate)):
            return candidate
    return "~other"


def _moments(rule_sets: tuple[RuleSet, ...]) -> tuple[datetime, ...]:
    """One moment per interval between window bounds: before the first, then each bound (windows are
    from-inclusive, until-exclusive, so a bound is the first moment of the interval it opens)."""
    bounds = sorted(
        {
            moment
            for rule_set in rule_sets
            for rule in rule_set.rules
            if rule.window is not None
            for moment in (rule.window.start, rule.window.end)
            if moment is not None
        }
    )
    return (bounds[0] - timedelta(days=1), *bounds) if bounds else (DEFAULT_TIME,)


@dataclass(frozen=True)
class _TypeFacts:
    """What the permission type alone tells each rule set: its change record and the clauses still alive."""

    records: tuple[dict[str, Any], ...]
    live: tuple[_LiveClauses, ...]  # per rule set, the rules (and clauses) the type does not refute


def _pattern_names(pattern: CountPattern, head: str, tail: str, record: Mapping[str, Any]) -> bool:
    return model.pattern_names(pattern[0], pattern[1], head, tail, record)


class InputSpace:
    """Every point that matters for the given rule sets (one set for lint, old and new for diff), partitioned per
    class of permission types: each partition is bounded on its own (PARTITION_POINTS), from its size, before any
    of its points is built. A partition beyond the bound refuses the space (SpaceTooLarge), or with `set_aside`
    is left out of `points` and listed in `set_aside`, naming the rules that make it large."""

    def __init__(self, rule_sets: tuple[RuleSet, ...], *, collapse: bool = True, set_aside: bool = False) -> None:
        self.rule_sets = rule_sets
        self.clauses = tuple(rule_set_clauses(rule_set.rules) for rule_set in rule_sets)
        tests = [test for clauses in self.clauses for clause in clauses for test in clause]
        self.moments = _moments(rule_sets)
        self.values = self._types(tests)
        self.statuses = (MISSING, NOT_TEXT, "open", "close", *self._others(tests, "permission_status"))
        self.tenants = (*_mentioned(tests, "tenant"), OTHER_TENANT)
        self.attributes = self._attribute_values(tests)
        self.engines = tuple(DurableRulesEngine(rule_set) for rule_set in rule_sets)
        self.count_caps = count_caps(clause for clauses in self.clauses for clause in clauses)
        self._facts: dict[str, _TypeFacts] = {}
        self._filler_cache: dict[tuple[str, CountPattern], list[str]] = {}
        # Types no rule can tell apart (same type tests, same shape of relations) are judged once: the
        # first of them stands for all (`members`). tests/rules/tools/test_input_space*.py check each member agrees.
        self.members = self._classes(collapse=collapse)
        axes = {value: self._axes(value) for value in self.members}
        sizes = {value: math.prod(len(axis) for axis in found) for value, (found, _) in axes.items()}
        self.set_aside = tuple(self._large(value, size) for value, size in sizes.items() if size > PARTITION_POINTS)
        if self.set_aside and not set_aside:
            raise SpaceTooLarge(self.set_aside)
        judged = [value for value, size in sizes.items() if size <= PARTITION_POINTS]
        self.size = sum(sizes[value] for value in judged)
        self.points = tuple(p for value in judged for p in self._points(value, *axes[value]))

    def _classes(self, *, collapse: bool) -> dict[str, tuple[str, ...]]:
        """The types by class, each class under its first member (every type a class of its own unless collapse)."""
        classes: dict[tuple[Any, ...], list[str]] = {}
        for value in self.values:
            facts = self._facts[value] = self._type_facts(value)
            key = (*self._class_key(value, facts), value) if not collapse else self._class_key(value, facts)
            classes.setdefault(key, []).append(value)
        return {members[0]: tuple(members) for members in classes.values()}

    def _types(self, tests: list[Test]) -> tuple[str, ...]:
        found: dict[str, None] = {MISSING: None, NOT_TEXT: None}
        for rule_set in self.rule_sets:
            found.update(dict.fromkeys(rule_set.catalog.values))
        found.update({f"{group}.x": None for group in _mentioned(tests, "group")})
        # Types outside the catalog that rules can still tell apart by a part they name: a validation testing
        # `market: us` (a type sent in lower case) holds for stock.us.
        for rule_set in self.rule_sets:
            catalog = rule_set.catalog
            product = catalog.products[0] if catalog.products else "x"
            market = catalog.markets[0] if catalog.markets else "X"
            found.update({f"{product}.{m}": None for m in _mentioned(tests, "market")})
            found.update({f"{p}.{market}": None for p in _mentioned(tests, "product")})
            groups = [v.partition(".")[0] for v in catalog.values if "group" in catalog.parts(v)]
            found.update({f"{groups[0]}.{n}": None for n in _mentioned(tests, "name") if groups})
        found.update(dict.fromkeys(_mentioned(tests, "permission_type")))
        found[OTHER_TYPE] = None
        return tuple(found)

    @staticmethod
    def _others(tests: list[Test], field: str) -> list[str]:
        named = [v for v in _mentioned(tests, field) if v not in ("open", "close")]
        return [*named, _other(["open", "close", *named], candidates=(OTHER_STATUS, "OPEN", "x"))]

    def _attribute_values(self, tests: list[Test]) -> dict[str, tuple[str | None, ...]]:
        values: dict[str, tuple[str | None, ...]] = {}
        for rule_set in self.rule_sets:
            for declaration in rule_set.attributes:
                named = _mentioned(tests, f"a_{declaration.name}", declaration)
                listed = list(declaration.values or ())
                shown = [*listed, *(v for v in named if v not in listed)]
                if declaration.values is None:
                    shown.append(_other(shown, declaration.allows))
                previous = [v for v in values.get(declaration.name, ()) if v is not None]
                merged = list(dict.fromkeys([*previous, *shown]))
                values[declaration.name] = (*merged, None)
        return values

    def _type_facts(self, value: str) -> _TypeFacts:
        change = Point(value, "open").change()
        records = []
        live = []
        for rule_set, clauses in zip(self.rule_sets, self.clauses, strict=True):
            record = change_records((change,), catalog=rule_set.catalog, enabled=frozenset(), stored={})[0]
            records.append(record)
            live.append(tuple(c for c in clauses if all(self._may_hold(test, record) for test in c)))
        return _TypeFacts(tuple(records), tuple(live))

    @staticmethod
    def _may_hold(test: Test, record: Mapping[str, Any]) -> bool:
        """Whether a test can hold for a change of this type: not when the type alone makes it false."""
        return test.decided_by(record, TYPE_FIELDS) is not False

    def _related(self, value: str, facts: _TypeFacts) -> tuple[bool, list[list[str]]]:
        """Whether a live relation names the judged type itself, and the other permissions live relations
        name, grouped by which relations name them (members of a group are interchangeable)."""
        signatures: dict[str, set[tuple[int, str, str]]] = {}
        for index, (rule_set, record, live) in enumerate(zip(self.rule_sets, facts.records, facts.live, strict=True)):
            tests = {t.atom for clause in live for t in clause if isinstance(t.atom, PermissionTest)}
            for test in tests:
                for other in rule_set.catalog.values:
                    head, tail = list(rule_set.catalog.parts(other).values())
                    if test.names(head, tail, record):
                        signatures.setdefault(other, set()).add((index, test.head, test.tail))
            # a related permission a count names is counted when open: only members a count names alike agree
            for count in {c for clause in live for c in clause.counts}:
                for other, signature in signatures.items():
                    if other in rule_set.catalog and count.names(*self._parts(rule_set, other), record):
                        signature.add((index, "#count", f"{count.head}.{count.tail}"))
        names_itself = value in signatures
        groups: dict[frozenset[tuple[int, str, str]], list[str]] = {}
        for other, signature in signatures.items():
            if other != value:
                groups.setdefault(frozenset(signature), []).append(other)
        return names_itself, [sorted(members) for _, members in sorted(groups.items(), key=lambda g: sorted(g[0]))]

    @staticmethod
    def _group_states(members: list[str]) -> list[tuple[tuple[str, str, str], ...]]:
        """Which open states a group's members show (which member shows it makes no difference)."""
        options: list[tuple[tuple[str, str, str], ...]] = []
        for size in range(min(len(members), len(OPEN_STATES)) + 1):
            for states in itertools.combinations(OPEN_STATES, size):
                options.append(tuple((m, b, a) for m, (b, a) in zip(members, states, strict=False)))
        return options

    def _reads(self, facts: _TypeFacts) -> set[str]:
        """The axes the clauses a type leaves alive read (the context by its keys: tenant, a_residency, ...)."""
        reads: set[str] = set()
        for clause in (clause for live in facts.live for clause in live):
            reads.update(STATE_FIELDS[field] for field in clause.change_fields if field in STATE_FIELDS)
            reads.update(clause.context_keys)
            if clause.reads_time:
                reads.add("time")
        return reads

    def _class_key(self, value: str, facts: _TypeFacts) -> tuple[Any, ...]:
        """What the rules can tell of a type: each literal's verdict on it (where the type decides), its
        catalog membership, and the shape of the relations it has."""
        verdicts: list[Any] = [value if value in (MISSING, NOT_TEXT) else "text"]
        for rule_set, clauses, record in zip(self.rule_sets, self.clauses, facts.records, strict=True):
            verdicts.append(value in rule_set.catalog)
            for clause in clauses:
                for test in clause:
                    if _crosses_type(test):
                        return (value,)  # a part of the type compared with a state: a class of its own
                    verdicts.append(self._may_hold(test, record))
        names_itself, groups = self._related(value, facts)
        shape = [(self._signature(value, facts, group[0]), len(group)) for group in groups]
        counts = tuple(
            (pattern, min(len(self._fillers(value, pattern)), self.count_caps[pattern]))
            for pattern in self._counts(value, facts)
        )
        return (*verdicts, names_itself, tuple(shape), counts)

    @staticmethod
    def _parts(rule_set: RuleSet, value: str) -> tuple[str, str]:
        head, tail = list(rule_set.catalog.parts(value).values())
        return head, tail

    def _counts(self, value: str, facts: _TypeFacts) -> list[CountPattern]:
        """The count patterns live clauses bound that can charge a change of this type, in a fixed order."""
        found = {
            c.pattern
            for record, live in zip(facts.records, facts.live, strict=True)
            for clause in live
            for c in clause.counts
            if count_may_apply(c, record)
        }
        return sorted(found)

    def _count_top(self, value: str, pattern: CountPattern) -> int:
        """The largest number of other permissions a count of this type's change can see open: its cap (bound + 1,
        standing for more), or fewer when the catalog has fewer permissions the pattern names."""
        facts = self._facts[value]
        named = {
            other
            for rule_set, record in zip(self.rule_sets, facts.records, strict=True)
            for other in rule_set.catalog.values
            if other != value
            and len(rule_set.catalog.parts(other)) == 2
            and _pattern_names(pattern, *self._parts(rule_set, other), record)
        }
        return min(self.count_caps[pattern], len(named))

    def _fillers(self, value: str, pattern: CountPattern) -> list[str]:
        """The permissions that may show a count of this type's change: named by the pattern (bound from the
        type), not the type itself, named by no live relation; those no other count names first."""
        cached = self._filler_cache.get((value, pattern))
        if cached is not None:
            return cached
        facts = self._facts[value]
        _, groups = self._related(value, facts)
        related = {other for group in groups for other in group}
        counts = self._counts(value, facts)
        found: dict[str, int] = {}
        for rule_set, record in zip(self.rule_sets, facts.records, strict=True):
            for other in rule_set.catalog.values:
                if other == value or other in related or other in found or len(rule_set.catalog.parts(other)) != 2:
                    continue
                head, tail = self._parts(rule_set, other)
                if _pattern_names(pattern, head, tail, record):
                    found[other] = sum(_pattern_names(p, head, tail, record) for p in counts)
        cached = self._filler_cache[(value, pattern)] = sorted(found, key=lambda other: found[other])
        return cached

    def _signature(self, value: str, facts: _TypeFacts, other: str) -> frozenset[tuple[int, str, str]]:
        found = set()
        for index, (rule_set, record, live) in enumerate(zip(self.rule_sets, facts.records, facts.live, strict=True)):
            if other not in rule_set.catalog:
                continue
            head, tail = list(rule_set.catalog.parts(other).values())
            for atom in (test.atom for clause in live for test in clause):
                if isinstance(atom, PermissionTest) and atom.names(head, tail, record):
                    found.add((index, atom.head, atom.tail))
            for count in {c for clause in live for c in clause.counts}:
                if found and count.names(head, tail, record):
                    found.add((index, "#count", f"{count.head}.{count.tail}"))
        return frozenset(found)

    def _axes(self, value: str) -> tuple[list[list[dict[str, Any]]], frozenset[str]]:
        """What is enumerated for a type (each axis a list of its values' fields), and what is left free.

        Relations are enumerated for every type, a missing or non-text one included: `permission: stock.*`
        binds nothing from the change, so it holds or not whatever the change's type."""
        facts = self._facts[value]
        reads = self._reads(facts)
        names_itself, groups = self._related(value, facts)
        axes: list[list[dict[str, Any]]] = [[{"permission_status": s} for s in self.statuses]]
        free = {*AXES, *(f"a_{name}" for name in self.attributes)}
        if value not in (MISSING, NOT_TEXT):
            for axis, options in self._own_axes(value, reads, names_itself):
                axes.append(options)
                free.discard(axis)
        axes.extend([{"related": states} for states in self._group_states(group)] for group in groups)
        if groups or names_itself:
            free.discard("related")
        for head, tail in self._counts(value, facts) if value not in (MISSING, NOT_TEXT) else ():
            axes.append([{"counted": ((head, tail, n),)} for n in range(self._count_top(value, (head, tail)) + 1)])
            free.discard("count")
        for axis, options in self._context_axes():
            if axis in reads:
                axes.append(options)
                free.discard(axis)
        return axes, frozenset(free)

    def _large(self, value: str, size: int) -> LargePartition:
        """A partition beyond the bound, with the axes each live rule reads in it (the type's own state and the
        requested status, a few values each, are nobody's)."""
        facts = self._facts[value]
        reads = self._reads(facts)
        _, groups = self._related(value, facts)
        context = [(axis, len(options)) for axis, options in self._context_axes() if axis in reads]
        counts = self._counts(value, facts)
        axes = [Axis(RELATED, len(self._group_states(g)), len(g)) for g in groups]
        axes += [Axis(axis, count) for axis, count in context]
        axes += [Axis(COUNT, self._count_top(value, pattern) + 1) for pattern in counts]
        by_rule: dict[tuple[int, str], list[Clause]] = {}
        for index, live in enumerate(facts.live):
            for clause in live:
                by_rule.setdefault((index, clause.rule.id), []).append(clause)
        readers = []
        for (index, _), clauses in by_rule.items():
            alone = _TypeFacts(
                facts.records, tuple(tuple(clauses) if i == index else () for i in range(len(facts.live)))
            )
            rule_reads = self._reads(alone)
            read = {k for k, group in enumerate(groups) if self._signature(value, alone, group[0])}
            read |= {len(groups) + k for k, (axis, _) in enumerate(context) if axis in rule_reads}
            counted = {c.pattern for clause in clauses for c in clause.counts}
            read |= {len(groups) + len(context) + k for k, pattern in enumerate(counts) if pattern in counted}
            readers.append(Reader(clauses[0].rule, index, frozenset(read)))
        return large_partition(self.members[value], size, axes, readers)

    def _own_axes(self, value: str, reads: set[str], names_itself: bool) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """The axes of the type's own state a live clause reads (all of them when a relation names the type)."""
        in_catalog = any(value in rule_set.catalog for rule_set in self.rule_sets)
        if "current" in reads or names_itself:
            yield "current", [{"current_status": s} for s in ("close", "open")]
        if "named" in reads or names_itself:
            first = ("open", "close") if names_itself and in_catalog else ("open",)
            yield "named", [{"named_earlier": False}, *({"named_earlier": True, "earlier_status": s} for s in first)]
        if in_catalog and ("enabled" in reads or names_itself):
            yield "enabled", [{"enabled": True}, {"enabled": False}]

    def _context_axes(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """The axes of the account, the tenant and the time, each with the values that stand for all others."""
        axes: list[tuple[str, list[dict[str, Any]]]] = [
            ("account_status", [{"account_status": s} for s in ACCOUNT_STATUSES]),
            ("tenant", [{"tenant": t} for t in self.tenants]),
            ("time", [{"interval": i} for i in range(len(self.moments))]),
        ]
        for name, values in self.attributes.items():
            axes.append((f"a_{name}", [{"attributes": ((name, v),) if v is not None else ()} for v in values]))
        return axes

    def _points(self, value: str, axes: list[list[dict[str, Any]]], free: frozenset[str]) -> Iterator[Point]:
        for combination in itertools.product(*axes):
            fields: dict[str, Any] = {"permission_type": value}
            related: list[tuple[str, str, str]] = []
            attributes: list[tuple[str, str]] = []
            counted: list[tuple[str, str, int]] = []
            for part in combination:
                for key, item in part.items():
                    if key == "related":
                        related.extend(item)
                    elif key == "attributes":
                        attributes.extend(item)
                    elif key == "counted":
                        counted.extend(item)
                    else:
                        fields[key] = item
            point = Point(
                **fields, related=tuple(related), attributes=tuple(attributes), counted=tuple(counted), free=free
            )
            if not counted or self._shows_its_counts(point):
                yield point

    def _shows_its_counts(self, point: Point) -> bool:
        """Whether the request realising the point shows each count the point says (n, or the cap and more)."""
        decision_input, index = self.input_of(point)
        return all(
            min(
                self._named_open(point.permission_type, (head, tail), decision_input, index),
                self.count_caps[(head, tail)],
            )
            == n
            for head, tail, n in point.counted
        )

    def _named_open(self, value: str, pattern: CountPattern, decision_input: DecisionInput, index: int) -> int:
        """How many catalog permissions other than the type the pattern names (bound from it) the count of the
        change at index sees open: open after the request, less those a later change opens (facts.py)."""
        records = self._facts[value].records
        named = set()
        for rule_set, engine, record in zip(self.rule_sets, self.engines, records, strict=True):
            seen = open_for_count(
                decision_input.changes,
                index,
                catalog=rule_set.catalog,
                enabled=engine.enabled(decision_input.tenant_patterns),
                stored=decision_input.stored,
            )
            for other in seen:
                if other != value and self._names(rule_set, pattern, other, record):
                    named.add(other)
        return len(named)

    def _names(self, rule_set: RuleSet, pattern: CountPattern, other: str, record: Mapping[str, Any]) -> bool:
        """Whether the count pattern (bound from the judged type's record) names the catalog permission other."""
        return len(rule_set.catalog.parts(other)) == 2 and _pattern_names(
            pattern, *self._parts(rule_set, other), record
        )

    def weight(self, point: Point) -> int:
        """How many inputs the point stands for: one per type of its class."""
        return len(self.members[point.permission_type])

    def input_of(self, point: Point) -> tuple[DecisionInput, int]:
        """A request that realises the point, and the index of the judged change in it.

        The related permissions' changes come after the judged change, where a count does not see what they
        open; a count the point says is shown by storing permissions it names open (fillers), and when those
        are too few, by moving openings of related permissions it names before the judged change, where it sees
        them (the related states stay: a relation reads the statuses after the request, wherever a change is)."""
        earlier: list[dict[str, Any]] = []
        stored: dict[str, str] = {}
        patterns: list[str] = []
        if point.is_text:
            stored[point.permission_type] = point.current_status
            if point.enabled:
                patterns.append(point.permission_type)
            if point.named_earlier:
                earlier.append({"permission_type": point.permission_type, "permission_status": point.earlier_status})
        later: list[dict[str, Any]] = []
        for other, before, after in point.related:
            stored[other] = before
            if after != before:
                patterns.append(other)
                later.append({"permission_type": other, "permission_status": after})
        for head, tail, n in point.counted:  # n others seen open: the related ones, then fillers, then openings
            shown = self._request(point, [*earlier, point.change(), *later], stored, patterns)
            seen = self._named_open(point.permission_type, (head, tail), shown, len(earlier))
            need = n - seen
            fillers = [p for p in self._fillers(point.permission_type, (head, tail)) if p not in stored]
            for other in fillers[: max(need, 0)]:
                stored[other] = "open"
                need -= 1
            for change in [c for c in later if c["permission_status"] == "open"]:
                if need <= 0:
                    break
                if self._counts_opening(point.permission_type, (head, tail), change["permission_type"]):
                    later.remove(change)
                    earlier.append(change)
                    need -= 1
        changes = [*earlier, point.change(), *later]
        return self._request(point, changes, stored, patterns), len(earlier)

    def _counts_opening(self, value: str, pattern: CountPattern, other: str) -> bool:
        """Whether a count of this type's change sees the related permission other when a change before it opens
        it (the pattern names it in some rule set)."""
        records = self._facts[value].records
        return any(
            other in rule_set.catalog and self._names(rule_set, pattern, other, record)
            for rule_set, record in zip(self.rule_sets, records, strict=True)
        )

    def _request(
        self, point: Point, changes: list[dict[str, Any]], stored: Mapping[str, str], patterns: list[str]
    ) -> DecisionInput:
        return DecisionInput.of(
            tenant_id=point.tenant,
            patterns=patterns,
            changes=changes,
            stored=stored,
            account_status=point.account_status,
            attributes=dict(point.attributes),
            at=self.moments[point.interval],
        )

    def verdicts(self, point: Point, *, use_memo: bool = True) -> tuple[ChangeVerdict, ...]:
        """What each rule set makes of the point's change: decide() on the request that realises it, its tracer
        telling the judged change's verdict (an earlier change of the request may be refused first)."""
        decision_input, index = self.input_of(point)
        found = []
        for engine in self.engines:
            trace = Trace()
            decide(engine, decision_input, use_memo=use_memo, tracer=trace)
            found.append(trace.verdicts[index])
        return tuple(found)
