"""The request body, read once and bounded: over the limit is 413 however it is framed (SPEC §3.2, §3.3)."""

from __future__ import annotations

from typing import IO, Any

import structlog
from flask import g, request

from app.errors import BodyTooLarge, InvalidRequest
from app.http.wiring import current_container
from app.schemas.permissions import parse_json_body

_STEP = 16 * 1024
log = structlog.get_logger("app.http")


def request_body() -> bytes:
    """This request's body, read on first use (the signature, the fingerprint and the parser share it)."""
    if "body" not in g:
        limit = current_container().settings.max_body_bytes
        g.body = read_body(request.environ, limit=limit)
    body: bytes = g.body
    return body


def json_body(body: bytes) -> Any:
    """The body as strict JSON, sent as application/json in UTF-8; or InvalidRequest."""
    if request.mimetype != "application/json":
        raise InvalidRequest("Content-Type must be application/json")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise InvalidRequest("the body must be UTF-8 JSON")
    return parse_json_body(body)


def read_body(environ: dict[str, Any], *, limit: int) -> bytes:
    """At most `limit` bytes of body; BodyTooLarge past it, InvalidRequest when the body is not its stated length.

    Content-Length over the limit is refused unread. A server that ends the stream itself (gunicorn, chunked
    bodies) is read one byte past the limit, so a longer body is refused rather than cut; the length it
    delivers must then match any Content-Length. Otherwise no more than Content-Length is read (PEP 3333).
    """
    declared = _declared_length(environ)
    if declared is not None and declared > limit:
        raise too_large(limit)
    stream: IO[bytes] = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        data = _read(stream, limit + 1)
    elif declared:
        data = _read(stream, declared)
    else:
        data = b""  # neither a length nor a stream the server ends: no body (PEP 3333)
    if len(data) > limit:
        raise too_large(limit)
    if declared is not None and len(data) != declared:
        raise InvalidRequest(f"the body is {len(data)} bytes but Content-Length says {declared}")
    return data


def too_large(limit: int) -> BodyTooLarge:
    """The 413 for a body over `limit` bytes."""
    size = f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit} bytes"
    return BodyTooLarge(f"body is larger than {size}")


def _declared_length(environ: dict[str, Any]) -> int | None:
    raw = environ.get("CONTENT_LENGTH") or ""
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidRequest("Content-Length must be a number of bytes")
    return int(raw)


def _read(stream: IO[bytes], size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        try:
            chunk = stream.read(min(remaining, _STEP))
        except Exception as exc:  # the server's own error types (a broken chunk, a client gone): not ours to name
            log.info("body_unreadable", error=type(exc).__name__)
            raise InvalidRequest(
                "the body could not be read (the client stopped sending or broke its framing)"
            ) from exc
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
