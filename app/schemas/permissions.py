"""Request schemas: shape and limits only (SPEC §3.2 step 2); per-change checks belong to the rules."""

from __future__ import annotations

import json
from typing import Any

from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, post_load, validate

from app.errors import InvalidRequest
from app.schemas.account_no import ACCOUNT_NO, STORED_ACCOUNT_NO, account_no_problem

MAX_CHANGES = 100


class RuleJudged(fields.Raw):
    """A field passed on as sent, null included: the rules judge it (400101 / 400102 at the change's index).

    Documented as required: a change without it is refused, by the rules rather than by this schema.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_none=True, **kwargs)


class PermissionChange(Schema):
    """One change: any JSON object; unknown fields are ignored and the object reaches the rules as sent."""

    class Meta:
        unknown = INCLUDE

    permission_type = RuleJudged(
        metadata={
            "type": "string",
            "description": "a catalog value, {product}.{market} or {group}.{name}, that the "
            "tenant's SaaS config enables",
            "examples": ["stock.US", "account.trade"],
        }
    )
    permission_status = RuleJudged(metadata={"type": "string", "enum": ["open", "close"]})

    @post_load(pass_original=True)
    def _as_sent(self, _loaded: dict[str, Any], original: dict[str, Any], **_: Any) -> dict[str, Any]:
        return dict(original)  # every key in the order sent, as a plain dict whatever mapping came in


class ChangeObjects(fields.Nested):
    """Changes as sent: documented by PermissionChange, loaded without running it per change.

    Loading PermissionChange keeps any JSON object as sent and refuses anything else, which this does directly:
    running a schema per change was most of a 100-change request's validation time.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, partial: Any = None, **kwargs: Any) -> Any:
        if not isinstance(value, dict):
            raise ValidationError("Invalid input type.")  # what the schema says of a non-object
        return dict(value)


class UpdatePermissionsRequest(Schema):
    """POST body: account_no and 1 to 100 changes, each a JSON object (its fields are the rules' business)."""

    class Meta:
        unknown = EXCLUDE

    account_no = fields.String(**ACCOUNT_NO)
    changes = fields.List(
        ChangeObjects(PermissionChange), required=True, validate=validate.Length(min=1, max=MAX_CHANGES)
    )


class GetPermissionsQuery(Schema):
    """GET query: account_no (as any account may have been stored, so that one stored before the rule is read)."""

    class Meta:
        unknown = EXCLUDE

    account_no = fields.String(**STORED_ACCOUNT_NO)


_UPDATE = UpdatePermissionsRequest()
_QUERY = GetPermissionsQuery()


def _first_error(messages: Any, path: str = "") -> tuple[str, str]:
    if isinstance(messages, dict):
        key, value = next(iter(messages.items()))
        if key == "_schema":
            return _first_error(value, path)
        place = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))
        return _first_error(value, place)
    if isinstance(messages, list) and messages:
        return _first_error(messages[0], path) if not isinstance(messages[0], str) else (path, messages[0])
    return path, str(messages)


def describe(error: ValidationError, *, what: str) -> str:
    """The first problem of a validation error as `place: text`, in the words of the API."""
    place, text = _first_error(error.messages)
    if not place:
        return f"{what} must be a JSON object"
    text = {
        "Not a valid mapping type.": "must be a JSON object",
        "Invalid input type.": "must be a JSON object",
        "Not a valid string.": "must be a string",
        "Not a valid list.": "must be an array",
        "Missing data for required field.": "is required",
        "Unknown field.": "unknown key",
        "Field may not be null.": "must not be null",
    }.get(text, text)
    return f"{place}: {text}"


class DuplicateKey(ValueError):
    """A JSON object names the same key twice."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # The last of two equal keys would silently win; a proxy or WAF that reads the first would disagree.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(key)
        result[key] = value
    return result


def parse_json_body(data: bytes) -> Any:
    """Decode a request body as strict UTF-8 JSON (no NaN or Infinity, no key twice in one object)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("body is not valid UTF-8") from exc

    def _no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(text, parse_constant=_no_constants, object_pairs_hook=_unique_keys)
    except DuplicateKey as exc:
        raise InvalidRequest(f"duplicate key {exc.key[:64]!r} in the body") from exc
    except RecursionError as exc:
        raise InvalidRequest("body is nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON ({str(exc).splitlines()[0][:120]})") from exc
    except ValueError as exc:  # a constant (NaN, Infinity), or an integer longer than Python converts
        reason = str(exc) if str(exc).endswith("is not valid JSON") else "a number has too many digits"
        raise InvalidRequest(f"body is not valid JSON ({reason})") from exc


def load_update_request(body: Any) -> dict[str, Any]:
    """The validated update request, or InvalidRequest naming the first problem."""
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")
    try:
        return _UPDATE.load(body)
    except ValidationError as exc:
        raise InvalidRequest(describe(exc, what="body")) from exc


def load_get_query(args: dict[str, Any]) -> dict[str, Any]:
    """The validated read query, or InvalidRequest."""
    try:
        return _QUERY.load(args)
    except ValidationError as exc:
        raise InvalidRequest(describe(exc, what="query")) from exc


def refuse_new_account_no(account_no: str) -> None:
    """InvalidRequest when account_no breaks the rule of SPEC §8 (the read route, once no account has it)."""
    problem = account_no_problem(account_no)
    if problem is not None:
        raise InvalidRequest(f"account_no: {problem}")
