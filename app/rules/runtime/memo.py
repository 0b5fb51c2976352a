"""The adapter's memo keys: per change, exactly what the compiled rule set reads, built from the request itself.

A verdict of durable_rules for one change is a function of the facts its rules can read (each compiled clause
says which: app/rules/language/clauses.py): the change fields some test or placeholder reads, the context values some
account or tenant test reads, the interval between two window edges the time falls in, and, per relation a
rule tests (`permission: stock.{market}, after: open`), whether some permission it names is open in that state,
and per count a rule bounds, the change's count (app/rules/runtime/facts.py count_facts) capped at one more
than the largest bound on that pattern (a higher count makes no count test read differently).
The key carries each of these and nothing else, so two changes with equal keys get the same verdict from the
engine (tests/rules/runtime/test_memo.py compares the two paths on random rule sets and requests).

The key is built without the engine's facts: every fact the change record derives from the permission type
(its parts, whether the catalog has it, its escaped text) is a function of the type's text for a given rule
set, so the key holds the text once; a relation is decided by looking its permissions up, not by scanning every
open permission. A key is None (the change goes to the engine, nothing is remembered) when a value it would
hold is longer than MEMO_MAX_TEXT.

Context values, relations and the time enter a change's key only for the clauses (alternatives of a rule's
condition, as compiled) that can hold for it: a clause with a plain positive test of a text field of the change
(`product: shortsell`, `permission_type: [stock.SH, stock.SZ]`) cannot hold for a change whose field has another
value or none, so what the rest of that clause reads cannot change this change's verdict. This only ever
leaves a clause out on a test the engine would also fail; it decides no verdict. Without it, an attribute only
the short-selling policy reads would split the memo for every change of every account.

MemoKeys may be shared by threads: its caches are plain dicts read and filled one atomic operation at a time,
and no lookup relies on an entry outliving it. The memo of verdicts itself, an LRU whose reads move entries, is
guarded by the engine's lock (app/rules/runtime/engine.py).
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.rules.language.clauses import TYPE_FIELDS, Clause, count_caps
from app.rules.language.model import KINDS, Catalog, RuleSet
from app.rules.runtime.compiler import Compiled, glob_to_engine_regex
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.facts import after_request, count_facts, engine_text

MEMO_MAX_TEXT = 128  # longer values are judged by the engine every time rather than held in memory
READS_CACHE_SIZE = 4096
# Stand-ins for a field by its kind (app/rules/language/model.py KINDS): never equal to a text value.
MISSING, NOT_TEXT, TEXT = ((kind,) for kind in KINDS)
UNBOUND = ("unbound",)  # a placeholder the change cannot bind: the clause naming it cannot hold

Key = tuple[Any, ...]


def _raw(change: Mapping[str, Any], name: str) -> Any:
    """The field's text, or the stand-in of its kind."""
    if name not in change:
        return MISSING
    value = change[name]
    return value if isinstance(value, str) else NOT_TEXT


def _window_bounds(rule_set: RuleSet) -> list[float]:
    """Every moment at which some rule's window opens or closes: between two of them no window changes."""
    found: set[float] = set()
    for rule in rule_set.rules:
        if rule.window is not None:
            found.update(m.timestamp() for m in (rule.window.start, rule.window.end) if m is not None)
    return sorted(found)


class _Relation:
    """One (head, tail, state) a rule tests open: which catalog permissions it names, for a change."""

    def __init__(self, head: str, tail: str, state: str, catalog: Sequence[tuple[str, str, str]]) -> None:
        self.state = state
        self.head_field = head[1:-1] if head.startswith("{") else None
        self.tail_field = tail[1:-1] if tail.startswith("{") else None
        self._catalog = catalog  # (type, head, tail) of each catalog permission
        self._heads = frozenset(h for _, h, _ in catalog)
        self._tails = frozenset(t for _, _, t in catalog)
        self._head = None if self.head_field else re.compile(glob_to_engine_regex(head))
        self._tail = None if self.tail_field else re.compile(glob_to_engine_regex(tail))
        self._named: dict[tuple[str | None, str | None], tuple[str, ...]] = {}
        self.bound = self.head_field is not None or self.tail_field is not None

    def named(self, head: str | None = None, tail: str | None = None) -> tuple[str, ...]:
        """The catalog permissions this relation names, with its placeholders bound to head and tail."""
        if (head is not None and head not in self._heads) or (tail is not None and tail not in self._tails):
            return ()  # no catalog permission has that part: nothing to remember per value
        found = self._named.get((head, tail))
        if found is None:
            found = tuple(
                t
                for t, h, tl in self._catalog
                if (h == head if self._head is None else self._head.fullmatch(h) is not None)
                and (tl == tail if self._tail is None else self._tail.fullmatch(tl) is not None)
            )
            self._named[(head, tail)] = found  # bounded: heads x tails of the catalog
        return found


