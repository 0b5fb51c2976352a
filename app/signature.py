"""The Longbridge OpenAPI request signature (SPEC §4), shared by the server and `permctl call`."""

from __future__ import annotations

import hashlib
import hmac

SIGNED_HEADERS = "authorization;x-api-key;x-timestamp"
ALGORITHM = "HMAC-SHA256"


def canonical_request(
    *, method: str, path: str, query: str, access_token: str, app_key: str, timestamp: str, body: bytes
) -> str:
    """METHOD|path|query|signed headers|signed header names| + SHA-1 of the body when there is one."""
    headers = f"authorization:{access_token}\nx-api-key:{app_key}\nx-timestamp:{timestamp}\n"
    canonical = f"{method.upper()}|{path}|{query}|{headers}|{SIGNED_HEADERS}|"
    if body:
        canonical += hashlib.sha1(body).hexdigest()
    return canonical


def sign(
    *,
    app_secret: str,
    method: str,
    path: str,
    query: str,
    access_token: str,
    app_key: str,
    timestamp: str,
    body: bytes,
) -> str:
    """The hex signature of one request."""
    canonical = canonical_request(
        method=method,
        path=path,
        query=query,
        access_token=access_token,
        app_key=app_key,
        timestamp=timestamp,
        body=body,
    )
    string_to_sign = f"{ALGORITHM}|" + hashlib.sha1(canonical.encode("utf-8")).hexdigest()
    return hmac.new(app_secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def signature_header(signature: str) -> str:
    """The X-Api-Signature header value for a signature."""
    return f"{ALGORITHM} SignedHeaders={SIGNED_HEADERS}, Signature={signature}"


def token_digest(access_token: str) -> str:
    """How access tokens are stored: their SHA-256."""
    return hashlib.sha256(access_token.encode("utf-8")).hexdigest()
