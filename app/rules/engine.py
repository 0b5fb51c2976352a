"""The durable_rules adapter: supplies a request's facts, reads which rules held for which change.

durable_rules keeps per-session state in fixed-size tables, is not thread-safe, swallows exceptions raised in
consequents, raises on a fact no pattern handles, refuses a fact identical to one already asserted, cannot
retract a verdict when a fact arrives after the change it would have blocked, and starts background dispatch
threads in every Host. This adapter owns one quiet Host per process, one compiled ruleset per rule-set
version, one session per evaluation that is deleted afterwards (also when the engine refuses a fact: the
consequents it queued are run first, or durable_rules double-frees), a lock so a threaded server cannot enter
the engine twice, and the order of facts the compiler relies on: context, permissions and references before
the changes (see app/rules/compiler.py). It never evaluates a rule's condition itself.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import durable_rules_engine as durable_rules_engine_c  # type: ignore[import-not-found]
from durable import engine as durable_engine  # type: ignore[import-untyped]

from app.rules.compiler import (
    PASS_RULE_ID,
    REFERENCE,
    Compiled,
    compile_rule_set,
    literals,
)
from app.rules.decision import DecisionInput
from app.rules.facts import (
    RequestFacts,
    after_request,
    change_records,
    context_record,
    message_values,
    permission_records,
)
from app.rules.model import PermissionTest, RuleSet

SESSION_ID = "request"
MEMO_SIZE = 4096
MEMO_MAX_TEXT = 128  # longer values are judged by the engine every time rather than held in memory
ENABLED_CACHE_SIZE = 256
_NOT_TESTABLE = frozenset({"t", "index", "earlier_index"})  # carried for messages; no rule can test them
_REFUSALS = {1: "a fact no rule handles", 2: "a fact identical to one already asserted"}  # the engine's codes


class RulesEngineError(RuntimeError):
    """The engine did not judge every change exactly once: a bug, never a client's fault."""


class _QuietHost(durable_engine.Host):
    """A Host without the timer threads that would call into the engine behind our back."""

    def _run(self) -> None:
        return None


@dataclass(frozen=True)
class Evaluation:
    """Per change, every rule whose condition held; and the facts the engine was given."""

    held: tuple[frozenset[str], ...]
    facts: RequestFacts


class _Process:
    """The process-wide engine: one Host, the rulesets registered so far, and the verdict sink."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.host = _QuietHost()
        self.compiled: dict[str, Compiled] = {}
        self.fired: list[tuple[str, int]] = []

    def action(self, name: str) -> Any:
        fired = self.fired

        def consequent(c: Any) -> None:
            fired.append((name, c.c["index"]))

        return consequent

    def ensure(self, name: str, rule_set: RuleSet) -> Compiled:
        with self.lock:
            if name not in self.compiled:
                compiled = compile_rule_set(rule_set, self.action)
                self.host.register_rulesets({name: compiled.definition})
                self.compiled[name] = compiled
            return self.compiled[name]


_PROCESS: _Process | None = None
_PROCESS_LOCK = threading.Lock()


def _process() -> _Process:
    global _PROCESS
    with _PROCESS_LOCK:
        if _PROCESS is None:
            _PROCESS = _Process()
        return _PROCESS


def _bounds(rule_set: RuleSet) -> list[float]:
    """Every moment at which some rule's window opens or closes: between two of them no window changes."""
    found: set[float] = set()
    for rule in rule_set.rules:
        if rule.window is not None:
            found.update(m.timestamp() for m in (rule.window.start, rule.window.end) if m is not None)
    return sorted(found)


