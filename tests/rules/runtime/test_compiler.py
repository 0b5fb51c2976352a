"""Compiling a RuleSet into a durable_rules definition: globs, the disjunctive form, and the facts each rule joins."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

import pytest

from app.rules.language.clauses import MAX_CLAUSES, ConditionTooLarge, clauses
from app.rules.language.loader import load_rule_set
from app.rules.language.model import (
    AccountTest,
    All,
    AnyOf,
    ChangeTest,
    Match,
    Not,
    PermissionTest,
    Rule,
    RuleSet,
    TenantTest,
    Window,
)
from app.rules.language.parser import GLOB
from app.rules.runtime.compiler import (
    PASS_RULE_ID,
    compile_rule_set,
    glob_to_engine_regex,
)
from tests.rules.support import BROKER_POLICIES
from tests.support import SHIPPED_RULES


@pytest.mark.parametrize(
    ("glob", "regex"),
    [
        ("flag.*", "flag[.].*"),
        ("stock.*", "stock[.].*"),
        ("options.US", "options[.]US"),
        ("stock.?S", "stock[.].S"),
        ("*", ".*"),
        ("account.public_funds", "account[.]public_funds"),
        ("a-b.c", "a[-]b[.]c"),
    ],
)
def test_glob_to_engine_regex(glob, regex):
    assert glob_to_engine_regex(glob) == regex


@pytest.mark.parametrize("glob", ["flag.*", "stock.?S", "a-b.c*", "x_y.z", "va.OSL", "*.US", "??.*"])
def test_translated_globs_have_no_backslash_and_mean_the_glob(glob):
    """The engine's dialect has no backslash escapes; the translation must match exactly what the glob does."""
    assert GLOB.match(glob)
    regex = glob_to_engine_regex(glob)
    assert "\\" not in regex
    # Python's re reads the bracketed literals the same way; use it to check the meaning.
    samples = [
        "flag.options",
        "flagXoptions",
        "stock.US",
        "stock.HK",
        "stockXUS",
        "a-b.cd",
        "a-bXcd",
        "x_y.z",
        "xXy.z",
        "va.OSL",
        "vaXOSL",
        "stock.US.",
        "ab.c",
        "HK.US",
        ".US",
        "a.b",
    ]
    for sample in samples:
        assert bool(re.fullmatch(regex, sample)) == fnmatchcase(sample, glob), (glob, sample)


# --- the disjunctive form ---------------------------------------------------------------------------------

A = ChangeTest("product", Match(values=("options",)))
B = ChangeTest("market", Match(values=("US", "HK")))
C = AccountTest("account_type", Match(values=("margin",)))
D = TenantTest(Match(values=("t1",)))
OPEN_AFTER = PermissionTest("stock.{market}", "stock", "{market}", "after", "open")
CLOSED_AFTER = PermissionTest("stock.{market}", "stock", "{market}", "after", "close")


def shape(found: list[list[tuple[bool, Any]]]) -> list[list[tuple[bool, Any]]]:
    return sorted((sorted(clause, key=repr) for clause in found), key=repr)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (A, [[(False, A)]]),
        (All((A, B)), [[(False, A), (False, B)]]),
        (AnyOf((A, B)), [[(False, A)], [(False, B)]]),
        (Not(A), [[(True, A)]]),
        (Not(Not(A)), [[(False, A)]]),
        # De Morgan: not all = any not; not any = all not.
        (Not(All((A, B))), [[(True, A)], [(True, B)]]),
        (Not(AnyOf((A, B))), [[(True, A), (True, B)]]),
        # Distribution: all of (any, any) is every pairing.
        (
            All((AnyOf((A, B)), AnyOf((C, D)))),
            [[(False, A), (False, C)], [(False, A), (False, D)], [(False, B), (False, C)], [(False, B), (False, D)]],
        ),
        (Not(All((A, Not(AnyOf((C, D)))))), [[(True, A)], [(False, C)], [(False, D)]]),
        # "closed" is "no fact says it is open": the negation of the open test.
        (CLOSED_AFTER, [[(True, OPEN_AFTER)]]),
        (Not(CLOSED_AFTER), [[(False, OPEN_AFTER)]]),
    ],
    ids=[
        "atom",
        "all",
        "any",
        "not",
        "not-not",
        "not-all",
        "not-any",
        "all-of-anys",
        "nested",
        "closed",
        "not-closed",
    ],
)
def test_clauses(condition, expected):
    assert shape(clauses(condition)) == shape(expected)


