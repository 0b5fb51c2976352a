"""Four eyes at the gate (SPEC §7d): storing, proposing, reviewing and publishing versions, on a real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.container import units_of_work
from app.errors import ConsoleError, NotPermitted, PublicationRefused, UnknownVersion, WrongCredentials
from app.persistence.db import make_engine, make_session_factory
from app.rules.language.loader import read_tree
from app.rules.lifecycle.stored import version_id
from app.schemas.permissions import load_update_request
from app.service.console_users import ConsoleUsers, User
from app.service.publication import RuleVersions
from app.settings import Settings
from tests.support import SHIPPED_RULES

ORIGIN = "test"
PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.at += timedelta(seconds=1)
        return self.at


@pytest.fixture
def parts(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(Settings(database_url=database_url, instance_dir=tmp_path), request_path=False)
    uow = units_of_work(make_session_factory(engine))
    clock = Clock()
    users = ConsoleUsers(uow, now=clock)
    versions = RuleVersions(uow, load_request=load_update_request, versions_dir=tmp_path / "versions", now=clock)
    yield users, versions
    engine.dispose()


def _edited(tmp_path: Path, name: str, old: str, new: str) -> dict[str, bytes]:
    files = read_tree(SHIPPED_RULES)
    files[name] = files[name].replace(old.encode(), new.encode())
    return files


def _people(users: ConsoleUsers) -> tuple[User, User, User]:
    """Author carol and approver ann, added while no approver existed (bootstrap), then approver bob by ann: neither
    approver made carol's account, so either may review her proposals."""
    author = users.add("carol", "author", PASSWORD, actor=None, origin=ORIGIN)
    approver = users.add("ann", "approver", PASSWORD, actor=None, origin=ORIGIN)
    second = users.add("bob", "approver", PASSWORD, actor=approver, origin=ORIGIN)
    return approver, second, author


def test_an_author_cannot_publish_without_another_approvers_approval(parts, tmp_path: Path) -> None:
    users, versions = parts
    approver, _, author = _people(users)
    adopted = versions.adopt(read_tree(SHIPPED_RULES), by="upgrade", origin=ORIGIN)
    assert adopted is not None and adopted.id == 1 and adopted.kind == "adopted"
    files = _edited(tmp_path, "README.md", "#", "# edited\n#")
    proposal, new = versions.propose(files, author=author, report={"ok": True}, clean=True, origin=ORIGIN)
    assert new and proposal.state == "pending" and proposal.version == version_id(files)

    with pytest.raises(PublicationRefused, match="no approval by an approver other than its author"):
        versions.publish(proposal.version[:8], actor=author, origin=ORIGIN)
    with pytest.raises(NotPermitted, match="only an approver reviews"):
        versions.review(proposal.version, reviewer=author, approve=True, comment=None, origin=ORIGIN)

    versions.review(proposal.version[:6], reviewer=approver, approve=True, comment="fine", origin=ORIGIN)
    assert versions.proposal(proposal.version[:6]).state == "approved"
    published = versions.publish(proposal.version[:6], actor=author, origin=ORIGIN)
    assert published.kind == "approved" and published.id == 2
    assert versions.live() == published
    assert versions.refusal(published) is None
    assert versions.proposal(proposal.version).state == "live"


def test_an_approver_never_approves_their_own_proposal(parts, tmp_path: Path) -> None:
    users, versions = parts
    approver, _, _ = _people(users)
    versions.adopt(read_tree(SHIPPED_RULES), by="upgrade", origin=ORIGIN)
    files = _edited(tmp_path, "README.md", "#", "# mine\n#")
    proposal, _ = versions.propose(files, author=approver, report={}, clean=True, origin=ORIGIN)
    with pytest.raises(NotPermitted, match="an approver other than its author"):
        versions.review(proposal.version, reviewer=approver, approve=True, comment=None, origin=ORIGIN)


def test_an_approval_given_against_an_older_live_version_is_void(parts, tmp_path: Path) -> None:
    users, versions = parts
    approver, second, author = _people(users)
    versions.adopt(read_tree(SHIPPED_RULES), by="upgrade", origin=ORIGIN)
    first, _ = versions.propose(
        _edited(tmp_path, "README.md", "#", "# one\n#"), author=author, report={}, clean=True, origin=ORIGIN
    )
    other, _ = versions.propose(
        _edited(tmp_path, "README.md", "#", "# two\n#"), author=author, report={}, clean=True, origin=ORIGIN
    )
    versions.review(first.version, reviewer=approver, approve=True, comment=None, origin=ORIGIN)
    versions.review(other.version, reviewer=second, approve=True, comment=None, origin=ORIGIN)
    versions.publish(other.version, actor=author, origin=ORIGIN)
    assert versions.proposal(first.version).state == "approval void"
    with pytest.raises(PublicationRefused, match="void"):
        versions.publish(first.version, actor=author, origin=ORIGIN)