@dataclass
class _Request:
    """What every change of one request shares for its key."""

    context: Mapping[str, Any]
    stored: Mapping[str, str]
    applied: Mapping[str, str]
    enabled: frozenset[str]
    interval: int  # between which two window edges the request's time falls
    fixed: dict[int, bool] = field(default_factory=dict)  # relations without placeholder, decided once


def _short(values: tuple[Any, ...], current: str | None) -> bool:
    """Whether every context value and the current status fit in the memo (MEMO_MAX_TEXT)."""
    if current is not None and len(current) > MEMO_MAX_TEXT:
        return False
    return not any(isinstance(value, str) and len(value) > MEMO_MAX_TEXT for value in values)


@dataclass(frozen=True)
class _Reads:
    """What the clauses that can hold for a change read: the context keys, relations and whether the time."""

    context: tuple[str, ...]
    fixed: tuple[int, ...]  # relations without a placeholder (indexes into MemoKeys._fixed)
    bound: tuple[int, ...]  # relations with one (indexes into MemoKeys._bound)
    time: bool
    counts: tuple[int, ...] = ()  # count patterns (indexes into Compiled.counts)


def _two_part_values(catalog: Catalog) -> list[tuple[str, str, str]]:
    """Each catalog value with two parts, as (value, first part, second part)."""
    found = ((value, list(catalog.parts(value).values())) for value in catalog.values)
    return [(value, parts[0], parts[1]) for value, parts in found if len(parts) == 2]


