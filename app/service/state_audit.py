"""The state audit (`permctl rules audit-state`, SPEC §7c): every active account's open permissions judged
against a rule set's holding policies, read from one consistent snapshot in batches of accounts, never written.

The service reads (through the injected read-only snapshot) and hands each account's state to the rules' state
judge (app/rules/tools/audit_state/); it speaks no SQL and judges nothing itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from app.errors import DomainError
from app.rules.language.model import RuleSet
from app.rules.tools.audit_state.judge import Holding, StateJudge
from app.rules.tools.audit_state.report import StateAudit

if TYPE_CHECKING:  # injected: the service never imports the database library
    from app.persistence.snapshot import ReadOnlySnapshot

BATCH_SIZE = 1000
ACTIVE, DEREGISTERED = "active", "deregistered"


class UnknownTenant(DomainError):
    """--tenant names a tenant the database does not have."""


class Progress(Protocol):
    """Told how many accounts there are to judge, then how many each batch judged."""

    def start(self, total: int) -> None: ...

    def advance(self, accounts: int) -> None: ...


class _Silent:
    def start(self, total: int) -> None:
        return None

    def advance(self, accounts: int) -> None:
        return None


def audit_state(
    *,
    snapshot: Callable[[], ReadOnlySnapshot],
    rule_set: RuleSet,
    judged_at: datetime,
    tenant_id: str | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
) -> StateAudit:
    """Judge every active account (of tenant_id, if given) at judged_at; deregistered accounts are counted."""
    told = progress or _Silent()
    audit = StateAudit(rule_set, judged_at)
    with snapshot() as snap:
        if tenant_id is not None and not snap.tenants.existing([tenant_id]):
            raise UnknownTenant(f"no tenant '{tenant_id}'")
        patterns = snap.tenant_configs.every()
        audit.accounts_skipped = snap.account_states.count(status=DEREGISTERED, tenant_id=tenant_id)
        told.start(snap.account_states.count(status=ACTIVE, tenant_id=tenant_id))
        judge = StateJudge(rule_set, at=judged_at, patterns=patterns)
        try:
            after = 0
            while batch := snap.account_states.active_batch(after_id=after, size=batch_size, tenant_id=tenant_id):
                for held in batch:
                    holding = Holding(held.tenant_id, held.account_no, held.open_permissions, held.attributes)
                    audit.add(holding, judge.judge(holding))
                after = batch[-1].account_id
                told.advance(len(batch))
        finally:
            judge.release()
    return audit