def test_a_rejection_blocks_and_a_break_glass_publication_is_listed_until_confirmed(parts, tmp_path: Path) -> None:
    users, versions = parts
    approver, second, author = _people(users)
    versions.adopt(read_tree(SHIPPED_RULES), by="upgrade", origin=ORIGIN)
    proposal, _ = versions.propose(
        _edited(tmp_path, "README.md", "#", "# bg\n#"), author=author, report={}, clean=True, origin=ORIGIN
    )
    versions.review(proposal.version, reviewer=approver, approve=False, comment="no", origin=ORIGIN)
    assert versions.proposal(proposal.version).state == "rejected"
    with pytest.raises(PublicationRefused, match="ann rejected it"):
        versions.publish(proposal.version, actor=author, origin=ORIGIN)
    with pytest.raises(NotPermitted, match="only an approver publishes break-glass"):
        versions.publish(proposal.version, actor=author, origin=ORIGIN, break_glass=True, reason="outage")
    with pytest.raises(ConsoleError, match="needs --reason"):
        versions.publish(proposal.version, actor=approver, origin=ORIGIN, break_glass=True, reason=" ")
    published = versions.publish(proposal.version, actor=approver, origin=ORIGIN, break_glass=True, reason="outage")
    assert published.kind == "break_glass"
    assert [p.id for p in versions.unconfirmed_break_glass()] == [published.id]
    versions.review(proposal.version, reviewer=approver, approve=True, comment=None, origin=ORIGIN)  # not a second one
    assert [p.id for p in versions.unconfirmed_break_glass()] == [published.id]
    versions.review(proposal.version, reviewer=second, approve=True, comment="confirmed", origin=ORIGIN)
    assert versions.unconfirmed_break_glass() == []


def test_the_policy_off_publishes_unreviewed_and_only_an_approver_sets_it(parts, tmp_path: Path) -> None:
    users, versions = parts
    approver, _, author = _people(users)
    versions.adopt(read_tree(SHIPPED_RULES), by="upgrade", origin=ORIGIN)
    with pytest.raises(NotPermitted):
        versions.set_approval_policy("off", actor=author, origin=ORIGIN)
    versions.set_approval_policy("off", actor=approver, origin=ORIGIN)
    assert versions.approval_policy() == "off"
    proposal, _ = versions.propose(
        _edited(tmp_path, "README.md", "#", "# off\n#"), author=author, report={}, clean=True, origin=ORIGIN
    )
    published = versions.publish(proposal.version, actor=author, origin=ORIGIN)
    assert published.kind == "unreviewed" and versions.refusal(published) is None
    versions.set_approval_policy("required", actor=approver, origin=ORIGIN)
    assert versions.refusal(published) is None  # it was off when it was published


def test_a_broken_version_is_never_published(parts, tmp_path: Path) -> None:
    users, versions = parts
    approver, _, author = _people(users)
    versions.adopt(read_tree(SHIPPED_RULES), by="upgrade", origin=ORIGIN)
    versions.set_approval_policy("off", actor=approver, origin=ORIGIN)
    files = _edited(tmp_path, "validation.yaml", "the flag.* group is not supported", "flags are fine")
    proposal, _ = versions.propose(files, author=author, report={}, clean=False, origin=ORIGIN)
    with pytest.raises(PublicationRefused, match="may not go live"):
        versions.publish(proposal.version, actor=author, origin=ORIGIN)
    assert versions.live() is not None and versions.live().id == 1  # type: ignore[union-attr]


def test_a_pointer_moved_by_hand_is_refused_to_workers(parts, database_url: str, tmp_path: Path) -> None:
    users, versions = parts
    _, _, author = _people(users)
    versions.adopt(read_tree(SHIPPED_RULES), by="upgrade", origin=ORIGIN)
    proposal, _ = versions.propose(
        _edited(tmp_path, "README.md", "#", "# sql\n#"), author=author, report={}, clean=True, origin=ORIGIN
    )
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO rule_set_publications (id, version, kind, published_at, published_by) "
                "VALUES (2, :v, 'approved', :at, 'mallory')"
            ),
            {"v": proposal.version, "at": datetime.now(UTC)},
        )
    engine.dispose()
    live = versions.live()
    assert live is not None and live.id == 2
    assert "names no valid approval" in (versions.refusal(live) or "")


def test_version_prefixes_resolve_or_say_why(parts, tmp_path: Path) -> None:
    _, versions = parts
    adopted = versions.adopt(read_tree(SHIPPED_RULES), by="upgrade", origin=ORIGIN)
    assert adopted is not None
    assert versions.resolve(adopted.version[:4].upper()) == adopted.version
    with pytest.raises(UnknownVersion, match="at least 4"):
        versions.resolve("ab")
    with pytest.raises(UnknownVersion, match="no stored version"):
        versions.resolve("0000000000" if not adopted.version.startswith("0000") else "ffffffffff")
    assert versions.adopt(read_tree(SHIPPED_RULES), by="again", origin=ORIGIN) is None


