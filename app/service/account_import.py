"""Bulk import of accounts (`permctl accounts import`): a .jsonl or .csv file read as a stream of upserts, applied
in batches through the account service (the API's validation and audit), one transaction per batch.

- .jsonl: one {"tenant", "account_no", "status", "attributes"?} object a line; attributes omitted keep the stored
  set, as in the API.
- .csv: a header with tenant, account_no, status and one column per attribute; a row is the account's whole
  attribute set, an empty cell is an attribute it does not have.

A line that cannot be read, or that the service refuses, is reported with its number and reason; the rest go
on. A batch whose write fails raises, and nothing of that batch is written (batches before it are). Running an
import again is safe: what is already as the file says is counted unchanged and writes nothing.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from app.errors import AccountBusy, DomainError, InvalidRequest
from app.schemas.accounts import load_account_line
from app.schemas.permissions import parse_json_body
from app.service.accounts import AccountService, AccountUpsert, UpsertResult
from app.service.model import Caller

IMPORT_APP_KEY = "permctl"
BATCH_SIZE = 1000
STATISTICS_FROM = 1000  # accounts created: then again each time they double (see Accounts.refresh_statistics)
MAX_LINE = 64 * 1024  # bytes, as a request body
FORMATS = (".jsonl", ".csv")
CSV_KEYS = ("tenant", "account_no", "status")
BOM = "\ufeff".encode()


class UnreadableFile(DomainError):
    """The file cannot be imported at all (its format, its CSV header)."""


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


def _upsert(data: Any, number: int, run: str) -> AccountUpsert:
    fields = load_account_line(data)
    return AccountUpsert(
        Caller(fields["tenant"], IMPORT_APP_KEY),
        fields["account_no"],
        fields["status"],
        fields.get("attributes"),
        f"accounts-import-{run}:{number}",
    )


def jsonl_lines(stream: IO[bytes], run: str) -> Iterator[Line]:
    """Each non-blank line of a JSON Lines stream as an upsert, or the reason it is refused."""
    offset = 0
    for number, raw in enumerate(stream, start=1):
        offset += len(raw)
        if number == 1 and raw.startswith(BOM):  # as a spreadsheet or Windows tool writes UTF-8: as in CSV
            raw = raw[len(BOM) :]
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE:
            yield Line(number, offset, refusal=f"the line is longer than {MAX_LINE // 1024} KiB")
            continue
        try:
            yield Line(number, offset, _upsert(parse_json_body(raw.strip()), number, run))
        except InvalidRequest as exc:
            yield Line(number, offset, refusal=exc.message.replace("body", "line", 1))


def csv_lines(stream: IO[bytes], run: str) -> Iterator[Line]:
    """Each data row of a CSV stream (header: tenant, account_no, status, attribute columns) as an upsert."""
    counted = _Counted(stream)
    text = io.TextIOWrapper(io.BufferedReader(counted), encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise UnreadableFile("the CSV file is empty: expected a header tenant,account_no,status,...") from None
    problem = _header_problem(header)
    if problem is not None:
        raise UnreadableFile(f"line 1: the CSV header must name tenant, account_no, status and attributes: {problem}")
    attributes = [c for c in header if c not in CSV_KEYS]
    while True:
        number = reader.line_num + 1  # a record is named by its first line: a quoted cell may span several
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Line(number, counted.offset, refusal=f"not valid CSV ({exc})")
            continue
        if not any(row):
            continue
        if len(row) != len(header):
            yield Line(
                number, counted.offset, refusal=f"expected {len(header)} fields as in the header, got {len(row)}"
            )
            continue
        values = dict(zip(header, row, strict=True))
        data = {k: values[k] for k in CSV_KEYS} | {"attributes": {a: values[a] for a in attributes if values[a]}}
        try:
            yield Line(number, counted.offset, _upsert(data, number, run))
        except InvalidRequest as exc:
            yield Line(number, counted.offset, refusal=exc.message)


def _header_problem(header: list[str]) -> str | None:
    missing = [k for k in CSV_KEYS if k not in header]
    if missing:
        return f"{', '.join(missing)} missing"
    if not all(header):
        return "a column has no name"
    doubled = sorted({c for c in header if header.count(c) > 1})
    return f"{', '.join(doubled)} named twice" if doubled else None


class _Counted(io.RawIOBase):
    """A byte stream that counts what was read from it (progress over a file read as text)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        self.offset += len(data)
        return len(data)


def read_lines(path: Path, stream: IO[bytes], run: str | None = None) -> Iterator[Line]:
    """The lines of an import file, by its extension (.jsonl or .csv)."""
    run = run or secrets.token_hex(4)
    if path.suffix.lower() == ".jsonl":
        return jsonl_lines(stream, run)
    if path.suffix.lower() == ".csv":
        return csv_lines(stream, run)
    raise UnreadableFile("the file must end in .jsonl or .csv")


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
