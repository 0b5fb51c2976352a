"""LiveRules takes a set only when it lints clean and its regression cases pass (issue 12, acceptance 5)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from app.rules.language.loader import rule_set_version
from app.rules.lifecycle import last_good
from app.rules.lifecycle import live as live_module
from app.rules.lifecycle.gate import CasesFailed
from app.rules.lifecycle.live import LiveRules
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.tools.cases import Case, Expected, run_case
from app.schemas.permissions import load_update_request
from tests.support import FAILING_CASE, FREEZE, FREEZE_REFUSING_CLOSES, copy_rules


def live_rules(rules: Path, **options: Any) -> LiveRules:
    """The live set as the service builds it: its cases read requests with the API's loader."""
    return LiveRules(rules, load_request=load_update_request, **options)


CLOSE_OTC = Case(
    name="a close",
    path="-",
    line=1,
    tenant_config=("*",),
    account={"otc.DE": "open"},
    changes=[{"permission_type": "otc.DE", "permission_status": "close"}],
    expect=Expected("SUCCESS"),
)


@pytest.fixture(autouse=True)
def _uncached_rules_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh logger for app.rules.lifecycle.live: an app made by an earlier test configures structlog to cache each
    logger on first use, and a cached one writes past capture_logs()."""
    monkeypatch.setattr(live_module, "log", structlog.get_logger("app.rules"))


def closing_otc(engine: DurableRulesEngine) -> str:
    """What the engine answers to closing an open otc.DE."""
    return run_case(engine, CLOSE_OTC, load_update_request).code


def test_a_set_whose_cases_fail_is_refused_and_the_last_good_one_keeps_deciding(tmp_path: Path):
    rules = copy_rules(tmp_path)
    live = live_rules(rules, instance_dir=tmp_path / "instance")
    good = live.engine.version
    (rules / "policies.yaml").write_text(FREEZE_REFUSING_CLOSES, encoding="utf-8")

    with capture_logs() as logs:
        assert live.reload() is False
    assert live.engine.version == good
    assert closing_otc(live.engine) == "SUCCESS"
    assert live.failing_cases == (FAILING_CASE,)
    assert live.last_reload_error is not None
    assert f"rules/cases/catalog.yaml:38:1: {FAILING_CASE}: case fails: expected SUCCESS" in live.last_reload_error
    assert "got PERMISSION_POLICY_DENIED at 0 by otc-freeze" in live.last_reload_error
    [failed] = [e for e in logs if e["event"] == "rules_reload_failed"]
    assert failed["failing_cases"] == [FAILING_CASE] and failed["rule_set_version"] == good

    (rules / "policies.yaml").write_text(FREEZE, encoding="utf-8")  # the fix: only opening is frozen
    assert live.reload() is True
    assert live.engine.version == rule_set_version(rules) != good
    assert closing_otc(live.engine) == "SUCCESS"
    assert (live.failing_cases, live.last_reload_error) == ((), None)


def test_a_set_that_does_not_lint_reports_no_failing_cases(tmp_path: Path):
    rules = copy_rules(tmp_path)
    live = live_rules(rules)
    (rules / "policies.yaml").write_text(FREEZE_REFUSING_CLOSES, encoding="utf-8")
    assert live.reload() is False and live.failing_cases == (FAILING_CASE,)
    (rules / "policies.yaml").write_text(FREEZE.replace("message:", "mesage:"), encoding="utf-8")
    assert live.reload() is False
    assert live.failing_cases == ()  # the cases never ran: the set is refused for its lint errors
    assert live.last_reload_error is not None and "missing key 'message'" in live.last_reload_error


def test_a_worker_starting_while_cases_fail_runs_the_last_good_snapshot(tmp_path: Path):
    rules, instance = copy_rules(tmp_path), tmp_path / "instance"
    good = live_rules(rules, instance_dir=instance).engine.version  # a worker ran it: it is this host's snapshot
    (rules / "policies.yaml").write_text(FREEZE_REFUSING_CLOSES, encoding="utf-8")

    with capture_logs() as logs:
        restarted = live_rules(rules, instance_dir=instance)
    assert restarted.engine.version == good
    assert closing_otc(restarted.engine) == "SUCCESS"
    assert restarted.failing_cases == (FAILING_CASE,)
    [serving] = [e for e in logs if e["event"] == "rules_invalid_serving_last_good"]
    assert serving["failing_cases"] == [FAILING_CASE]
    assert not (last_good.snapshot_path(instance) / "policies.yaml").exists()  # the refused set was not kept


def test_without_a_snapshot_a_worker_refuses_to_start_on_failing_cases(tmp_path: Path):
    rules = copy_rules(tmp_path)
    (rules / "policies.yaml").write_text(FREEZE_REFUSING_CLOSES, encoding="utf-8")
    with pytest.raises(CasesFailed) as refused:
        live_rules(rules, instance_dir=tmp_path / "instance")
    assert refused.value.failing_cases == (FAILING_CASE,)


def test_the_snapshot_follows_every_file_taken_even_when_the_version_stays(tmp_path: Path):
    rules, instance = copy_rules(tmp_path), tmp_path / "instance"
    live = live_rules(rules, instance_dir=instance)
    version = live.engine.version
    (rules / "README.md").write_text("a docs-only edit\n", encoding="utf-8")
    assert live.reload() is True
    assert live.engine.version == version  # prose is not part of the version ...
    assert (last_good.snapshot_path(instance) / "README.md").read_text(encoding="utf-8") == "a docs-only edit\n"


def test_a_snapshot_is_not_saved_when_the_files_changed_after_they_were_checked(tmp_path: Path):
    rules, instance = copy_rules(tmp_path), tmp_path / "instance"
    checked = last_good.digest(rules)
    (rules / "policies.yaml").write_text(FREEZE_REFUSING_CLOSES, encoding="utf-8")  # lands after the check
    assert last_good.save(rules, instance, expected=checked) is False
    assert not last_good.snapshot_path(instance).exists()
    assert last_good.save(rules, instance, expected=last_good.digest(rules)) is True
    assert (last_good.snapshot_path(instance) / "policies.yaml").exists()


def test_a_requested_reload_of_a_set_whose_cases_fail_is_refused_on_the_first_look(tmp_path: Path):
    rules = copy_rules(tmp_path)
    generation = itertools.count(1)
    live = live_rules(rules, reload_generation=lambda: next(generation), check_seconds=0)
    good = live._engine.version
    # Only a case changes: the rules are the same version, but the set now fails one of its own cases.
    catalog_cases = rules / "cases" / "catalog.yaml"
    catalog_cases.write_text(
        catalog_cases.read_text(encoding="utf-8").replace(
            "changes: [{permission_type: otc.DE, permission_status: close}]\n    expect: {code: SUCCESS}",
            "changes: [{permission_type: otc.DE, permission_status: close}]\n    expect: {code: NO_STATE_CHANGE, "
            "failure_index: 0, rule_id: must-change-state}",
        ),
        encoding="utf-8",
    )
    assert rule_set_version(rules) == good
    with capture_logs() as logs:
        assert live.engine.version == good  # the first look: the files are not those loaded, so it reloads
    assert [e["event"] for e in logs] == ["rules_reload_requested", "rules_reload_failed"]
    assert live.failing_cases == (FAILING_CASE,)


def test_a_first_look_at_unchanged_files_does_not_reload(tmp_path: Path):
    rules = copy_rules(tmp_path)
    live = live_rules(rules, reload_generation=lambda: 7, check_seconds=0)
    with capture_logs() as logs:
        live.engine  # noqa: B018 - the property honours pending reloads
        live.engine  # noqa: B018
    assert logs == []


def test_a_set_already_found_clean_is_taken_again_only_while_its_files_are_the_same(tmp_path: Path):
    """Building the service twice in one process checks a directory once per content, never per path."""
    rules = copy_rules(tmp_path)
    first = live_rules(rules).engine.rule_set
    assert live_rules(rules).engine.rule_set is first  # same files: the verdict already reached
    (rules / "policies.yaml").write_text(FREEZE_REFUSING_CLOSES, encoding="utf-8")
    with pytest.raises(CasesFailed):  # the edited files are judged afresh, and refused
        live_rules(rules)
    (rules / "policies.yaml").write_text(FREEZE, encoding="utf-8")
    changed = live_rules(rules).engine.rule_set
    assert changed is not first and changed.version != first.version
