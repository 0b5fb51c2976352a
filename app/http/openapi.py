"""The OpenAPI 3.1 document, generated from the marshmallow schemas the server applies (apispec).

OPERATIONS is the one list of routes: a new route is one more Operation there (its request schemas, and for
each HTTP status the envelope schema and the contract codes), and the document and the conformance tests
that hold the server to it follow.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.openapi import OpenAPIConverter
from flask import Blueprint, Response
from marshmallow import Schema

from app.errors import Code
from app.schemas.accounts import UpsertAccountRequest
from app.schemas.permissions import GetPermissionsQuery, RuleJudged, UpdatePermissionsRequest
from app.schemas.responses import EmptyEnvelope, ReadEnvelope, ReadinessEnvelope, UpdateEnvelope, UpsertEnvelope

bp = Blueprint("openapi", __name__)

UPDATE = "/v1/whaleapi/account/update_account_trade_permission"
READ = "/v1/whaleapi/account/get_account_trade_permission"
UPSERT = "/v1/whaleapi/account/upsert_account"
SIGNED: list[dict[str, list[str]]] = [{"ApiKey": [], "AccessToken": [], "Timestamp": [], "Signature": []}]


@dataclass(frozen=True)
class Answer:
    """One HTTP status of an operation: the envelope schema and the contract codes it carries."""

    description: str
    schema: type[Schema] | None = None  # an envelope; None when `content` says what comes back
    codes: tuple[Code, ...] = ()
    content: Mapping[str, Any] | None = None
    replayable: bool = False  # may be the stored answer of an earlier request with the same Idempotency-Key


@dataclass(frozen=True)
class Operation:
    """One route and method, as the server serves it."""

    method: str
    path: str
    operation_id: str
    summary: str
    answers: Mapping[int, Answer]
    signed: bool = True
    body: type[Schema] | None = None
    query: type[Schema] | None = None
    idempotency_key: bool = False
    description: str = ""


def signed_answers(envelope: type[Schema], answers: Mapping[int, Answer]) -> dict[int, Answer]:
    """A signed route's own answers and those every signed route gives (401, 413, 503)."""
    return {
        **answers,
        401: Answer(
            "The signature is refused: any credential or signature mismatch, a timestamp outside the "
            "window, or a replayed POST",
            envelope,
            (Code.UNAUTHENTICATED,),
        ),
        413: Answer(
            "The body is over 64 KiB, however it is framed (Content-Length or chunked)",
            envelope,
            (Code.INVALID_REQUEST,),
        ),
        503: Answer(
            "The database is unreachable, or a statement ran past its bound", envelope, (Code.SERVICE_UNAVAILABLE,)
        ),
    }


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post",
        UPDATE,
        "updateAccountTradePermission",
        "Change one or more trade permissions of an account, all or nothing",
        body=UpdatePermissionsRequest,
        idempotency_key=True,
        answers=signed_answers(
            UpdateEnvelope,
            {
                200: Answer("Every change applied", UpdateEnvelope, (Code.SUCCESS,), replayable=True),
                400: Answer(
                    "The request is malformed (400001), or a change is rejected: data.failure_index is its "
                    "index and data.rule_id the rule",
                    UpdateEnvelope,
                    (
                        Code.INVALID_REQUEST,
                        Code.INVALID_PERMISSION_TYPE,
                        Code.INVALID_PERMISSION_STATUS,
                        Code.NO_STATE_CHANGE,
                        Code.DUPLICATE_PERMISSION_TYPE,
                    ),
                    replayable=True,
                ),
                404: Answer(
                    "No such account in the caller's tenant", UpdateEnvelope, (Code.ACCOUNT_NOT_FOUND,), replayable=True
                ),
                409: Answer(
                    "The account is deregistered (409001), a request with the same Idempotency-Key is still being "
                    "processed (409002: retry), or another request held the account past the lock bound "
                    "(409003: nothing was done; retry, signed afresh)",
                    UpdateEnvelope,
                    (Code.ACCOUNT_DEREGISTERED, Code.IDEMPOTENCY_KEY_IN_FLIGHT, Code.ACCOUNT_BUSY),
                    replayable=True,
                ),
                422: Answer(
                    "The Idempotency-Key was used with a different request",
                    UpdateEnvelope,
                    (Code.IDEMPOTENCY_KEY_REUSED,),
                ),
                500: Answer(
                    "A database error after validation: nothing was persisted", UpdateEnvelope, (Code.WRITE_FAILED,)
                ),
            },
        ),
    ),
    Operation(
        "get",
        READ,
        "getAccountTradePermission",
        "The account's status, attributes and every permission the tenant's config enables, in catalog order "
        "(deregistered accounts too)",
        query=GetPermissionsQuery,
        answers=signed_answers(
            EmptyEnvelope,
            {
                200: Answer("The account's permissions", ReadEnvelope, (Code.SUCCESS,)),
                400: Answer("The query is malformed", EmptyEnvelope, (Code.INVALID_REQUEST,)),
                404: Answer("No such account in the caller's tenant", EmptyEnvelope, (Code.ACCOUNT_NOT_FOUND,)),
            },
        ),
    ),
    Operation(
        "post",
        UPSERT,
        "upsertAccount",
        "Create or update one account of the caller's tenant: its status and attributes",
        description="Attributes replace the stored set as a whole: {} clears it, omitting `attributes` keeps it. "
        "Names and values must be declared in rules/attributes.yaml; an attribute declared deprecated there is "
        "accepted with any value but not stored, and data.warnings names it. A deregistered account cannot be "
        "changed or reactivated; a request that changes nothing succeeds (data.result unchanged) and writes no "
        "audit row.",
        body=UpsertAccountRequest,
        idempotency_key=True,
        answers=signed_answers(
            EmptyEnvelope,
            {
                200: Answer("The account as stored now", UpsertEnvelope, (Code.SUCCESS,), replayable=True),
                400: Answer(
                    "The request is malformed, or names an attribute or value rules/attributes.yaml does not allow "
                    "(the message names the field and the value)",
                    EmptyEnvelope,
                    (Code.INVALID_REQUEST,),
                    replayable=True,
                ),
                409: Answer(
                    "The account is deregistered and the request would change it (409001), a request with the same "
                    "Idempotency-Key is still being processed (409002: retry), or another request held the account "
                    "past the lock bound (409003: nothing was done; retry, signed afresh)",
                    EmptyEnvelope,
                    (Code.ACCOUNT_DEREGISTERED, Code.IDEMPOTENCY_KEY_IN_FLIGHT, Code.ACCOUNT_BUSY),
                    replayable=True,
                ),
                422: Answer(
                    "The Idempotency-Key was used with a different request",
                    EmptyEnvelope,
                    (Code.IDEMPOTENCY_KEY_REUSED,),
                ),
                500: Answer(
                    "A database error while writing: nothing was persisted", EmptyEnvelope, (Code.WRITE_FAILED,)
                ),
            },
        ),
    ),
    Operation(
        "get",
        "/healthz",
        "healthz",
        "The process is alive",
        signed=False,
        answers={200: Answer("Alive", EmptyEnvelope, (Code.SUCCESS,))},
    ),
    Operation(
        "get",
        "/readyz",
        "readyz",
        "Ready for traffic: the database answers and a rule set is loaded",
        signed=False,
        description="Redis is shown but never decides. No tenant data.",
        answers={
            200: Answer("Ready", ReadinessEnvelope, (Code.SUCCESS,)),
            503: Answer("Not ready (data says which dependency)", ReadinessEnvelope, (Code.SERVICE_UNAVAILABLE,)),
        },
    ),
    Operation(
        "get",
        "/metrics",
        "metrics",
        "Prometheus metrics, summed over every worker",
        signed=False,
        answers={
            200: Answer("Prometheus text exposition format", content={"text/plain": {"schema": {"type": "string"}}})
        },
    ),
    Operation(
        "get",
        "/openapi.json",
        "openapi",
        "This document",
        signed=False,
        answers={200: Answer("The OpenAPI document", content={"application/json": {"schema": {"type": "object"}}})},
    ),
)

