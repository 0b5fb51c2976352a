"""PermissionService: one transaction per request — lock the account, evaluate, write, audit."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from app import metrics
from app.errors import (
    AccountDeregistered,
    AccountNotFound,
    DomainError,
    ServiceUnavailable,
    StorageBusy,
    StorageError,
    StorageTimeout,
    Unauthenticated,
    WriteFailed,
)
from app.rules.runtime.answer import Answer, answer_of
from app.rules.runtime.decision import decide
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.runtime.record import DecisionRecord
from app.service.authentication import (
    check_recorded,
    ensure_current,
    record_signature,
    signature_to_record,
    spend_signature,
)
from app.service.busy import account_busy
from app.service.idempotency import KEY_REFUSALS, SUCCESS, IdempotencyKeys, answer_for
from app.service.model import (
    AccountPermissions,
    AppliedChange,
    Caller,
    IdempotencyRequest,
    PermissionView,
    StoredAnswer,
    UpdateResult,
)
from app.service.tenant_config import EnabledPermissions

if TYPE_CHECKING:  # the service gets its unit of work injected; it never imports the database library
    from app.persistence.decision_state import LockedState
    from app.persistence.repositories import AccountRecord
    from app.persistence.unit_of_work import UnitOfWork

log = structlog.get_logger("app.decision")


class LiveRules(Protocol):
    """Gives the rule set that is live now."""

    def refresh(self) -> DurableRulesEngine:
        """The engine to judge this request with, after taking a rule set reloaded since the last request."""
        ...


@dataclass(frozen=True)
class _Decision:
    """What the rules made of a request: the answer and its record; the changes to write when it is accepted."""

    account_id: int
    record: DecisionRecord
    answer: Answer
    applied: tuple[AppliedChange, ...] = ()


class PermissionService:
    """Applies and reads trade permissions."""

    def __init__(
        self,
        *,
        unit_of_work: Callable[..., UnitOfWork],
        rules: LiveRules,
        enabled: EnabledPermissions,
        keys: IdempotencyKeys | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._unit_of_work = unit_of_work
        self._keys = keys or IdempotencyKeys()
        self._rules = rules
        self._enabled = enabled
        self._clock = clock

    def update(
        self,
        *,
        caller: Caller,
        account_no: str,
        changes: Sequence[Mapping[str, Any]],
        trace_id: str,
        idempotency: IdempotencyRequest | None = None,
    ) -> UpdateResult:
        """Validate every change in order and apply them all atomically, or raise the first failure.

        With an idempotency key, a repeat of an answered request gets its stored answer instead.
        """
        started = time.perf_counter()
        engine = self._rules.refresh()  # the request's one look for a new rule set

        def decided(
            outcome: str, code: int, failure_index: int, rule_id: str | None, hits: tuple[tuple[str, str], ...] = ()
        ) -> None:
            metrics.DECISIONS.labels(outcome=outcome, code=str(code), rule_id=rule_id or "").inc()
            for hit_rule, enforcement in hits:
                metrics.POLICY_HITS.labels(rule_id=hit_rule, enforcement=enforcement).inc()
            log.info(
                "decision",
                outcome=outcome,
                tenant=caller.tenant_id,
                app_key=caller.app_key,
                account_no=account_no,
                code=code,
                failure_index=failure_index,
                rule_id=rule_id,
                rule_set_version=engine.version,
                warned_by=[r for r, e in hits if e == "warn"],
                dryrun_by=[r for r, e in hits if e == "dryrun"],
                changes=len(changes),
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )

        try:
            result = self._update(engine, caller, account_no, changes, trace_id, idempotency)
        except Unauthenticated:  # a replay: refused before anything was decided
            raise
        except DomainError as exc:
            decided("rejected", int(exc.code), exc.failure_index, exc.rule_id, exc.policy_hits)
            raise
        if result.replayed is not None:
            metrics.IDEMPOTENT_REPEATS.inc()
            answer = result.replayed
            decided("replayed", answer.code, answer.failure_index, answer.rule_id)
        else:
            hits = tuple((w.rule_id, "warn") for w in result.warnings) + tuple((r, "dryrun") for r in result.dryrun_by)
            decided("applied", 0, 0, None, hits)
        return result

    def _update(
        self,
        engine: DurableRulesEngine,
        caller: Caller,
        account_no: str,
        changes: Sequence[Mapping[str, Any]],
        trace_id: str,
        idempotency: IdempotencyRequest | None,
    ) -> UpdateResult:
        try:
            with self._unit_of_work(write=True) as uow:
                if idempotency is None:  # the signature first, a replay goes no further; with the lock and reads
                    state = uow.decision_states.lock(
                        tenant_id=caller.tenant_id, account_no=account_no, signature=signature_to_record(uow, caller)
                    )
                    check_recorded(caller, state.signature)
                else:
                    record_signature(uow, caller)  # first: a replay goes no further
                    stored = self._keys.claim(uow, caller, idempotency)
                    if stored is not None:
                        uow.commit()  # the signature: this repeat was accepted
                        return UpdateResult(replayed=stored)
                    state = uow.decision_states.lock(tenant_id=caller.tenant_id, account_no=account_no, signature=None)
                try:
                    decision = self._decide(uow, engine, caller, state, account_no, changes, trace_id)
                except DomainError as refused:  # the account is missing or deregistered
                    self._keep_rejection(uow, caller, idempotency, refused, None)
                    raise
                answer = decision.answer
                refusal = answer.refusal()
                if refusal is not None:
                    refusal.policy_hits = tuple(
                        (h.rule.id, h.rule.enforcement) for h in answer.warnings + answer.dryruns
                    )
                    self._keep_rejection(uow, caller, idempotency, refusal, decision.record)
                    raise refusal
                # The answer's data is rendered (warning messages) before the write: nothing can fail after it.
                _ = answer.data
                result = UpdateResult(applied=decision.applied, answer=answer)
                self._write(uow, caller, decision, trace_id, engine.version, idempotency)
                return result
        except KEY_REFUSALS:  # rolled back with the signature, which authenticated: spend it
            spend_signature(partial(self._unit_of_work, write=True), caller)
            raise
        except DomainError:
            raise
        except StorageBusy as exc:  # the account's lock, held by another request past the bound: nothing was done
            raise account_busy(
                exc, account_no=account_no, caller=caller, unit_of_work=partial(self._unit_of_work, write=True)
            ) from exc
        except StorageError as exc:
            raise ServiceUnavailable.database(exc) from exc

    def _decide(
        self,
        uow: UnitOfWork,
        engine: DurableRulesEngine,
        caller: Caller,
        state: LockedState,
        account_no: str,
        changes: Sequence[Mapping[str, Any]],
        trace_id: str,
    ) -> _Decision:
        """Run the rules on the locked account: the changes to apply, or the first rejection."""
        account = _existing(state.account, account_no)
        patterns = self._enabled.patterns(
            uow.tenant_configs, tenant_id=caller.tenant_id, config_version=account.config_version
        )
        current = {t: p.status for t, p in state.permissions.items()}
        decision_input = DecisionInput.of(
            tenant_id=caller.tenant_id,
            patterns=patterns,
            changes=changes,
            stored=current,
            account_status=account.status,
            attributes=getattr(account, "attributes", None),
            at=self._clock(),
        )
        with metrics.RULE_EVALUATION_SECONDS.time():
            decision = decide(engine, decision_input)
        answer = answer_of(decision)  # a refusal's message is rendered here, outside the evaluation's time
        record = DecisionRecord.of(
            decision_input,
            answer,
            trace_id=trace_id,
            account_no=account.account_no,
            rule_set_version=engine.version,
            published_version=engine.published_version,  # the version that judged: no second look at LiveRules
        )
        if not answer.accepted:
            return _Decision(account.id, record, answer)
        applied = tuple(
            AppliedChange(c["permission_type"], current.get(c["permission_type"], "close"), c["permission_status"])
            for c in changes
        )
        return _Decision(account.id, record, answer, applied)

    def _write(
        self,
        uow: UnitOfWork,
        caller: Caller,
        decision: _Decision,
        trace_id: str,
        rule_set_version: str,
        idempotency: IdempotencyRequest | None,
    ) -> None:
        now = self._clock()
        try:
            with uow.committing(), uow.writing():  # the writes and the commit: one round trip on PostgreSQL
                self._write_statements(uow, caller, decision, trace_id, rule_set_version, idempotency, now)
        except (StorageBusy, StorageTimeout):  # a wait past a bound, not a refused write: 409003 / 503001
            raise
        except StorageError as exc:
            log.error("write_failed", error=exc.kind, detail=str(exc)[:200])
            raise WriteFailed("the change could not be written; nothing was persisted") from exc

    def _write_statements(
        self,
        uow: UnitOfWork,
        caller: Caller,
        decision: _Decision,
        trace_id: str,
        rule_set_version: str,
        idempotency: IdempotencyRequest | None,
        now: datetime,
    ) -> None:
        applied = decision.applied
        uow.decisions.record(**decision.record.row())
        uow.permissions.set_many(decision.account_id, [(a.permission_type, a.status_after) for a in applied], now)
        uow.audit.append(
            {
                "trace_id": trace_id,
                "tenant_id": caller.tenant_id,
                "app_key": caller.app_key,
                "account_no": decision.record.account_no,
                "permission_type": a.permission_type,
                "status_before": a.status_before,
                "status_after": a.status_after,
                "rule_set_version": rule_set_version,
                "created_at": now,
                "warned_by": json.dumps([h.rule.id for h in decision.answer.warnings if h.index == index]),
            }
            for index, a in enumerate(applied)
        )
        if idempotency is not None:
            self._keys.answer(uow, caller, idempotency, SUCCESS)

    def _keep_rejection(
        self,
        uow: UnitOfWork,
        caller: Caller,
        idempotency: IdempotencyRequest | None,
        error: DomainError,
        record: DecisionRecord | None,
    ) -> None:
        """Commit what a rejected request leaves behind, in one commit: its signature, its decision record and its
        idempotency answer."""
        if record is None and idempotency is None and caller.signature is None:
            return
        try:
            with uow.committing(), uow.writing():
                if record is not None:
                    uow.decisions.record(**record.row())
                if idempotency is not None:
                    self._keys.answer(uow, caller, idempotency, answer_for(error))
        except StorageError as exc:
            log.warning("rejection_not_recorded", error=exc.kind)

    def remember_rejection(
        self, *, caller: Caller, idempotency: IdempotencyRequest, error: DomainError
    ) -> StoredAnswer | None:
        """Keep a rejection found before the rules (a malformed body) under its key; a repeat gets the first."""
        stored = self._keys.remember(self._unit_of_work, caller, idempotency, error)
        if stored is not None:
            metrics.IDEMPOTENT_REPEATS.inc()
        return stored

    def read(self, *, caller: Caller, account_no: str) -> AccountPermissions:
        """The account's status, attributes and every permission its tenant's config enables, in catalog order."""
        engine = self._rules.refresh()  # the request's one look for a new rule set
        try:
            with self._unit_of_work() as uow:
                account = self._account(uow, caller, account_no)
                ensure_current(caller, account.credentials_version)
                patterns = self._enabled.patterns(
                    uow.tenant_configs, tenant_id=caller.tenant_id, config_version=account.config_version
                )
                stored = uow.permissions.of(account.id)
        except DomainError:
            raise
        except StorageError as exc:
            raise ServiceUnavailable.database(exc) from exc
        views = []
        for permission_type in self._enabled.values(engine.rule_set.catalog, engine.version, patterns):
            found = stored.get(permission_type)
            views.append(
                PermissionView(permission_type, found.status, found.updated_at)
                if found
                else PermissionView(permission_type, "close", None)
            )
        return AccountPermissions(account.account_no, account.status, tuple(views), account.attributes)

    @staticmethod
    def _account(uow: UnitOfWork, caller: Caller, account_no: str) -> AccountRecord:
        account = uow.accounts.get(tenant_id=caller.tenant_id, account_no=account_no, lock=False)
        if account is None and caller.credentials_version is not None and caller.signature is None:
            # A read has no account row to carry its tenant's credentials version (a POST's credential was checked
            # when its signature was recorded): one statement, on this path only.
            ensure_current(caller, uow.credentials.version(caller.tenant_id))
        return _existing(account, account_no, allow_deregistered=True)


def _existing(account: AccountRecord | None, account_no: str, *, allow_deregistered: bool = False) -> AccountRecord:
    """The account, if there is one a request may use (AccountNotFound, AccountDeregistered)."""
    if account is None:
        raise AccountNotFound(f"account_no '{account_no}': no such account")
    if account.status == "deregistered" and not allow_deregistered:
        raise AccountDeregistered(f"account_no '{account_no}': the account is deregistered")
    return account
