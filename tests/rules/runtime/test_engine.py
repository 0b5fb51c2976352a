"""decide() through DurableRulesEngine on the shipped rules: every rule fires, order comes from the data,
messages read right, and the engine's session table never fills up."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from app.errors import ChangeRejected, Code
from app.rules.language.loader import load_rule_set
from app.rules.runtime.answer import answer_of
from app.rules.runtime.decision import Decision, Hit, decide
from app.rules.runtime.engine import DurableRulesEngine
from tests.rules.support import ch, request
from tests.support import PROJECT_ROOT, SHIPPED_RULES

SHIPPED = SHIPPED_RULES
TENANT_PATTERNS = ("account.*", "stock.*", "options.US", "trade.*")


@pytest.fixture(scope="module")
def engine() -> DurableRulesEngine:
    return DurableRulesEngine(load_rule_set(SHIPPED))


@pytest.fixture(scope="module")
def enabled() -> tuple[str, ...]:
    """The demo tenant's patterns."""
    return TENANT_PATTERNS


def judged(engine: DurableRulesEngine, changes, patterns, current=None, *, use_memo: bool = True) -> Decision:
    return decide(engine, request(changes, patterns=patterns, stored=current or {}), use_memo=use_memo)


def first_failure(engine: DurableRulesEngine, changes, patterns, current=None) -> Hit | None:
    return judged(engine, changes, patterns, current).denial


def rule_ids(engine: DurableRulesEngine, decision: Decision) -> list[str | None]:
    """Per change, the first rule (in file order) that held, or None."""
    order = [rule.id for rule in engine.rule_set.rules]
    return [min(found, key=order.index) if found else None for found in decision.held]


# rule id -> (changes, current state, failing index); each input fires that rule and no earlier one.
TRIGGERS: dict[str, tuple[list[dict[str, Any]], dict[str, str], int]] = {
    "type-required": ([ch(permission_status="open")], {}, 0),
    "type-must-be-text": ([ch("stock.US", "open"), ch(42, "open")], {}, 1),
    "type-banned-group": ([ch("flag.options", "open")], {}, 0),
    "type-in-catalog": ([ch("stock.US", "open"), ch("Stock.US", "open")], {}, 1),
    "type-enabled-for-tenant": ([ch("options.HK", "open")], {}, 0),
    "status-required": ([ch("stock.US")], {}, 0),
    "status-must-be-text": ([ch("stock.US", ["open"])], {}, 0),
    "status-open-or-close": ([ch("stock.US", "OPEN")], {}, 0),
    "no-duplicate-type": (
        [ch("stock.US", "open"), ch("stock.HK", "close"), ch("stock.US", "close")],
        {"stock.HK": "open"},
        2,
    ),
    "must-change-state": ([ch("stock.HK", "open")], {"stock.HK": "open"}, 0),
}


def test_every_shipped_rule_has_a_trigger_here(engine):
    assert sorted(TRIGGERS) == sorted(rule.id for rule in engine.rule_set.rules)


@pytest.mark.parametrize("rule_id", sorted(TRIGGERS))
def test_every_rule_can_fire(engine, enabled, rule_id):
    changes, current, index = TRIGGERS[rule_id]
    decision = judged(engine, changes, enabled, current)
    assert len(decision.held) == len(changes)
    assert decision.held[:index] == (frozenset(),) * index, decision.held
    assert rule_ids(engine, decision)[index] == rule_id
    assert decision.denial is not None
    assert (decision.denial.index, decision.denial.rule.id) == (index, rule_id)
    assert decision.rule_set_version == engine.version
    assert (decision.warnings, decision.dryruns) == ((), ())


def test_pass_path(engine, enabled):
    changes = [
        ch("stock.US", "open"),
        ch("stock.HK", "close"),
        ch("account.trade", "close"),
        ch("options.US", "open"),
        ch("trade.openapi", "open"),
    ]
    current = {"stock.HK": "open", "account.trade": "open"}
    decision = judged(engine, changes, enabled, current)
    assert decision.held == (frozenset(),) * len(changes)
    assert decision.accepted and decision.denial is None


