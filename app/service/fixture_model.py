"""A fixtures document (SPEC §9) as the typed values app/service/fixtures.py loads, and its mistakes.

app/schemas/fixtures.py reads a document into these; the service never sees the document's plain data.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import DomainError

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One mistake in a fixtures document, at the path of the value it is about."""

    path: KeyPath
    message: str

    @property
    def where(self) -> str:
        """The path as a reader writes it: accounts[2].permissions.stock.HK."""
        shown = ""
        for part in self.path:
            shown += f"[{part}]" if isinstance(part, int) else (f".{part}" if shown else str(part))
        return shown

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.path else self.message


class InvalidFixtures(DomainError):
    """The fixtures document does not have the §9 shape; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(str(problems[0]) + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        self.problems = problems


@dataclass(frozen=True)
class CredentialFixture:
    """An app key with its secret and access token."""

    app_key: str
    app_secret: str
    access_token: str


@dataclass(frozen=True)
class TenantFixture:
    """A tenant, its credentials and (when given) its SaaS config patterns."""

    id: str
    credentials: tuple[CredentialFixture, ...]
    saas_config: tuple[str, ...] | None


@dataclass(frozen=True)
class AccountFixture:
    """An account of a tenant, its status and the permissions it should have."""

    account_no: str
    tenant: str
    status: str
    permissions: dict[str, str]
    attributes: dict[str, str] | None = None  # None: keep what is stored; {}: clear


@dataclass(frozen=True)
class Fixtures:
    """A whole fixtures document."""

    tenants: tuple[TenantFixture, ...]
    accounts: tuple[AccountFixture, ...]