def test_users_need_an_approver_once_one_exists_and_the_last_cannot_go(parts) -> None:
    users, _ = parts
    approver = users.add("ann", "approver", PASSWORD, actor=None, origin=ORIGIN)
    with pytest.raises(NotPermitted, match="needs an approver"):
        users.add("eve", "approver", PASSWORD, actor=None, origin=ORIGIN)
    author = users.add("carol", "author", PASSWORD, actor=approver, origin=ORIGIN)
    with pytest.raises(NotPermitted, match="only an approver changes users"):
        users.set_role("carol", "approver", actor=author, origin=ORIGIN)
    with pytest.raises(NotPermitted, match="last active approver"):
        users.disable("ann", actor=User("other", "approver"), origin=ORIGIN)
    with pytest.raises(NotPermitted, match="another approver"):
        users.set_role("ann", "viewer", actor=approver, origin=ORIGIN)
    with pytest.raises(ConsoleError, match="12 to 256"):
        users.add("dave", "viewer", "short", actor=approver, origin=ORIGIN)
    assert users.authenticate("carol", PASSWORD, origin=ORIGIN) == User("carol", "author")
    with pytest.raises(WrongCredentials) as wrong:
        users.authenticate("carol", PASSWORD + "x", origin=ORIGIN)
    with pytest.raises(WrongCredentials) as nobody:
        users.authenticate("nobody", PASSWORD, origin=ORIGIN)
    assert str(wrong.value) == str(nobody.value)
    users.disable("carol", actor=approver, origin=ORIGIN)
    with pytest.raises(WrongCredentials):
        users.authenticate("carol", PASSWORD, origin=ORIGIN)


def test_an_approval_by_an_approver_disabled_since_no_longer_counts_and_says_so(parts, tmp_path: Path) -> None:
    users, versions = parts
    approver, second, author = _people(users)
    versions.adopt(read_tree(SHIPPED_RULES), by="upgrade", origin=ORIGIN)
    proposal, _ = versions.propose(
        _edited(tmp_path, "README.md", "#", "# gone\n#"), author=author, report={}, clean=True, origin=ORIGIN
    )
    versions.review(proposal.version, reviewer=second, approve=True, comment=None, origin=ORIGIN)
    users.disable("bob", actor=approver, origin=ORIGIN)
    assert versions.proposal(proposal.version).state == "approval void"
    with pytest.raises(PublicationRefused, match="the approval by bob no longer counts: they are not an active"):
        versions.publish(proposal.version, actor=author, origin=ORIGIN)


def test_a_failed_login_keeps_what_was_typed_only_when_it_is_a_user_name(parts, database_url: str) -> None:
    users, _ = parts
    for typed in ("nobody", "my secret pass phrase!"):
        with pytest.raises(WrongCredentials):
            users.authenticate(typed, PASSWORD, origin=ORIGIN)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        actors = list(conn.scalars(text("SELECT actor FROM console_audit WHERE action = 'login_failed' ORDER BY id")))
    engine.dispose()
    assert actors == ["nobody", "(not a user name)"]


def test_an_approver_never_reviews_the_proposals_of_an_account_they_made(parts, tmp_path: Path) -> None:
    """One approver adding an author account of their own and approving what it proposes would be four eyes with
    two. The approver who added (or set the role of) the author may not review; another approver may."""
    users, versions = parts
    approver, second, _ = _people(users)
    versions.adopt(read_tree(SHIPPED_RULES), by="upgrade", origin=ORIGIN)
    puppet = users.add("ann-alt", "author", PASSWORD, actor=approver, origin=ORIGIN)
    proposal, _ = versions.propose(
        _edited(tmp_path, "README.md", "#", "# alt\n#"), author=puppet, report={}, clean=True, origin=ORIGIN
    )
    with pytest.raises(NotPermitted, match="ann added ann-alt or set ann-alt's role: another approver must review"):
        versions.review(proposal.version, reviewer=approver, approve=True, comment=None, origin=ORIGIN)
    promoted = users.add("dave", "viewer", PASSWORD, actor=second, origin=ORIGIN)
    users.set_role(promoted.name, "author", actor=approver, origin=ORIGIN)
    by_dave, _ = versions.propose(
        _edited(tmp_path, "README.md", "#", "# dave\n#"),
        author=User("dave", "author"),
        report={},
        clean=True,
        origin=ORIGIN,
    )
    for maker in (approver, second):  # bob added dave, ann made him an author
        with pytest.raises(NotPermitted, match="another approver must review"):
            versions.review(by_dave.version, reviewer=maker, approve=True, comment=None, origin=ORIGIN)
    versions.review(proposal.version, reviewer=second, approve=True, comment=None, origin=ORIGIN)
    assert versions.publish(proposal.version, actor=puppet, origin=ORIGIN).kind == "approved"
