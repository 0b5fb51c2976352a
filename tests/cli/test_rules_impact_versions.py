"""`permctl rules impact` under stored versions (SPEC §7d): decisions recorded while version A was live replay
exactly under A (`--as-recorded`, `--version A`: no flip) after B, which decides otherwise, went live; a proposed
directory is compared with the version published live; a decision whose version is not stored is listed as not
replayable, never replayed under another set. Decisions are recorded through the app (signed HTTP, the real
pipeline) on an Alembic-made database."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from app.container import units_of_work
from app.persistence.db import make_engine, make_session_factory
from app.rules.language.loader import read_tree, rule_set_version
from app.rules.lifecycle.stored import version_id
from app.schemas.permissions import load_update_request
from app.service.console_users import ConsoleUsers
from app.service.publication import RuleVersions
from app.settings import Settings
from tests.cli.runner import db_env, invoke, ok, one_line_error
from tests.support import SHIPPED_RULES, Credentials, body_of, copy_rules

ORIGIN = "test"
PASSWORD = "correct horse battery"
OTHER = Credentials("other-key", "other-secret", "other-token")

# B refuses sg_mexc's opens of US stock (the shipped cases judge another tenant, so they pass): the recorded open
# of stock.US by ACC-1 is decided otherwise under B.
US_CLOSED = """\
policies:
  - id: us-closed
    description: US stock is closed to new business.
    when:
      tenant: sg_mexc
      change: {permission_type: stock.US, permission_status: open}
    message: US stock is closed to new business
"""
# (trace id, credentials, body, the code version A answers)
TRAFFIC: list[tuple[str, Credentials, bytes, int]] = [
    ("open-us", Credentials(), body_of("ACC-1", ("stock.US", "open")), 0),
    ("noop-us", Credentials(), body_of("ACC-1", ("stock.US", "open")), 400103),
    ("close-hk", Credentials(), body_of("ACC-1", ("stock.HK", "close")), 0),
    ("other-us", OTHER, body_of("OTHER-1", ("stock.US", "open")), 0),
    ("flag", Credentials(), body_of("ACC-1", ("flag.options", "open")), 400101),
]
VERSION_A = version_id(read_tree(SHIPPED_RULES))


@pytest.fixture
def stored(seeded: Settings, tmp_path: Path) -> Iterator[tuple[RuleVersions, ConsoleUsers]]:
    """The stored versions of the test's database, A (the shipped set the app runs) published as adopted."""
    engine = make_engine(seeded, request_path=False)
    uow = units_of_work(make_session_factory(engine))
    versions = RuleVersions(uow, load_request=load_update_request, versions_dir=tmp_path / "versions")
    versions.adopt(read_tree(SHIPPED_RULES), by="upgrade", origin=ORIGIN)
    yield versions, ConsoleUsers(uow)
    engine.dispose()


@pytest.fixture
def recorded(api: Any, seeded: Settings, stored: Any) -> Settings:
    """TRAFFIC answered by the app while A is live, recorded in the decisions table."""
    for n, (trace, creds, body, code) in enumerate(TRAFFIC):
        stamp = f"{time.time():.0f}.{n:06d}"  # a signature of its own for each call
        answer = api.update(body, creds=creds, headers={"X-Trace-Id": trace}, timestamp=stamp).get_json()
        assert answer["code"] == code, (trace, answer)
    return seeded


@pytest.fixture
def version_b(tmp_path: Path) -> Path:
    rules = copy_rules(tmp_path / "b")
    (rules / "policies.yaml").write_text(US_CLOSED)
    return rules


def _publish(stored: tuple[RuleVersions, ConsoleUsers], directory: Path) -> str:
    """Propose the set of directory, have a second person approve it, publish it; its version id."""
    versions, users = stored
    author = users.add("carol", "author", PASSWORD, actor=None, origin=ORIGIN)  # before any approver: bootstrap
    approver = users.add("ann", "approver", PASSWORD, actor=None, origin=ORIGIN)
    proposal, _ = versions.propose(read_tree(directory), author=author, report={}, clean=True, origin=ORIGIN)
    versions.review(proposal.version, reviewer=approver, approve=True, comment=None, origin=ORIGIN)
    versions.publish(proposal.version, actor=author, origin=ORIGIN)
    return proposal.version


def _env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return {**db_env(settings), "INSTANCE_DIR": str(tmp_path / "instance")}


def _impact(env: dict[str, str], *options: str) -> dict[str, Any]:
    return json.loads(ok(invoke("rules", "impact", "--format", "json", *options, env=env)))


def _insert_copy(settings: Settings, trace: str, new_trace: str, **columns: str | None) -> None:
    """A copy of a recorded decision with other columns (as an older release, or another host, wrote it)."""
    engine = create_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            row = dict(conn.execute(text("SELECT * FROM decisions WHERE trace_id = :t"), {"t": trace}).one()._mapping)
            row.pop("id")
            row.update(trace_id=new_trace, **columns)
            names = ", ".join(row)
            conn.execute(text(f"INSERT INTO decisions ({names}) VALUES ({', '.join(':' + n for n in row)})"), row)
    finally:
        engine.dispose()


