"""The OpenAPI 3.1 document of every route, generated from the marshmallow schemas (apispec)."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Response, jsonify

from app.schemas.permissions import GetPermissionsQuery, UpdatePermissionsRequest
from app.schemas.responses import (
    ErrorEnvelope,
    PermissionChangeDoc,
    ReadEnvelope,
    UpdateEnvelope,
)

bp = Blueprint("openapi", __name__)

UPDATE = "/v1/whaleapi/account/update_account_trade_permission"
READ = "/v1/whaleapi/account/get_account_trade_permission"
TRACE_HEADER = {"description": "The request's trace id (the caller's X-Trace-Id or X-Request-Id when sane)",
                "schema": {"type": "string"}}
SIGNED = [{"ApiKey": [], "AccessToken": [], "Timestamp": [], "Signature": []}]


def _answer(description: str, schema: str, **headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Trace-Id": TRACE_HEADER, **headers},
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def build_document() -> dict[str, Any]:
    """The whole document."""
    spec = APISpec(
        title="Trade-permission policy service", version="1.0.0", openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
        info={"description": "Changes and reads securities accounts' trade permissions. Requests are signed like "
                             "the Longbridge OpenAPI (X-Api-Key, Authorization, X-Timestamp, X-Api-Signature)."},
    )
    for name, header in (("ApiKey", "X-Api-Key"), ("AccessToken", "Authorization"), ("Timestamp", "X-Timestamp"),
                         ("Signature", "X-Api-Signature")):
        spec.components.security_scheme(name, {"type": "apiKey", "in": "header", "name": header})
    for name, schema in (("UpdatePermissionsRequest", UpdatePermissionsRequest), ("PermissionChange",
                         PermissionChangeDoc), ("UpdateEnvelope", UpdateEnvelope), ("ReadEnvelope", ReadEnvelope),
                         ("ErrorEnvelope", ErrorEnvelope)):
        spec.components.schema(name, schema=schema)
    replayed = {"Idempotency-Replayed": {"description": "true when this is the stored answer of an earlier "
                                                        "request with the same Idempotency-Key",
                                         "schema": {"type": "string", "enum": ["true"]}}}
    update_answers = {
        "200": _answer("Every change applied (code 0)", "UpdateEnvelope", **replayed),
        "400": _answer("400001 INVALID_REQUEST, or a rejected change: 400101 INVALID_PERMISSION_TYPE, 400102 "
                       "INVALID_PERMISSION_STATUS, 400103 NO_STATE_CHANGE, 400104 DUPLICATE_PERMISSION_TYPE",
                       "UpdateEnvelope", **replayed),
        "401": _answer("401001 UNAUTHENTICATED (any signature failure, replays included)", "UpdateEnvelope"),
        "404": _answer("404001 ACCOUNT_NOT_FOUND", "UpdateEnvelope", **replayed),
        "409": _answer("409001 ACCOUNT_DEREGISTERED, 409002 IDEMPOTENCY_KEY_IN_FLIGHT", "UpdateEnvelope",
                       **replayed),
        "413": _answer("400001 INVALID_REQUEST: body over 64 KiB", "UpdateEnvelope"),
        "422": _answer("400105 IDEMPOTENCY_KEY_REUSED", "UpdateEnvelope"),
        "500": _answer("500001 WRITE_FAILED: nothing was persisted", "UpdateEnvelope"),
        "503": _answer("503001 SERVICE_UNAVAILABLE: the database is unreachable", "UpdateEnvelope"),
    }
    trace_parameter = {"in": "header", "name": "X-Trace-Id", "required": False, "schema": {"type": "string"}}
    spec.path(path=UPDATE, operations={"post": {
        "operationId": "updateAccountTradePermission",
        "summary": "Change one or more trade permissions of an account, all or nothing",
        "security": SIGNED,
        "parameters": [
            {"in": "header", "name": "Idempotency-Key", "required": False,
             "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[ -~]{1,128}$"}},
            trace_parameter,
        ],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/UpdatePermissionsRequest"}}}},
        "responses": update_answers,
    }})
    spec.path(path=READ, operations={"get": {
        "operationId": "getAccountTradePermission",
        "summary": "Every permission the tenant's config enables, in catalog order",
        "security": SIGNED,
        "parameters": [{"in": "query", "schema": GetPermissionsQuery}, trace_parameter],
        "responses": {
            "200": _answer("The account's permissions", "ReadEnvelope"),
            "400": _answer("400001 INVALID_REQUEST", "ErrorEnvelope"),
            "401": _answer("401001 UNAUTHENTICATED", "ErrorEnvelope"),
            "404": _answer("404001 ACCOUNT_NOT_FOUND", "ErrorEnvelope"),
            "503": _answer("503001 SERVICE_UNAVAILABLE", "ErrorEnvelope"),
        },
    }})
    spec.path(path="/openapi.json", operations={"get": {
        "operationId": "openapi", "summary": "This document", "security": [],
        "responses": {"200": {"description": "The OpenAPI document", "headers": {"X-Trace-Id": TRACE_HEADER},
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }})
    document = spec.to_dict()
    changes = document["components"]["schemas"]["UpdatePermissionsRequest"]["properties"]["changes"]
    changes["items"] = {"$ref": "#/components/schemas/PermissionChange"}
    return document


_DOCUMENT: dict[str, Any] | None = None


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI document (no signature needed)."""
    global _DOCUMENT
    if _DOCUMENT is None:
        _DOCUMENT = build_document()
    return jsonify(_DOCUMENT)
