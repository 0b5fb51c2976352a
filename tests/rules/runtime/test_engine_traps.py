"""Probes of durable_rules itself: the behaviours the compiler and the adapter are built around.

Each test talks to the engine directly (no adapter), so that an engine upgrade that changes one of them fails
here, by name, rather than as a wrong verdict somewhere else. See app/rules/runtime/compiler.py,
app/rules/runtime/engine.py and ../shared/ENGINE-NOTES.md.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import durable_rules_engine as durable_rules_engine_c  # type: ignore[import-not-found]
import pytest
from durable import engine as durable_engine  # type: ignore[import-untyped]

from app.rules.runtime.engine import _QuietHost
from tests.support import PROJECT_ROOT

SID = "probe"


class Probe:
    """One quiet Host; each ruleset registered under a fresh name; every session deleted after use."""

    def __init__(self) -> None:
        self.host = _QuietHost()
        self.fired: list[tuple[str, Any]] = []
        self.names = itertools.count()

    def action(self, name: str, read: str = "index") -> Any:
        def consequent(c: Any) -> None:
            self.fired.append((name, c.c[read]))

        return consequent

    def ruleset(self, rules: dict[str, list[dict[str, Any]]], read: str = "index", **options: Any) -> str:
        """Register the rules, plus one that every change fires (as the adapter's pass rule): deleting a
        session in which no consequent ever ran is unsafe (see test_deleting_a_session_where_nothing_fired)."""
        name = f"probe{next(self.names)}"
        definition = {
            rule: {"all": patterns, "run": self.action(rule, read), **options} for rule, patterns in rules.items()
        }
        definition["~seen"] = {"all": [{"c": {"t": "c"}}], "run": lambda c: None}
        self.host.register_rulesets({name: definition})
        return name

    def post(self, ruleset: str, facts: list[dict[str, Any]]) -> list[tuple[str, Any]]:
        """Assert the facts in one batch as Host.assert_facts does, but run the queued consequents and delete
        the session before raising what the engine refused (see test_deleting_a_refused_session...)."""
        self.fired.clear()
        rules = self.host.get_ruleset(ruleset)
        events = [{"sid": SID, **fact} for fact in facts]
        try:
            result = durable_rules_engine_c.assert_facts(rules._handle, json.dumps(events, ensure_ascii=False))
            rules.do_actions(result[1], lambda error, state: None)
        finally:
            self.forget(ruleset)
        rules._handle_result(result, events)  # raises MessageNotHandledException / MessageObservedException
        return list(self.fired)

    def forget(self, ruleset: str) -> None:
        try:
            self.host.delete_state(ruleset, SID)
        except Exception as exc:  # no session was made (the engine refused the first fact)
            assert "error code: 309" in str(exc)


@pytest.fixture(scope="module")
def probe() -> Iterator[Probe]:
    yield Probe()


def test_a_not_over_the_change_itself_misfires_and_an_earlier_copy_fixes_it(probe):
    """'a change whose type does not match stock.*', said as a $not over the change fact itself, holds even
    for stock.US: within the insertion of that fact the engine has not yet seen it. The compiler says it over
    the copy r asserted before the changes, which the engine gets right."""
    ruleset = probe.ruleset(
        {
            "self": [
                {"c": {"t": "c"}},
                {"q$not": {"$and": [{"t": "c"}, {"index": {"c": "index"}}, {"$mt": {"v": "stock[.].*"}}]}},
            ],
            "copy": [
                {"c": {"t": "c"}},
                {"q$not": {"$and": [{"t": "r"}, {"index": {"c": "index"}}, {"$mt": {"v": "stock[.].*"}}]}},
            ],
            "sink": [{"m": {"t": "r"}}, {"n": {"t": "~never"}}],
        },
        dist=0,  # not the distinct correlation: the copy is another fact, the change itself is not
    )
    facts = [
        {"t": "r", "index": 0, "v": "stock.US"},
        {"t": "r", "index": 1, "v": "options.US"},
        {"t": "c", "index": 0, "v": "stock.US"},
        {"t": "c", "index": 1, "v": "options.US"},
    ]
    fired = sorted(probe.post(ruleset, facts))
    assert ("self", 0) in fired  # the misfire: stock.US does match stock.*
    assert fired == [("copy", 1), ("self", 0), ("self", 1)]


def test_a_fact_asserted_after_the_change_cannot_retract_a_verdict(probe):
    """A $not pattern that held when the change arrived stays fired when the blocking fact comes later; so
    context, permission and reference facts go first."""
    ruleset = probe.ruleset(
        {
            "unblocked": [{"c": {"t": "c"}}, {"x$not": {"$and": [{"t": "x"}, {"block": True}]}}],
            "sink": [{"m": {"t": "x"}}, {"n": {"t": "~never"}}],
        }
    )
    assert probe.post(ruleset, [{"t": "x", "block": True}, {"t": "c", "index": 0}]) == []
    assert probe.post(ruleset, [{"t": "c", "index": 0}, {"t": "x", "block": True}]) == [("unblocked", 0)]


def test_a_fact_no_pattern_handles_raises(probe):
    ruleset = probe.ruleset({"change": [{"c": {"t": "c"}}]})
    with pytest.raises(durable_engine.MessageNotHandledException):
        probe.post(ruleset, [{"t": "c", "index": 0}, {"t": "x", "tenant": "t1"}])
    # A sink (a pattern that never completes) is enough to have it handled.
    sunk = probe.ruleset({"change": [{"c": {"t": "c"}}], "sink": [{"m": {"t": "x"}}, {"n": {"t": "~never"}}]})
    assert probe.post(sunk, [{"t": "x", "tenant": "t1"}, {"t": "c", "index": 0}]) == [("change", 0)]


def test_identical_facts_raise(probe):
    ruleset = probe.ruleset({"change": [{"c": {"t": "c"}}]})
    with pytest.raises(durable_engine.MessageObservedException):
        probe.post(ruleset, [{"t": "c", "index": 0}, {"t": "c", "index": 0}])
    assert sorted(probe.post(ruleset, [{"t": "c", "index": 0}, {"t": "c", "index": 1}])) == [
        ("change", 0),
        ("change", 1),
    ]


def test_an_exception_in_a_consequent_is_swallowed_into_the_state(probe):
    def boom(_c: Any) -> None:
        raise ValueError("boom")

    probe.host.register_rulesets({"probe-boom": {"boom": {"all": [{"c": {"t": "c"}}], "run": boom}}})
    try:
        state = probe.host.assert_facts("probe-boom", [{"sid": SID, "t": "c", "index": 0}])
    finally:
        probe.forget("probe-boom")
    assert isinstance(state, dict) and "boom" in str(state["exception"])


def test_a_missing_field_reads_as_none_in_a_consequent(probe):
    """Reading a fact's missing field inside a consequent gives None rather than raising (so the adapter's
    own consequent cannot detect a record without its index that way)."""
    ruleset = probe.ruleset({"change": [{"c": {"t": "c"}}]})
    assert probe.post(ruleset, [{"t": "c", "v": 1}]) == [("change", None)]


def test_facts_are_not_consumed_every_rule_that_holds_fires(probe):
    """Unlike events, a fact is seen by every rule: held lists all rules of a change, in any order."""
    ruleset = probe.ruleset(
        {
            "first": [{"c": {"$and": [{"t": "c"}, {"v": 1}]}}],
            "second": [{"c": {"$and": [{"t": "c"}, {"v": 1}]}}],
            "other": [{"c": {"$and": [{"t": "c"}, {"v": 2}]}}],
        }
    )
    assert sorted(probe.post(ruleset, [{"t": "c", "index": 0, "v": 1}])) == [("first", 0), ("second", 0)]


@pytest.mark.parametrize(("options", "misfires"), [({}, True), ({"dist": 0}, False)], ids=["distinct", "dist-0"])
def test_distinct_correlation_hides_a_bound_fact_from_a_not(probe, options, misfires):
    """By default one fact serves at most one pattern of a match: 'tenant t2 and not professional' over one
    context fact holds for a professional of t2, and 'open before and open after' needs two permission facts.
    The compiler turns it off with dist: 0."""
    ruleset = probe.ruleset(
        {
            "t2-not-pro": [
                {"c": {"t": "c"}},
                {"x": {"$and": [{"t": "x"}, {"tenant": "t2"}]}},
                {"x1$not": {"$and": [{"t": "x"}, {"pro": True}]}},
            ],
            "kept-open": [
                {"c": {"t": "c"}},
                {"p1": {"$and": [{"t": "p"}, {"before": "open"}]}},
                {"p2": {"$and": [{"t": "p"}, {"after": "open"}]}},
            ],
        },
        **options,
    )
    context = {"t": "x", "tenant": "t2", "pro": True}
    permission = {"t": "p", "before": "open", "after": "open"}
    fired = probe.post(ruleset, [context, permission, {"t": "c", "index": 0}])
    assert fired == ([("t2-not-pro", 0)] if misfires else [("kept-open", 0)])


def test_a_correlated_join_compares_with_the_change(probe):
    ruleset = probe.ruleset(
        {
            "related": [{"c": {"t": "c"}}, {"p": {"$and": [{"t": "p"}, {"tail": {"c": "market"}}]}}],
            "unrelated": [{"c": {"t": "c"}}, {"p$not": {"$and": [{"t": "p"}, {"tail": {"c": "market"}}]}}],
        }
    )
    stock_us = {"t": "p", "tail": "US"}
    assert probe.post(ruleset, [stock_us, {"t": "c", "index": 0, "market": "US"}]) == [("related", 0)]
    assert probe.post(ruleset, [stock_us, {"t": "c", "index": 0, "market": "HK"}]) == [("unrelated", 0)]
    # A change without the field joins nothing: the compiler adds $ex so its negation does not hold either.
    assert probe.post(ruleset, [stock_us, {"t": "c", "index": 0}]) == [("unrelated", 0)]


def test_the_regex_dialect_has_no_backslash_escapes(probe):
    ruleset = probe.ruleset(
        {
            "escaped": [{"c": {"$and": [{"t": "c"}, {"$mt": {"v": "flag\\..*"}}]}}],
            "bracketed": [{"c": {"$and": [{"t": "c"}, {"$mt": {"v": "flag[.].*"}}]}}],
            "full": [{"c": {"$and": [{"t": "c"}, {"$mt": {"v": "flag"}}]}}],
            "sink": [{"m": {"t": "c"}}, {"n": {"t": "~never"}}],  # so that a change nothing matches is handled
        },
        read="v",
    )
    assert probe.post(ruleset, [{"t": "c", "v": "flag.options"}]) == [("bracketed", "flag.options")]
    assert probe.post(ruleset, [{"t": "c", "v": "flagXoptions"}]) == []
    assert probe.post(ruleset, [{"t": "c", "v": "flag"}]) == [("full", "flag")]  # a full match, not a search


REFUSED_THEN_DELETED = """
import json, sys
import durable_rules_engine
from durable import engine
class Quiet(engine.Host):
    def _run(self):
        return None
