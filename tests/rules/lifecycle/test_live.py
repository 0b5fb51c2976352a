"""LiveRules takes a set only when it lints clean and its regression cases pass (issue 12, acceptance 5)."""

from __future__ import annotations

import gc
import itertools
import os
import subprocess
import sys
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from app import create_app
from app.http.wiring import container_of
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
    assert f"rules/cases/catalog.yaml:38:1: {FAILING_CASE}: case fails: expected success" in live.last_reload_error
    assert "got PERMISSION_POLICY_DENIED (400106) at change 0 by 'otc-freeze'" in live.last_reload_error
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
        assert live.refresh().version == good  # the first look: the files are not those loaded, so it reloads
    assert [e["event"] for e in logs] == ["rules_reload_requested", "rules_reload_failed"]
    assert live.failing_cases == (FAILING_CASE,)


def test_a_first_look_at_unchanged_files_does_not_reload(tmp_path: Path):
    rules = copy_rules(tmp_path)
    live = live_rules(rules, reload_generation=lambda: 7, check_seconds=0)
    with capture_logs() as logs:
        live.refresh()
        live.refresh()
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


class Counter:
    """The reload counter as a database would hold it, counting how often it is read."""

    def __init__(self) -> None:
        self.generation = 1
        self.reads = 0
        self.read_twice = threading.Event()

    def __call__(self) -> int:
        self.reads += 1
        if self.reads >= 2:
            self.read_twice.set()
        return self.generation


def freeze(rules: Path, frozen: bool) -> None:
    """An edit of RULES_DIR that makes a new version which may go live (or takes it back)."""
    policies = rules / "policies.yaml"
    if frozen:
        policies.write_text(FREEZE, encoding="utf-8")
    else:
        policies.unlink()


def test_engine_is_a_plain_accessor_and_refresh_reads_only_what_the_watch_read(tmp_path: Path):
    rules = copy_rules(tmp_path)
    counter = Counter()
    live = LiveRules(
        rules, load_request=load_update_request, reload_generation=counter, check_seconds=60, background=False
    )
    first = live.engine.version
    freeze(rules, True)
    counter.generation = 2  # permctl rules reload
    for _ in range(3):
        assert live.engine.version == first
    assert counter.reads == 0  # the accessor never reads the counter
    second = live.refresh().version  # the first look reads generation 2 and, the files changed, reloads
    assert second != first and live.engine.version == second
    assert counter.reads == 1
    freeze(rules, False)
    counter.generation = 3
    for _ in range(3):
        assert live.refresh().version == second  # no read on the request path: the watch has not read 3 yet
    assert counter.reads == 1
    live.poll()  # what the watch thread does every check_seconds
    assert live.refresh().version == first
    assert live.refresh().version == first
    assert counter.reads == 2


def test_the_first_refresh_of_unchanged_files_reads_the_counter_and_keeps_the_engine(tmp_path: Path):
    rules = copy_rules(tmp_path)
    counter = Counter()
    live = LiveRules(
        rules, load_request=load_update_request, reload_generation=counter, check_seconds=60, background=False
    )
    engine = live.engine
    assert live.refresh() is engine and counter.reads == 1


def test_the_watch_thread_reads_the_counter_until_stopped(tmp_path: Path):
    rules = copy_rules(tmp_path)
    counter = Counter()
    live = LiveRules(rules, load_request=load_update_request, reload_generation=counter, check_seconds=0.01)
    try:
        live.refresh()  # the first look, and the thread starts
        watch = live._watch
        assert watch is not None and watch.running
        assert [t for t in threading.enumerate() if t.name == "rules-reload-watch" and t.daemon]
        assert counter.read_twice.wait(timeout=30)  # a read of the thread's own, not a request's
    finally:
        live.close()
    assert not watch.running


def test_a_forked_worker_runs_a_watch_thread_of_its_own(tmp_path: Path):
    rules = copy_rules(tmp_path)
    counter = Counter()
    live = LiveRules(rules, load_request=load_update_request, reload_generation=counter, check_seconds=3600)
    live.refresh()
    watch = live._watch
    assert watch is not None and watch.running
    with warnings.catch_warnings():  # Python 3.12 warns of fork() in a process with threads: that is the case
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: threads do not survive fork; refresh() starts one for this process
        code = 1
        try:
            code = 2 if watch.running else 3
            live.refresh()
            code = 0 if watch.running else 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    live.close()
    assert os.waitstatus_to_exitcode(status) == 0  # not running after the fork, running after refresh()


def test_the_watch_thread_does_not_keep_a_process_from_exiting(tmp_path: Path):
    rules = copy_rules(tmp_path)
    script = (
        "import sys\n"
        "from app.rules.lifecycle.live import LiveRules\n"
        "from app.schemas.permissions import load_update_request\n"
        "live = LiveRules(sys.argv[1], load_request=load_update_request, reload_generation=lambda: 1, "
        "check_seconds=3600)\n"
        "live.refresh()\n"
        "assert live._watch.running\n"
    )
    finished = subprocess.run([sys.executable, "-c", script, str(rules)], timeout=120, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr


def test_a_reload_lets_the_engine_it_replaces_go(tmp_path: Path):
    """Nothing keeps the engine swapped out: its use of the compiled ruleset ends with it
    (tests/rules/runtime/test_engine_release.py shows what that frees)."""
    rules = copy_rules(tmp_path)
    live = LiveRules(rules, load_request=load_update_request)
    replaced = weakref.ref(live.engine)
    freeze(rules, True)
    assert live.reload() is True
    gc.collect()
    assert replaced() is None


def test_disposing_of_the_apps_database_engine_stops_its_reload_watch(seeded: Any):
    app = create_app(seeded.with_overrides(rules_reload_check_seconds=3600.0))
    container = container_of(app)
    assert app.test_client().get("/readyz").status_code == 200  # a request: the watch starts
    watch = container.rules._watch
    assert watch is not None and watch.running
    container.engine.dispose()
    assert not watch.running
    assert not [t for t in threading.enumerate() if t is watch._thread]
