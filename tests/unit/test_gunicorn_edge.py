"""What gunicorn's own refusals and log lines become (issue 18 #4, #10); tests/e2e/test_edge.py sends them."""

from __future__ import annotations

import io
import json
import logging
import ssl
from types import SimpleNamespace

import pytest
from gunicorn.http import errors

from app.gunicorn_log import JsonLogger
from app.gunicorn_worker import answer, refusal, trace_id_of


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (errors.InvalidRequestLine("NOT A REQUEST"), 400, 400001),
        (errors.InvalidRequestMethod("AB"), 405, 405000),
        (errors.InvalidHTTPVersion("HTTP/9"), 400, 400001),
        (errors.InvalidHeaderName("bad name"), 400, 400001),
        (errors.LimitRequestLine(9000, 8190), 400, 400001),
        (errors.LimitRequestHeaders("too many"), 400, 400001),
        (errors.UnsupportedTransferCoding("br, chunked"), 400, 400001),
        (errors.InvalidChunkSize("zz"), 400, 400001),
        (ssl.SSLError("bad handshake"), 400, 400001),
        (errors.ConfigurationProblem("misconfigured"), 503, 503001),
        (SystemExit(1), 503, 503001),  # the worker timeout's abort
        (RuntimeError("escaped the app"), 503, 503001),
    ],
)
def test_each_refusal_gets_the_contract_code_and_status(exc: BaseException, status: int, code: int) -> None:
    refused = refusal(exc)
    assert (refused.status, refused.code) == (status, code)
    assert refused.client_error == (status < 500)


def test_the_answer_is_the_envelope_with_the_trace_id_and_closes_the_connection() -> None:
    head, _, body = answer(refusal(errors.InvalidRequestMethod("AB")), "t-1").partition(b"\r\n\r\n")
    assert json.loads(body) == {"code": 405000, "message": "method not allowed", "data": {"failure_index": 0}}
    assert head.decode().split("\r\n") == [
        "HTTP/1.1 405 Method Not Allowed",
        "Connection: close",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "X-Trace-Id: t-1",
    ]
    assert answer(refusal(SystemExit(1)), "t-2", head=True).endswith(b"X-Trace-Id: t-2\r\n\r\n")


def test_the_callers_sane_trace_id_is_kept_else_a_new_one() -> None:
    assert trace_id_of(SimpleNamespace(headers=[("X-TRACE-ID", "abc-1")])) == "abc-1"
    assert trace_id_of(SimpleNamespace(headers=[("X-REQUEST-ID", "req-2")])) == "req-2"
    assert len(trace_id_of(SimpleNamespace(headers=[("X-TRACE-ID", "not sane!")]))) == 32
    assert len(trace_id_of(None)) == 32  # gunicorn refused before it had a request


def test_gunicorns_log_lines_are_one_json_object_each_traceback_included() -> None:
    cfg = SimpleNamespace(
        loglevel="info",
        errorlog="-",
        accesslog=None,
        capture_output=False,
        syslog=False,
        logconfig_dict={},
        logconfig_json=None,
        logconfig=None,
        disable_redirect_access_to_syslog=False,
    )
    logger = JsonLogger(cfg)  # gunicorn's settings it reads, as a stand-in
    stream = io.StringIO()
    for handler in logger.error_log.handlers:
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
    try:
        raise SystemExit(1)
    except SystemExit:
        logger.exception("Error handling request %s", "/x")
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["event"] == "Error handling request /x" and record["logger"] == "gunicorn.error"
    assert record["level"] == "error" and {"timestamp", "pid"} <= record.keys()
    assert record["exception"].startswith("Traceback") and "SystemExit" in record["exception"]
