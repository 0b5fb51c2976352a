"""The durable_rules adapter: evaluates a request's changes and names the rule that decided each.

durable_rules keeps per-session state in fixed-size tables, is not thread-safe, swallows exceptions
raised in consequents and starts background dispatch threads in every Host. This adapter owns one
quiet Host per process, one compiled ruleset per rule-set version, a single session id that is
deleted after every evaluation, and a lock so a threaded server cannot enter the engine twice.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from durable import engine as durable_engine  # type: ignore[import-untyped]

from app.rules.compiler import PASS_RULE_ID, compile_rule_set
from app.rules.facts import change_facts
from app.rules.model import Rule, RuleSet

SESSION_ID = "request"
MEMO_SIZE = 4096
MEMO_MAX_TEXT = 128  # longer values are judged by the engine every time rather than held in memory
_NOT_TESTABLE = frozenset({"index", "earlier_index"})  # carried for messages; no rule can test them


def _memo_key(record: Mapping[str, Any]) -> tuple[Any, ...] | None:
    items = []
    for name, value in record.items():
        if name in _NOT_TESTABLE:
            continue
        if isinstance(value, str) and len(value) > MEMO_MAX_TEXT:
            return None
        items.append((name, value))
    return tuple(sorted(items))


class RulesEngineError(RuntimeError):
    """The engine did not give exactly one verdict per change: a bug, never a client's fault."""


class _QuietHost(durable_engine.Host):
    """A Host without the timer threads that would call into the engine behind our back."""

    def _run(self) -> None:
        return None


@dataclass(frozen=True)
class Verdict:
    """The engine's decision for one change: the rule that fired, or None when it passed."""

    index: int
    rule: Rule | None
    facts: Mapping[str, Any]

    @property
    def passed(self) -> bool:
        return self.rule is None


@dataclass(frozen=True)
class Explanation:
    """One change explained: each rule in order with whether it holds, and the engine's verdict."""

    verdict: Verdict
    checks: tuple[tuple[Rule, bool], ...]


