"""permctl rules propose | approve | reject | publish | proposals | approval-policy | versions | export: four eyes at
the gate from the command line (SPEC §7d; acceptance 2 of the rule-set versions work), on a real database.

Every command runs with environment variables that sound as if they could turn the approval policy off: none
does, because the policy lives in the database only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.rules.language.loader import read_tree
from app.rules.lifecycle.stored import version_id
from tests.cli.publishing import PASSWORDS, Desk
from tests.cli.runner import invoke, ok, one_line_error, scalar
from tests.conftest import postgres_only
from tests.support import FAILING_CASE, FREEZE, FREEZE_REFUSING_CLOSES, copy_rules


def test_an_unapproved_version_is_refused_naming_the_version_and_the_missing_approval(desk: Desk) -> None:
    adopted = desk.live()
    version = desk.propose(desk.edited("one"))
    assert "required" in ok(desk.run("rules", "approval-policy"))

    refused = desk.acting("carol", "rules", "publish", version[:8])
    assert one_line_error(refused) == (
        f"Error: version {version[:12]} cannot be published: it has no approval by an approver other than its "
        "author (the approval policy is `required`)"
    )
    assert refused.returncode == 1
    by_approver = desk.acting("ann", "rules", "publish", version[:8])  # an approver is no exception
    assert "it has no approval by an approver other than its author" in one_line_error(by_approver)
    assert desk.live() == adopted and desk.publications() == 1

    ok(desk.acting("ann", "rules", "approve", version[:6], "--comment", "read the diff"))
    published = ok(desk.acting("carol", "rules", "publish", version[:6]))
    assert published.splitlines()[0].startswith(
        f"published version {version[:12]} as publication 2 (approved) by carol"
    )
    assert "within RULES_RELOAD_CHECK_SECONDS (2 s)" in published
    assert desk.live() == version
    history = ok(desk.run("rules", "versions")).splitlines()
    assert history[0].split()[:4] == ["2", version[:12], "approved", "carol"]
    assert history[1].split()[:3] == ["1", adopted[:12], "adopted"]


def test_nobody_approves_their_own_proposal_and_an_author_approves_nothing(desk: Desk) -> None:
    by_ann = desk.propose(desk.edited("anns"), as_name="ann")
    own = desk.acting("ann", "rules", "approve", by_ann[:8])
    assert one_line_error(own) == (
        f"Error: ann proposed version {by_ann[:12]}: an approver other than its author must review it"
    )
    by_carol = desk.propose(desk.edited("carols"))
    author = desk.acting("carol", "rules", "approve", by_carol[:8])
    assert one_line_error(author) == "Error: carol is an author: only an approver reviews a version"
    assert desk.proposals()["proposals"][0]["reviews"] == []
    assert scalar(desk.database_url, "SELECT count(*) FROM rule_set_reviews") == 0


def test_an_approval_given_against_an_older_live_version_is_void(desk: Desk) -> None:
    first = desk.propose(desk.edited("first"))
    second = desk.propose(desk.edited("second"))
    ok(desk.acting("ann", "rules", "approve", first[:8]))
    ok(desk.acting("bob", "rules", "approve", second[:8]))
    ok(desk.acting("carol", "rules", "publish", second[:8]))

    listed = {p["version"]: p for p in desk.proposals()["proposals"]}
    assert listed[first]["state"] == "approval void"
    [review] = listed[first]["reviews"]
    assert (review["reviewer"], review["verdict"], review["void"]) == ("ann", "approve", True)
    assert review["against_publication"] == 1 and review["against_version"] != second
    assert listed[second]["state"] == "live" and listed[second]["reviews"][0]["used_by_publication"] == 2
    text = ok(desk.run("rules", "proposals"))
    assert "void: another version went live since" in text

    refused = desk.acting("carol", "rules", "publish", first[:8])
    line = one_line_error(refused)
    assert line.startswith(f"Error: version {first[:12]} cannot be published: the approval by ann is void")
    assert desk.live() == second

    ok(desk.acting("bob", "rules", "approve", first[:8]))  # a fresh approval, against the version live now
    ok(desk.acting("carol", "rules", "publish", first[:8]))
    assert desk.live() == first


def test_a_rejection_blocks_publication_until_a_later_approval(desk: Desk) -> None:
    version = desk.propose(desk.edited("rejected"))
    ok(desk.acting("bob", "rules", "reject", version[:8], "--comment", "not on a Friday"))
    assert desk.proposals()["proposals"][0]["state"] == "rejected"
    assert "bob rejected it" in one_line_error(desk.acting("carol", "rules", "publish", version[:8]))
    shown = ok(desk.run("rules", "proposal", version[:8]))
    assert "reject  by bob" in shown and "'not on a Friday'" in shown


def test_a_break_glass_publication_is_listed_until_another_approver_confirms_it(desk: Desk) -> None:
    adopted = desk.live()
    version = desk.propose(desk.edited("urgent"))
    no_reason = desk.acting("ann", "rules", "publish", version[:8], "--break-glass")
    assert one_line_error(no_reason) == "Error: a break-glass publication needs --reason TEXT"
    author = desk.acting("carol", "rules", "publish", version[:8], "--break-glass", "--reason", "now")
    assert one_line_error(author) == "Error: carol is an author: only an approver publishes break-glass"
    assert desk.publications() == 1

    out = ok(desk.acting("ann", "rules", "publish", version[:8], "--break-glass", "--reason", "regulator freeze"))
    assert "as publication 2 (break_glass) by ann" in out
    assert desk.live() == version
    [listed] = desk.proposals()["unconfirmed_break_glass"]
    assert (listed["version"], listed["published_by"], listed["reason"]) == (version, "ann", "regulator freeze")
    text = ok(desk.run("rules", "proposals"))
    assert "break-glass publications not confirmed yet" in text
    assert f"{version[:12]}  publication 2 by ann at " in text and text.rstrip().endswith("approval policy: required")

    ok(desk.acting("ann", "rules", "approve", version[:8]))  # the publisher cannot confirm it
    assert len(desk.proposals()["unconfirmed_break_glass"]) == 1
    ok(desk.acting("bob", "rules", "approve", version[:8]))
    assert desk.proposals()["unconfirmed_break_glass"] == []
    assert "not confirmed" not in ok(desk.run("rules", "proposals"))

    rollback = desk.acting("carol", "rules", "publish", adopted[:8])  # a rollback needs an approval too
    assert "cannot be published: it has no approval" in one_line_error(rollback)


def test_the_approval_policy_is_an_approvers_act_in_the_database_and_no_variable_changes_it(desk: Desk) -> None:
    version = desk.propose(desk.edited("unreviewed"))
    setting = desk.run("rules", "approval-policy", "off")
    assert setting.returncode == 2 and "give --as NAME" in setting.stderr
    by_author = desk.acting("carol", "rules", "approval-policy", "off")
    assert one_line_error(by_author) == "Error: carol is an author: only an approver sets the approval policy"
    assert ok(desk.run("rules", "approval-policy")).strip() == "approval policy: required"

    assert ok(desk.acting("ann", "rules", "approval-policy", "off")).strip() == "approval policy: off (set by ann)"
    out = ok(desk.acting("carol", "rules", "publish", version[:8]))
    assert "(unreviewed) by carol" in out
    ok(desk.acting("bob", "rules", "approval-policy", "required"))
    other = desk.propose(desk.edited("after"))
    assert "no approval" in one_line_error(desk.acting("carol", "rules", "publish", other[:8]))
    actions = scalar(desk.database_url, "SELECT count(*) FROM console_audit WHERE action = 'approval_policy_set'")
    assert actions == 2


def test_a_proposal_whose_cases_fail_is_kept_as_evidence_but_cannot_be_approved_or_published(desk: Desk) -> None:
    broken = desk.edited("broken", policies=FREEZE_REFUSING_CLOSES)
    result = desk.acting("carol", "rules", "propose", str(broken))
    assert result.returncode == 1, result.stderr
    version = result.stdout.splitlines()[-1]
    assert version == version_id(read_tree(broken))
    assert "NOT clean" in result.stdout and FAILING_CASE in result.stdout
    listed = desk.proposals()["proposals"][0]
    assert (listed["version"], listed["state"], listed["clean"]) == (version, "broken", False)
    report = json.loads(ok(desk.run("rules", "proposal", version[:8], "--json")))["report"]
    assert report["clean"] is False and report["cases"]["failed"] == 1

    assert "its report found problems" in one_line_error(desk.acting("ann", "rules", "approve", version[:8]))
    refused = one_line_error(desk.acting("ann", "rules", "publish", version[:8], "--break-glass", "--reason", "x"))
    assert refused.startswith(f"Error: version {version[:12]} may not go live: ") and FAILING_CASE in refused
    assert desk.publications() == 1

    again = desk.acting("carol", "rules", "propose", str(broken))  # the same files: the same version
    assert again.returncode == 1
    assert again.stdout.splitlines() == [
        f"version {version[:12]} was proposed before, by carol at {listed['proposed_at']}: broken",
        version,
    ]
    fixed = desk.edited("broken-fixed", policies=FREEZE)
    assert desk.propose(fixed) != version


def test_propose_prints_the_report_and_the_version_last_and_names_it_once_more_when_proposed_again(desk: Desk) -> None:
    rules = desk.edited("report")
    out = ok(desk.acting("carol", "rules", "propose", str(rules))).splitlines()
    version = out[-1]
    assert out[0].startswith(f"version {version[:12]} (rule-set version ") and out[0].endswith(": clean")
    assert any(line.startswith("cases: ") and " 0 failed" in line for line in out)
    assert any(line.startswith("diff against the live version ") for line in out)
    assert out[-2].startswith(f"proposed version {version[:12]} by carol at ") and "against the live version" in out[-2]
    again = ok(desk.acting("ann", "rules", "propose", str(rules))).splitlines()
    assert again[0].startswith(f"version {version[:12]} was proposed before, by carol at ") and again[-1] == version
    viewer = desk.run(
        "console", "add-user", "vic", "--role", "viewer", "--as", "ann", stdin=f"vic-password-1\n{PASSWORDS['ann']}\n"
    )
    ok(viewer)
    refused = desk.run("rules", "propose", str(desk.edited("vics")), "--as", "vic", stdin="vic-password-1\n")
    assert one_line_error(refused) == "Error: vic is a viewer: proposing needs an author or an approver"


def _two_sharing_a_prefix(desk: Desk) -> tuple[Path, Path]:
    """Two edits of the shipped set whose versions share their first 4 hex characters (found by trying lines)."""
    files = read_tree(desk.rules_dir)
    seen: dict[str, str] = {}
    for n in range(100_000):
        line = f"edit {n}"
        prefix = version_id({**files, "README.md": files["README.md"] + f"\n{line}\n".encode()})[:4]
        if prefix in seen:
            return desk.edited(seen[prefix]), desk.edited(line)
        seen[prefix] = line
    raise AssertionError("no two versions share 4 characters")


def test_unknown_and_ambiguous_versions_are_one_line(desk: Desk) -> None:
    first, second = (desk.propose(rules) for rules in _two_sharing_a_prefix(desk))
    assert first[:4] == second[:4] and first != second
    assert one_line_error(desk.run("rules", "proposal", "zz")) == (
        "Error: 'zz' is not a version: give at least 4 of its hex characters"
    )
    unknown = "0000000" if not first.startswith("0000000") else "fffffff"
    assert one_line_error(desk.acting("carol", "rules", "publish", unknown)) == (
        f"Error: no stored version starts with {unknown}"
    )
    ambiguous = one_line_error(desk.acting("carol", "rules", "publish", first[:4]))
    assert ambiguous.startswith(f"Error: {first[:4]} is ambiguous: ") and ambiguous.endswith("give more characters")
    assert first[:12] in ambiguous and second[:12] in ambiguous
    wrong = desk.run("rules", "approve", first[:8], "--as", "bob", stdin="nope-nope-nope\n")
    assert one_line_error(wrong) == "Error: the user name or the password is wrong"
    failed = scalar(desk.database_url, "SELECT count(*) FROM console_audit WHERE action = 'login_failed'")
    assert failed == 1


def test_export_writes_the_live_version_or_a_named_one_into_an_empty_directory(desk: Desk, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    assert ok(desk.run("rules", "export", "--out", str(out))).startswith(f"wrote version {desk.live()[:12]} (")
    assert read_tree(out) == read_tree(desk.rules_dir)
    again = desk.run("rules", "export", "--out", str(out))
    assert one_line_error(again) == f"Error: --out {out}: not an empty directory; nothing was written"
    version = desk.propose(desk.edited("exported-proposal"))
    named = tmp_path / "named"
    ok(desk.run("rules", "export", version[:8], "--out", str(named)))
    assert version_id(read_tree(named)) == version


def test_db_upgrade_adopts_once_and_says_what_is_live(database_url: str, tmp_path: Path) -> None:
    broken = copy_rules(tmp_path / "broken")
    (broken / "policies.yaml").write_text(FREEZE_REFUSING_CLOSES)
    env = {"DATABASE_URL": database_url, "RULES_DIR": str(broken), "INSTANCE_DIR": str(tmp_path / "instance")}
    out = ok(invoke("db", "upgrade", env=env)).splitlines()
    assert out[1].startswith(f"nothing published: RULES_DIR {broken} may not go live (1 problem(s)); ")
    snapshot = tmp_path / "instance" / "rules-last-good"  # the set this host last ran, kept by its workers
    snapshot.parent.mkdir()
    copy_rules(tmp_path / "snap").rename(snapshot)
    out = ok(invoke("db", "upgrade", env=env)).splitlines()
    assert out[1].startswith(f"adopted the last good snapshot {snapshot} as the first published rule set")
    live = scalar(database_url, "SELECT version FROM rule_set_publications WHERE id = 1")
    assert live == version_id(read_tree(snapshot))
    again = ok(invoke("db", "upgrade", env=env)).splitlines()
    assert again[1] == f"live rule set: version {live[:12]} (publication 1, adopted)"


@pytest.mark.postgres
def test_the_four_eyes_flow_on_postgresql(database_url: str, tmp_path: Path) -> None:
    postgres_only(database_url)
    desk = Desk(database_url, tmp_path).set_up()
    version = desk.propose(desk.edited("pg"))
    assert "no approval" in one_line_error(desk.acting("carol", "rules", "publish", version[:8]))
    ok(desk.acting("bob", "rules", "approve", version[:8]))
    ok(desk.acting("carol", "rules", "publish", version[:8]))
    assert desk.live() == version and desk.publications() == 2
    assert "is live already" in one_line_error(desk.acting("carol", "rules", "publish", version[:8]))


def test_the_demo_makes_its_console_users_once_and_publishes_without_a_second_approver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    import click

    from app.cli.serve import _prepare_demo, serve
    from app.settings import Settings

    settings = Settings(instance_dir=tmp_path / "instance", rules_dir=copy_rules(tmp_path / "live"))
    environ: dict[str, str] = {}
    with click.Context(serve):  # what serve --demo does before it hands over to gunicorn
        printed = _prepare_demo(environ, settings)
    found = re.search(r"demo-approver (\S+), demo-author (\S+)$", printed, re.MULTILINE)
    assert found is not None, printed
    approver_password, author_password = found.groups()
    assert "rules publish VERSION --as demo-author" in printed
    assert "adopted RULES_DIR" in capsys.readouterr().err
    env = {"DATABASE_URL": environ["DATABASE_URL"]}
    assert ok(invoke("rules", "approval-policy", env=env)).strip() == "approval policy: off"
    assert json.loads(ok(invoke("console", "users", "--json", env=env))) == [
        {"name": "demo-approver", "role": "approver", "active": True},
        {"name": "demo-author", "role": "author", "active": True},
    ]
    set_by = scalar(environ["DATABASE_URL"], "SELECT changed_by FROM approval_policy_changes ORDER BY id DESC LIMIT 1")
    assert set_by == "demo-approver"

    rules = copy_rules(tmp_path / "edit")
    (rules / "README.md").write_text((rules / "README.md").read_text() + "\ndemo edit\n")
    proposed = invoke("rules", "propose", str(rules), "--as", "demo-author", env=env, input=author_password + "\n")
    version = ok(proposed).splitlines()[-1]
    published = invoke("rules", "publish", version[:8], "--as", "demo-author", env=env, input=author_password + "\n")
    assert f"published version {version[:12]} as publication 2 (unreviewed) by demo-author" in ok(published)

    with click.Context(serve):  # a second run keeps its users, and prints no password again
        again = _prepare_demo({}, settings)
    assert approver_password not in again and author_password not in again
    assert "console users exist already" in again and "approval policy: off" in again


@pytest.mark.parametrize("plant", ["symlink", "stray", "fifo"])
def test_a_proposal_holding_anything_but_plain_rules_files_is_refused_before_it_is_stored(
    desk: Desk, tmp_path: Path, plant: str
) -> None:
    """A stored version is kept for ever and anyone may export it: a link to a file of the host, a stray file (an
    editor's swap file, a secret), or a device is refused, and nothing is stored."""
    import os

    rules = desk.edited("planted")
    if plant == "symlink":
        (rules / "cases" / "passwd.yaml").symlink_to("/etc/passwd")
        named = "cases/passwd.yaml is a symbolic link: a rule set holds plain files only"
    elif plant == "stray":
        (rules / ".env").write_text("SECRET=1\n")
        named = ".env is not a file of a rule set"
    else:
        os.mkfifo(rules / "cases" / "pipe.yaml")
        named = "cases/pipe.yaml is not a plain file"
    before = scalar(desk.database_url, "SELECT count(*) FROM rule_set_versions")
    refused = one_line_error(desk.acting("carol", "rules", "propose", str(rules)))
    assert (
        refused
        == f"Error: {rules}: {named}"
        + (
            " (catalog.yaml, attributes.yaml, validation.yaml, policies.yaml, README.md and cases/*.yaml)"
            if plant == "stray"
            else ""
        )
        + "; nothing was proposed"
    )
    assert scalar(desk.database_url, "SELECT count(*) FROM rule_set_versions") == before
