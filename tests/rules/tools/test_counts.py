"""Counts in the tools: the input space analyses a count by counting (an axis of 0 … bound + 1 other open
matches the judged change sees, realised by storing that many open or, when those are too few, by opening a
related one before the judged change; never the combinations of which ones), explain shows what a count read,
and diff describes a group by its counts."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from app.rules.language.loader import load_rule_set
from app.rules.language.model import RuleSet
from app.rules.runtime.decision import decide
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.tools.diff import describe, diff
from app.rules.tools.explain.explanation import explain
from app.rules.tools.input_space.space import InputSpace
from tests.rules.support import BROKER_POLICIES, ch, request, rules_dir
from tests.support import SHIPPED_RULES

AT_MOST_3 = """
policies:
  - id: options-at-most-3
    description: At most 3 markets of options.
    when:
      count: {permission: "options.*", after: open, more_than: 3}
    message: too many options
"""
AT_MOST_2 = AT_MOST_3.replace("more_than: 3", "more_than: 2").replace("At most 3", "At most 2")


@pytest.fixture(scope="module")
def at_most_3(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return load_rule_set(rules_dir(tmp_path_factory.mktemp("at-most-3"), AT_MOST_3))


def _others_open(point_input, judged: str, index: int, pattern: str = "options.*") -> int:
    """Other permissions the pattern names that the count of changes[index] sees: open after the request, less
    those a later change opens from closed (a change of another type than the judged one is here valid and
    named once)."""
    after, later = dict(point_input.stored), set()
    for position, change in enumerate(point_input.changes):
        other = change.get("permission_type")
        if other == judged:
            continue
        after[other] = change["permission_status"]
        if position > index and after[other] == "open" and point_input.stored.get(other) != "open":
            later.add(other)
    return sum(
        1 for t, s in after.items() if s == "open" and fnmatchcase(t, pattern) and t != judged and t not in later
    )


def test_a_count_is_an_axis_of_0_to_bound_plus_1_other_open_matches(at_most_3: RuleSet):
    space = InputSpace((at_most_3,))
    options = [p for p in space.points if p.permission_type.startswith("options.") and p.permission_status == "open"]
    assert {p.counted for p in options} == {(("options", "*", n),) for n in range(5)}
    for point in options:
        decision_input, index = space.input_of(point)
        ((_, _, n),) = point.counted
        assert _others_open(decision_input, point.permission_type, index) == n  # that many open, no more
        held = "options-at-most-3" in space.verdicts(point)[0].held
        opens = point.enabled and not point.named_earlier
        assert held == (opens and n >= 3), point
    # types the count cannot charge have no count axis: it is free for them
    stock = [p for p in space.points if "stock.US" in space.members[p.permission_type]]
    assert stock and all(p.counted == () and "count" in p.free for p in stock)


def test_the_space_counts_rather_than_enumerates(at_most_3: RuleSet):
    """9 options markets: 5 counts per point, where the subsets of 8 other markets would be 256."""
    space = InputSpace((at_most_3,))
    points = [p for p in space.points if p.permission_type.startswith("options.")]
    per_type = len(points) // len(space.members[points[0].permission_type])
    assert {len(space.members[p.permission_type]) for p in points} == {9}  # one class: options.*
    assert per_type <= 5 * len(space.statuses) * 2 * 3 * 2  # counts x statuses x current x named x enabled


def test_a_related_permission_a_count_names_is_counted(tmp_path: Path):
    rule_set = load_rule_set(
        rules_dir(
            tmp_path,
            AT_MOST_3
            + """
  - id: us-options-last
    description: Options on US only after another market.
    when:
      change: {permission_type: options.US, permission_status: open}
      permission: options.HK
      before: close
    message: not first
