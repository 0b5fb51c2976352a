"""A body over 64 KiB is 413/400001 however it is framed, and changes nothing (SPEC §3.3, issue 9 #8)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from app.errors import BodyTooLarge, InvalidRequest
from app.http.body import read_body
from tests.conftest import Api
from tests.http.test_bad_input import MAX_BODY, padded, update_error
from tests.support import UPDATE_PATH, signed_headers

SIGNED = padded(MAX_BODY)  # a valid one-change body for ACC-2 of exactly 64 KiB
TAIL = b"x" * (4 * 1024)


def post(api: Api, stream: bytes, *, signed_over: bytes, content_length: int | None) -> Any:
    """POST `stream` as the server hands it over: ended by the server (as gunicorn and chunked bodies are),
    with the given Content-Length or none; the signature covers `signed_over`."""
    headers = signed_headers("POST", UPDATE_PATH, signed_over)
    if content_length is None:
        headers["Transfer-Encoding"] = "chunked"
    return api.client.post(
        UPDATE_PATH,
        input_stream=io.BytesIO(stream),
        headers=headers,
        environ_overrides={
            "wsgi.input_terminated": True,
            "CONTENT_LENGTH": "" if content_length is None else str(content_length),
        },
    )


def test_chunked_body_over_the_limit_is_413_not_cut_and_applied(api: Api) -> None:
    """68 KiB sent, the first 64 KiB valid JSON signed over those bytes: refused whole."""
    response = post(api, SIGNED + TAIL, signed_over=SIGNED, content_length=None)
    assert update_error(response, 413, 400001)["message"] == "body is larger than 64 KiB"
    assert api.statuses("ACC-2")["stock.US"] == "close"


def test_chunked_body_at_the_limit_is_applied(api: Api) -> None:
    update_error(post(api, SIGNED, signed_over=SIGNED, content_length=None), 200, 0)
    assert api.statuses("ACC-2")["stock.US"] == "open"


@pytest.mark.parametrize(
    ("stream", "content_length", "status"),
    [
        (SIGNED[:100], MAX_BODY + 1, 413),  # over the limit by its length: refused unread
        (SIGNED + TAIL, 100, 413),  # says 100 bytes, sends 68 KiB
        (SIGNED + TAIL, MAX_BODY, 413),  # says exactly the limit, sends more
        (SIGNED[:1000] + b" ", 1000, 400),  # one byte more than it says, under the limit
        (SIGNED[:100], 200, 400),  # says more than it sends
    ],
    ids=["length-over", "length-far-under-sent", "length-at-limit-under-sent", "length-under-sent", "length-over-sent"],
)
def test_lying_content_length(api: Api, stream: bytes, content_length: int, status: int) -> None:
    response = post(api, stream, signed_over=SIGNED, content_length=content_length)
    update_error(response, status, 400001)
    assert api.statuses("ACC-2")["stock.US"] == "close"


def test_content_length_over_the_limit_is_refused_unread() -> None:
    class Unreadable(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise AssertionError("the body was read")

    environ = {"CONTENT_LENGTH": str(MAX_BODY + 1), "wsgi.input": Unreadable(), "wsgi.input_terminated": True}
    with pytest.raises(BodyTooLarge, match="larger than 64 KiB"):
        read_body(environ, limit=MAX_BODY)


def test_a_stream_that_breaks_is_400_not_500(api: Api) -> None:
    class Broken(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise ValueError("invalid chunk size")  # as a server's chunk parser would

    headers = {**signed_headers("POST", UPDATE_PATH, SIGNED), "Transfer-Encoding": "chunked"}
    response = api.client.post(
        UPDATE_PATH,
        input_stream=Broken(),
        headers=headers,
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    assert "could not be read" in update_error(response, 400, 400001)["message"]


@pytest.mark.parametrize("content_length", ["abc", "-1", "1e3", "\u0661\u0660"])
def test_content_length_that_is_not_a_number(content_length: str) -> None:
    environ = {"CONTENT_LENGTH": content_length, "wsgi.input": io.BytesIO(b"{}")}
    with pytest.raises(InvalidRequest, match="Content-Length must be a number") as raised:
        read_body(environ, limit=MAX_BODY)
    assert not isinstance(raised.value, BodyTooLarge)
