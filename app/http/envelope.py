"""The response envelope every route answers in (SPEC §3.1)."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, g

from app.errors import Code, DomainError
from app.service.model import StoredAnswer

UPDATE_ENDPOINT = "permissions.update"


def envelope(code: int, message: str, data: dict[str, Any], status: int) -> Response:
    """A JSON envelope response (its code is remembered for the request log line)."""
    g.code = code
    body = json.dumps({"code": code, "message": message, "data": data}, separators=(",", ":"))
    return Response(body, status=status, mimetype="application/json")


def success(data: dict[str, Any]) -> Response:
    """200 with code 0."""
    return envelope(int(Code.SUCCESS), "success", data, 200)


def replayed(answer: StoredAnswer) -> Response:
    """The stored answer of an earlier request with the same Idempotency-Key, marked as a repeat."""
    if answer.data is not None:
        data = dict(answer.data)
    else:
        data = {"failure_index": answer.failure_index}
        if answer.rule_id is not None:
            data["rule_id"] = answer.rule_id
    response = envelope(answer.code, answer.message, data, answer.http_status)
    response.headers["Idempotency-Replayed"] = "true"
    return response


def error(exc: DomainError, *, endpoint: str | None) -> Response:
    """The envelope for a domain error; the update endpoint always carries failure_index."""
    data: dict[str, Any] = {}
    if endpoint == UPDATE_ENDPOINT:
        data["failure_index"] = exc.failure_index
    if exc.rule_id is not None:
        data["rule_id"] = exc.rule_id
    return envelope(int(exc.code), exc.message, data, exc.http_status)
