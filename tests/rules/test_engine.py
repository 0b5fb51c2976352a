"""DurableRulesEngine on the shipped rules: every rule fires, order comes from the data, messages read right."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from app.errors import ChangeRejected, Code
from app.rules.engine import DurableRulesEngine, Verdict
from app.rules.loader import load_rule_set
from app.service.permissions import rejection
from tests.support import PROJECT_ROOT, SHIPPED_RULES

SHIPPED = SHIPPED_RULES
TENANT_PATTERNS = ("account.*", "stock.*", "options.US", "trade.*")


def ch(permission_type: Any = ..., permission_status: Any = ...) -> dict[str, Any]:
    """A change; `...` leaves the field out."""
    change: dict[str, Any] = {}
    if permission_type is not ...:
        change["permission_type"] = permission_type
    if permission_status is not ...:
        change["permission_status"] = permission_status
    return change


@pytest.fixture(scope="module")
def engine() -> DurableRulesEngine:
    return DurableRulesEngine(load_rule_set(SHIPPED))


@pytest.fixture(scope="module")
def enabled(engine) -> frozenset[str]:
    return frozenset(engine.rule_set.catalog.expand(TENANT_PATTERNS))


def first_failure(engine: DurableRulesEngine, changes, enabled, current=None) -> Verdict | None:
    return engine.first_failure(changes, enabled=enabled, current=current or {})


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
    verdicts = engine.evaluate(changes, enabled=enabled, current=current)
    assert len(verdicts) == len(changes)
    assert [v.index for v in verdicts] == list(range(len(changes)))
    assert all(v.passed for v in verdicts[:index]), verdicts
    assert verdicts[index].rule is not None
    assert verdicts[index].rule.id == rule_id
    failure = first_failure(engine, changes, enabled, current)
    assert failure is not None
    assert (failure.index, failure.rule.id) == (index, rule_id)


def test_pass_path(engine, enabled):
    changes = [
        ch("stock.US", "open"),
        ch("stock.HK", "close"),
        ch("account.trade", "close"),
        ch("options.US", "open"),
        ch("trade.openapi", "open"),
    ]
    current = {"stock.HK": "open", "account.trade": "open"}
    verdicts = engine.evaluate(changes, enabled=enabled, current=current)
    assert [v.passed for v in verdicts] == [True] * len(changes)
    assert all(v.rule is None for v in verdicts)
    assert first_failure(engine, changes, enabled, current) is None


def test_one_verdict_per_change_for_a_full_batch(engine, enabled):
    values = engine.rule_set.catalog.values
    changes = [ch(v, "open") for v in values] + [ch("nope", "open")] * (100 - len(values))
    verdicts = engine.evaluate(changes, enabled=frozenset(values), current={})
    assert len(verdicts) == 100
    assert [v.index for v in verdicts] == list(range(100))
    assert [v.rule.id for v in verdicts if v.rule] == ["type-in-catalog"] * (100 - len(values))
    assert all(v.passed for v in verdicts[: len(values)])


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
    verdicts = engine.evaluate(changes, enabled=enabled, current={"stock.HK": "open"})
    assert [v.rule.id if v.rule else None for v in verdicts] == [None, None, None, "no-duplicate-type"]
    assert verdicts[3].facts["earlier_index"] == 1
    assert verdicts[1].facts["named_earlier"] is False


def test_third_naming_points_at_the_first(engine, enabled):
    changes = [ch("stock.US", "open"), ch("stock.US", "open"), ch("stock.US", "open")]
    verdicts = engine.evaluate(changes, enabled=enabled, current={})
    assert [v.rule.id if v.rule else None for v in verdicts] == [None, "no-duplicate-type", "no-duplicate-type"]
    assert [v.facts["earlier_index"] for v in verdicts[1:]] == [0, 0]


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
    verdict = engine.evaluate([ch("stock.HK", status)], enabled=enabled, current=current)[0]
    assert (verdict.rule.id if verdict.rule else None) == rule_id


# --- messages ----------------------------------------------------------------------------------------------


def _rejected(engine, changes, enabled, current=None) -> ChangeRejected:
    verdict = first_failure(engine, changes, enabled, current)
    assert verdict is not None
    return rejection(verdict, changes[verdict.index])


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
    for i in range(3000):
        verdicts = engine.evaluate([ch("stock.US", "open"), ch("stock.US", "open")], enabled=enabled, current={})
        assert [v.passed for v in verdicts] == [True, False], i
    assert first_failure(engine, [ch("flag.options", "open")], enabled).rule.id == "type-banned-group"


def test_a_refused_batch_does_not_poison_the_next(engine, enabled):
    for _ in range(50):
        assert first_failure(engine, [ch(permission_status="open")], enabled).rule.id == "type-required"
        assert first_failure(engine, [ch("stock.US", "open")], enabled) is None


EMPTY_BATCH = """
from app.rules.engine import DurableRulesEngine
from app.rules.loader import load_rule_set
from tests.support import SHIPPED_RULES, PROJECT_ROOT
engine = DurableRulesEngine(load_rule_set(SHIPPED_RULES))
assert engine.evaluate([], enabled=frozenset(), current={}) == []
assert engine.first_failure([], enabled=frozenset(), current={}) is None
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
    verdict = first_failure(engine, [ch("stock.US", "open")], frozenset())
    assert verdict.rule.id == "type-enabled-for-tenant"
