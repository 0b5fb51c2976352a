"""The fixtures file format (SPEC §9): one marshmallow schema per mapping, every key known.

It reads a document into the typed Fixtures of app/service/fixture_model.py, which the service loads.
A mistake is a Problem with the path of the offending value (("accounts", 2, "status")); whoever read the
file turns that path into a line number. To add a field, declare it on its schema and its dataclass (in
app/service/fixture_model.py), and apply it in app/service/fixtures.py.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from app.rules.language.model import is_config_pattern
from app.schemas.account_no import ACCOUNT_NO
from app.schemas.accounts import Attributes
from app.service.fixture_model import (
    AccountFixture,
    CredentialFixture,
    Fixtures,
    InvalidFixtures,
    KeyPath,
    Problem,
    TenantFixture,
)
from app.service.model import ACCOUNT_STATUSES

__all__ = [
    "AccountFixture",
    "CredentialFixture",
    "Fixtures",
    "InvalidFixtures",
    "Problem",
    "TenantFixture",
    "parse_fixtures",
]

PERMISSION_STATUSES = ("open", "close")
TOP_LEVEL = ("tenants", "accounts")
# marshmallow's wording, in the words the rest of permctl uses
PLAIN_WORDS = {
    "Missing data for required field.": "is required",
    "Field may not be null.": "must not be empty",
    "Not a valid string.": "must be text",
    "Not a valid list.": "must be a list",
    "Not a valid mapping type.": "must be a mapping",
    "Invalid input type.": "must be a mapping",
}


def _unknown_key(key: object, known: list[str]) -> str:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else "expected " + ", ".join(known)
    return f"unknown key ({hint})"


def _config_pattern(value: str) -> None:
    if not is_config_pattern(value):
        raise ValidationError(
            f"'{value}' is not a glob over catalog values (letters, digits, '.', '_', '-', '*', "
            "'?' and closed [...] sets; e.g. 'stock.*')"
        )


def _text(max_length: int, **options: Any) -> fields.String:
    return fields.String(validate=validate.Length(min=1, max=max_length), **options)


class _Mapping(Schema):
    """A mapping whose every key is declared: a typo is reported with a suggestion, never ignored."""

    class Meta:
        unknown = EXCLUDE  # reported by _known_keys below, with a suggestion

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _known_keys(self, _data: Any, original: Any, **_: Any) -> None:
        if not isinstance(original, Mapping):
            return
        known = [f.data_key or name for name, f in self.fields.items()]
        unknown = {key: [_unknown_key(key, known)] for key in original if key not in known}
        if unknown:
            raise ValidationError(unknown)


class CredentialSchema(_Mapping):
    """{app_key, app_secret, access_token}."""

    app_key = _text(128, required=True)
    app_secret = _text(256, required=True)
    access_token = _text(1024, required=True)

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> CredentialFixture:
        return CredentialFixture(**data)


class SaasConfigSchema(_Mapping):
    """{enabled: [pattern, ...]}."""

    enabled = fields.List(fields.String(validate=_config_pattern), required=True)


class TenantSchema(_Mapping):
    """{id, credentials?, saas_config?}."""

    id = _text(64, required=True)
    credentials = fields.List(fields.Nested(CredentialSchema), load_default=list, allow_none=True)
    saas_config = fields.Nested(SaasConfigSchema, load_default=None, allow_none=True)

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> TenantFixture:
        config = data["saas_config"]
        return TenantFixture(
            id=data["id"],
            credentials=tuple(data["credentials"] or ()),
            saas_config=None if config is None else tuple(config["enabled"]),
        )


class AccountSchema(_Mapping):
    """{account_no, tenant, status?, attributes?, permissions?}."""

    account_no = fields.String(**ACCOUNT_NO)
    tenant = _text(64, required=True)
    status = fields.String(load_default="active", validate=validate.OneOf(ACCOUNT_STATUSES))
    attributes = Attributes(load_default=None)  # names and values: the account service checks them
    permissions = fields.Dict(
        keys=_text(64),
        values=fields.String(validate=validate.OneOf(PERMISSION_STATUSES)),
        load_default=dict,
        allow_none=True,
    )

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> AccountFixture:
        attributes = data["attributes"]
        return AccountFixture(
            account_no=data["account_no"],
            tenant=data["tenant"],
            status=data["status"],
            permissions=dict(data["permissions"] or {}),
            attributes=None if attributes is None else dict(attributes),
        )


class FixturesSchema(_Mapping):
    """{tenants?, accounts?}."""

    tenants = fields.List(fields.Nested(TenantSchema), load_default=list, allow_none=True)
    accounts = fields.List(fields.Nested(AccountSchema), load_default=list, allow_none=True)

    @post_load
    def _make(self, data: dict[str, Any], **_: Any) -> Fixtures:
        return Fixtures(tenants=tuple(data["tenants"] or ()), accounts=tuple(data["accounts"] or ()))


_SCHEMA = FixturesSchema()


def _nested_problems(messages: Mapping[Any, Any], path: KeyPath) -> list[Problem]:
    """The messages of a mapping's keys, each at its key (a whole-schema message at the mapping itself)."""
    if messages and set(messages) <= {"key", "value"}:  # a Dict field's entry: the entry is the place
        return [p for value in messages.values() for p in _problems(value, path)]
    found = []
    for key, value in messages.items():
        found += _problems(value, path if key == "_schema" else (*path, key))
    return found


