"""Account request schemas (SPEC §5a): shape and limits only. Which attribute names and values are allowed is
compliance's to declare (rules/attributes.yaml) and the account service's to check."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate

from app.errors import InvalidRequest
from app.schemas.account_no import ACCOUNT_NO, printable_text
from app.schemas.permissions import describe
from app.service.model import ACCOUNT_STATUSES

MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_TEXT = 64  # characters of a name and of a value
_TEXT: list[Callable[[Any], Any]] = [validate.Length(min=1, max=MAX_ATTRIBUTE_TEXT), printable_text]


def _shown(name: object) -> str:
    text = str(name) if str(name).isprintable() else ascii(str(name))[1:-1]  # NUL, surrogates: escaped
    return text if len(text) <= MAX_ATTRIBUTE_TEXT else text[:MAX_ATTRIBUTE_TEXT] + "..."


class Attributes(fields.Dict):
    """A JSON object of at most 32 attributes, each name and value a string of 1 to 64 characters."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("error_messages", {"null": "must be a JSON object (omit it to keep the stored attributes)"})
        super().__init__(
            keys=fields.String(validate=_TEXT),
            values=fields.String(validate=_TEXT, metadata={"minLength": 1, "maxLength": MAX_ATTRIBUTE_TEXT}),
            metadata={
                "maxProperties": MAX_ATTRIBUTES,
                "description": "name → value, as declared in rules/attributes.yaml; replaces the stored set "
                "as a whole ({} clears it; omitted keeps it)",
                "examples": [{"account_type": "margin", "residency": "SG", "investor_class": "retail"}],
            },
            **kwargs,
        )

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> Any:
        if isinstance(value, Mapping) and len(value) > MAX_ATTRIBUTES:
            raise ValidationError(f"at most {MAX_ATTRIBUTES} attributes (got {len(value)})")
        try:
            return super()._deserialize(value, attr, data, **kwargs)
        except ValidationError as exc:
            if not isinstance(exc.messages, Mapping):
                raise
            raise ValidationError({_shown(name): _plain(errors) for name, errors in exc.messages.items()}) from exc


def _plain(errors: Mapping[str, list[str]]) -> list[str]:
    """marshmallow's {key: [...], value: [...]} for one entry, in the words of the API."""
    if "key" in errors:
        return [f"a name is printable text of 1 to {MAX_ATTRIBUTE_TEXT} characters"]
    text = errors.get("value", [""])[0]
    if text == "Not a valid string.":
        return ["must be a string"]
    if text.startswith("must be printable"):
        return [text]
    return [f"must be a string of 1 to {MAX_ATTRIBUTE_TEXT} characters"]


class UpsertAccountRequest(Schema):
    """POST body: account_no, status, and (optional) attributes."""

    class Meta:
        unknown = EXCLUDE

    account_no = fields.String(**ACCOUNT_NO)
    status = fields.String(
        required=True, validate=validate.OneOf(ACCOUNT_STATUSES, error="'{input}' is not one of: {choices}")
    )
    attributes = Attributes()  # omitted: keep the stored set (the loaded dict has no key)


class AccountLine(UpsertAccountRequest):
    """One line of an accounts import: an upsert with its tenant. A misspelt key is refused, never ignored."""

    class Meta:
        unknown = RAISE

    tenant = fields.String(required=True, validate=validate.Length(min=1, max=64))


_UPSERT = UpsertAccountRequest()
_LINE = AccountLine()


def load_upsert_request(body: Any) -> dict[str, Any]:
    """The validated upsert request, or InvalidRequest naming the first problem."""
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")
    try:
        return _UPSERT.load(body)
    except ValidationError as exc:
        raise InvalidRequest(describe(exc, what="body")) from exc


def load_account_line(line: Any) -> dict[str, Any]:
    """One validated import line ({tenant, account_no, status, attributes?}), or InvalidRequest."""
    if not isinstance(line, dict):
        raise InvalidRequest("a line must be a JSON object")
    try:
        return _LINE.load(line)
    except ValidationError as exc:
        raise InvalidRequest(describe(exc, what="line")) from exc
