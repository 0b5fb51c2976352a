"""AccountService: the broker's accounts as it sends them (SPEC §5a), one request or a batch of thousands.

An upsert creates the account or updates its status and attributes; attributes given replace the stored set
as a whole, attributes omitted (None) keep it, `{}` clears it. Names and values must be declared in
rules/attributes.yaml (400001 naming the field and value). An attribute declared `deprecated` is accepted with
any value but dropped: the set written lacks it (so attributes given also remove a stored value of it), and the
answer warns (`data.warnings`, one per dropped attribute). `deregistered` is final: any change to a
deregistered account, reactivation included, is refused (409001), while a repeat that changes nothing is a
success. Every effective change is one account audit row; a request that changes nothing writes none.

The API, `permctl accounts import` and `permctl load` all come through `apply_upserts`, so there is one
validation and one audit. Each account's row is locked (in id order for a batch) before it is read, as the permission
update locks it, so the two routes see each other's writes in some sequential order.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog

from app.errors import (
    AccountBusy,
    AccountDeregistered,
    DomainError,
    InvalidRequest,
    ServiceUnavailable,
    StorageBusy,
    StorageError,
    StorageTimeout,
    WriteFailed,
)
from app.persistence.accounts import AccountAuditRecord, AccountKey, AccountRecord, AttributeChange
from app.persistence.unit_of_work import UnitOfWork
from app.rules.language.attributes import AttributeSet
from app.rules.language.model import RuleSet
from app.service.authentication import record_signature, spend_signature
from app.service.busy import account_busy
from app.service.idempotency import KEY_REFUSALS, IdempotencyKeys, answer_for
from app.service.model import ACCOUNT_STATUSES, Caller, IdempotencyRequest, StoredAnswer
from app.service.stored_attributes import StrippedAccount, StripReport, refused_holdings, refused_of

log = structlog.get_logger("app.accounts")

_RETRIES = 3  # a request that met its account created concurrently is run again (it then finds the account)
# An account created by another writer after a batch looked it up is planned again inside the batch's
# transaction (apply_upserts). What that cannot settle (a lock past a bound; an account met but not readable)
# rolls the attempt back: the batch (permctl accounts import) is planned again from what is stored then and run
# after a back-off, up to _BATCH_ATTEMPTS attempts in all; then the upserts of the accounts still contended are
# refused (AccountBusy) and the rest is written. Each attempt after the last back-off refuses at least one more
# upsert, so the loop ends.
_BATCH_ATTEMPTS = 5
_BACKOFF_FIRST = 0.025  # seconds; doubled each attempt up to _BACKOFF_MOST, half of it random (jitter)
_BACKOFF_MOST = 0.8
BUSY = "busy, retry"
STRIP_ACTOR = "strip-undeclared"  # the app key of the audit rows of `permctl accounts strip-undeclared`
STRIP_PAGE = 500  # accounts locked, checked and written per transaction by a strip


class Outcome(StrEnum):
    """What an upsert did to the account."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class AccountUpsert:
    """One account as a caller wants it. attributes None keeps the stored set; {} clears it."""

    caller: Caller
    account_no: str
    status: str
    attributes: Mapping[str, str] | None
    trace_id: str


@dataclass(frozen=True)
class AttributeWarning:
    """An attribute the upsert named that was accepted but not stored (it is deprecated): data.warnings."""

    attribute: str
    message: str


@dataclass(frozen=True)
class UpsertResult:
    """The account after an upsert and what the upsert did; or the stored answer of an identical request."""

    outcome: Outcome
    account_no: str
    status: str
    attributes: Mapping[str, str]
    account_id: int = 0
    replayed: StoredAnswer | None = None
    replanned: bool = False  # planned again: another writer created the account after this upsert looked for it
    warnings: tuple[AttributeWarning, ...] = ()  # the deprecated attributes it named, dropped

    def data(self) -> dict[str, Any]:
        """The answer's `data`, as the API returns it (and an Idempotency-Key stores it): `warnings` only when
        the upsert named a deprecated attribute."""
        data: dict[str, Any] = {
            "account_no": self.account_no,
            "status": self.status,
            "attributes": dict(self.attributes),
            "result": self.outcome.value,
        }
        if self.warnings:
            data["warnings"] = [{"attribute": w.attribute, "message": w.message} for w in self.warnings]
        return data


