"""A worker's live rules on a real database (app/rules/lifecycle/live.py, watch.py, clean_sets.py): a published set
is taken only when it lints clean and its regression cases pass (issue 12, acceptance 5), the engine it replaces is
freed, a set is found clean once per version in a process, and each process's watch thread reads the live pointer
away from requests. What the pointer may name and the walk back at start: test_published.py."""

from __future__ import annotations

import gc
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
from app.rules.language.loader import read_tree, rule_set_version
from app.rules.language.version import version_of
from app.rules.lifecycle import last_good
from app.rules.lifecycle import live as live_module
from app.rules.lifecycle.clean_sets import CleanSets
from app.rules.lifecycle.gate import CasesFailed
from app.rules.lifecycle.live import NothingToRun
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.tools.cases import Case, Expected, run_case
from app.schemas.permissions import load_update_request
from app.settings import Settings
from tests.rules.lifecycle.publishing import CountingPort, Publishing
from tests.support import FAILING_CASE, FREEZE, FREEZE_REFUSING_CLOSES, SHIPPED_RULES, copy_rules

SHIPPED = read_tree(SHIPPED_RULES)
FROZEN = {**SHIPPED, "policies.yaml": FREEZE.encode()}  # opening OTC is frozen: a set that may go live
BROKEN = {**SHIPPED, "policies.yaml": FREEZE_REFUSING_CLOSES.encode()}  # lints clean, fails one of its cases
NOT_LINTING = {**SHIPPED, "policies.yaml": FREEZE.replace("message:", "mesage:").encode()}
WAIT_SECONDS = 30  # the longest a test waits for the watch thread

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


def test_a_published_set_whose_cases_fail_is_refused_and_the_running_one_keeps_deciding(publishing: Publishing):
    live = publishing.worker()
    good = live.refresh()  # nothing published: the worker adopts the shipped set
    broken = publishing.publish(BROKEN)
    live.poll()  # what the watch thread does every check_seconds

    with capture_logs() as logs:
        assert live.refresh() is good
    assert closing_otc(live.engine) == "SUCCESS"
    assert (live.published_version, live.live_version) == (good.published_version, broken)
    assert live.failing_cases == (FAILING_CASE,)
    error = live.last_reload_error
    assert error is not None
    assert f"{broken}/cases/catalog.yaml:38:1: {FAILING_CASE}: case fails: expected success" in error
    assert "got PERMISSION_POLICY_DENIED (400106) at change 0 by 'otc-freeze'" in error
    [refused] = [e for e in logs if e["event"] == "rules_publication_refused"]
    assert refused["failing_cases"] == [FAILING_CASE] and refused["published_version"] == broken

    fixed = publishing.publish(FROZEN)  # the fix: only opening is frozen
    live.poll()
    engine = live.refresh()
    assert engine.published_version == fixed and engine.version == version_of(FROZEN) != good.version
    assert closing_otc(engine) == "SUCCESS"
    assert (live.failing_cases, live.last_reload_error) == ((), None)


def test_a_published_set_that_does_not_lint_reports_no_failing_cases(publishing: Publishing):
    live = publishing.worker()
    good = live.refresh()
    publishing.publish(BROKEN)
    live.poll()
    assert live.refresh() is good and live.failing_cases == (FAILING_CASE,)
    publishing.publish(NOT_LINTING)
    live.poll()
    assert live.refresh() is good
    assert live.failing_cases == ()  # the cases never ran: the set is refused for its lint errors
    assert live.last_reload_error is not None and "missing key 'message'" in live.last_reload_error


def test_a_version_changing_only_a_case_is_judged_afresh_and_refused_when_the_set_fails_it(publishing: Publishing):
    """The rule-set version stays (the rules decide alike), but the version id does not: its cases run again."""
    live = publishing.worker()
    good = live.refresh()
    catalog_cases = SHIPPED["cases/catalog.yaml"].decode()
    expecting_no_close = catalog_cases.replace(
        "changes: [{permission_type: otc.DE, permission_status: close}]\n    expect: {code: SUCCESS}",
        "changes: [{permission_type: otc.DE, permission_status: close}]\n    expect: {code: NO_STATE_CHANGE, "
        "failure_index: 0, rule_id: must-change-state}",
    )
    assert expecting_no_close != catalog_cases
    edited = {**SHIPPED, "cases/catalog.yaml": expecting_no_close.encode()}
    assert version_of(edited) == good.version
    publishing.publish(edited)
    live.poll()
    assert live.refresh() is good
    assert live.failing_cases == (FAILING_CASE,)