""",
        )
    )
    space = InputSpace((rule_set,))
    engine = DurableRulesEngine(rule_set)
    for point in (p for p in space.points if p.permission_type == "options.US" and p.counted):
        decision_input, index = space.input_of(point)
        ((_, _, n),) = point.counted
        assert min(_others_open(decision_input, "options.US", index), 4) == n, point
        assert decide(engine, decision_input, use_memo=False).held[index] == space.verdicts(point)[0].held


def test_a_related_opening_is_moved_before_the_judged_change_when_fillers_are_too_few(tmp_path: Path):
    """options.?K names options.HK and options.UK only, and options.HK is related to options.UK: a count of 1
    with options.HK opened in the request is shown by opening it before the judged change, and no later."""
    rule_set = load_rule_set(
        rules_dir(
            tmp_path,
            """
policies:
  - id: one-of-hk-uk
    description: At most one of options.HK and options.UK.
    when:
      count: {permission: "options.?K", after: open, more_than: 1}
    message: one at most
  - id: uk-after-hk
    description: Options on UK need options on HK.
    enforcement: warn
    when:
      change: {permission_type: options.UK}
      permission: options.HK
      after: close
    message: needs HK
""",
        )
    )
    space = InputSpace((rule_set,))
    engine = DurableRulesEngine(rule_set)
    opened_in_request = [
        p for p in space.points if p.permission_type == "options.UK" and p.related == (("options.HK", "close", "open"),)
    ]
    assert {p.counted for p in opened_in_request} == {(("options", "?K", 0),), (("options", "?K", 1),)}
    for point in opened_in_request:
        decision_input, index = space.input_of(point)
        ((_, _, n),) = point.counted
        position = [c["permission_type"] for c in decision_input.changes].index("options.HK")
        assert (position < index) == (n == 1), point
        assert _others_open(decision_input, "options.UK", index, "options.?K") == n
        held = decide(engine, decision_input, use_memo=False).held[index]
        assert held == space.verdicts(point)[0].held
        opens = point.permission_status == "open" and point.enabled and not point.named_earlier
        assert ("one-of-hk-uk" in held) == (opens and n == 1), point


def test_explain_shows_the_count_against_its_bound(at_most_3: RuleSet):
    engine = DurableRulesEngine(at_most_3)
    stored = dict.fromkeys(("options.US", "options.HK"), "open")
    changes = [ch("options.SG", "open"), ch("options.JP", "open"), ch("options.US", "close")]
    explanation = explain(engine, request(changes, stored=stored))
    read = [
        {f.name: f.value for r in change.rules if r.rule_id == "options-at-most-3" for f in r.facts}
        for change in explanation.changes
    ]
    assert read == [
        {"count": "2 of options.* open after the request (later openings left out), at most 3 allowed"},
        {"count": "3 of options.* open after the request (later openings left out), at most 3 allowed"},
        {"count": "this change opens no options.*: not counted"},
    ]
    assert all(not k.startswith("count_") for change in explanation.changes for k in change.values)


def test_diff_describes_a_group_by_its_count(tmp_path: Path, at_most_3: RuleSet):
    at_most_2 = load_rule_set(rules_dir(tmp_path, AT_MOST_2))
    result = diff(at_most_3, at_most_2)
    (group,) = result.groups
    assert (group.old, group.new) == ("pass", "options-at-most-3 (PERMISSION_POLICY_DENIED)")
    facts = describe(group, result.space)
    assert facts["permission_types"] == ["options.* (9)"]
    assert facts["count"] == "2 other options.* open"
    assert facts["inputs"] == 9


def test_the_broker_count_is_analysed_and_diffed_against_the_shipped_set():
    broker = load_rule_set(BROKER_POLICIES)
    result = diff(load_rule_set(SHIPPED_RULES), broker)
    counted = [g for g in result.groups if g.new == "options-at-most-3-markets (PERMISSION_POLICY_DENIED)"]
    assert len(counted) == 1
    assert describe(counted[0], result.space)["count"] == "3 other options.* open, 4 or more other options.* open"