def test_one_verdict_per_change_for_a_full_batch(engine, enabled):
    values = engine.rule_set.catalog.values
    changes = [ch(v, "open") for v in values] + [ch("nope", "open")] * (100 - len(values))
    for use_memo in (True, False):
        decision = judged(engine, changes, ("*",), use_memo=use_memo)
        assert len(decision.held) == 100
        unknown = frozenset({"type-in-catalog", "type-enabled-for-tenant"})
        # Every rule that holds is reported, not only the first: the repeats are also duplicates.
        assert decision.held[len(values)] == unknown
        assert decision.held[len(values) + 1 :] == (unknown | {"no-duplicate-type"},) * (99 - len(values))
        assert decision.held[: len(values)] == (frozenset(),) * len(values)
        assert (decision.denial.index, decision.denial.rule.id) == (len(values), "type-in-catalog")


def test_banned_group_dot_is_literal(engine, enabled):
    """flag[.].* — a wrongly escaped pattern would either never fire or also catch flagXoptions."""
    assert first_failure(engine, [ch("flag.options", "open")], enabled).rule.id == "type-banned-group"
    assert first_failure(engine, [ch("flag.anything_at_all", "open")], enabled).rule.id == "type-banned-group"
    assert first_failure(engine, [ch("flagXoptions", "open")], enabled).rule.id == "type-in-catalog"
    assert first_failure(engine, [ch("xflag.options", "open")], enabled).rule.id == "type-in-catalog"


@pytest.mark.parametrize(
    ("value", "rule_id"),
    [
        ("stock.us", "type-in-catalog"),
        ("Stock.US", "type-in-catalog"),
        ("stock.US ", "type-in-catalog"),
        ("", "type-in-catalog"),
        ("stock.US\x00", "type-in-catalog"),
        ("\ud800", "type-in-catalog"),
        ("x" * 60_000, "type-in-catalog"),
        (None, "type-must-be-text"),
        (True, "type-must-be-text"),
        ({"a": 1}, "type-must-be-text"),
        ("options.JP", "type-enabled-for-tenant"),
        ("va.OSL", "type-enabled-for-tenant"),
        ("Flag.options", "type-in-catalog"),
    ],
)
def test_awkward_permission_types(engine, enabled, value, rule_id):
    assert first_failure(engine, [ch(value, "open")], enabled).rule.id == rule_id


@pytest.mark.parametrize(
    ("value", "rule_id"),
    [
        ("Open", "status-open-or-close"),
        ("open ", "status-open-or-close"),
        ("", "status-open-or-close"),
        ("open\x00", "status-open-or-close"),
        ("o" * 60_000, "status-open-or-close"),
        (1, "status-must-be-text"),
        (None, "status-must-be-text"),
        (False, "status-must-be-text"),
    ],
)
def test_awkward_statuses(engine, enabled, value, rule_id):
    assert first_failure(engine, [ch("stock.US", value)], enabled).rule.id == rule_id


# --- order ------------------------------------------------------------------------------------------------


def test_a_change_breaking_several_rules_is_reported_by_the_earliest(engine, enabled):
    ids = [rule.id for rule in engine.rule_set.rules]
    # flag.options with a missing status breaks type-banned-group, type-in-catalog, type-enabled-for-tenant
    # and status-required: the earliest in the file reports.
    broken = {"type-banned-group", "type-in-catalog", "type-enabled-for-tenant", "status-required"}
    earliest = min(broken, key=ids.index)
    assert first_failure(engine, [ch("flag.options")], enabled).rule.id == earliest == "type-banned-group"
    # Unknown type and bad status: type-in-catalog comes before status-open-or-close.
    assert first_failure(engine, [ch("nope", "bad")], enabled).rule.id == "type-in-catalog"
    # A duplicate that is also a no-op: no-duplicate-type comes before must-change-state (SPEC §3.2 4.3/4.4).
    verdict = first_failure(engine, [ch("stock.US", "open"), ch("stock.US", "close")], enabled)
    assert (verdict.index, verdict.rule.id) == (1, "no-duplicate-type")


