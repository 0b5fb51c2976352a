"""Compiling a RuleSet into a durable_rules definition."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

import pytest

from app.rules.compiler import PASS_RULE_ID, compile_condition, compile_rule_set, glob_to_engine_regex
from app.rules.loader import GLOB_PATTERN, load_rule_set
from app.rules.model import Condition
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
    assert GLOB_PATTERN.match(glob)
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


def test_compile_is():
    assert compile_condition(Condition("permission_type", "is", "missing")) == {"permission_type__kind": "missing"}


def test_compile_matches():
    assert compile_condition(Condition("permission_type", "matches", "flag.*")) == {
        "$mt": {"permission_type": "flag[.].*"}
    }


def test_compile_equals():
    assert compile_condition(Condition("in_catalog", "equals", False)) == {"in_catalog": False}


def test_compile_not_one_of_requires_the_fact():
    compiled = compile_condition(Condition("permission_status", "not_one_of", ("open", "close")))
    assert compiled == {
        "$and": [
            {"$ex": {"permission_status": 1}},
            {"$neq": {"permission_status": "open"}},
            {"$neq": {"permission_status": "close"}},
        ]
    }


def test_compile_equals_fact_requires_both_facts():
    compiled = compile_condition(Condition("permission_status", "equals_fact", "current_status"))
    assert compiled == {
        "$and": [
            {"$ex": {"permission_status": 1}},
            {"$ex": {"current_status": 1}},
            {"permission_status": {"$m": "current_status"}},
        ]
    }


def test_compile_unknown_test_raises():
    with pytest.raises(ValueError, match="unknown test"):
        compile_condition(Condition("permission_type", "resembles", "x"))


def test_rule_set_compiles_with_salience_from_file_order():
    rule_set = load_rule_set(SHIPPED_RULES)
    fired: list[str] = []

    def action(rule_id):
        def consequent(_c):
            fired.append(rule_id)

        consequent.rule_id = rule_id
        return consequent

    definition = compile_rule_set(rule_set, action)
    ids = [rule.id for rule in rule_set.rules]
    assert list(definition) == [*ids, PASS_RULE_ID]
    priorities = [definition[rule_id]["pri"] for rule_id in [*ids, PASS_RULE_ID]]
    assert priorities == sorted(priorities)
    assert len(set(priorities)) == len(priorities)  # no two rules tie
    assert definition[PASS_RULE_ID]["pri"] > max(definition[i]["pri"] for i in ids)
    for rule in rule_set.rules:
        assert definition[rule.id]["all"] == [{"m": compile_condition(rule.condition)}]
        assert definition[rule.id]["run"].rule_id == rule.id
    assert definition[PASS_RULE_ID]["run"].rule_id == PASS_RULE_ID
    assert fired == []  # compiling runs nothing