def _problems(messages: Any, path: KeyPath = ()) -> list[Problem]:
    """marshmallow's nested error messages as flat Problems."""
    if isinstance(messages, Mapping):
        return _nested_problems(messages, path)
    if isinstance(messages, list):
        return [p for message in messages for p in _problems(message, path)]
    text = PLAIN_WORDS.get(str(messages), str(messages))
    return [Problem(path, text[:1].lower() + text[1:].rstrip("."))]


def _without_echoes(problems: list[Problem]) -> list[Problem]:
    """Drop "x is required" where a misspelt key already says "did you mean 'x'?": one mistake, one line."""
    meant = {(*p.path[:-1], p.message.split("'")[1]) for p in problems if "did you mean" in p.message}
    return [p for p in problems if not (p.message == "is required" and p.path in meant)]


def _not_fixtures(document: Any) -> Problem | None:
    if not isinstance(document, Mapping) or not document:
        return Problem((), "not a fixtures file: expected a mapping with 'tenants' and/or 'accounts'")
    if any(key in TOP_LEVEL for key in document):
        return None
    found = [str(key) for key in document]
    shown = ", ".join(f"'{key}'" for key in found[:3]) + (", ..." if len(found) > 3 else "")
    close = difflib.get_close_matches(found[0], TOP_LEVEL, n=1) if len(found) == 1 else []
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return Problem((), f"not a fixtures file: expected top-level 'tenants' and/or 'accounts', found {shown}{hint}")


def _duplicates(fixtures: Fixtures) -> list[Problem]:
    problems = []
    tenants: set[str] = set()
    app_keys: set[str] = set()
    accounts: set[tuple[str, str]] = set()
    for i, tenant in enumerate(fixtures.tenants):
        if tenant.id in tenants:
            problems.append(Problem(("tenants", i, "id"), f"tenant '{tenant.id}' is listed twice"))
        tenants.add(tenant.id)
        for j, credential in enumerate(tenant.credentials):
            if credential.app_key in app_keys:
                problems.append(
                    Problem(
                        ("tenants", i, "credentials", j, "app_key"), f"app key '{credential.app_key}' is listed twice"
                    )
                )
            app_keys.add(credential.app_key)
    for i, account in enumerate(fixtures.accounts):
        if (account.tenant, account.account_no) in accounts:
            problems.append(
                Problem(
                    ("accounts", i, "account_no"),
                    f"account '{account.account_no}' of tenant '{account.tenant}' is listed twice",
                )
            )
        accounts.add((account.tenant, account.account_no))
    return problems


def parse_fixtures(document: Any) -> Fixtures:
    """The document (plain data, or ruamel's round-trip data) as Fixtures, or InvalidFixtures."""
    not_fixtures = _not_fixtures(document)
    if not_fixtures is not None:
        raise InvalidFixtures([not_fixtures])
    try:
        fixtures: Fixtures = _SCHEMA.load(document)
    except ValidationError as exc:
        raise InvalidFixtures(_without_echoes(_problems(exc.messages))) from exc
    problems = _duplicates(fixtures)
    if problems:
        raise InvalidFixtures(problems)
    return fixtures