def test_the_first_failing_change_decides(engine, enabled):
    changes = [ch("stock.US", "open"), ch("stock.JP", "maybe"), ch("flag.options", "open")]
    verdict = first_failure(engine, changes, enabled)
    assert (verdict.index, verdict.rule.id) == (1, "status-open-or-close")


def _reordered_copy(tmp_path: Path, order: list[str]) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(SHIPPED, target)
    path = target / "validation.yaml"
    yaml = YAML(typ="rt")
    doc = yaml.load(path.read_text(encoding="utf-8"))
    by_id = {rule["id"]: rule for rule in doc["rules"]}
    doc["rules"][:] = [by_id[i] for i in order]
    with path.open("w", encoding="utf-8") as out:
        yaml.dump(doc, out)
    return target


def test_reordering_rules_in_the_data_changes_which_reports(engine, enabled, tmp_path):
    ids = [rule.id for rule in engine.rule_set.rules]
    shipped_verdicts = {
        "flag-no-status": first_failure(engine, [ch("flag.options")], enabled).rule.id,
        "unknown-bad-status": first_failure(engine, [ch("nope", "bad")], enabled).rule.id,
        "dup-noop": first_failure(engine, [ch("stock.US", "open"), ch("stock.US", "close")], enabled).rule.id,
    }
    assert shipped_verdicts == {
        "flag-no-status": "type-banned-group",
        "unknown-bad-status": "type-in-catalog",
        "dup-noop": "no-duplicate-type",
    }

    reversed_engine = DurableRulesEngine(load_rule_set(_reordered_copy(tmp_path, ids[::-1])))
    assert [r.id for r in reversed_engine.rule_set.rules] == ids[::-1]
    assert reversed_engine.version != engine.version
    assert first_failure(reversed_engine, [ch("flag.options")], enabled).rule.id == "status-required"
    assert first_failure(reversed_engine, [ch("nope", "bad")], enabled).rule.id == "status-open-or-close"
    verdict = first_failure(reversed_engine, [ch("stock.US", "open"), ch("stock.US", "close")], enabled)
    assert (verdict.index, verdict.rule.id) == (1, "must-change-state")
    # The shipped engine in the same process is unaffected.
    assert first_failure(engine, [ch("flag.options")], enabled).rule.id == "type-banned-group"


def test_moving_one_rule_up_changes_only_that_decision(engine, enabled, tmp_path):
    ids = [rule.id for rule in engine.rule_set.rules]
    moved = ["type-enabled-for-tenant", *[i for i in ids if i != "type-enabled-for-tenant"]]
    moved_engine = DurableRulesEngine(load_rule_set(_reordered_copy(tmp_path, moved)))
    # flag.options is neither in the catalog nor enabled: the moved rule now reports it.
    assert first_failure(moved_engine, [ch("flag.options", "open")], enabled).rule.id == "type-enabled-for-tenant"
    # A missing type still reports type-required: type-enabled-for-tenant cannot fire without a type.
    assert first_failure(moved_engine, [ch(permission_status="open")], enabled).rule.id == "type-required"


# --- duplicates and no-ops ----------------------------------------------------------------------------------


def test_duplicate_reported_at_the_later_index_with_earlier_index(engine, enabled):
    changes = [ch("stock.HK", "close"), ch("stock.US", "open"), ch("account.trade", "open"), ch("stock.US", "open")]
    decision = judged(engine, changes, enabled, {"stock.HK": "open"})
    assert rule_ids(engine, decision) == [None, None, None, "no-duplicate-type"]
    assert decision.denial.message == "changes[3].permission_type 'stock.US': is already named by changes[1]"
    facts = engine.facts_of(request(changes, patterns=enabled, stored={"stock.HK": "open"}))
    assert facts.changes[3]["earlier_index"] == 1
    assert facts.changes[1]["named_earlier"] is False


