"""`count:` in a policy's condition: how it is read into a CountTest, and every mistake lint reports in it at
its file:line:column (unknown keys, a missing key, `after` other than open, a bound that is not a whole number
of 0 or more, a pattern no catalog value has)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.rules.language.clauses import count_patterns, rule_set_clauses
from app.rules.language.loader import load_rule_set
from app.rules.language.model import CountTest, Not
from app.rules.tools.lint.directory import lint
from tests.rules.support import rules_dir


def _policy(when: str) -> str:
    return f"""policies:
  - id: counted
    description: bounded
    when: {when}
    message: too many
"""


def _problems(tmp_path: Path, when: str) -> list[tuple[int, int, str]]:
    directory = rules_dir(tmp_path, _policy(when))
    return [(p.line, p.column, p.text) for p in lint(directory).problems if p.rule_id == "counted"]


def test_a_count_is_read_into_one_count_test(tmp_path: Path):
    rule_set = load_rule_set(
        rules_dir(tmp_path, _policy('{count: {permission: "options.*", after: open, more_than: 3}}'))
    )
    condition = rule_set.rule("counted").condition
    assert condition == CountTest("options.*", "options", "*", 3)
    assert condition.at == (4, 20)  # where its permission is written
    assert count_patterns(rule_set_clauses(rule_set.rules)) == (("options", "*"),)


def test_a_count_with_a_placeholder_and_a_negation(tmp_path: Path):
    when = '{not: {count: {permission: "{product}.*", after: open, more_than: 0}}}'
    rule_set = load_rule_set(rules_dir(tmp_path, _policy(when)))
    assert rule_set.rule("counted").condition == Not(CountTest("{product}.*", "{product}", "*", 0))


def test_a_well_written_count_lints_clean(tmp_path: Path):
    assert _problems(tmp_path, '{count: {permission: "options.*", after: open, more_than: 3}}') == []


@pytest.mark.parametrize(
    ("count", "at", "text"),
    [
        (
            '{permission: "options.*", after: open, more_than: 3, at_most: 2}',
            "at_most",
            "unknown key 'at_most' in 'count' (use permission, after, more_than)",
        ),
        (
            '{permission: "options.*", after: open}',
            "{count",
            "'count' needs 'more_than', e.g. {permission: options.*, after: open, more_than: 3}",
        ),
        (
            '{permission: "options.*", after: close, more_than: 3}',
            "after",
            "'after' is open: a count counts the permissions open after the change",
        ),
        (
            '{permission: "options.*", after: open, more_than: -1}',
            "more_than",
            "'more_than' is a whole number of at least 0",
        ),
        (
            '{permission: "options.*", after: open, more_than: 2.5}',
            "more_than",
            "'more_than' is a whole number of at least 0",
        ),
        (
            '{permission: "options.*", after: open, more_than: "3"}',
            "more_than",
            "'more_than' is a whole number of at least 0",
        ),
        (
            '{permission: "options.*", after: open, more_than: true}',
            "more_than",
            "'more_than' is a whole number of at least 0",
        ),
        (
            '{permission: "option.*", after: open, more_than: 3}',
            "permission",
            "'permission' 'option.*' matches no catalog value",
        ),
        (
            '{permission: "{market}.*", after: open, more_than: 3}',
            "permission",
            "'{market}' cannot stand there (use product or group)",
        ),
        (
            "[options.*]",
            "{count",
            "'count' is a mapping with permission, after, more_than, e.g. "
            "{permission: options.*, after: open, more_than: 3}",
        ),
    ],
)
def test_a_mistake_in_a_count_is_reported_where_it_is(tmp_path: Path, count: str, at: str, text: str):
    when = "{count: " + count + "}"
    column = len("    when: ") + when.index(at.lstrip("{")) + 1  # the key the mistake is at ({count: the count)
    assert _problems(tmp_path, when) == [(4, column, text)]


def test_a_placeholder_in_the_message_is_judged_by_the_types_the_count_can_charge(tmp_path: Path):
    """A count holds only for a change opening a type its pattern names: {market} is fine for options.*,
    and means nothing for the account.* types a count over *.* can charge."""
    when = '{count: {permission: "options.*", after: open, more_than: 3}}'
    text = _policy(when).replace("message: too many", 'message: "too many: not on {market}"')
    directory = rules_dir(tmp_path / "options", text)
    assert [p.text for p in lint(directory).problems if p.rule_id == "counted"] == []
    directory = rules_dir(tmp_path / "any", text.replace('"options.*"', '"*.*"'))
    (problem,) = [p for p in lint(directory).problems if p.rule_id == "counted"]
    assert problem.text.startswith("{market} shows nothing for account.trade")


def test_a_negated_count_in_a_deny_rule_must_only_hold_for_openings(tmp_path: Path):
    """`not: {count: ...}` holds for a close (its count is 0): a deny rule with it alone would refuse closes by a
    count (SPEC §7b forbids it), so lint refuses it at the count, unless the alternative tests an opening."""
    negated = '{not: {count: {permission: "options.*", after: open, more_than: 3}}}'
    [(line, column, text)] = [p for p in _problems(tmp_path / "bare", negated) if "'count'" in p[2]]
    assert (line, column) == (4, 26) and text.startswith("'count' options.* under 'not' holds for a close too")
    opening = '{change: {permission_status: open}, not: {count: {permission: "options.*", after: open, more_than: 3}}}'
    assert [p for p in _problems(tmp_path / "opening", opening) if "'count'" in p[2]] == []