INFO = (
    "Changes and reads securities accounts' trade permissions (SPEC §3, §5). Requests to /v1 routes are signed "
    "like the Longbridge OpenAPI (X-Api-Key, Authorization, X-Timestamp, X-Api-Signature; see the security "
    "schemes). Every answer but /metrics and this document is the envelope {code, message, data} with an "
    "X-Trace-Id header; `code` is 0 or a contract code, listed per status below. Request bodies are UTF-8 JSON "
    "of at most 64 KiB; unknown fields are ignored; a key named twice in one object is refused (400001). "
    "Any path not listed answers the RouteNotFound response (404, 404000); a method not listed for a path "
    "answers MethodNotAllowed (405, 405000, with Allow). HEAD is served wherever GET is: the same status and "
    "headers, no body."
)
SECURITY_SCHEMES = {
    "ApiKey": ("X-Api-Key", "The app key of a credential"),
    "AccessToken": ("Authorization", "The access token of the same credential"),
    "Timestamp": ("X-Timestamp", "Unix seconds as sent, integer or decimal, within ±300 s (configurable)"),
    "Signature": (
        "X-Api-Signature",
        "HMAC-SHA256 SignedHeaders=authorization;x-api-key;x-timestamp, "
        "Signature=<64 hex digits>; see SPEC §4 for the canonical request",
    ),
}
PARAMETERS: dict[str, dict[str, Any]] = {
    "TraceId": {
        "in": "header",
        "name": "X-Trace-Id",
        "required": False,
        "description": "Echoed on the answer and logged when 1-128 of [A-Za-z0-9._:/+=-]; else a new id",
        "schema": {"type": "string"},
    },
    "RequestId": {
        "in": "header",
        "name": "X-Request-Id",
        "required": False,
        "description": "Used as the trace id when X-Trace-Id is not given",
        "schema": {"type": "string"},
    },
    "IdempotencyKey": {
        "in": "header",
        "name": "Idempotency-Key",
        "required": False,
        "description": "1-128 printable ASCII characters, scoped to the tenant, kept 24 h: a repeat "
        "of the same request gets the first answer again",
        "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[ -~]{1,128}$"},
    },
}
HEADERS: dict[str, dict[str, Any]] = {
    "X-Trace-Id": {"description": "The request's trace id", "required": True, "schema": {"type": "string"}},
    "Idempotency-Replayed": {
        "description": "true: the stored answer of an earlier request with the same "
        "Idempotency-Key (nothing was written again)",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Allow": {"description": "The methods the path serves", "required": True, "schema": {"type": "string"}},
}
NOT_FOUND = Answer("No such route", EmptyEnvelope, (Code.NOT_FOUND,))
METHOD_NOT_ALLOWED = Answer("The path does not serve this method", EmptyEnvelope, (Code.METHOD_NOT_ALLOWED,))


class _Converter(OpenAPIConverter):
    def fields2jsonschema(self, fields: Any, *, partial: Any = None) -> dict[str, Any]:
        jsonschema: dict[str, Any] = super().fields2jsonschema(fields, partial=partial)
        # Rule-judged fields are passed on as sent (null too) but a valid change needs them, as documented.
        judged = {f.data_key or name: f for name, f in fields.items() if isinstance(f, RuleJudged)}
        for name, judged_field in judged.items():
            jsonschema["properties"][name]["type"] = judged_field.metadata["type"]
        if judged:
            jsonschema["required"] = sorted({*jsonschema.get("required", ()), *judged})
        return jsonschema


class _Plugin(MarshmallowPlugin):
    Converter = _Converter


def envelope_schema(answer: Answer) -> dict[str, Any]:
    """The JSON schema of an answer's body: its envelope, with `code` limited to the answer's codes."""
    assert answer.schema is not None
    return {
        "allOf": [
            {"$ref": f"#/components/schemas/{answer.schema.__name__}"},
            {"properties": {"code": {"enum": [int(code) for code in answer.codes]}}},
        ]
    }


def _response(answer: Answer, *, allow: bool = False) -> dict[str, Any]:
    codes = ", ".join(f"{int(code)} {code.name}" for code in answer.codes)
    headers = {
        name: name
        for name in ("X-Trace-Id", "Idempotency-Replayed", "Allow")
        if name == "X-Trace-Id" or (name == "Allow" and allow) or (name != "Allow" and answer.replayable)
    }
    content = answer.content or {"application/json": {"schema": envelope_schema(answer)}}
    return {
        "description": answer.description + (f" ({codes})" if codes else ""),
        "headers": headers,
        "content": dict(content),
    }


def _operation(op: Operation) -> dict[str, Any]:
    parameters: list[Any] = ["TraceId", "RequestId"]  # apispec makes a component's name a $ref
    if op.idempotency_key:
        parameters.append("IdempotencyKey")
    if op.query is not None:
        parameters.append({"in": "query", "schema": op.query})
    operation: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "security": SIGNED if op.signed else [],
        "parameters": parameters,
        "responses": {str(status): _response(answer) for status, answer in sorted(op.answers.items())},
    }
    if op.description:
        operation["description"] = op.description
    if op.body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": op.body}}}
    return operation