class DurableRulesEngine:
    """Judges the changes of a request against one rule set through durable_rules."""

    def __init__(self, rule_set: RuleSet) -> None:
        self.rule_set = rule_set
        self._name = f"permissions_{rule_set.version}"
        self._process = _process()
        self._compiled = self._process.ensure(self._name, rule_set)
        self._memo: OrderedDict[tuple[Any, ...], frozenset[str]] = OrderedDict()
        self._enabled: OrderedDict[tuple[str, ...], frozenset[str]] = OrderedDict()
        self._bounds = _bounds(rule_set)
        self._relations = sorted(
            {(a.head, a.tail) for r in rule_set.rules for a in literals(r) if isinstance(a, PermissionTest)}
        )
        self.memo_hits = 0
        self.memo_misses = 0

    @property
    def version(self) -> str:
        return self.rule_set.version

    def enabled(self, patterns: tuple[str, ...]) -> frozenset[str]:
        """The catalog values a tenant's patterns enable (remembered per distinct pattern list)."""
        found = self._enabled.get(patterns)
        if found is None:
            found = frozenset(self.rule_set.catalog.expand(patterns))
            self._enabled[patterns] = found
            if len(self._enabled) > ENABLED_CACHE_SIZE:
                self._enabled.popitem(last=False)
        return found

    def facts_of(self, decision_input: DecisionInput) -> RequestFacts:
        """The facts of a request as the engine is given them."""
        catalog = self.rule_set.catalog
        enabled = self.enabled(decision_input.tenant_patterns)
        stored = decision_input.stored
        changes = change_records(decision_input.changes, catalog=catalog, enabled=enabled, stored=stored)
        after = after_request(decision_input.changes, catalog=catalog, enabled=enabled, stored=stored)
        context = context_record(
            tenant_id=decision_input.tenant_id,
            account_status=decision_input.account_status,
            attributes=decision_input.attributes,
            now=decision_input.at.timestamp(),
        )
        messages = [
            message_values(record, change, tenant_id=decision_input.tenant_id, attributes=decision_input.attributes)
            for record, change in zip(changes, decision_input.changes, strict=True)
        ]
        return RequestFacts(context, permission_records(catalog, stored, after), changes, messages)

    def evaluate(self, decision_input: DecisionInput, *, use_memo: bool = True) -> Evaluation:
        """Per change, the rules that held, decided by the engine (or remembered from an identical judgement)."""
        facts = self.facts_of(decision_input)
        if not use_memo:
            decided = self._post(facts, facts.changes)  # once: every change is judged in one session
            return Evaluation(tuple(decided[r["index"]] for r in facts.changes), facts)
        shared = self._shared_key(facts)
        keys = [None if shared is None else self._memo_key(record, shared, facts) for record in facts.changes]
        unknown = [r for r, key in zip(facts.changes, keys, strict=True) if key is None or key not in self._memo]
        decided = self._post(facts, unknown) if unknown else {}
        held: list[frozenset[str]] = []
        for record, key in zip(facts.changes, keys, strict=True):  # read every remembered verdict first ...
            found = decided.get(record["index"])
            if found is None:
                assert key is not None  # a record without a key always goes to the engine
                found = self._memo[key]
                self._memo.move_to_end(key)
                self.memo_hits += 1
            held.append(found)
        for record, key in zip(facts.changes, keys, strict=True):  # ... then remember (and evict) the new ones
            if key is not None and record["index"] in decided:
                self.memo_misses += 1
                self._memo[key] = decided[record["index"]]
                if len(self._memo) > MEMO_SIZE:
                    self._memo.popitem(last=False)
        return Evaluation(tuple(held), facts)

    def _shared_key(self, facts: RequestFacts) -> tuple[Any, ...] | None:
        """What every change's verdict may read from the context: the values rules test, the time's interval;
        None when one of those values is too long to remember."""
        context = facts.context
        values = tuple((key, context.get(key)) for key in sorted(self._compiled.context_keys))
        if any(isinstance(value, str) and len(value) > MEMO_MAX_TEXT for _, value in values):
            return None
        interval = bisect.bisect_right(self._bounds, context["now"]) if self._compiled.reads_time else 0
        return values, interval

    def _memo_key(
        self, record: Mapping[str, Any], shared: tuple[Any, ...], facts: RequestFacts
    ) -> tuple[Any, ...] | None:
        """Exactly the facts the compiled rules can read for this change, or None (too long to remember)."""
        items = []
        for name, value in record.items():
            if name in _NOT_TESTABLE:
                continue
            if isinstance(value, str) and len(value) > MEMO_MAX_TEXT:
                return None
            items.append((name, value))
        related: tuple[Any, ...] = ()
        if self._relations:
            related = tuple(
                sorted(
                    {
                        (p["type"], p["before"], p["after"])
                        for p in facts.permissions
                        if any(self._relates(p, record, head, tail) for head, tail in self._relations)
                    }
                )
            )
        return tuple(sorted(items)), shared, related

    @staticmethod
    def _relates(permission: Mapping[str, Any], record: Mapping[str, Any], head: str, tail: str) -> bool:
        """Whether a relation of some rule could name this permission for this change."""
        for part, spec in (("head", head), ("tail", tail)):
            value = permission[part]
            if spec.startswith("{"):
                if record.get(spec[1:-1]) != value:
                    return False
            elif not fnmatchcase(value, spec):
                return False
        return True

    def _post(self, facts: RequestFacts, changes: list[dict[str, Any]]) -> dict[int, frozenset[str]]:
        if not changes:
            return {}  # durable_rules crashes the process (SIGSEGV) on an empty batch
        compiled = self._compiled
        batch: list[dict[str, Any]] = []
        if compiled.context_keys or compiled.reads_time:
            batch.append(facts.context)
        if compiled.reads_permissions:
            batch.extend(facts.permissions)
        if compiled.needs_references:
            batch.extend({**record, "t": REFERENCE} for record in changes)
        batch.extend(changes)
        events = [{"sid": SESSION_ID, **fact} for fact in batch]
        process = self._process
        with process.lock:
            process.fired.clear()
            try:
                refused, state = self._assert_facts(events)
            finally:
                self._forget_session()
            fired = list(process.fired)
            process.fired.clear()
        if refused:
            raise RulesEngineError(f"the engine refused the facts: {refused}")
        if isinstance(state, dict) and "exception" in state:
            raise RulesEngineError(f"a consequent raised: {state['exception']}")
        held: dict[int, set[str]] = {record["index"]: set() for record in changes}
        passes = 0
        for name, index in fired:
            if name == PASS_RULE_ID:
                passes += 1
            elif name in compiled.rule_of and index in held:
                held[index].add(compiled.rule_of[name])
            else:
                raise RulesEngineError(f"unexpected verdict {name!r} for change {index}")
        if passes != len(changes):
            raise RulesEngineError(f"{len(changes)} changes judged, {passes} seen by the engine")
        return {index: frozenset(rules) for index, rules in held.items()}

    def _assert_facts(self, events: list[dict[str, Any]]) -> tuple[str | None, Any]:
        """Assert the batch, then run the consequents the engine queued, also when it refused one of the facts
        (Host.assert_facts raises without running them, and deleting a session whose queued consequents never
        ran double-frees inside durable_rules 2.0.28). Returns why the engine refused (or None) and its state."""
        ruleset = self._process.host.get_ruleset(self._name)
        code, state_offset = durable_rules_engine_c.assert_facts(
            ruleset._handle, json.dumps(events, ensure_ascii=False)
        )
        outcome: list[Any] = [None, None]

        def complete(error: Any, state: Any) -> None:
            outcome[:] = [error, state]

        ruleset.do_actions(state_offset, complete)
        if outcome[0] is not None:
            raise RulesEngineError(f"the engine failed: {outcome[0]}")
        return _REFUSALS.get(code), outcome[1]

    def _forget_session(self) -> None:
        # Sessions live in a fixed-size table (1,024 slots); leaving one behind per request exhausts it.
        with contextlib.suppress(Exception):  # nothing to delete when the engine refused the facts
            self._process.host.delete_state(self._name, SESSION_ID)
