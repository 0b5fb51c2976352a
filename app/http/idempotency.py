"""The Idempotency-Key header: its syntax, and the fingerprint of the request it names."""

from __future__ import annotations

import hashlib
import re

from flask import Request

from app.errors import InvalidRequest
from app.service.model import IdempotencyRequest

HEADER = "Idempotency-Key"
KEY = re.compile(r"[\x20-\x7e]{1,128}")


def idempotency_request(request: Request, body: bytes) -> IdempotencyRequest | None:
    """The request's key and fingerprint (method, path, query, body), or None without the header."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not KEY.fullmatch(key):
        raise InvalidRequest(f"{HEADER} must be 1 to 128 printable ASCII characters")
    fingerprint = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode(), request.query_string, body):
        fingerprint.update(len(part).to_bytes(8, "big") + part)
    return IdempotencyRequest(key=key, request_sha256=fingerprint.hexdigest())