def build_document() -> dict[str, Any]:
    """The whole document, built from OPERATIONS."""
    spec = APISpec(
        title="Trade-permission policy service",
        version="1.0.0",
        openapi_version="3.1.0",
        plugins=[_Plugin()],
        info={"description": INFO},
    )
    for name, (header, description) in SECURITY_SCHEMES.items():
        spec.components.security_scheme(
            name, {"type": "apiKey", "in": "header", "name": header, "description": description}
        )
    for name, parameter in PARAMETERS.items():
        spec.components.parameter(name, parameter["in"], {k: v for k, v in parameter.items() if k != "in"})
    for name, header_object in HEADERS.items():
        spec.components.header(name, header_object)
    schemas = {answer.schema for op in OPERATIONS for answer in op.answers.values() if answer.schema}
    schemas |= {EmptyEnvelope} | {op.body for op in OPERATIONS if op.body is not None}
    for schema in sorted(schemas, key=lambda s: s.__name__):
        spec.components.schema(schema.__name__, schema=schema)
    spec.components.response("RouteNotFound", _response(NOT_FOUND))
    spec.components.response("MethodNotAllowed", _response(METHOD_NOT_ALLOWED, allow=True))
    for path in dict.fromkeys(op.path for op in OPERATIONS):
        spec.path(path=path, operations={op.method: _operation(op) for op in OPERATIONS if op.path == path})
    return spec.to_dict()


@functools.cache
def _served() -> bytes:
    return json.dumps(build_document(), separators=(",", ":")).encode()


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI document (no signature needed)."""
    return Response(_served(), mimetype="application/json")