def test_a_window_joins_every_alternative():
    window = Window(datetime(2026, 1, 1, tzinfo=UTC), None)
    assert shape(clauses(AnyOf((A, B)), window)) == shape(
        [[(False, A), (False, window)], [(False, B), (False, window)]]
    )


def test_too_large_conditions_are_refused():
    six = All(tuple(AnyOf((A, B)) for _ in range(6)))
    assert len(clauses(six)) == MAX_CLAUSES == 64
    with pytest.raises(ConditionTooLarge, match="more than 64 alternatives"):
        clauses(All((six, AnyOf((C, D)))))
    with pytest.raises(ConditionTooLarge):
        clauses(Not(AnyOf(tuple(All((A, B, C)) for _ in range(4)))))  # not any of alls: 3**4 = 81
    with pytest.raises(ConditionTooLarge):
        clauses(AnyOf(tuple(A for _ in range(MAX_CLAUSES + 1))))


def _rule(rule_id: str, condition: Any, **kwargs: Any) -> Rule:
    return Rule(rule_id, "d", "permission_type", condition, "PERMISSION_POLICY_DENIED", "m", **kwargs)


def test_compiling_a_too_large_rule_set_raises():
    catalog = load_rule_set(SHIPPED_RULES).catalog
    rule_set = RuleSet("v", catalog, (_rule("big", All(tuple(AnyOf((A, B)) for _ in range(7)))),))
    with pytest.raises(ConditionTooLarge):
        compile_rule_set(rule_set, lambda name: lambda c: None)


# --- the definition ---------------------------------------------------------------------------------------


def names_and_actions(rule_set: RuleSet) -> tuple[dict[str, Any], Any]:
    fired: list[str] = []

    def action(name: str) -> Any:
        def consequent(_c: Any) -> None:
            fired.append(name)

        consequent.rule_name = name  # type: ignore[attr-defined]
        return consequent

    compiled = compile_rule_set(rule_set, action)
    assert fired == []  # compiling runs nothing
    return compiled, action


def test_shipped_rules_compile_to_one_rule_each_over_the_change_alone():
    rule_set = load_rule_set(SHIPPED_RULES)
    compiled, _ = names_and_actions(rule_set)
    ids = [rule.id for rule in rule_set.rules]
    assert list(compiled.definition) == [f"{i}#0" for i in ids] + [PASS_RULE_ID, "~sink-x", "~sink-p", "~sink-r"]
    assert compiled.rule_of == {f"{i}#0": i for i in ids}
    for rule_id in ids:
        patterns = compiled.definition[f"{rule_id}#0"]["all"]
        assert [list(p) for p in patterns] == [["c"]], rule_id  # nothing but the change
        assert compiled.definition[f"{rule_id}#0"]["run"].rule_name == f"{rule_id}#0"
    # The validations read nothing but the change: no context, permission or reference fact is needed.
    assert (compiled.context_keys, compiled.reads_time, compiled.reads_permissions, compiled.needs_references) == (
        set(),
        False,
        False,
        False,
    )
    assert compiled.definition[PASS_RULE_ID]["all"] == [{"c": {"t": "c"}}]


