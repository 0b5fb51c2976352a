"""The log line's processors: redaction stays case-insensitive, and the shared encoder writes what json.dumps
with structlog's defaults would."""

from __future__ import annotations

import datetime
import decimal

from structlog.processors import JSONRenderer

from app.logging import _redact, _serialize


class Shown:
    def __structlog__(self) -> str:
        return "shown"


def test_the_shared_encoder_writes_what_structlog_would() -> None:
    event = {
        "event": "request",
        "trace_id": "abc",
        "status": 200,
        "duration_ms": 1.5,
        "code": None,
        "day": datetime.date(2026, 1, 1),
        "amount": decimal.Decimal("1.2"),
        "text": "ü\u2028\x00",
        "items": [1, "a", {"b": None}],
        "custom": Shown(),
    }
    assert JSONRenderer(serializer=_serialize)(None, "info", dict(event)) == JSONRenderer()(None, "info", dict(event))


def test_secrets_are_redacted_whatever_their_case() -> None:
    event = {"event": "x", "Authorization": "token", "APP_SECRET": "s", "signature": "sig", "kept": "v"}
    assert _redact(None, "info", dict(event)) == {
        "event": "x",
        "Authorization": "[redacted]",
        "APP_SECRET": "[redacted]",
        "signature": "[redacted]",
        "kept": "v",
    }
    assert _redact(None, "info", {"event": "x", "kept": "v"}) == {"event": "x", "kept": "v"}