class InvalidAccount(InvalidRequest):
    """A field of an upsert is refused whatever is stored: an unknown status, an undeclared or disallowed attribute."""

    def __init__(self, field: tuple[str, ...], value: str, reason: str) -> None:
        super().__init__(f"{'.'.join(field)} '{value}': {reason}")
        self.field = field
        self.value = value
        self.reason = reason


class AccountsCreatedConcurrently(WriteFailed):
    """Another writer created accounts of this transaction after they were looked up; running it again finds them."""

    def __init__(self, keys: Collection[AccountKey]) -> None:
        super().__init__("an account was created concurrently; nothing was written; retry")
        self.keys = frozenset(keys)  # the accounts it met


def refusal(upsert: AccountUpsert, attributes: AttributeSet) -> InvalidAccount | None:
    """Why the upsert is invalid whatever is stored (status, undeclared or disallowed attributes), or None."""
    if upsert.status not in ACCOUNT_STATUSES:
        return InvalidAccount(("status",), upsert.status, f"must be one of {', '.join(ACCOUNT_STATUSES)}")
    for name, value in (upsert.attributes or {}).items():
        why = attributes.problem(name, value)
        if why is not None:
            return InvalidAccount(("attributes", name), value, why)
    return None


def without_deprecated(upsert: AccountUpsert, attributes: AttributeSet) -> tuple[AccountUpsert, tuple[str, ...]]:
    """The upsert as it is written (its deprecated attributes left out), and the names it left out."""
    dropped = tuple(name for name in upsert.attributes or {} if attributes.is_deprecated(name))
    if not dropped:
        return upsert, ()
    kept = {name: value for name, value in (upsert.attributes or {}).items() if name not in dropped}
    return replace(upsert, attributes=kept), dropped


@dataclass
class PlannedAccount:
    """An account of the batch being planned: as stored before the batch, and as planned so far."""

    stored: AccountRecord | None
    status: str
    attributes: dict[str, str]


def plan(state: PlannedAccount | None, upsert: AccountUpsert) -> tuple[Outcome, str, dict[str, str]]:
    """The outcome and the account's status and attributes after the upsert; AccountDeregistered when refused."""
    wanted = None if upsert.attributes is None else dict(upsert.attributes)
    if state is None:
        return Outcome.CREATED, upsert.status, wanted or {}
    attributes = state.attributes if wanted is None else wanted
    if (upsert.status, attributes) == (state.status, state.attributes):
        return Outcome.UNCHANGED, state.status, state.attributes
    if state.status == "deregistered":
        raise AccountDeregistered(
            f"account_no '{upsert.account_no}': the account is deregistered; it cannot be changed or reactivated"
        )
    return Outcome.UPDATED, upsert.status, attributes


def apply_upserts(
    uow: UnitOfWork,
    upserts: Sequence[AccountUpsert],
    *,
    attributes: AttributeSet,
    rule_set_version: str,
    clock: Callable[[], datetime],
) -> list[UpsertResult | DomainError]:
    """Validate, lock, plan and write the upserts inside the caller's transaction (the caller commits).

    Per upsert, in order: its result, or the refusal that left it out. An account named twice sees the first
    upsert's effect. The accounts' rows are locked in id order (two batches cannot deadlock) before they are
    read, and the time of their audit rows is read once they are locked (so it follows the order of the writes).

    An account another writer created after the lookup is met by the insert, which waits for that writer to
    commit and leaves it out: its row is then locked and read, and the upserts of it are planned again, as the
    updates they now are (`replanned`), in this transaction; what the batch created stands.
    AccountsCreatedConcurrently: such an account could not be read (roll back and run again); StorageBusy: a
    lock was not granted within the caller's bound; WriteFailed: a write failed (roll back).
    """
    checked = [refusal(u, attributes) for u in upserts]
    written = [without_deprecated(u, attributes) for u in upserts]
    upserts = [upsert for upsert, _ in written]
    valid = [u for u, refused in zip(upserts, checked, strict=True) if refused is None]
    stored = uow.accounts.get_many((_key(u) for u in valid), lock=True)
    states = {key: PlannedAccount(record, record.status, dict(record.attributes)) for key, record in stored.items()}
    now = clock()
    results: list[UpsertResult | DomainError | None] = [None] * len(upserts)
    audit: list[AccountAuditRecord] = []
    _plan_into(results, audit, upserts, checked, states, None, rule_set_version, now)
    try:
        with uow.writing():
            new = [(key, s.status) for key, s in states.items() if s.stored is None]
            created = uow.accounts.create_many(new, now)
            met = {key for key, _ in new} - created.keys()
            if met:
                found = uow.accounts.get_many(met, lock=True)
                if found.keys() != met:
                    raise AccountsCreatedConcurrently(met - found.keys())
                audit = [row for row in audit if (row.tenant_id, row.account_no) not in met]
                states.update({k: PlannedAccount(r, r.status, dict(r.attributes)) for k, r in found.items()})
                _plan_into(results, audit, upserts, checked, states, met, rule_set_version, clock())  # after the locks
            ids = _write(uow, states, created)
            uow.account_audit.append(audit)
    except (StorageBusy, StorageTimeout):  # a wait past a bound (e.g. for an account being created), not a refusal
        raise
    except StorageError as exc:
        raise WriteFailed("the accounts could not be written; nothing was persisted") from exc
    return _answers(upserts, results, [dropped for _, dropped in written], ids, met, attributes)


