"""The durable_rules adapter: supplies a request's facts, reads which rules held for which change.

durable_rules keeps per-session state in fixed-size tables, is not thread-safe, swallows exceptions raised in
consequents, raises on a fact no pattern handles, refuses a fact identical to one already asserted, cannot
retract a verdict when a fact arrives after the change it would have blocked, and starts background dispatch
threads in every Host. This adapter owns one quiet Host per process, one compiled ruleset per rule-set
version shared by every engine of that version, one session per evaluation that is deleted afterwards (also
when the engine refuses a fact: the consequents it queued are run first, or durable_rules double-frees), a lock
so a threaded server cannot enter the engine twice, and the order of facts the compiler relies on: context,
permissions and references before the changes (see app/rules/runtime/compiler.py). It never evaluates a rule's
condition itself.

A ruleset is counted in use by every engine built for it; an engine stops using it when it is released
(DurableRulesEngine.release()), or when it is garbage (e.g. the live set swapped it out and the last request
holding it ended; counted when the next engine is built). A ruleset no engine uses stays registered while it is
one of the RULESETS_KEPT_UNUSED most recently dropped (a reload back to it, a rollback, takes it as it is);
older ones are deleted from durable_rules and the Host. Keeping a few matters because durable_rules 2.0.28
never frees the automaton it builds for each `matches` pattern when it compiles a ruleset (~29 kB a pattern):
compiling the same sets again and again would grow the process without bound however carefully the rulesets
are deleted.

A bounded memo remembers the engine's verdict per change under a key of exactly what the compiled rules can
read for it (app/rules/runtime/memo.py): a change whose key is known is answered without the engine and without
building the request's facts; those are built when the engine is asked, or for a message of a rule that held.
The memo and the tenant-pattern cache are read and written under the engine's own lock, so threads may share
an engine.
"""

from __future__ import annotations

import contextlib
import json
import threading
import weakref
from collections import OrderedDict
from typing import Any

import durable_rules_engine as durable_rules_engine_c  # type: ignore[import-not-found]
from durable import engine as durable_engine  # type: ignore[import-untyped]

from app.rules.language.model import RuleSet
from app.rules.runtime.compiler import (
    PASS_RULE_ID,
    REFERENCE,
    Compiled,
    compile_rule_set,
)
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.facts import (
    RequestFacts,
    after_request,
    change_record,
    change_records,
    context_record,
    message_values,
    permission_records,
)
from app.rules.runtime.memo import MEMO_MAX_TEXT as MEMO_MAX_TEXT  # re-exported: where tests and tools look for it
from app.rules.runtime.memo import Key, MemoKeys

SESSION_ID = "request"
MEMO_SIZE = 4096
ENABLED_CACHE_SIZE = 256
RULESETS_KEPT_UNUSED = 2  # registered rulesets no engine uses, kept for a reload back to them (see above)
_REFUSALS = {1: "a fact no rule handles", 2: "a fact identical to one already asserted"}  # the engine's codes


class RulesEngineError(RuntimeError):
    """The engine did not judge every change exactly once: a bug, never a client's fault."""


class EngineReleased(RulesEngineError):
    """An engine was asked to judge after it was released: the caller holds an engine it gave up."""


class _QuietHost(durable_engine.Host):
    """A Host without the timer threads that would call into the engine behind our back."""

    def _run(self) -> None:
        return None


class Evaluation:
    """Per change, every rule whose condition held; the request's facts are built only when asked for (a
    verdict the memo remembered needs none of them)."""

    def __init__(
        self,
        held: tuple[frozenset[str], ...],
        engine: DurableRulesEngine,
        decision_input: DecisionInput,
        facts: RequestFacts | None = None,
    ) -> None:
        self.held = held
        self._engine = engine
        self._input = decision_input
        self._facts = facts
        self._messages: dict[int, dict[str, Any]] = {}  # per change, when several rules held for it

    @property
    def facts(self) -> RequestFacts:
        """The facts of the request as the engine is given them."""
        if self._facts is None:
            self._facts = self._engine.facts_of(self._input)
        return self._facts

    def message_values(self, index: int) -> dict[str, Any]:
        """What a message's placeholders show for changes[index]."""
        if self._facts is not None:
            return self._facts.messages[index]
        found = self._messages.get(index)
        if found is None:
            found = self._messages[index] = self._engine.message_values(self._input, index)
        return found