def test_third_naming_points_at_the_first(engine, enabled):
    changes = [ch("stock.US", "open"), ch("stock.US", "open"), ch("stock.US", "open")]
    decision = judged(engine, changes, enabled)
    assert rule_ids(engine, decision) == [None, "no-duplicate-type", "no-duplicate-type"]
    facts = engine.facts_of(request(changes, patterns=enabled))
    assert [record["earlier_index"] for record in facts.changes[1:]] == [0, 0]
    # A duplicate that also repeats the state is only a duplicate: no-op is judged against the stored state.
    assert "must-change-state" not in decision.held[1]


@pytest.mark.parametrize(
    ("current", "status", "rule_id"),
    [
        ({"stock.HK": "open"}, "open", "must-change-state"),
        ({"stock.HK": "open"}, "close", None),
        ({"stock.HK": "close"}, "close", "must-change-state"),
        ({"stock.HK": "close"}, "open", None),
        ({}, "close", "must-change-state"),
        ({}, "open", None),
        ({"stock.US": "open"}, "close", "must-change-state"),
    ],
    ids=["open-open", "open-close", "close-close", "close-open", "never-close", "never-open", "other-type-open"],
)
def test_no_op_compares_with_stored_state(engine, enabled, current, status, rule_id):
    assert rule_ids(engine, judged(engine, [ch("stock.HK", status)], enabled, current)) == [rule_id]


# --- messages ----------------------------------------------------------------------------------------------


def _rejected(engine, changes, enabled, current=None) -> ChangeRejected:
    error = answer_of(judged(engine, changes, enabled, current)).refusal()  # what the service raises
    assert error is not None
    return error


@pytest.mark.parametrize(
    ("changes", "current", "code", "index", "rule_id", "message"),
    [
        (
            [ch("stock.JP", "open"), ch("flag.options", "open")],
            {},
            Code.INVALID_PERMISSION_TYPE,
            1,
            "type-banned-group",
            "changes[1].permission_type 'flag.options': the flag.* group is not supported",
        ),
        (
            [ch(permission_status="open")],
            {},
            Code.INVALID_PERMISSION_TYPE,
            0,
            "type-required",
            "changes[0].permission_type: is required",
        ),
        (
            [ch(5, "open")],
            {},
            Code.INVALID_PERMISSION_TYPE,
            0,
            "type-must-be-text",
            "changes[0].permission_type 5: must be a string",
        ),
        (
            [ch("stock.us", "open")],
            {},
            Code.INVALID_PERMISSION_TYPE,
            0,
            "type-in-catalog",
            "changes[0].permission_type 'stock.us': is not a known permission type",
        ),
        (
            [ch("va.OSL", "open")],
            {},
            Code.INVALID_PERMISSION_TYPE,
            0,
            "type-enabled-for-tenant",
            "changes[0].permission_type 'va.OSL': is not enabled for this tenant",
        ),
        (
            [ch("stock.US")],
            {},
            Code.INVALID_PERMISSION_STATUS,
            0,
            "status-required",
            "changes[0].permission_status: is required",
        ),
        (
            [ch("stock.US", None)],
            {},
            Code.INVALID_PERMISSION_STATUS,
            0,
            "status-must-be-text",
            "changes[0].permission_status null: must be a string",
        ),
        (
            [ch("stock.US", "Open")],
            {},
            Code.INVALID_PERMISSION_STATUS,
            0,
            "status-open-or-close",
            "changes[0].permission_status 'Open': must be 'open' or 'close'",
        ),
        (
            [ch("stock.US", "open"), ch("stock.HK", "close"), ch("stock.US", "close")],
            {"stock.HK": "open"},
            Code.DUPLICATE_PERMISSION_TYPE,
            2,
            "no-duplicate-type",
            "changes[2].permission_type 'stock.US': is already named by changes[0]",
        ),
        (
            [ch("stock.HK", "open")],
            {"stock.HK": "open"},
            Code.NO_STATE_CHANGE,
            0,
            "must-change-state",
            "changes[0].permission_status 'open': the permission is already open",
        ),
        (
            [ch("stock.US", "close")],
            {},
            Code.NO_STATE_CHANGE,
            0,
            "must-change-state",
            "changes[0].permission_status 'close': the permission is already close",
        ),
    ],
    ids=[
        "banned",
        "type-missing",
        "type-number",
        "type-case",
        "type-disabled",
        "status-missing",
        "status-null",
        "status-case",
        "duplicate",
        "noop-open",
        "noop-never-set",
    ],
)
def test_rejection_messages(engine, enabled, changes, current, code, index, rule_id, message):
    error = _rejected(engine, changes, enabled, current)
    assert (error.code, error.failure_index, error.rule_id, error.message) == (code, index, rule_id, message)
    assert error.http_status == 400


