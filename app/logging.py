"""Structured JSON logs; the trace id is bound per request and appears on every line."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, Processor

_REDACTED_KEYS = frozenset({"app_secret", "access_token", "authorization", "signature", "x-api-signature"})


def _add_pid(_logger: object, _name: str, event: EventDict) -> EventDict:
    event["pid"] = os.getpid()
    return event


def _redact(_logger: object, _name: str, event: EventDict) -> EventDict:
    if _REDACTED_KEYS.isdisjoint(map(str.lower, event)):  # the usual line: one pass in C, nothing to hide
        return event
    for key in list(event):
        if key.lower() in _REDACTED_KEYS:
            event[key] = "[redacted]"
    return event


def _fallback(value: object) -> object:
    """What JSONRenderer shows of a value JSON has no type for: its __structlog__(), else its repr()."""
    shown = getattr(value, "__structlog__", None)
    return shown() if callable(shown) else repr(value)


# One encoder for every line (the output json.dumps gives): json.dumps with a `default` builds one per call.
_ENCODER = json.JSONEncoder(default=_fallback)


def _serialize(event: EventDict, **_options: Any) -> str:
    return _ENCODER.encode(event)


def _shared() -> list[Processor]:
    """What every line gets, from structlog or stdlib logging: trace id, level, timestamp, pid, redaction."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_pid,
        _redact,
    ]


def json_formatter() -> logging.Formatter:
    """A stdlib formatter writing a record as the app's structlog lines are written: one JSON object, with
    the same fields (and `logger`); a traceback goes into its `exception` field, so the line stays one line."""
    return structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_serialize),
        ],
        foreign_pre_chain=[*_shared(), structlog.stdlib.add_logger_name],
    )


def configure_logging(level: str = "INFO") -> None:
    """Send structlog and stdlib logging to stderr as one JSON object per line."""
    structlog.configure(
        processors=[
            *_shared(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_serialize),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),  # one write per line: workers share a file
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
