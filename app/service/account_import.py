"""Bulk import of accounts (`permctl accounts import`): a stream of lines, each an upsert or the reason it was
refused, applied in batches through the account service (the API's validation and audit), one transaction per
batch. The file is read into lines at the edge, with the request schemas: app/cli/account_file.py.

A line that cannot be read, or that the service refuses, is reported with its number and reason; the rest go
on. A batch whose write fails raises, and nothing of that batch is written (batches before it are). Running an
import again is safe: what is already as the file says is counted unchanged and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from app.errors import AccountBusy, DomainError
from app.service.accounts import AccountService, AccountUpsert, UpsertResult

BATCH_SIZE = 1000
STATISTICS_FROM = 1000  # accounts created: then again each time they double (see Accounts.refresh_statistics)


@dataclass(frozen=True)
class Line:
    """One line of the file: its number, how far into the file it ends, and the upsert it asks or why not."""

    number: int
    offset: int
    upsert: AccountUpsert | None = None
    refusal: str | None = None


@dataclass
class ImportReport:
    """What an import did, line by line: every line is counted once, as created, updated, unchanged or refused."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    refusals: list[tuple[int, str]] = field(default_factory=list)  # (line, reason), in line order
    busy: int = 0  # refusals that met concurrent writers past the retries: the same line may go in on a rerun
    replanned: int = 0  # applied lines planned again: another writer created their account meanwhile
    retried: int = 0  # batch attempts rolled back after meeting concurrent writers, and run again
    dropped: dict[str, int] = field(default_factory=dict)  # deprecated attribute -> lines that named it (not stored)

    @property
    def refused(self) -> int:
        return len(self.refusals)

    @property
    def lines(self) -> int:
        """Lines done: applied (created, updated, unchanged) or refused."""
        return self.created + self.updated + self.unchanged + self.refused


class BatchFailed(DomainError):
    """A batch could not be written: nothing of it was, the batches before it were."""

    def __init__(self, first: int, last: int, error: DomainError, report: ImportReport) -> None:
        super().__init__(f"lines {first}-{last}: {error.message} (the lines before {first} are imported)")
        self.first = first
        self.last = last
        self.report = report  # what the batches before this one did


def import_accounts(
    lines: Iterator[Line],
    service: AccountService,
    *,
    batch_size: int = BATCH_SIZE,
    refused: Callable[[int, str], None] = lambda number, reason: None,
    progress: Callable[[ImportReport, int], None] = lambda report, offset: None,
) -> ImportReport:
    """Apply the lines in batches of batch_size lines, one transaction each; report every refusal in line order.

    A line that cannot be read waits in its batch to be reported with the batch's other refusals, so that the
    refusals come out in the order of the file. A line whose account other writers kept creating or locking
    is refused as busy (see AccountService.upsert_batch) and the batch goes on.
    BatchFailed when a batch cannot be written (nothing of it is; the import stops there).
    """
    report = ImportReport()
    batch: list[Line] = []
    analyzed = [0]  # accounts created when the planner's statistics were last refreshed

    def rolled_back(contended: int) -> None:
        report.retried += 1

    def flush(offset: int) -> None:
        upserts = [line.upsert for line in batch if line.upsert is not None]
        try:
            results = iter(service.upsert_batch(upserts, rolled_back=rolled_back) if upserts else [])
        except DomainError as exc:
            raise BatchFailed(batch[0].number, batch[-1].number, exc, report) from exc
        for line in batch:
            result: UpsertResult | DomainError | str = line.refusal or "refused"
            if line.upsert is not None:
                result = next(results)
            if isinstance(result, UpsertResult):
                setattr(report, result.outcome.value, getattr(report, result.outcome.value) + 1)
                report.replanned += result.replanned
                for warning in result.warnings:
                    report.dropped[warning.attribute] = report.dropped.get(warning.attribute, 0) + 1
                continue
            reason = result if isinstance(result, str) else result.message
            report.busy += isinstance(result, AccountBusy)
            report.refusals.append((line.number, reason))
            refused(line.number, reason)
        batch.clear()
        if report.created >= max(STATISTICS_FROM, 2 * analyzed[0]):  # after 1,000, 2,000, 4,000, ... new
            service.refresh_statistics()
            analyzed[0] = report.created
        progress(report, offset)

    offset = 0
    for line in lines:
        offset = line.offset
        batch.append(line)
        if len(batch) >= batch_size:
            flush(offset)
    flush(offset)
    return report
