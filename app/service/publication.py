"""Rule-set versions, their proposals, reviews and publication: four eyes at the gate (SPEC §7d).

A version is stored by the hash of its files and kept for ever. The live version is the latest publication.
Publishing needs, while the approval policy is `required` (the default, kept in the database and changed only by
an approver), an approval of that version by an approver other than its author, given against the version live
now: an approval given while another version was live is void. A break-glass publication by one approver needs
a reason and stays listed until another approver approves that version after the fact. Every version is checked
by the go-live gate (lint clean, the contract, its own cases) before it moves the pointer, and every act is
appended to the console audit.

Workers ask refusal() of the publication they are about to run, so a pointer moved by hand in the database to a
version nobody approved is not run.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.errors import ConsoleError, NotPermitted, PublicationRefused, UnknownVersion
from app.rules.language.source import RuleSetInvalid
from app.rules.language.version import version_of
from app.rules.lifecycle.gate import load_clean
from app.rules.lifecycle.stored import UnsafeTree, check_tree, materialize, shown, version_id
from app.service.console_users import User

if TYPE_CHECKING:  # injected: the service never imports the database library
    from app.persistence.rule_versions import PublicationRecord, ReviewRecord
    from app.persistence.unit_of_work import UnitOfWork
    from app.rules.tools.cases import RequestLoader

POLICIES = ("required", "off")
KINDS = ("adopted", "approved", "unreviewed", "break_glass")
MIN_PREFIX = 4
ACCOUNT_MAKERS = ("user_added", "user_role_set")  # console audit actions that make a user what they are


@dataclass(frozen=True)
class Publication:
    """A move of the live pointer."""

    id: int
    version: str
    kind: str
    published_at: datetime
    published_by: str
    approval_id: int | None = None
    reason: str | None = None

    @classmethod
    def of(cls, record: PublicationRecord) -> Publication:
        return cls(
            record.id,
            record.version,
            record.kind,
            record.published_at,
            record.published_by,
            record.approval_id,
            record.reason,
        )


@dataclass(frozen=True)
class Review:
    """An approval or a rejection, naming the live publication it was given against."""

    id: int
    version: str
    reviewer: str
    verdict: str
    comment: str | None
    against_publication: int | None
    reviewed_at: datetime

    @classmethod
    def of(cls, record: ReviewRecord) -> Review:
        return cls(
            record.id,
            record.version,
            record.reviewer,
            record.verdict,
            record.comment,
            record.against_publication,
            record.reviewed_at,
        )


@dataclass(frozen=True)
class Proposal:
    """A proposed version as `rules proposals` lists it: its state now, and every review."""

    version: str
    author: str
    proposed_at: datetime
    against_version: str | None
    clean: bool
    state: str  # live | approved | rejected | approval void | pending | broken | published before
    reviews: tuple[Review, ...]
    report: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Approval:
    """Whether a version may be published now under four eyes, and if not, why not."""

    review: Review | None
    why_not: str


class RuleVersions:
    """Store, propose, review and publish rule-set versions; the workers' view of the live pointer."""

    def __init__(
        self,
        unit_of_work: Callable[..., UnitOfWork],
        *,
        load_request: RequestLoader | None = None,
        versions_dir: Path | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        """load_request: the API's request loader, which the go-live gate runs each case through (publish needs
        it). versions_dir: where versions are written out to be read (default: a temporary directory)."""
        self._unit_of_work = unit_of_work
        self._load_request = load_request
        self._versions_dir = versions_dir
        self._now = now or (lambda: datetime.now(UTC))

    # -- reading --------------------------------------------------------------------------------------------

    def live(self) -> Publication | None:
        """The latest publication: the version every worker runs (None before the first)."""
        with self._unit_of_work() as uow:
            latest = uow.publications.latest()
        return None if latest is None else Publication.of(latest)

    def publications_before(self, publication_id: int | None, limit: int = 50) -> list[Publication]:
        """Earlier publications, newest first (all when publication_id is None)."""
        with self._unit_of_work() as uow:
            return [Publication.of(p) for p in uow.publications.before(publication_id, limit)]

    def files(self, version: str) -> dict[str, bytes]:
        """The files of a stored version (UnknownVersion when it is not stored)."""
        with self._unit_of_work() as uow:
            files = uow.rule_versions.files(version)
        if not files:
            raise UnknownVersion(f"no stored version {shown(version)}")
        return files

    def directory(self, version: str) -> Path:
        """A directory holding the version's files, written out under versions_dir."""
        return materialize(self.files(version), self._root())

    def resolve(self, prefix: str) -> str:
        """The one stored version whose id starts with prefix (at least 4 hex characters)."""
        wanted = prefix.strip().lower()
        if len(wanted) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in wanted):
            raise UnknownVersion(f"{prefix[:70]!r} is not a version: give at least {MIN_PREFIX} of its hex characters")
        with self._unit_of_work() as uow:
            found = uow.rule_versions.starting_with(wanted, limit=3)
        if not found:
            raise UnknownVersion(f"no stored version starts with {wanted}")
        if len(found) > 1:
            raise UnknownVersion(
                f"{wanted} is ambiguous: {', '.join(shown(v) for v in found)}{', …' if len(found) > 2 else ''} "
                "start with it; give more characters"
            )
        return found[0]

    def deciding_as(self, rule_set_version: str) -> str | None:
        """A stored version that decides as rule_set_version (the version recorded in decisions before 0008)."""
        with self._unit_of_work() as uow:
            return uow.rule_versions.deciding_as(rule_set_version)

    def approval_policy(self) -> str:
        with self._unit_of_work() as uow:
            return uow.approval_policy.current()

    def proposal(self, prefix: str) -> Proposal:
        version = self.resolve(prefix)
        with self._unit_of_work() as uow:
            record = uow.proposals.get(version)
            if record is None:
                raise UnknownVersion(f"version {shown(version)} is stored but was never proposed")
            return self._proposal(uow, record)

    def proposals(self) -> list[Proposal]:
        """Every proposal, oldest first, with its state now."""
        with self._unit_of_work() as uow:
            return [self._proposal(uow, record) for record in uow.proposals.all()]

    def unconfirmed_break_glass(self) -> list[Publication]:
        """Break-glass publications no other approver has approved since (SPEC §7d: listed until confirmed)."""
        with self._unit_of_work() as uow:
            return [Publication.of(p) for p in uow.publications.of_kind("break_glass") if not self._confirmed(uow, p)]

    # -- acting ---------------------------------------------------------------------------------------------

    def propose(
        self, files: Mapping[str, bytes], *, author: User, report: Mapping[str, Any], clean: bool, origin: str
    ) -> tuple[Proposal, bool]:
        """Store the files as a version and propose it with its report; (the proposal, whether it is new). A
        version proposed before is returned as it is (the same files: the same version)."""
        if not author.may("author"):
            raise NotPermitted(f"{author.name} is {_article(author.role)}: proposing needs an author or an approver")
        try:
            check_tree(files)
        except UnsafeTree as exc:
            raise ConsoleError(f"the rule set cannot be stored: {exc}") from exc
        version = version_id(files)
        now = self._now()
        with self._unit_of_work(write=True) as uow:
            existing = uow.proposals.get(version)
            if existing is not None:
                return self._proposal(uow, existing), False
            from app.persistence.rule_versions import ProposalRecord

            live = uow.publications.latest()
            uow.rule_versions.add(version, version_of(files), files, at=now, by=author.name)
            uow.proposals.add(
                ProposalRecord(
                    version=version,
                    proposed_by=author.name,
                    proposed_at=now,
                    against_version=None if live is None else live.version,
                    clean=clean,
                    report=json.dumps(report, ensure_ascii=False, sort_keys=True, default=str),
                )
            )
            self._audit(uow, author.name, "proposed", version, {"clean": clean}, origin)
            uow.commit()
            record = uow.proposals.get(version)
            assert record is not None
            return self._proposal(uow, record), True

    def review(self, prefix: str, *, reviewer: User, approve: bool, comment: str | None, origin: str) -> Review:
        """Approve or reject a version against the version live now (an approver other than its author)."""
        version = self.resolve(prefix)
        verdict = "approve" if approve else "reject"
        if not reviewer.may("approver"):
            raise NotPermitted(f"{reviewer.name} is {_article(reviewer.role)}: only an approver reviews a version")
        with self._unit_of_work(write=True) as uow:
            proposal = uow.proposals.get(version)
            author = None if proposal is None else proposal.proposed_by
            if author == reviewer.name:
                raise NotPermitted(
                    f"{reviewer.name} proposed version {shown(version)}: an approver other than its author must "
                    "review it"
                )
            if author is not None and reviewer.name in uow.console_audit.actors(author, ACCOUNT_MAKERS):
                # Otherwise one approver could add an author account of their own and approve what it proposes.
                raise NotPermitted(
                    f"{reviewer.name} added {author} or set {author}'s role: another approver must review "
                    f"{author}'s proposals"
                )
            if approve and proposal is not None and not proposal.clean:
                raise PublicationRefused(
                    f"version {shown(version)} cannot be approved: its report found problems (lint, contract or "
                    "cases); fix them and propose again"
                )
            live = uow.publications.latest()
            record = uow.reviews.add(
                version,
                reviewer.name,
                verdict,
                comment=comment,
                against_publication=None if live is None else live.id,
                at=self._now(),
            )
            detail: dict[str, object] = {"against_version": None if live is None else live.version}
            if comment:
                detail["comment"] = comment
            self._audit(uow, reviewer.name, "approved" if approve else "rejected", version, detail, origin)
            uow.commit()
        return Review.of(record)

    def publish(
        self,
        prefix: str,
        *,
        actor: User,
        origin: str,
        break_glass: bool = False,
        reason: str | None = None,
    ) -> Publication:
        """Move the live pointer to a version: approved (policy `required`), unreviewed (policy `off`) or
        break-glass (one approver, with a reason). The version must pass the go-live gate."""
        version = self.resolve(prefix)
        if not actor.may("author"):
            raise NotPermitted(f"{actor.name} is {_article(actor.role)}: publishing needs an author or an approver")
        if break_glass:
            if not actor.may("approver"):
                raise NotPermitted(f"{actor.name} is {_article(actor.role)}: only an approver publishes break-glass")
            if not (reason or "").strip():
                raise ConsoleError("a break-glass publication needs --reason TEXT")
        self._gate(version)
        with self._unit_of_work(write=True) as uow:
            live = uow.publications.latest()
            if live is not None and live.version == version:
                raise PublicationRefused(f"version {shown(version)} is live already (publication {live.id})")
            approval_id = None
            if break_glass:
                kind = "break_glass"
            elif uow.approval_policy.current() == "off":
                kind = "unreviewed"
            else:
                approval = self._approval(uow, version, None if live is None else live.id)
                if approval.review is None:
                    raise PublicationRefused(
                        f"version {shown(version)} cannot be published: {approval.why_not} "
                        "(the approval policy is `required`)"
                    )
                kind, approval_id = "approved", approval.review.id
            from app.persistence.rule_versions import PublicationRaced

            try:
                record = uow.publications.append(
                    version,
                    kind,
                    at=self._now(),
                    by=actor.name,
                    after=None if live is None else live.id,
                    approval_id=approval_id,
                    reason=reason if break_glass else None,
                )
            except PublicationRaced as exc:
                raise PublicationRefused(f"version {shown(version)} was not published: {exc}; try again") from exc
            detail: dict[str, object] = {
                "kind": kind,
                "publication": record.id,
                "previous_version": None if live is None else live.version,
            }
            if reason and break_glass:
                detail["reason"] = reason
            self._audit(uow, actor.name, "published", version, detail, origin)
            uow.commit()
        return Publication.of(record)

    def set_approval_policy(self, policy: str, *, actor: User, origin: str) -> None:
        """`required` or `off`: an approver's act, audited."""
        if policy not in POLICIES:
            raise ConsoleError(f"{policy[:32]!r} is not an approval policy: use required or off")
        if not actor.may("approver"):
            raise NotPermitted(f"{actor.name} is {_article(actor.role)}: only an approver sets the approval policy")
        with self._unit_of_work(write=True) as uow:
            before = uow.approval_policy.current()
            uow.approval_policy.set(policy, by=actor.name, at=self._now())
            self._audit(
                uow, actor.name, "approval_policy_set", "approval-policy", {"from": before, "to": policy}, origin
            )
            uow.commit()

    def adopt(self, files: Mapping[str, bytes], *, by: str, origin: str) -> Publication | None:
        """Make `files` the first published version, recorded as adopted, when nothing is published yet (an
        upgrade from a release that ran RULES_DIR); None when something is (another host adopted first)."""
        from app.persistence.rule_versions import PublicationRaced

        check_tree(files)
        version = version_id(files)
        with self._unit_of_work(write=True) as uow:
            if uow.publications.latest() is not None:
                return None
            uow.rule_versions.add(version, version_of(files), files, at=self._now(), by=by)
            try:
                record = uow.publications.append(version, "adopted", at=self._now(), by=by, after=None)
            except PublicationRaced:
                return None
            self._audit(uow, by, "adopted", version, {"publication": record.id}, origin)
            uow.commit()
        return Publication.of(record)

    def refusal(self, publication: Publication) -> str | None:
        """Why a publication may not run (None: it may): what a worker asks before running the live version,
        so a pointer moved in the database by hand, past the four eyes, is not run."""
        with self._unit_of_work() as uow:
            return self._refusal(uow, publication)

    # -- rules of the game ----------------------------------------------------------------------------------

    def _refusal(self, uow: UnitOfWork, publication: Publication) -> str | None:
        name = "it"  # the caller names the publication
        if publication.kind == "adopted":
            return None if publication.id == 1 else f"{name} claims to be adopted, which only the first publication is"
        if publication.kind == "break_glass":
            if not (publication.reason or "").strip():
                return f"{name} is break-glass without a reason"
            if uow.console_users.get(publication.published_by) is None:
                return f"{name} is break-glass by {publication.published_by[:64]!r}, who is no console user"
            return None
        if publication.kind == "unreviewed":
            if uow.approval_policy.at(publication.published_at) == "off":
                return None
            return f"{name} was published unreviewed while the approval policy was `required`"
        if publication.kind == "approved":
            review = None if publication.approval_id is None else uow.reviews.get(publication.approval_id)
            proposal = uow.proposals.get(publication.version)
            author = None if proposal is None else proposal.proposed_by
            if (
                review is None
                or review.version != publication.version
                or review.verdict != "approve"
                or review.reviewer == author
                or uow.console_users.get(review.reviewer) is None
                or review.reviewed_at > publication.published_at
                or review.against_publication != (publication.id - 1 if publication.id > 1 else None)
            ):
                return f"{name} names no valid approval by an approver other than its author"
            return None
        return f"{name} is of an unknown kind {publication.kind[:32]!r}"

    def _approval(self, uow: UnitOfWork, version: str, live_id: int | None) -> Approval:
        """The approval that lets version be published now, or why there is none."""
        proposal = uow.proposals.get(version)
        author = None if proposal is None else proposal.proposed_by
        reviews = [Review.of(r) for r in uow.reviews.of(version)]
        current = [r for r in reviews if r.against_publication == live_id]
        if current:
            latest = current[-1]
            if latest.verdict == "reject":
                return Approval(None, f"{latest.reviewer} rejected it")
            if latest.reviewer != author and self._active_approver(uow, latest.reviewer):
                return Approval(latest, "")
            if latest.reviewer != author:
                return Approval(
                    None, f"the approval by {latest.reviewer} no longer counts: they are not an active approver now"
                )
        approvals = [r for r in reviews if r.verdict == "approve" and r.reviewer != author]
        if approvals:
            last = approvals[-1]
            return Approval(
                None,
                f"the approval by {last.reviewer} is void: it was given against publication "
                f"{last.against_publication}, and another version went live since; it needs a new approval",
            )
        return Approval(None, "it has no approval by an approver other than its author")

    @staticmethod
    def _active_approver(uow: UnitOfWork, name: str) -> bool:
        record = uow.console_users.get(name)
        return record is not None and not record.disabled and record.role == "approver"

    def _confirmed(self, uow: UnitOfWork, publication: PublicationRecord) -> bool:
        """Whether another approver approved the version while this publication, or a later one, was live (ordered
        by publication ids, never by two hosts' clocks)."""
        return any(
            r.verdict == "approve"
            and r.reviewer != publication.published_by
            and r.against_publication is not None
            and r.against_publication >= publication.id
            for r in uow.reviews.of(publication.version)
        )

    def _proposal(self, uow: UnitOfWork, record: Any) -> Proposal:
        live = uow.publications.latest()
        live_id = None if live is None else live.id
        reviews = tuple(Review.of(r) for r in uow.reviews.of(record.version))
        if live is not None and live.version == record.version:
            state = "live"
        elif not record.clean:
            state = "broken"
        else:
            approval = self._approval(uow, record.version, live_id)
            current = [r for r in reviews if r.against_publication == live_id]
            if approval.review is not None:
                state = "approved"
            elif current and current[-1].verdict == "reject":
                state = "rejected"
            elif "void" in approval.why_not or "no longer counts" in approval.why_not:
                state = "approval void"
            elif uow.publications.of_version(record.version):
                state = "published before"
            else:
                state = "pending"
        return Proposal(
            version=record.version,
            author=record.proposed_by,
            proposed_at=record.proposed_at,
            against_version=record.against_version,
            clean=record.clean,
            state=state,
            reviews=reviews,
            report=json.loads(record.report),
        )

    def _gate(self, version: str) -> None:
        """Refuse a version that may not go live: lint (the contract included) and its cases."""
        if self._load_request is None:
            raise ConsoleError("publishing needs the request loader (a wiring mistake)")
        directory = self.directory(version)
        try:
            load_clean(directory, self._load_request)
        except RuleSetInvalid as exc:
            # named inside the version (cases/catalog.yaml:38:1), not by the folder it was written out to
            first = "; ".join(str(p).removeprefix(f"{directory}/") for p in exc.problems[:3])
            more = f" (and {len(exc.problems) - 3} more)" if len(exc.problems) > 3 else ""
            raise PublicationRefused(f"version {shown(version)} may not go live: {first}{more}") from exc

    def _root(self) -> Path:
        if self._versions_dir is None:
            self._versions_dir = Path(tempfile.mkdtemp(prefix="rule-versions-"))
        return self._versions_dir

    def _audit(
        self, uow: UnitOfWork, actor: str, action: str, version: str, detail: dict[str, object], origin: str
    ) -> None:
        uow.console_audit.append(
            at=self._now(), actor=actor, action=action, target=version, detail=detail, origin=origin
        )


def _article(role: str) -> str:
    return ("an " if role[0] in "aeiou" else "a ") + role