def _answers(
    upserts: Sequence[AccountUpsert],
    results: Sequence[UpsertResult | DomainError | None],
    dropped: Sequence[Sequence[str]],
    ids: Mapping[AccountKey, int],
    met: Collection[AccountKey],
    attributes: AttributeSet,
) -> list[UpsertResult | DomainError]:
    """Per upsert, its refusal, or its result with the account's id, whether it was planned again, and the
    deprecated attributes it sent that were dropped."""
    return [
        r
        if isinstance(r, DomainError)
        else _with_id(r, ids[_key(u)], replanned=_key(u) in met, dropped=d, attributes=attributes)
        for u, r, d in zip(upserts, results, dropped, strict=True)
        if r is not None
    ]


def _plan_into(
    results: list[UpsertResult | DomainError | None],
    audit: list[AccountAuditRecord],
    upserts: Sequence[AccountUpsert],
    checked: Sequence[InvalidAccount | None],
    states: dict[AccountKey, PlannedAccount],
    keys: Collection[AccountKey] | None,
    rule_set_version: str,
    now: datetime,
) -> None:
    """Plan the upserts of `keys` (None: all), in order, from states: each one's result, and an audit row per
    effective change."""
    for i, (upsert, refused) in enumerate(zip(upserts, checked, strict=True)):
        key = _key(upsert)
        if keys is not None and key not in keys:
            continue
        if refused is not None:
            results[i] = refused
            continue
        state = states.get(key)
        try:
            outcome, status, after = plan(state, upsert)
        except AccountDeregistered as exc:
            results[i] = exc
            continue
        if outcome is not Outcome.UNCHANGED:
            audit.append(_audit_row(upsert, state, status, after, rule_set_version, now))
            if state is None:
                states[key] = PlannedAccount(None, status, after)
            else:
                state.status, state.attributes = status, after
        results[i] = UpsertResult(outcome, upsert.account_no, status, after)


def _write(
    uow: UnitOfWork, states: Mapping[AccountKey, PlannedAccount], created: Mapping[AccountKey, int]
) -> dict[AccountKey, int]:
    """Write each account's planned statuses and attributes (new accounts are created); every account's id."""
    ids = {key: s.stored.id for key, s in states.items() if s.stored is not None} | dict(created)
    uow.accounts.set_statuses(
        [(s.stored.id, s.status) for s in states.values() if s.stored is not None and s.status != s.stored.status]
    )
    uow.attributes.replace(
        [
            AttributeChange(ids[key], s.stored.attributes if s.stored else {}, s.attributes)
            for key, s in states.items()
            if s.stored is None or s.attributes != s.stored.attributes
        ]
    )
    return ids