host = Quiet()
host.register_rulesets({"d": {"a": {"all": [{"c": {"t": "c"}}], "run": lambda c: None}}})
rules = host.get_ruleset("d")
for n in range(200):
    facts = [{"sid": "s", "t": "c", "i": 0}, {"sid": "s", "t": "c", "i": 0}]  # the second is refused
    if sys.argv[1] == "host":
        try:
            host.assert_facts("d", facts)
        except engine.MessageObservedException:
            pass
    else:
        result = durable_rules_engine.assert_facts(rules._handle, json.dumps(facts))
        assert result[0] == 2, result
        rules.do_actions(result[1], lambda error, state: None)
    host.delete_state("d", "s")
print("deleted-ok", flush=True)
"""


NOTHING_FIRED = """
import sys
from durable import engine
class Quiet(engine.Host):
    def _run(self):
        return None
host = Quiet()
rules = {"blue": {"all": [{"c": {"$and": [{"t": "c"}, {"colour": "blue"}]}}], "run": lambda c: None}}
if sys.argv[1] == "with-a-rule-every-change-fires":
    rules["seen"] = {"all": [{"c": {"t": "c"}}], "run": lambda c: None}
host.register_rulesets({"n": rules})
for n in range(200):
    host.assert_facts("n", [{"sid": "s", "t": "c", "colour": "red"}])  # the blue rule does not hold
    host.delete_state("n", "s")