class MemoKeys:
    """Builds the memo key of every change of a request for one compiled rule set."""

    def __init__(self, rule_set: RuleSet, compiled: Compiled) -> None:
        catalog = rule_set.catalog
        fields = compiled.change_fields
        self._catalog = catalog
        self._type = bool(fields & TYPE_FIELDS)
        self._status = "permission_status" in fields
        self._enabled = "enabled_for_tenant" in fields
        self._current = "current_status" in fields
        self._earlier = "named_earlier" in fields
        self._clauses: tuple[Clause, ...] = compiled.clauses
        self._bounds = _window_bounds(rule_set)
        parts = _two_part_values(catalog)
        relations = sorted({r for c in self._clauses for r in c.relations})
        self._fixed = [_Relation(*r, parts) for r in relations if not _has_placeholder(r)]
        self._bound = [_Relation(*r, parts) for r in relations if _has_placeholder(r)]
        self._fixed_index = {r: i for i, r in enumerate(r for r in relations if not _has_placeholder(r))}
        self._bound_index = {r: i for i, r in enumerate(r for r in relations if _has_placeholder(r))}
        self._after = any(r.state == "after" for r in self._fixed + self._bound)
        self._parts: dict[str, dict[str, str]] = {v: catalog.parts(v) for v in catalog.values}
        self._reads: dict[tuple[Any, Any], _Reads] = {}
        self._counts = compiled.counts
        self._count_index = {pattern: k for k, pattern in enumerate(self._counts)}
        # per pattern (its index), the count above which no count test reads differently
        self._count_caps = {self._count_index[p]: cap for p, cap in count_caps(self._clauses).items()}

    def keys(self, decision_input: DecisionInput, enabled: frozenset[str]) -> list[Key | None]:
        """Per change, its key (or None: judge it afresh and remember nothing)."""
        changes = decision_input.changes
        applied = after_request(changes, catalog=self._catalog, enabled=enabled, stored={}) if self._after else {}
        request = _Request(
            context=self._context(decision_input),
            stored=decision_input.stored,
            applied=applied,
            enabled=enabled,
            interval=bisect.bisect_right(self._bounds, decision_input.at.timestamp()),
        )
        counted: list[tuple[int, ...]] = [()] * len(changes)
        if self._counts:
            stored = decision_input.stored
            counted = count_facts(changes, catalog=self._catalog, enabled=enabled, stored=stored, patterns=self._counts)
        named: set[str] = set()
        keys: list[Key | None] = []
        for change, counts in zip(changes, counted, strict=True):
            permission_type = _raw(change, "permission_type")
            earlier = False
            if isinstance(permission_type, str):
                earlier = permission_type in named
                named.add(permission_type)
            keys.append(self._key(permission_type, _raw(change, "permission_status"), earlier, request, counts))
        return keys

    def _key(
        self, permission_type: Any, status: Any, earlier: bool, request: _Request, counts: tuple[int, ...] = ()
    ) -> Key | None:
        """One change's key: what the clauses that can hold for it read (None when a value is too long)."""
        text = isinstance(permission_type, str)
        if (text and len(permission_type) > MEMO_MAX_TEXT) or (isinstance(status, str) and len(status) > MEMO_MAX_TEXT):
            return None
        parts = self._parts_of(permission_type)
        reads = self._reads_of(permission_type, status, parts)
        values = tuple([request.context[k] for k in reads.context])
        current = request.stored.get(permission_type, "close") if text and self._current else None
        if not _short(values, current):
            return None
        fixed, bound = self._relation_states(reads, parts, request)
        return (
            permission_type if self._type or not text else TEXT,
            status if self._status else None,
            (permission_type in request.enabled) if text and self._enabled else None,
            current,
            earlier if self._earlier else None,
            values,
            request.interval if reads.time else None,
            fixed,
            bound,
            tuple([min(counts[k], self._count_caps[k]) for k in reads.counts]),
        )

    def _relation_states(
        self, reads: _Reads, parts: Mapping[str, str] | None, request: _Request
    ) -> tuple[tuple[bool, ...], tuple[Any, ...]]:
        """Per relation the change's clauses read, whether a permission it names is open."""
        if not reads.fixed and not reads.bound:
            return (), ()
        fixed = tuple([self._fixed_open(i, request) for i in reads.fixed])
        bound = tuple([self._related(self._bound[i], parts, request.stored, request.applied) for i in reads.bound])
        return fixed, bound

    def _fixed_open(self, index: int, request: _Request) -> bool:
        """Whether a permission a relation without placeholder names is open (decided once per request)."""
        found = request.fixed.get(index)
        if found is None:
            relation = self._fixed[index]
            found = request.fixed[index] = self._is_open(relation, relation.named(), request.stored, request.applied)
        return found

    def _parts_of(self, permission_type: Any) -> dict[str, str] | None:
        """The type's parts as the change record has them (None when the type is not text)."""
        if not isinstance(permission_type, str):
            return None
        parts = self._parts.get(permission_type)
        if parts is None:
            parts = {k: engine_text(v) for k, v in self._catalog.parts(permission_type).items()}
        return parts

    def _reads_of(self, permission_type: Any, status: Any, parts: Mapping[str, str] | None) -> _Reads:
        """What the clauses that can hold for a change of this type and status read (remembered per pair)."""
        found = self._reads.get((permission_type, status))
        if found is not None:
            return found
        seen = {"permission_status": engine_text(status) if isinstance(status, str) else None}
        if parts is not None:
            seen.update(parts)
            seen["permission_type"] = engine_text(permission_type)
        context: set[str] = set()
        relations: set[tuple[str, str, str]] = set()
        counts: set[int] = set()
        reads_time = False
        for clause in self._clauses:
            if all(seen.get(name) in values for name, values in clause.guards):
                context |= clause.context_keys
                relations |= clause.relations
                counts.update(self._count_index[c.pattern] for c in clause.counts)
                reads_time = reads_time or clause.reads_time
        found = _Reads(
            tuple(sorted(context)),
            tuple(sorted(self._fixed_index[r] for r in relations if r in self._fixed_index)),
            tuple(sorted(self._bound_index[r] for r in relations if r in self._bound_index)),
            reads_time,
            tuple(sorted(counts)),
        )
        if len(self._reads) >= READS_CACHE_SIZE:
            self._reads.clear()  # types outside the catalog: bounded, and rebuilt on demand
        self._reads[(permission_type, status)] = found
        return found

    @staticmethod
    def _context(decision_input: DecisionInput) -> dict[str, Any]:
        """The context values a test may read: the tenant, the account's status and each attribute (a_<name>);
        an attribute the account does not have reads as None."""
        context: dict[str, Any] = defaultdict(lambda: None)
        context["tenant"] = decision_input.tenant_id
        context["account_status"] = decision_input.account_status
        for name, value in decision_input.attributes.items():
            context[f"a_{name}"] = value
        return context

    @staticmethod
    def _is_open(
        relation: _Relation, named: tuple[str, ...], stored: Mapping[str, str], applied: Mapping[str, str]
    ) -> bool:
        if relation.state == "before":
            return any(stored.get(t) == "open" for t in named)
        return any((applied[t] if t in applied else stored.get(t)) == "open" for t in named)

    def _related(
        self,
        relation: _Relation,
        parts: Mapping[str, str] | None,
        stored: Mapping[str, str],
        applied: Mapping[str, str],
    ) -> Any:
        """Whether a permission the relation names for this change is open (UNBOUND: the change has no such part)."""
        head = tail = None
        if relation.head_field:
            head = None if parts is None else parts.get(relation.head_field)
            if head is None:
                return UNBOUND
        if relation.tail_field:
            tail = None if parts is None else parts.get(relation.tail_field)
            if tail is None:
                return UNBOUND
        return self._is_open(relation, relation.named(head, tail), stored, applied)


def _has_placeholder(relation: tuple[str, str, str]) -> bool:
    return relation[0].startswith("{") or relation[1].startswith("{")