class AccountService:
    """Creates and updates accounts, their status and attributes, with an account audit trail."""

    def __init__(
        self,
        *,
        unit_of_work: Callable[[], UnitOfWork],
        rule_set: Callable[[], RuleSet],
        keys: IdempotencyKeys | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        reader: Callable[[], UnitOfWork] | None = None,
    ) -> None:
        self._unit_of_work = unit_of_work  # a writer's unit of work: one transaction, committed explicitly
        self._reader = reader or unit_of_work  # a reader's: what never writes (a dry run) takes no write lock
        self._rule_set = rule_set
        self._keys = keys or IdempotencyKeys()
        self._clock = clock
        self._sleep = sleep  # a batch's back-off between attempts

    def upsert(
        self,
        *,
        caller: Caller,
        account_no: str,
        status: str,
        attributes: Mapping[str, str] | None,
        trace_id: str,
        idempotency: IdempotencyRequest | None = None,
    ) -> UpsertResult:
        """Create or update one account, or raise why not (400001, 409001, 500001, 503001).

        With an idempotency key, a repeat of an answered request gets its stored answer instead.
        """
        started = time.perf_counter()
        upsert = AccountUpsert(caller, account_no, status, attributes, trace_id)
        try:
            result = self._upsert_one(upsert, idempotency)
        except DomainError as exc:
            if isinstance(exc, WriteFailed) and exc.__cause__ is not None:
                cause = exc.__cause__
                log.error("write_failed", error=type(cause).__name__, detail=str(cause).splitlines()[0][:200])
            self._log(upsert, "rejected", int(exc.code), started)
            raise
        self._log(upsert, "replayed" if result.replayed else result.outcome.value, 0, started)
        return result

    def upsert_batch(
        self, upserts: Sequence[AccountUpsert], *, rolled_back: Callable[[int], None] = lambda contended: None
    ) -> list[UpsertResult | DomainError]:
        """Apply every upsert in one transaction: per upsert its result, or the refusal that left it out.

        Beside other writers of the same accounts (the API beside an import), an account created after this
        transaction looked it up is planned again within it (see apply_upserts). What that cannot settle rolls
        the attempt back: an account that could not be read then, or a lock held past the bound (StorageBusy,
        when a bound is set). The batch is then planned again from what is stored and run after a back-off
        (`rolled_back` is told how many accounts were contended; 0: not known). After _BATCH_ATTEMPTS attempts
        the upserts of the accounts still contended are refused with AccountBusy ("busy, retry": running them
        again later will do) and the rest is written. A tenant that does not exist refuses the upserts that
        name it. A database failure raises (WriteFailed / ServiceUnavailable) and nothing of the batch is written.
        """
        results: list[UpsertResult | DomainError | None] = [None] * len(upserts)
        pending = list(range(len(upserts)))
        attempts = 0
        while pending:
            try:
                applied = self._batch_attempt([upserts[i] for i in pending])
            except (AccountsCreatedConcurrently, StorageBusy) as exc:
                contended = exc.keys if isinstance(exc, AccountsCreatedConcurrently) else None  # None: not known
                rolled_back(0 if contended is None else len(contended))
                attempts += 1
                if attempts < _BATCH_ATTEMPTS:
                    self._sleep(_backoff(attempts - 1))
                    continue
                for i in pending:  # still contended after the last back-off: leave them out, write the rest
                    if contended is None or _key(upserts[i]) in contended:
                        results[i] = AccountBusy(BUSY)
                pending = [i for i in pending if results[i] is None]
                continue
            except StorageError as exc:
                raise ServiceUnavailable.database(exc) from exc
            for i, result in zip(pending, applied, strict=True):
                results[i] = result
            pending = []
        return [r for r in results if r is not None]

    def _batch_attempt(self, upserts: Sequence[AccountUpsert]) -> list[UpsertResult | DomainError]:
        rule_set = self._rule_set()  # before the transaction: a worker's first look may write (an adoption)
        with self._unit_of_work() as uow:
            tenants = uow.tenants.existing({u.caller.tenant_id for u in upserts})
            known = [u for u in upserts if u.caller.tenant_id in tenants]
            applied = iter(self._apply(uow, known, rule_set))
            results = [
                next(applied) if u.caller.tenant_id in tenants else InvalidRequest(_no_tenant(u)) for u in upserts
            ]
            self._commit(uow)
            return results

    def refresh_statistics(self) -> None:
        """Let the database planner see how many accounts there are now (after many were created)."""
        try:
            with self._unit_of_work() as uow:
                uow.accounts.refresh_statistics()
                uow.commit()
        except StorageError as exc:
            raise ServiceUnavailable.database(exc) from exc

    def strip_refused_attributes(
        self,
        *,
        dry_run: bool,
        stripped: Callable[[StrippedAccount], None] = lambda account: None,
        page: int = STRIP_PAGE,
    ) -> StripReport:
        """Remove from every stored account the attributes the live declarations would not store (a name not
        declared, a value not allowed, a deprecated attribute); `stripped` is told of each account, in id order.

        Each account is locked, read again and written in a transaction of `page` accounts, its change an
        account audit row (app key and trace id name the strip) like any attribute change; a deregistered
        account is stripped too (its values are refused all the same). dry_run: the same accounts and
        removals, read without a lock, and nothing written. A database failure raises StorageError (the
        command says why); what earlier transactions stripped stays stripped, and a new run finishes the rest.
        """
        rule_set = self._rule_set()
        attributes = rule_set.attributes
        trace_id = f"{STRIP_ACTOR}-{uuid.uuid4().hex[:12]}"
        report = StripReport()
        with self._reader() as uow:
            names = {h.attribute for h in refused_holdings(uow.attributes.held_values(), attributes)}
        after = 0
        while names:
            with self._reader() if dry_run else self._unit_of_work() as uow:
                holders = uow.attributes.holders(names, after=after, limit=page)
                if not holders:
                    break
                after = holders[-1][0]
                records = uow.accounts.get_many([key for _, key in holders], lock=not dry_run)
                now = self._clock()
                planned: list[tuple[StrippedAccount, AttributeChange, AccountAuditRecord]] = []
                for record in sorted(records.values(), key=lambda r: r.id):
                    stripping = _stripping(record, attributes)
                    if stripping is not None:
                        account, kept = stripping
                        change = AttributeChange(record.id, record.attributes, kept)
                        planned.append((account, change, _strip_row(record, kept, trace_id, rule_set.version, now)))
                if not dry_run and planned:
                    with uow.writing():
                        uow.attributes.replace([change for _, change, _ in planned])
                        uow.account_audit.append([row for _, _, row in planned])
                    self._commit(uow)
            for account, _, _ in planned:  # once written
                report.add(account)
                stripped(account)
        return report

    def _upsert_one(self, upsert: AccountUpsert, idempotency: IdempotencyRequest | None) -> UpsertResult:
        # The rule set before the transaction: a worker's first look may write (adopting the set it runs), which on
        # SQLite would wait for the write lock this transaction holds.
        rule_set = self._rule_set()
        for attempt in range(_RETRIES):
            try:
                with self._unit_of_work() as uow:
                    record_signature(uow, upsert.caller)  # first: a replay goes no further
                    if idempotency is not None:
                        stored = self._keys.claim(uow, upsert.caller, idempotency)
                        if stored is not None:
                            uow.commit()  # the signature: this repeat was accepted
                            return UpsertResult(Outcome.UNCHANGED, upsert.account_no, "", {}, replayed=stored)
                    (result,) = self._apply(uow, [upsert], rule_set)
                    if isinstance(result, DomainError):  # refused: nothing was written
                        self._keep_refusal(uow, upsert.caller, idempotency, result)
                        raise result
                    if idempotency is not None:
                        answer = StoredAnswer(http_status=200, code=0, message="success", data=result.data())
                        self._keys.answer(uow, upsert.caller, idempotency, answer)
                    self._commit(uow)
                    return result
            except AccountsCreatedConcurrently:
                if attempt == _RETRIES - 1:
                    raise
            except KEY_REFUSALS:  # rolled back with the signature, which authenticated: spend it
                spend_signature(self._unit_of_work, upsert.caller)
                raise
            except DomainError:
                raise
            except StorageBusy as exc:  # the account's lock, held by another request past the bound: nothing done
                raise account_busy(
                    exc, account_no=upsert.account_no, caller=upsert.caller, unit_of_work=self._unit_of_work
                ) from exc
            except StorageError as exc:
                raise ServiceUnavailable.database(exc) from exc
        raise AssertionError("unreachable")

    def _keep_refusal(
        self, uow: UnitOfWork, caller: Caller, idempotency: IdempotencyRequest | None, refused: DomainError
    ) -> None:
        """Commit a refusal's signature and store the refusal under its Idempotency-Key (best effort: the caller
        gets the refusal either way)."""
        if idempotency is None and caller.signature is None:
            return
        try:
            if idempotency is not None:
                with uow.writing():
                    self._keys.answer(uow, caller, idempotency, answer_for(refused, {}))
            uow.commit()
        except StorageError as exc:
            log.warning("rejection_not_recorded", error=exc.kind)

    def _apply(
        self, uow: UnitOfWork, upserts: Sequence[AccountUpsert], rule_set: RuleSet
    ) -> list[UpsertResult | DomainError]:
        return apply_upserts(
            uow, upserts, attributes=rule_set.attributes, rule_set_version=rule_set.version, clock=self._clock
        )

    def remember_rejection(
        self, *, caller: Caller, idempotency: IdempotencyRequest, error: DomainError
    ) -> StoredAnswer | None:
        """Keep a rejection found before the service ran (a malformed body) under its key; a repeat's answer."""
        try:
            with self._unit_of_work() as uow:
                record_signature(uow, caller)
                stored = self._keys.claim(uow, caller, idempotency)
                if stored is None:
                    self._keys.answer(uow, caller, idempotency, answer_for(error, {}))
                uow.commit()
                if stored is not None:
                    return stored
        except KEY_REFUSALS:
            spend_signature(self._unit_of_work, caller)
            raise
        except StorageError as exc:
            raise ServiceUnavailable.database(exc) from exc
        return None

    @staticmethod
    def _commit(uow: UnitOfWork) -> None:
        try:
            uow.commit()
        except StorageError as exc:
            log.error("write_failed", error=exc.kind, detail=str(exc)[:200])
            raise WriteFailed("the account could not be written; nothing was persisted") from exc

    @staticmethod
    def _log(upsert: AccountUpsert, outcome: str, code: int, started: float) -> None:
        log.info(
            "account_upsert",
            outcome=outcome,
            tenant=upsert.caller.tenant_id,
            app_key=upsert.caller.app_key,
            account_no=upsert.account_no,
            code=code,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )


def _audit_row(
    upsert: AccountUpsert,
    before: PlannedAccount | None,
    status: str,
    attributes: Mapping[str, str],
    rule_set_version: str,
    now: datetime,
) -> AccountAuditRecord:
    return AccountAuditRecord(
        trace_id=upsert.trace_id,
        tenant_id=upsert.caller.tenant_id,
        app_key=upsert.caller.app_key,
        account_no=upsert.account_no,
        status_before=None if before is None else before.status,
        status_after=status,
        attributes_before=None if before is None else dict(before.attributes),
        attributes_after=dict(attributes),
        rule_set_version=rule_set_version,
        created_at=now,
    )


def _stripping(record: AccountRecord, attributes: AttributeSet) -> tuple[StrippedAccount, dict[str, str]] | None:
    """The account's refused attributes and the set it keeps, or None when it holds none (another writer
    changed it since they were counted)."""
    refused = refused_of(record.attributes, attributes)
    if not refused:
        return None
    kept = {name: value for name, value in record.attributes.items() if name not in refused}
    removed = {name: (record.attributes[name], why) for name, why in refused.items()}
    return StrippedAccount(record.tenant_id, record.account_no, removed), kept


def _strip_row(
    record: AccountRecord, kept: Mapping[str, str], trace_id: str, rule_set_version: str, now: datetime
) -> AccountAuditRecord:
    return AccountAuditRecord(
        trace_id=trace_id,
        tenant_id=record.tenant_id,
        app_key=STRIP_ACTOR,
        account_no=record.account_no,
        status_before=record.status,
        status_after=record.status,
        attributes_before=dict(record.attributes),
        attributes_after=dict(kept),
        rule_set_version=rule_set_version,
        created_at=now,
    )


def _with_id(
    result: UpsertResult, account_id: int, *, replanned: bool, dropped: Sequence[str], attributes: AttributeSet
) -> UpsertResult:
    warnings = tuple(AttributeWarning(name, attributes.dropped_note(name)) for name in dropped)
    return replace(result, account_id=account_id, replanned=replanned, warnings=warnings)


def _key(upsert: AccountUpsert) -> AccountKey:
    return upsert.caller.tenant_id, upsert.account_no


def _backoff(attempt: int) -> float:
    """Seconds to wait before attempt + 2: doubling, capped; half of it random, so that writers who met apart
    from each other (an import and the API's workers) do not all come back at once."""
    ceiling = min(_BACKOFF_MOST, _BACKOFF_FIRST * 2**attempt)
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter, not a secret


def _no_tenant(upsert: AccountUpsert) -> str:
    return f"tenant '{upsert.caller.tenant_id}': no such tenant"