print("deleted-ok", flush=True)
"""


@pytest.mark.parametrize(("way", "survives"), [("nothing-fired", False), ("with-a-rule-every-change-fires", True)])
def test_deleting_a_session_where_nothing_fired_corrupts_memory(way, survives):
    """A session's action context is only initialised when a consequent starts, and delete_state frees it
    regardless: deleting a session in which no rule fired frees garbage. The adapter's pass rule, which every
    change fires, is what makes its delete_state safe (glibc's heap checks turn the corruption into a crash)."""
    result = subprocess.run(
        [sys.executable, "-c", NOTHING_FIRED, way],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MALLOC_CHECK_": "3"},
    )
    assert (result.returncode == 0 and result.stdout.strip() == "deleted-ok") is survives, (
        result.returncode,
        result.stdout,
        result.stderr[-500:],
    )


@pytest.mark.parametrize(("way", "survives"), [("host", False), ("consequents-first", True)])
def test_deleting_a_refused_session_before_its_consequents_ran_corrupts_memory(way, survives):
    """Host.assert_facts raises on a refused fact without running the consequents the engine queued for the
    facts before it; deleting that session then double-frees (glibc's heap checks make it a crash). Running
    the queued consequents first, as the adapter does, makes the delete safe."""
    result = subprocess.run(
        [sys.executable, "-c", REFUSED_THEN_DELETED, way],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MALLOC_CHECK_": "3"},
    )
    assert (result.returncode == 0 and result.stdout.strip() == "deleted-ok") is survives, (
        result.returncode,
        result.stdout,
        result.stderr[-500:],
    )


def test_a_lone_surrogate_is_refused_before_any_session_exists(probe):
    ruleset = probe.ruleset({"change": [{"c": {"t": "c"}}]})
    with pytest.raises(Exception, match="Invalid argument"):
        probe.post(ruleset, [{"t": "c", "index": 0, "v": "\ud800"}])
    assert probe.post(ruleset, [{"t": "c", "index": 0, "v": "\\ud800"}]) == [("change", 0)]  # the adapter's escape


SESSIONS = """
from durable import engine
class Quiet(engine.Host):
    def _run(self):
        return None
host = Quiet()
host.register_rulesets({"s": {"a": {"all": [{"c": {"t": "c"}}], "run": lambda c: None}}})
for n in range(2000):
    try:
        host.assert_facts("s", [{"sid": f"s{n}", "t": "c"}])
    except MemoryError:
        print("full at", n, flush=True)
        break
else:
    print("never full", flush=True)
"""


def test_undeleted_sessions_fill_a_table_of_1024():
    result = subprocess.run(
        [sys.executable, "-c", SESSIONS], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "full at 1024", (result.returncode, result.stdout, result.stderr[-2000:])


EMPTY = """
from durable import engine
class Quiet(engine.Host):
    def _run(self):
        return None
host = Quiet()
host.register_rulesets({"e": {"a": {"all": [{"c": {"t": "c"}}], "run": lambda c: None}}})
print("posting", flush=True)
host.assert_facts("e", [])
print("survived", flush=True)
"""


def test_an_empty_batch_takes_the_process_down():
    result = subprocess.run(
        [sys.executable, "-c", EMPTY], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "posting" and result.returncode != 0, (result.returncode, result.stdout)