class _Process:
    """The process-wide engine: one Host, the rulesets registered in it, how many engines use each, and the
    verdict sink."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.host = _QuietHost()
        self.compiled: dict[str, Compiled] = {}
        self.users: dict[str, int] = {}  # engines using each registered ruleset
        self.unused: OrderedDict[str, None] = OrderedDict()  # registered, used by no engine; oldest first
        self.engines: dict[weakref.ref[DurableRulesEngine], str] = {}  # each engine counted in users: its ruleset
        # Engines that became garbage, appended by the weakref machinery itself (a C call: it runs inside the
        # garbage collector, on any thread and at any depth, so no Python code of ours may run there); counted
        # by the next acquire or release.
        self.dropped: list[weakref.ref[DurableRulesEngine]] = []
        self.fired: list[tuple[str, int]] = []

    def action(self, name: str) -> Any:
        fired = self.fired

        def consequent(c: Any) -> None:
            fired.append((name, c.c["index"]))

        return consequent

    def acquire(self, engine: DurableRulesEngine, name: str, rule_set: RuleSet) -> Compiled:
        """The compiled ruleset of that name (compiled and registered if it is not), counted in use by engine
        until engine is released or garbage."""
        with self.lock:
            self._settle()
            compiled = self.compiled.get(name)
            if compiled is None:
                compiled = compile_rule_set(rule_set, self.action)
                self.host.register_rulesets({name: compiled.definition})
                self.compiled[name] = compiled
            self.engines[weakref.ref(engine, self.dropped.append)] = name
            self.users[name] = self.users.get(name, 0) + 1
            self.unused.pop(name, None)
            return compiled

    def release(self, engine: DurableRulesEngine) -> None:
        """engine stops using its ruleset (once: a second release, or the engine becoming garbage, counts
        nothing more)."""
        with self.lock:
            self.dropped.append(weakref.ref(engine))  # equal to the one acquire made: the same engine
            self._settle()

    def _settle(self) -> None:
        """Count the engines dropped; delete the rulesets no engine uses beyond the RULESETS_KEPT_UNUSED newest."""
        while self.dropped:
            name = self.engines.pop(self.dropped.pop(0), None)  # in the order they were dropped
            if name is None:
                continue  # released before it became garbage
            self.users[name] -= 1
            if not self.users[name]:
                del self.users[name]
                self.unused[name] = None
        while len(self.unused) > RULESETS_KEPT_UNUSED:
            name, _ = self.unused.popitem(last=False)
            self._delete(name)

    def _delete(self, name: str) -> None:
        """Unregister the ruleset from the Host and free it inside durable_rules."""
        ruleset = self.host._ruleset_directory.pop(name)
        self.host._ruleset_list.remove(ruleset)
        del self.compiled[name]
        durable_rules_engine_c.delete_ruleset(ruleset._handle)


_PROCESS: _Process | None = None
_PROCESS_LOCK = threading.Lock()


def _process() -> _Process:
    global _PROCESS
    with _PROCESS_LOCK:
        if _PROCESS is None:
            _PROCESS = _Process()
        return _PROCESS


class DurableRulesEngine:
    """Judges the changes of a request against one rule set through durable_rules."""

    def __init__(self, rule_set: RuleSet) -> None:
        self.rule_set = rule_set
        # The stored version (app/rules/lifecycle/stored.py) the live rules built this engine from: what a decision
        # judged by it records (decisions.published_version). None: not built from a publication.
        self.published_version: str | None = None
        self._name = f"permissions_{rule_set.version}"
        self._process = process = _process()
        self._compiled = process.acquire(self, self._name, rule_set)
        self._released = False
        self._lock = threading.Lock()  # the memo and the pattern cache
        self._memo: OrderedDict[Key, frozenset[str]] = OrderedDict()
        self._keys = MemoKeys(rule_set, self._compiled)
        self._enabled: OrderedDict[tuple[str, ...], frozenset[str]] = OrderedDict()
        self.memo_hits = 0
        self.memo_misses = 0

    def release(self) -> None:
        """Stop using the compiled ruleset (freed once no engine uses it) and forget the memo. Evaluating
        afterwards raises EngineReleased; facts and messages of evaluations already made stay readable.
        Releasing twice does nothing."""
        with self._lock:
            if self._released:
                return
            self._released = True
            self._memo.clear()
        self._process.release(self)

    @property
    def released(self) -> bool:
        return self._released

    @property
    def version(self) -> str:
        return self.rule_set.version

    def enabled(self, patterns: tuple[str, ...]) -> frozenset[str]:
        """The catalog values a tenant's patterns enable (remembered per distinct pattern list)."""
        found = self._enabled.get(patterns)  # one lookup, atomic: no lock needed to read
        if found is None:
            found = frozenset(self.rule_set.catalog.expand(patterns))
            with self._lock:
                self._enabled[patterns] = found
                if len(self._enabled) > ENABLED_CACHE_SIZE:
                    self._enabled.popitem(last=False)
        return found

    def facts_of(self, decision_input: DecisionInput) -> RequestFacts:
        """The facts of a request as the engine is given them."""
        catalog = self.rule_set.catalog
        enabled = self.enabled(decision_input.tenant_patterns)
        stored = decision_input.stored
        changes = change_records(
            decision_input.changes, catalog=catalog, enabled=enabled, stored=stored, counts=self._compiled.counts
        )
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

    def message_values(self, decision_input: DecisionInput, index: int) -> dict[str, Any]:
        """What a message's placeholders show for changes[index] (the facts of that change alone)."""
        record = change_record(
            decision_input.changes,
            index,
            catalog=self.rule_set.catalog,
            enabled=self.enabled(decision_input.tenant_patterns),
            stored=decision_input.stored,
            counts=self._compiled.counts,
        )
        return message_values(
            record,
            decision_input.changes[index],
            tenant_id=decision_input.tenant_id,
            attributes=decision_input.attributes,
        )

    def evaluate(self, decision_input: DecisionInput, *, use_memo: bool = True) -> Evaluation:
        """Per change, the rules that held, decided by the engine (or remembered from an identical judgement)."""
        if self._released:
            raise EngineReleased(f"the engine of rule set {self.version} was released")
        if not use_memo:
            every = self.facts_of(decision_input)
            verdicts = self._post(every.context, every.permissions, every.changes)  # one session for all of them
            return Evaluation(tuple(verdicts[r["index"]] for r in every.changes), self, decision_input, every)
        memo = self._memo
        keys = self._keys.keys(decision_input, self.enabled(decision_input.tenant_patterns))
        held: list[frozenset[str] | None] = [None] * len(keys)
        with self._lock:  # take every remembered verdict at once: another thread may evict one meanwhile
            for index, key in enumerate(keys):
                if key is not None and key in memo:
                    memo.move_to_end(key)
                    held[index] = memo[key]
                    self.memo_hits += 1
        unknown = [index for index, found in enumerate(held) if found is None]
        if unknown:
            context, permissions, records = self._engine_facts(decision_input)
            decided = self._post(context, permissions, [records[index] for index in unknown])
            with self._lock:  # remember (and evict) the new ones
                for index in unknown:
                    held[index] = decided[index]
                    key = keys[index]
                    if key is not None:
                        self.memo_misses += 1
                        memo[key] = decided[index]
                        if len(memo) > MEMO_SIZE:
                            memo.popitem(last=False)
        return Evaluation(tuple(held), self, decision_input)  # type: ignore[arg-type]  # every change decided

    def _engine_facts(
        self, decision_input: DecisionInput
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        """The context, permissions and change records as facts_of builds them, but only those the compiled rules
        read (no permissions for a set that tests none) and without the message values."""
        catalog, compiled = self.rule_set.catalog, self._compiled
        enabled = self.enabled(decision_input.tenant_patterns)
        stored = decision_input.stored
        records = change_records(
            decision_input.changes, catalog=catalog, enabled=enabled, stored=stored, counts=compiled.counts
        )
        context: dict[str, Any] = {}
        if compiled.context_keys or compiled.reads_time:
            context = context_record(
                tenant_id=decision_input.tenant_id,
                account_status=decision_input.account_status,
                attributes=decision_input.attributes,
                now=decision_input.at.timestamp(),
            )
        permissions: list[dict[str, Any]] = []
        if compiled.reads_permissions:
            after = after_request(decision_input.changes, catalog=catalog, enabled=enabled, stored=stored)
            permissions = permission_records(catalog, stored, after)
        return context, permissions, records

    def _post(
        self, context: dict[str, Any], permissions: list[dict[str, Any]], changes: list[dict[str, Any]]
    ) -> dict[int, frozenset[str]]:
        if not changes:
            return {}  # durable_rules crashes the process (SIGSEGV) on an empty batch
        compiled = self._compiled
        batch: list[dict[str, Any]] = []
        if compiled.context_keys or compiled.reads_time:
            batch.append(context)
        if compiled.reads_permissions:
            batch.extend(permissions)
        if compiled.needs_references:
            batch.extend({**record, "t": REFERENCE} for record in changes)
        batch.extend(changes)
        events = [{"sid": SESSION_ID, **fact} for fact in batch]
        process = self._process
        with process.lock:
            if self._released:  # released by another thread since evaluate() began: its ruleset may be gone
                raise EngineReleased(f"the engine of rule set {self.version} was released")
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