def test_decisions_recorded_under_a_replay_exactly_under_a_after_b_went_live(
    recorded: Settings, stored: Any, version_b: Path, tmp_path: Path
) -> None:
    env = _env(recorded, tmp_path)
    # Before B goes live, a proposal of B is compared with the live version A from the database: the flip shows.
    before = _impact(env, "--rules", str(version_b))
    assert before["old"]["source"] == f"the live version {VERSION_A[:12]}"
    assert before["old"]["rule_set_version"] == rule_set_version(SHIPPED_RULES)
    assert (before["summary"]["replayed"], before["summary"]["flipped"]) == (5, 1)
    assert [f["trace_id"] for f in before["flips"]["items"]] == ["open-us"]

    version_b_id = _publish(stored, version_b)
    assert stored[0].live().version == version_b_id

    exact = _impact(env, "--as-recorded")
    assert exact["summary"]["replayed"] == 5 and exact["summary"]["flipped"] == 0
    assert exact["flips"]["items"] == []
    assert exact["versions"]["replayed_under"] == [
        {"version": VERSION_A, "rule_set_version": rule_set_version(SHIPPED_RULES), "replayed": 5, "flipped": 0}
    ]
    assert exact["versions"]["not_replayable"]["total"] == 0
    assert exact["old"]["source"] == "as recorded"

    under_a = _impact(env, "--version", VERSION_A[:8])
    assert under_a["proposed"]["version"] == VERSION_A
    assert under_a["proposed"]["rule_set_version"] == rule_set_version(SHIPPED_RULES)
    assert (under_a["summary"]["replayed"], under_a["summary"]["flipped"]) == (5, 0)
    # the old set is now the live B, which decides the open of stock.US otherwise than recorded: kept apart
    assert under_a["old"]["source"] == f"the live version {version_b_id[:12]}"
    assert under_a["summary"]["decided_otherwise_before_this_edit"] == 1

    # B against A, both given: the flip of the edit
    flipped = _impact(env, "--version", version_b_id[:10], "--old-rules", str(SHIPPED_RULES))
    assert (flipped["summary"]["flipped"], flipped["flips"]["items"][0]["trace_id"]) == (1, "open-us")
    assert flipped["flips"]["items"][0]["new"]["rule_id"] == "us-closed"


def test_as_recorded_uses_the_version_a_decision_names_and_lists_the_ones_not_stored(
    recorded: Settings, stored: Any, version_b: Path, tmp_path: Path
) -> None:
    version_b_id = _publish(stored, version_b)
    b_decides_as = rule_set_version(version_b)
    # Recorded by a worker that ran B (it names its stored version), and by a set never stored.
    _insert_copy(recorded, "open-us", "under-b", published_version=version_b_id, rule_set_version=b_decides_as)
    _insert_copy(recorded, "close-hk", "gone", published_version=None, rule_set_version="0123456789abcdef")
    env = _env(recorded, tmp_path)

    doc = _impact(env, "--as-recorded")
    assert doc["summary"]["replayed"] == 6
    (flip,) = doc["flips"]["items"]  # recorded as accepted, but B refuses it: the replay says it was not so
    assert (flip["trace_id"], flip["new"]["rule_id"]) == ("under-b", "us-closed")
    under = {v["version"]: (v["replayed"], v["flipped"]) for v in doc["versions"]["replayed_under"]}
    assert under == {VERSION_A: (5, 0), version_b_id: (1, 1)}
    missing = doc["versions"]["not_replayable"]
    assert missing["total"] == 1
    (gone,) = missing["items"]
    assert (gone["trace_id"], gone["recorded_rule_set_version"]) == ("gone", "0123456789abcdef")
    assert gone["why"] == "no stored version decides as rule-set version 0123456789abcdef"
    assert missing["by_why"] == {gone["why"]: 1}

    shown = ok(invoke("rules", "impact", "--as-recorded", env=env))
    assert f"version {VERSION_A[:12]} (rule-set version {rule_set_version(SHIPPED_RULES)}): 5 replayed" in shown
    assert "not replayable: decision " in shown and "trace=gone" in shown
    assert shown.splitlines()[-1] == (
        "6 decisions replayed under the version each was recorded with; 1 would change; 1 not replayable "
        "(version not stored)"
    )
    markdown = ok(invoke("rules", "impact", "--as-recorded", "--format", "markdown", env=env))
    assert markdown.startswith("# Rules impact: each decision under the version it was recorded with")
    assert "## Not replayable" in markdown and "`gone`" in markdown


def test_version_and_as_recorded_refuse_what_they_cannot_mean(recorded: Settings, tmp_path: Path) -> None:
    env = _env(recorded, tmp_path)
    assert "no stored version starts with ffff" in one_line_error(
        invoke("rules", "impact", "--version", "ffff", env=env)
    )
    both = invoke("rules", "impact", "--version", VERSION_A[:8], "--as-recorded", env=env)
    assert both.returncode == 2 and "give one of --rules, --version and --as-recorded" in both.stderr
    old = invoke("rules", "impact", "--as-recorded", "--old-rules", str(SHIPPED_RULES), env=env)
    assert old.returncode == 2 and "give no --old-rules" in old.stderr


def test_without_a_publication_the_old_set_is_what_it_was(seeded: Settings, tmp_path: Path) -> None:
    """No version published (a database never upgraded by permctl, no worker started on it): this host's last
    good snapshot, else RULES_DIR, as before versions; as recorded, nothing to replay."""
    env = {**_env(seeded, tmp_path), "RULES_DIR": str(SHIPPED_RULES)}
    doc = _impact(env)
    assert doc["old"]["source"] == "RULES_DIR" and doc["old"]["rules_dir"] == str(SHIPPED_RULES)
    as_recorded = _impact(env, "--as-recorded")
    assert as_recorded["summary"]["replayed"] == 0
    assert as_recorded["versions"] == {
        "as_recorded": True,
        "replayed_under": [],
        "not_replayable": {
            "total": 0,
            "shown": 0,
            "selection": "all",
            "limit": None,
            "seed": None,
            "items": [],
            "by_why": {},
        },
    }
