"""Stored rule-set versions and their sign-off trail (SPEC §7d): versions and files, publications (the live
pointer is the latest), proposals with their reports, reviews, and the approval policy. Every table here is
append-only (migration 0008): these classes only insert and read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.persistence.models import (
    ApprovalPolicyChange,
    RuleSetFile,
    RuleSetProposal,
    RuleSetPublication,
    RuleSetReview,
    RuleSetVersion,
)

DEFAULT_APPROVAL_POLICY = "required"


@dataclass(frozen=True)
class StoredVersion:
    """A version as stored: its id (the content hash of every file) and the rule-set version it decides as."""

    version: str
    rule_set_version: str
    stored_at: datetime
    stored_by: str


@dataclass(frozen=True)
class PublicationRecord:
    """One move of the live pointer."""

    id: int
    version: str
    kind: str
    published_at: datetime
    published_by: str
    approval_id: int | None
    reason: str | None


@dataclass(frozen=True)
class ProposalRecord:
    """A proposal and the report computed when it was made (JSON text)."""

    version: str
    proposed_by: str
    proposed_at: datetime
    against_version: str | None
    clean: bool
    report: str


@dataclass(frozen=True)
class ReviewRecord:
    """An approval or a rejection, against the live publication of its moment."""

    id: int
    version: str
    reviewer: str
    verdict: str
    comment: str | None
    against_publication: int | None
    reviewed_at: datetime


class PublicationRaced(Exception):
    """Another publication took the next id first: the live pointer moved meanwhile."""


def _publication(row: RuleSetPublication) -> PublicationRecord:
    return PublicationRecord(
        row.id, row.version, row.kind, row.published_at, row.published_by, row.approval_id, row.reason
    )


def _review(row: RuleSetReview) -> ReviewRecord:
    return ReviewRecord(
        row.id, row.version, row.reviewer, row.verdict, row.comment, row.against_publication, row.reviewed_at
    )


class RuleSetVersions:
    """Versions and their files."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, version: str) -> StoredVersion | None:
        row = self.session.get(RuleSetVersion, version)
        return None if row is None else StoredVersion(row.version, row.rule_set_version, row.stored_at, row.stored_by)

    def add(self, version: str, rule_set_version: str, files: Mapping[str, bytes], *, at: datetime, by: str) -> bool:
        """Store a version unless it is stored already (the same id means the same files); whether it was new."""
        if self.session.get(RuleSetVersion, version) is not None:
            return False
        self.session.add(RuleSetVersion(version=version, rule_set_version=rule_set_version, stored_at=at, stored_by=by))
        self.session.flush()
        self.session.add_all(RuleSetFile(version=version, path=path, content=data) for path, data in files.items())
        self.session.flush()
        return True

    def files(self, version: str) -> dict[str, bytes]:
        """The files of a version, by path (empty when it is not stored)."""
        query = select(RuleSetFile.path, RuleSetFile.content).where(RuleSetFile.version == version)
        return {path: bytes(content) for path, content in self.session.execute(query.order_by(RuleSetFile.path))}

    def starting_with(self, prefix: str, limit: int = 2) -> list[str]:
        """Up to `limit` version ids starting with prefix (lower-case hex)."""
        query = select(RuleSetVersion.version).where(RuleSetVersion.version.startswith(prefix, autoescape=True))
        return list(self.session.scalars(query.order_by(RuleSetVersion.version).limit(limit)))

    def deciding_as(self, rule_set_version: str) -> str | None:
        """The earliest stored version that decides as rule_set_version (all such versions decide alike)."""
        query = select(RuleSetVersion.version).where(RuleSetVersion.rule_set_version == rule_set_version)
        return self.session.scalar(query.order_by(RuleSetVersion.stored_at, RuleSetVersion.version).limit(1))


