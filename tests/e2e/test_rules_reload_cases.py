"""A rule set that lints but fails a regression case never goes live (issue 12, acceptance 5), end to end in the
four-eyes flow (SPEC §7d): the proposal is stored with its failing case, but approving it and publishing it, even
break-glass, are refused, so the live pointer stays and every worker goes on deciding with the live set (the close
the refused set would deny still succeeds); the fixed set is then proposed, approved, published and served.

A worker restarted meanwhile is not repeated here: a restart while RULES_DIR holds a set that does not go live is
tests/e2e/test_rules_lifecycle.py, and one while the pointer names a broken version tests/e2e/test_published_restart.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.rules.language.loader import rule_set_version
from app.settings import Settings
from tests.cli.runner import one_line_error
from tests.e2e.publishing import Editable, audit_versions, editable_fixture
from tests.e2e.server import LiveServer, call
from tests.support import FAILING_CASE, FREEZE, FREEZE_REFUSING_CLOSES, UPDATE_PATH, body_of, copy_rules, permctl

pytestmark = pytest.mark.e2e

WITH_OTC = ("account.*", "stock.*", "options.US", "trade.*", "otc.*")


@pytest.fixture
def editable(seeded: Settings, tmp_path: Path) -> Iterator[Editable]:
    """gunicorn -w 2 running the published set, sg_mexc enabled for OTC; workers read the pointer every 0.2 s."""
    env = {"DATABASE_URL": seeded.database_url, "RULES_DIR": str(seeded.rules_dir)}
    if seeded.redis_url:
        env["REDIS_URL"] = seeded.redis_url
    configured = permctl("tenant", "set-config", "sg_mexc", *WITH_OTC, env=env)
    assert configured.returncode == 0, configured.stderr
    yield from editable_fixture(seeded, tmp_path)


_nonces = iter(range(10_000))


def otc(server: LiveServer, status: str) -> tuple[int, int, str | None]:
    """Move ACC-2's otc.DE to status; the answer's HTTP status, code and rule id."""
    code, body, _ = call(server, "POST", UPDATE_PATH, body_of("ACC-2", ("otc.DE", status), nonce=next(_nonces)))
    return code, body["code"], body["data"].get("rule_id")


@pytest.mark.slow  # its own gunicorn; in-process: tests/cli/test_rules_go_live.py, tests/rules/lifecycle/test_live.py
def test_a_set_failing_a_case_is_refused_everywhere_and_the_fix_is_taken(editable: Editable) -> None:
    rules, server = editable.rules, editable.server
    adopted, good = editable.desk.live(), rule_set_version(rules)
    assert otc(server, "open") == (200, 0, None)
    (rules / "policies.yaml").write_text(FREEZE_REFUSING_CLOSES, encoding="utf-8")

    failing, proposed = editable.propose_broken()
    assert f"{FAILING_CASE}: expected success" in proposed.stdout
    assert "its report found problems" in one_line_error(editable.desk.acting("bob", "rules", "approve", failing[:8]))
    refused = editable.publish_by_script(failing[:8], "--break-glass", "--reason", "freeze OTC now")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().startswith(f"Error: version {failing[:12]} may not go live: ")
    assert f"{FAILING_CASE}: case fails" in refused.stderr
    assert (editable.desk.live(), editable.desk.publications()) == (adopted, 1)

    editable.on_every_worker(
        lambda data: (
            (data["published_version"], data["live_version"], data["rule_set_version"]) == (adopted, adopted, good)
            and (data["failing_cases"], data["last_reload_error"]) == ([], None)
        ),
        at_once=True,  # the pointer never moved: no answer may differ
    )
    assert otc(server, "close") == (200, 0, None)  # the close the refused set would deny
    assert otc(server, "open") == (200, 0, None)
    assert set(audit_versions(server.settings, "ACC-2")) == {good}

    (rules / "policies.yaml").write_text(FREEZE, encoding="utf-8")  # the fix: only opening is frozen
    fixed, fixed_rules = editable.go_live(), rule_set_version(rules)
    editable.on_every_worker(
        lambda data: (
            (data["published_version"], data["rule_set_version"]) == (fixed, fixed_rules)
            and (data["failing_cases"], data["last_reload_error"]) == ([], None)
        )
    )
    assert otc(server, "close") == (200, 0, None)
    assert otc(server, "open") == (400, 400106, "otc-freeze")


def test_the_service_refuses_to_start_when_a_case_fails(seeded: Settings, tmp_path: Path) -> None:
    rules = copy_rules(tmp_path)
    (rules / "policies.yaml").write_text(FREEZE_REFUSING_CLOSES, encoding="utf-8")
    server = LiveServer(settings=seeded.with_overrides(rules_dir=rules), log_path=tmp_path / "gunicorn.log")
    with pytest.raises(RuntimeError, match="gunicorn exited"):
        server.start()
    logs = server.logs()
    assert "refusing to start: the rules fail their regression cases" in logs
    assert f"cases/catalog.yaml:38:1: {FAILING_CASE}: case fails" in logs