def test_a_restarted_worker_runs_the_set_that_ran_and_a_refused_set_is_never_kept(
    settings: Settings, publishing: Publishing
):
    live = publishing.worker()
    adopted = live.refresh().published_version
    snapshot = last_good.snapshot_path(settings.instance_dir)
    assert last_good.digest(snapshot) == adopted  # every set taken is this host's snapshot
    broken = publishing.publish(BROKEN)
    live.poll()
    live.refresh()
    assert last_good.digest(snapshot) == adopted  # the refused set was not kept

    with capture_logs() as logs:
        restarted = publishing.worker()  # the same host, after a restart
        engine = restarted.refresh()
    assert (engine.published_version, restarted.live_version) == (adopted, broken)
    assert closing_otc(engine) == "SUCCESS"
    assert restarted.failing_cases == (FAILING_CASE,)
    [refused] = [e for e in logs if e["event"] == "rules_publication_refused"]
    assert refused["failing_cases"] == [FAILING_CASE]
    assert last_good.digest(snapshot) == adopted
    assert not (snapshot / "policies.yaml").exists()


def test_without_a_set_that_may_run_a_worker_runs_nothing_and_names_the_failing_cases(publishing: Publishing):
    """RULES_DIR (the shipped set, which may go live) is not run in place of a publication."""
    publishing.publish(BROKEN, kind="adopted", reason=None)  # publication 1 may run, but its files fail a case
    live = publishing.worker()
    with pytest.raises(NothingToRun, match="no earlier publication may run and this host keeps no good set"):
        live.refresh()
    assert live.failing_cases == (FAILING_CASE,)
    with pytest.raises(NothingToRun):  # the next use looks again, and finds nothing either
        _ = live.engine


def test_the_snapshot_follows_every_version_taken_even_when_the_rule_set_version_stays(
    settings: Settings, publishing: Publishing
):
    live = publishing.worker()
    adopted = live.refresh()
    documented = publishing.publish({**SHIPPED, "README.md": b"a docs-only edit\n"})
    live.poll()
    engine = live.refresh()
    assert engine.published_version == documented != adopted.published_version
    assert engine.version == adopted.version  # prose is not part of the rule-set version ...
    snapshot = last_good.snapshot_path(settings.instance_dir)
    assert (snapshot / "README.md").read_text(encoding="utf-8") == "a docs-only edit\n"  # ... but of the snapshot


def test_a_snapshot_is_not_saved_when_the_files_changed_after_they_were_checked(tmp_path: Path):
    rules, instance = copy_rules(tmp_path), tmp_path / "instance"
    checked = last_good.digest(rules)
    (rules / "policies.yaml").write_text(FREEZE_REFUSING_CLOSES, encoding="utf-8")  # lands after the check
    assert last_good.save(rules, instance, expected=checked) is False
    assert not last_good.snapshot_path(instance).exists()
    assert last_good.save(rules, instance, expected=last_good.digest(rules)) is True
    assert (last_good.snapshot_path(instance) / "policies.yaml").exists()


def test_an_unmoved_pointer_is_read_and_nothing_else_is_done(publishing: Publishing):
    publishing.publish(SHIPPED, kind="adopted", reason=None)
    port = CountingPort(publishing.port(publishing.settings.instance_dir))
    live = publishing.worker(published=port)
    first = live.refresh()
    assert port.calls == {"latest": 1, "refusal": 1, "files": 1}  # the first look: the pointer, and its set
    with capture_logs() as logs:
        for _ in range(3):
            live.poll()
            assert live.refresh() is first and live.engine is first
    assert logs == []
    assert port.calls == {"latest": 4, "refusal": 1, "files": 1}


def test_engine_is_a_plain_accessor_and_refresh_takes_only_what_the_watch_read(publishing: Publishing):
    port = CountingPort(publishing.port(publishing.settings.instance_dir))
    live = publishing.worker(published=port)
    first = live.engine  # the first use looks, as the first refresh() does: it adopts the shipped set
    looked = dict(port.calls)
    assert looked["adopt"] == 1
    frozen = publishing.publish(FROZEN)
    for _ in range(3):
        assert live.engine is first and live.refresh() is first  # no read on the request path
    assert port.calls == looked
    live.poll()
    second = live.refresh()
    assert second.published_version == frozen and live.engine is second
    assert port.calls["latest"] == looked["latest"] + 1
    publishing.publish(SHIPPED)  # a rollback
    assert live.refresh() is second  # until the watch reads it
    live.poll()
    assert live.refresh().published_version == first.published_version


def test_a_set_is_found_clean_once_per_version_in_a_process(settings: Settings, publishing: Publishing):
    """Workers building the service again in one process (and every host's worker in a test) lint a version and
    run its cases once."""
    first = publishing.worker().refresh().rule_set
    other_host = publishing.worker(settings.instance_dir.parent / "other-host")
    assert other_host.refresh().rule_set is first  # another copy of the same files: the verdict already reached
    publishing.publish(FROZEN)
    other_host.poll()
    assert other_host.refresh().rule_set is not first