class _Process:
    """The process-wide engine: one Host, the rulesets registered so far, and the verdict sink."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.host = _QuietHost()
        self.registered: set[str] = set()
        self.fired: list[tuple[int, str]] = []

    def action(self, rule_id: str) -> Any:
        fired = self.fired

        def consequent(c: Any) -> None:
            fired.append((c.m["index"], rule_id))

        return consequent

    def ensure(self, name: str, rule_set: RuleSet) -> None:
        with self.lock:
            if name not in self.registered:
                self.host.register_rulesets({name: compile_rule_set(rule_set, self.action)})
                self.registered.add(name)


_PROCESS: _Process | None = None
_PROCESS_LOCK = threading.Lock()


def _process() -> _Process:
    global _PROCESS
    with _PROCESS_LOCK:
        if _PROCESS is None:
            _PROCESS = _Process()
        return _PROCESS


class DurableRulesEngine:
    """Evaluates changes against one rule set through durable_rules."""

    def __init__(self, rule_set: RuleSet) -> None:
        self.rule_set = rule_set
        self._name = f"permissions_{rule_set.version}"
        self._rules = {rule.id: rule for rule in rule_set.rules}
        self._process = _process()
        self._process.ensure(self._name, rule_set)
        self._memo: OrderedDict[tuple[Any, ...], str | None] = OrderedDict()

    @property
    def version(self) -> str:
        return self.rule_set.version

    def evaluate(
        self,
        changes: Sequence[Mapping[str, Any]],
        *,
        enabled: frozenset[str],
        current: Mapping[str, str],
    ) -> list[Verdict]:
        """One verdict per change, in order, each decided by the engine."""
        facts = change_facts(changes, catalog=self.rule_set.catalog, enabled=enabled, current=current)
        return self.evaluate_facts(facts)

    def evaluate_facts(self, facts: list[dict[str, Any]]) -> list[Verdict]:
        """The engine's verdict for each fact record, remembered per distinct record.

        A verdict depends only on the facts the rules can test (and on this rule set), so records the engine
        has already judged are answered from a bounded memo; the rest go to the engine in one batch.
        """
        keys = [_memo_key(record) for record in facts]
        unknown = [record for record, key in zip(facts, keys, strict=True) if key is None or key not in self._memo]
        decided = {v.index: v for v in self._post(self._name, unknown, self._rules)} if unknown else {}
        verdicts = []
        for record, key in zip(facts, keys, strict=True):
            verdict = decided.get(record["index"])
            if verdict is None:
                assert key is not None  # a record without a key always goes to the engine
                rule_id = self._memo[key]
                self._memo.move_to_end(key)
                verdict = Verdict(record["index"], None if rule_id is None else self._rules[rule_id], record)
            elif key is not None:
                self._memo[key] = verdict.rule.id if verdict.rule else None
                if len(self._memo) > MEMO_SIZE:
                    self._memo.popitem(last=False)
            verdicts.append(verdict)
        return verdicts

    def evaluate_with_engine(self, facts: list[dict[str, Any]]) -> list[Verdict]:
        """Every record through the engine, bypassing the memo (for explain, benchmarks and tests)."""
        return self._post(self._name, facts, self._rules)

    def _post(self, name: str, facts: list[dict[str, Any]], rules: Mapping[str, Rule]) -> list[Verdict]:
        if not facts:
            return []  # durable_rules crashes the process (SIGSEGV) on an empty batch
        events = [{"sid": SESSION_ID, "id": record["index"], **record} for record in facts]
        process = self._process
        with process.lock:
            process.fired.clear()
            try:
                state = process.host.post_batch(name, events)
            finally:
                self._forget_session(name)
            fired = dict(process.fired)
            process.fired.clear()
        if isinstance(state, dict) and "exception" in state:
            raise RulesEngineError(f"a consequent raised: {state['exception']}")
        if len(fired) != len(events):
            raise RulesEngineError(f"{len(events)} changes posted, {len(fired)} verdicts")
        return [
            Verdict(
                index=r["index"], rule=None if fired[r["index"]] == PASS_RULE_ID else rules[fired[r["index"]]], facts=r
            )
            for r in facts
        ]

    def explain(
        self,
        changes: Sequence[Mapping[str, Any]],
        *,
        enabled: frozenset[str],
        current: Mapping[str, str],
    ) -> list[Explanation]:
        """For each change, every rule's own verdict from the engine, in order, and the deciding rule."""
        facts = change_facts(changes, catalog=self.rule_set.catalog, enabled=enabled, current=current)
        decided = self.evaluate_with_engine(facts)
        holds: dict[str, list[bool]] = {}
        for rule in self.rule_set.rules:
            probe = RuleSet(version=self.rule_set.version, catalog=self.rule_set.catalog, rules=(rule,))
            name = f"{self._name}__probe__{rule.id}"
            self._process.ensure(name, probe)
            holds[rule.id] = [not v.passed for v in self._post(name, facts, {rule.id: rule})]
        return [
            Explanation(
                verdict=verdict,
                checks=tuple((rule, holds[rule.id][verdict.index]) for rule in self.rule_set.rules),
            )
            for verdict in decided
        ]

    def first_failure(
        self,
        changes: Sequence[Mapping[str, Any]],
        *,
        enabled: frozenset[str],
        current: Mapping[str, str],
    ) -> Verdict | None:
        """The first change a rule rejects, or None when every change passes."""
        for verdict in self.evaluate(changes, enabled=enabled, current=current):
            if not verdict.passed:
                return verdict
        return None

    def _forget_session(self, name: str) -> None:
        # Sessions live in a fixed-size table (1,024 slots); leaving one behind per request exhausts it.
        with contextlib.suppress(Exception):  # nothing to delete when the engine refused the batch
            self._process.host.delete_state(name, SESSION_ID)