def test_broker_policies_join_the_facts_they_name():
    rule_set = load_rule_set(BROKER_POLICIES)
    compiled, _ = names_and_actions(rule_set)
    definition = compiled.definition
    assert compiled.context_keys == {"a_account_type", "a_investor_class", "a_residency"}
    assert compiled.reads_time and compiled.reads_permissions and not compiled.needs_references
    assert compiled.bound_fields == {"market"}
    # One fact may serve several patterns of a match (see test_engine_traps: distinct correlation).
    assert {definition[name].get("dist") for name in compiled.rule_of} == {0}
    # options-need-stock: no open stock.{market} after the request, joined on the change's market.
    need = definition["options-need-stock#0"]["all"]
    assert {"$ex": {"market": 1}} in need[0]["c"]["$and"]
    assert need[1] == {
        "p1$not": {"$and": [{"t": "p"}, {"head": "stock"}, {"tail": {"c": "market"}}, {"after": "open"}]}
    }
    # stock-close-needs-options-closed: an open options.{market} after the request (a positive join).
    assert definition["stock-close-needs-options-closed#0"]["all"][1] == {
        "p1": {"$and": [{"t": "p"}, {"head": "options"}, {"tail": {"c": "market"}}, {"after": "open"}]}
    }
    # shortsell-margin-only: no context fact says margin (so an unset attribute counts as not margin).
    assert definition["shortsell-margin-only#0"]["all"][1] == {
        "x1$not": {"$and": [{"t": "x"}, {"a_account_type": "margin"}]}
    }
    # withdraw-freeze: from inclusive, until exclusive, on the context's clock.
    assert definition["withdraw-freeze#0"]["all"][1] == {
        "x": {
            "$and": [
                {"t": "x"},
                {"$gte": {"now": datetime(2026, 1, 1, tzinfo=UTC).timestamp()}},
                {"$lt": {"now": datetime(2030, 1, 1, tzinfo=UTC).timestamp()}},
            ]
        }
    }


def test_negations_of_the_change_inline_when_the_engine_can_say_them(tmp_path):
    catalog = load_rule_set(SHIPPED_RULES).catalog
    rules = (
        _rule("not-exact", Not(ChangeTest("market", Match(values=("US", "HK"))))),
        _rule("not-kind", Not(ChangeTest("permission_type", Match(kind="missing")))),
        _rule("not-glob", Not(ChangeTest("permission_type", Match(values=("stock.*",))))),
        _rule("not-same", Not(ChangeTest("permission_status", Match(same_as="current_status")))),
    )
    compiled, _ = names_and_actions(RuleSet("v", catalog, rules))
    definition = compiled.definition
    assert definition["not-exact#0"]["all"] == [
        {
            "c": {
                "$and": [
                    {"t": "c"},
                    {
                        "$or": [
                            {"$nex": {"market": 1}},
                            {"$and": [{"$neq": {"market": "US"}}, {"$neq": {"market": "HK"}}]},
                        ]
                    },
                ]
            }
        }
    ]
    assert definition["not-kind#0"]["all"] == [
        {"c": {"$and": [{"t": "c"}, {"$neq": {"permission_type__kind": "missing"}}]}}
    ]
    # A negated glob or same_as looks at the change's earlier copy r (a $not over c itself misfires).
    assert definition["not-glob#0"]["all"] == [
        {"c": {"t": "c"}},
        {"r1$not": {"$and": [{"t": "r"}, {"index": {"c": "index"}}, {"$mt": {"permission_type": "stock[.].*"}}]}},
    ]
    assert list(definition["not-same#0"]["all"][1]) == ["r1$not"]
    assert compiled.needs_references


def test_each_alternative_is_its_own_durable_rule_of_the_same_rule():
    catalog = load_rule_set(SHIPPED_RULES).catalog
    rule = _rule("either", AnyOf((A, All((B, C)), D)))
    compiled, _ = names_and_actions(RuleSet("v", catalog, (rule,)))
    assert compiled.rule_of == {"either#0": "either", "either#1": "either", "either#2": "either"}
    assert compiled.context_keys == {"a_account_type", "tenant"}