def test_long_values_are_cut_in_messages(engine, enabled):
    value = "z" * 500
    error = _rejected(engine, [ch(value, "open")], enabled)
    assert error.message == f"changes[0].permission_type '{'z' * 80}…': is not a known permission type"


def test_reworded_message_comes_from_the_data(enabled, tmp_path):
    target = tmp_path / "rules"
    shutil.copytree(SHIPPED, target)
    path = target / "validation.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count("message: the flag.* group is not supported") == 1
    path.write_text(
        text.replace(
            "message: the flag.* group is not supported",
            "message: \"'{permission_type}' belongs to a group refused in this release\"",
        ),
        encoding="utf-8",
    )
    reworded = DurableRulesEngine(load_rule_set(target))
    error = _rejected(reworded, [ch("flag.warrant", "open")], enabled)
    assert error.message == (
        "changes[0].permission_type 'flag.warrant': 'flag.warrant' belongs to a group refused in this release"
    )


# --- the engine's own limits ----------------------------------------------------------------------------------


def test_thousands_of_evaluations_do_not_exhaust_sessions(engine, enabled):
    # durable_rules keeps sessions in a 1,024-slot table; every evaluation must clean up after itself.
    # use_memo=False: a repeat would otherwise be answered from the memo and never reach the engine.
    for i in range(3000):
        decision = judged(engine, [ch("stock.US", "open"), ch("stock.US", "open")], enabled, use_memo=False)
        assert rule_ids(engine, decision) == [None, "no-duplicate-type"], i
    assert first_failure(engine, [ch("flag.options", "open")], enabled).rule.id == "type-banned-group"


def test_rejections_and_passes_alternate_without_leaking_into_each_other(engine, enabled):
    for _ in range(50):
        missing = judged(engine, [ch(permission_status="open")], enabled, use_memo=False)
        assert missing.denial.rule.id == "type-required"
        assert judged(engine, [ch("stock.US", "open")], enabled, use_memo=False).accepted


EMPTY_BATCH = """
from datetime import UTC, datetime
from app.rules.runtime.decision import decide
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.language.loader import load_rule_set
from tests.support import SHIPPED_RULES
engine = DurableRulesEngine(load_rule_set(SHIPPED_RULES))
empty = DecisionInput(tenant_id="t", tenant_patterns=("*",), changes=(), at=datetime.now(UTC))
for use_memo in (True, False):
    decision = decide(engine, empty, use_memo=use_memo)
    assert decision.held == () and decision.denial is None, decision
    assert engine.evaluate(empty, use_memo=use_memo).held == ()
print("empty-ok")
"""


def test_empty_batch_gives_no_verdicts():
    # Run apart: durable_rules' post_batch of an empty list can take the whole process down.
    result = subprocess.run(
        [sys.executable, "-c", EMPTY_BATCH], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert "empty-ok" in result.stdout


def test_tenant_without_config_enables_nothing(engine):
    assert first_failure(engine, [ch("stock.US", "open")], ()).rule.id == "type-enabled-for-tenant"