def test_a_set_is_kept_as_clean_only_while_its_files_have_the_digest_read_before_the_load(tmp_path: Path):
    rules = copy_rules(tmp_path)
    clean = CleanSets()
    digest = last_good.digest(rules)
    first = clean.load(rules, digest, load_update_request)
    assert clean.load(rules, digest, load_update_request) is first
    (rules / "policies.yaml").write_text(FREEZE_REFUSING_CLOSES, encoding="utf-8")
    with pytest.raises(CasesFailed):  # the edited files are judged afresh, and refused
        clean.load(rules, last_good.digest(rules), load_update_request)

    read_before = last_good.digest(rules)
    (rules / "policies.yaml").write_text(FREEZE, encoding="utf-8")  # an edit landing while the set loads
    loaded = clean.load(rules, read_before, load_update_request)
    assert loaded.version == rule_set_version(rules) != first.version
    assert clean.load(rules, read_before, load_update_request) is not loaded  # nothing kept under a stale digest


def test_the_sets_found_clean_are_a_few_the_oldest_dropped_first(tmp_path: Path):
    shipped = copy_rules(tmp_path / "shipped")
    frozen = copy_rules(tmp_path / "frozen")
    (frozen / "policies.yaml").write_text(FREEZE, encoding="utf-8")
    clean = CleanSets(kept=1)
    first = clean.load(shipped, last_good.digest(shipped), load_update_request)
    clean.load(frozen, last_good.digest(frozen), load_update_request)
    assert clean.load(shipped, last_good.digest(shipped), load_update_request) is not first


def test_the_watch_thread_reads_the_pointer_until_stopped(publishing: Publishing):
    port = CountingPort(publishing.port(publishing.settings.instance_dir))
    live = publishing.worker(published=port, check_seconds=0.01, background=True)
    try:
        live.refresh()  # the first look, and the thread starts
        watch = live.watch
        assert watch.running and watch.thread is not None
        assert watch.thread.daemon and watch.thread.name == "rules-reload-watch"
        read = port.calls["latest"]
        assert port.wait_for("latest", read + 2, timeout=WAIT_SECONDS)  # reads of the thread's own: no request
    finally:
        live.close()
    assert not watch.running and not watch.thread.is_alive()


def test_a_forked_worker_runs_a_watch_thread_of_its_own(publishing: Publishing):
    live = publishing.worker(check_seconds=3600, background=True)
    live.refresh()
    watch = live.watch
    assert watch.running
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


def test_the_watch_thread_does_not_keep_a_process_from_exiting(settings: Settings):
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from app.container import published_rules\n"
        "from app.persistence.db import make_engine, make_session_factory\n"
        "from app.rules.lifecycle.live import LiveRules\n"
        "from app.schemas.permissions import load_update_request\n"
        "from app.settings import Settings\n"
        "settings = Settings(database_url=sys.argv[1], rules_dir=Path(sys.argv[2]), instance_dir=Path(sys.argv[3]))\n"
        "sessions = make_session_factory(make_engine(settings, request_path=False))\n"
        "published = published_rules(sessions, settings, load_request=load_update_request)\n"
        "live = LiveRules(settings.rules_dir, load_request=load_update_request, instance_dir=settings.instance_dir,\n"
        "                 published=published, check_seconds=3600)\n"
        "live.refresh()\n"
        "assert live.watch.running\n"
    )
    arguments = [settings.database_url, str(settings.rules_dir), str(settings.instance_dir)]
    finished = subprocess.run([sys.executable, "-c", script, *arguments], timeout=120, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr


def test_a_publication_taken_lets_the_engine_it_replaces_go(publishing: Publishing):
    """Nothing keeps the engine swapped out: its use of the compiled ruleset ends with it
    (tests/rules/runtime/test_engine_release.py shows what that frees)."""
    live = publishing.worker()
    replaced = weakref.ref(live.refresh())
    frozen = publishing.publish(FROZEN)
    live.poll()
    assert live.refresh().published_version == frozen
    gc.collect()
    assert replaced() is None


def test_disposing_of_the_apps_database_engine_stops_its_watch(seeded: Any):
    app = create_app(seeded.with_overrides(rules_reload_check_seconds=3600.0))
    container = container_of(app)
    assert app.test_client().get("/readyz").status_code == 200  # a request: the watch starts
    watch = container.rules.watch
    assert watch.running
    container.engine.dispose()
    assert not watch.running
    assert not [t for t in threading.enumerate() if t is watch.thread]