class Publications:
    """The moves of the live pointer; the latest is live."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def latest(self) -> PublicationRecord | None:
        row = self.session.scalar(select(RuleSetPublication).order_by(RuleSetPublication.id.desc()).limit(1))
        return None if row is None else _publication(row)

    def get(self, publication_id: int) -> PublicationRecord | None:
        row = self.session.get(RuleSetPublication, publication_id)
        return None if row is None else _publication(row)

    def before(self, publication_id: int | None, limit: int = 50) -> list[PublicationRecord]:
        """The publications before publication_id (all when None), newest first."""
        query = select(RuleSetPublication)
        if publication_id is not None:
            query = query.where(RuleSetPublication.id < publication_id)
        rows = self.session.scalars(query.order_by(RuleSetPublication.id.desc()).limit(limit))
        return [_publication(row) for row in rows]

    def of_version(self, version: str) -> list[PublicationRecord]:
        query = select(RuleSetPublication).where(RuleSetPublication.version == version)
        return [_publication(row) for row in self.session.scalars(query.order_by(RuleSetPublication.id))]

    def of_kind(self, kind: str) -> list[PublicationRecord]:
        query = select(RuleSetPublication).where(RuleSetPublication.kind == kind)
        return [_publication(row) for row in self.session.scalars(query.order_by(RuleSetPublication.id))]

    def append(
        self,
        version: str,
        kind: str,
        *,
        at: datetime,
        by: str,
        after: int | None,
        approval_id: int | None = None,
        reason: str | None = None,
    ) -> PublicationRecord:
        """Move the live pointer, taking the id after `after` (the live publication the caller judged against):
        PublicationRaced when another publication took it first."""
        next_id = (after or 0) + 1
        current = self.session.scalar(select(func.max(RuleSetPublication.id)))
        if (current or 0) != (after or 0):
            raise PublicationRaced(f"the live pointer moved to publication {current} meanwhile")
        row = RuleSetPublication(
            id=next_id,
            version=version,
            kind=kind,
            published_at=at,
            published_by=by,
            approval_id=approval_id,
            reason=reason,
        )
        try:
            self.session.add(row)
            self.session.flush()
        except IntegrityError as exc:  # the transaction is over: the caller's unit of work rolls back
            raise PublicationRaced(f"publication {next_id} was taken meanwhile") from exc
        return _publication(row)


class Proposals:
    """Proposed versions, each with its report."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, version: str) -> ProposalRecord | None:
        row = self.session.get(RuleSetProposal, version)
        return None if row is None else self._record(row)

    def all(self) -> list[ProposalRecord]:
        query = select(RuleSetProposal).order_by(RuleSetProposal.proposed_at, RuleSetProposal.version)
        return [self._record(row) for row in self.session.scalars(query)]

    def add(self, record: ProposalRecord) -> None:
        self.session.add(
            RuleSetProposal(
                version=record.version,
                proposed_by=record.proposed_by,
                proposed_at=record.proposed_at,
                against_version=record.against_version,
                clean=record.clean,
                report=record.report,
            )
        )
        self.session.flush()

    @staticmethod
    def _record(row: RuleSetProposal) -> ProposalRecord:
        return ProposalRecord(row.version, row.proposed_by, row.proposed_at, row.against_version, row.clean, row.report)


class Reviews:
    """Approvals and rejections."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(
        self,
        version: str,
        reviewer: str,
        verdict: str,
        *,
        comment: str | None,
        against_publication: int | None,
        at: datetime,
    ) -> ReviewRecord:
        row = RuleSetReview(
            version=version,
            reviewer=reviewer,
            verdict=verdict,
            comment=comment,
            against_publication=against_publication,
            reviewed_at=at,
        )
        self.session.add(row)
        self.session.flush()
        return _review(row)

    def get(self, review_id: int) -> ReviewRecord | None:
        row = self.session.get(RuleSetReview, review_id)
        return None if row is None else _review(row)

    def of(self, version: str) -> list[ReviewRecord]:
        """The reviews of a version, oldest first."""
        query = select(RuleSetReview).where(RuleSetReview.version == version).order_by(RuleSetReview.id)
        return [_review(row) for row in self.session.scalars(query)]


class ApprovalPolicy:
    """The approval policy's history; the latest change rules."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def current(self) -> str:
        query = select(ApprovalPolicyChange.policy).order_by(ApprovalPolicyChange.id.desc()).limit(1)
        return self.session.scalar(query) or DEFAULT_APPROVAL_POLICY

    def at(self, when: datetime) -> str:
        """The policy in force at a moment."""
        query = (
            select(ApprovalPolicyChange.policy)
            .where(ApprovalPolicyChange.changed_at <= when)
            .order_by(ApprovalPolicyChange.id.desc())
            .limit(1)
        )
        return self.session.scalar(query) or DEFAULT_APPROVAL_POLICY

    def set(self, policy: str, *, by: str, at: datetime) -> None:
        self.session.add(ApprovalPolicyChange(policy=policy, changed_by=by, changed_at=at))
        self.session.flush()
